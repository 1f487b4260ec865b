"""The `hedgerow` command: parse flags, call one library function, print the result.

Exit codes: 0 done, 1 a user error (one line saying how to fix it), 2 bad usage,
130 interrupted (finished work is kept; the same command resumes).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from generator import __version__
from generator.console import (
    Bar,
    print_engine,
    print_fit,
    print_knowledge,
    print_request_failures,
    print_summary,
    stoppable,
)
from generator.errors import HedgerowError
from generator.options import (
    PROBE_SAMPLES,
    PROBE_TEMPERATURE,
    TIMEOUT,
    default_behaviors,
    default_mix,
    eval_options,
    option,
    ray_options,
    run_options,
)


def _flags(command: click.Command) -> dict[str, str]:
    """The command's flag for each library parameter it sets (`base_urls`: `--base-url`)."""
    flags = {}
    for p in command.params:
        if isinstance(p, click.Option):
            flags[p.name] = max(p.opts, key=lambda o: (o.startswith("--"), len(o)))
        else:
            flags[p.name] = p.human_readable_name
    return flags


def _errors(fn):
    """Typed library errors become one-line click errors (exit 1), in one place; the
    parameters a message names are shown as this command's flags."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HedgerowError as e:
            flags = _flags(click.get_current_context().command)
            raise click.ClickException(
                e.show(lambda name: flags.get(name, "--" + name.replace("_", "-")))
            ) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hedgerow")
def main():
    """Generate behavioral fine-tuning data: hedges, refusal/contrast pairs, near-misses."""


def _run_config(seeds, behaviors, **options):
    """A RunConfig from the shared options' values."""
    from generator.run import RunConfig

    options.pop("overwrite")
    return RunConfig(
        seeds=tuple(seeds),
        behaviors=tuple(b.strip() for b in behaviors.split(",") if b.strip()),
        base_urls=tuple(options.pop("base_urls")),
        **options,
    )


def _run_arguments(overwrite: bool) -> dict:
    """generate()'s (and evaluate()'s) arguments besides the config (the API key is read
    here, never written)."""
    import os

    return {
        "command": ["hedgerow", *sys.argv[1:]],
        "overwrite": overwrite,
        "api_key": os.environ.get("OPENAI_API_KEY") or None,
    }


@main.command()
@click.argument("seeds", nargs=-1, required=True, type=click.Path(path_type=str))
@option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=str),
    help="Run folder (default: outputs/<input>-<settings hash>, so a re-run resumes).",
)
@option(
    "--behaviors",
    default=default_behaviors,
    show_default="hedge,refusal,near_miss and installed plugins' defaults",
    help="Comma-separated behaviors to generate.",
)
@run_options
@option("--limit", type=click.IntRange(min=1), help="Use only the first N seeds.")
@option("--dry-run", is_flag=True, help="Render and check everything, write nothing.")
@_errors
def generate(seeds, behaviors, dry_run, **options):
    """Turn SEEDS (JSONL, JSON, CSV, Parquet, save_to_disk folders) into a run folder."""
    from generator.run import generate as run_generate

    config = _run_config(seeds, behaviors, **options)
    with stoppable("finished seeds are saved"), Bar("generating") as bar:
        result = run_generate(
            config, progress=bar, dry_run=dry_run, **_run_arguments(options["overwrite"])
        )
    print_summary(result)


@main.command()
@click.argument("dataset", type=click.Path(path_type=str))
@option(
    "-o",
    "--out",
    "output",
    envvar="HEDGEROW_AUGMENT_OUT",  # not HEDGEROW_OUT: that is generate's run folder
    type=click.Path(path_type=str),
    help="The augmented dataset (default: <name>.augmented.<ext> here; a folder for a "
    "save_to_disk input).",
)
@option(
    "--mix",
    default=default_mix,
    show_default="hedge=0.2,refusal=0.1,near_miss=0.1 and installed plugins' defaults",
    help="Rows to add per behavior, as shares of the dataset's row count; a refusal and "
    "its contrast count as two rows.",
)
@option(
    "--run",
    "run_folder",
    type=click.Path(file_okay=False, path_type=str),
    help="Run folder for the generated rows (default: outputs/<name>-<settings hash>; a "
    "re-run resumes it).",
)
@option("--shuffle", is_flag=True, help="Mix the new rows in among the originals (by --seed).")
@run_options
@_errors
def augment(dataset, output, mix, run_folder, shuffle, **options):
    """Add hedges, refusal pairs and near-misses to DATASET, written in its own format:
    every original row unchanged, then the new rows (a behavior that rewrites answers
    writes its rows over the rows it rewrote)."""
    from generator.augment import augment as run_augment
    from generator.augment import parse_mix

    shares = parse_mix(mix)
    config = _run_config([dataset], ",".join(shares), out=run_folder, limit=None, **options)
    with stoppable("finished seeds are saved"), Bar("augmenting") as bar:
        result = run_augment(
            config,
            shares,
            out=output,
            shuffle=shuffle,
            progress=bar,
            **_run_arguments(options["overwrite"]),
        )
    added = sum(result.added.values())
    rewritten = sum(result.rewritten.values())
    note = f" ({rewritten} rewritten)" if result.rewritten else ""
    click.echo(f"{result.original} rows{note} + {added} new -> {result.path}")
    for name, wanted in result.wanted.items():
        if name in result.rewritten:
            click.echo(f"  {name:<10} {result.rewritten[name]:>6} rewritten of {wanted}")
        else:
            click.echo(f"  {name:<10} {result.added.get(name, 0):>6} added of {wanted}")
    click.echo(f"  run folder (every candidate, manifest): {result.run.path}")
    print_request_failures(result.run)
    skipped_rows = (result.run.manifest.get("input_errors") or {}).get("skipped_rows")
    if skipped_rows:
        click.echo(f"  input rows skipped (--on-error skip; see its manifest.json): {skipped_rows}")
    for name, missing in result.short.items():
        click.echo(
            f"  short: {name} has {missing} rows fewer than asked; the dataset's rows gave "
            f"no more that passed the checks (see {result.run.path}/candidates.jsonl)",
            err=True,
        )


@main.command()
@click.argument("dataset", nargs=-1, required=True, type=click.Path(path_type=str))
@option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=str),
    help="Output JSONL (default: <input>.fit.jsonl here).",
)
@option(
    "--scorer",
    default="embedded",
    show_default=True,
    help="Fit scorer: embedded, gguf:PATH, openai:URL or none (with --probe: only probe).",
)
@option(
    "--probe",
    default="none",
    show_default=True,
    help="Knowledge probe: what the model knows of each row's question (SliCK's "
    "categories): embedded (the --scorer model when in-process, else the bundled one), "
    "gguf:PATH, openai:URL (a /v1/completions) or none.",
)
@PROBE_SAMPLES
@PROBE_TEMPERATURE
@option(
    "--prompts",
    type=click.Path(file_okay=False, path_type=str),
    help="Folder of templates overlaying the defaults (scoring/frame.j2 frames each row).",
)
@option("--prompt-column", help="Column holding the prompt (default: auto-detected).")
@option("--response-column", help="Column holding the response (default: auto).")
@option("--overwrite", is_flag=True, help="Score again over an existing output.")
@TIMEOUT
@ray_options
@_errors
def score(dataset, out, scorer, probe, probe_samples, probe_temperature, **options):
    """Fit-score every row of DATASET under a base model: each row comes back with `fit`
    (nll in nats/token, lower is more natural; percentile among the dataset's rows), and
    with --probe its `knowledge` (what the model knows of the row's question)."""
    from generator.scoring.dataset import score_dataset

    label = "scoring" if probe == "none" else "probing" if scorer == "none" else "scoring+probing"
    with stoppable("scored rows are kept"), Bar(label) as bar:

        def progress(done: int, total: int) -> None:
            if bar.task is None:
                bar.start(total, done)
            else:
                bar.progress.update(bar.task, completed=done)

        result = score_dataset(
            dataset,
            out=out,
            scorer=scorer,
            probe=probe,
            probe_samples=probe_samples,
            probe_temperature=probe_temperature,
            progress=progress,
            say=bar.say,
            **options,
        )
    where = str(result.path)
    if result.resumed_from:
        where += f" (resumed after {result.resumed_from} rows)"
    click.echo(f"{result.rows} rows -> {where}")
    if result.engine["name"] == "ray":
        print_engine(result.engine)
    if result.knowledge is not None:
        print_knowledge(result)
    if scorer != "none":
        print_fit(result)


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@option(
    "--format",
    "format_",
    type=click.Choice(["openai", "alpaca", "sharegpt", "dpo", "hf"]),
    required=True,
    help="openai: messages only; alpaca; sharegpt; dpo: prompt/chosen/rejected pairs; "
    "hf: a datasets save_to_disk folder with the metadata as columns.",
)
@option(
    "-o",
    "--out",
    envvar="HEDGEROW_EXPORT_OUT",  # not HEDGEROW_OUT: that is generate's run folder
    type=click.Path(path_type=str),
    help="Output file (hf: folder); default RUN/<format>.jsonl, RUN/hf for hf.",
)
@option(
    "--push-to-hub",
    metavar="REPO",
    help="With --format hf, also push to this Hugging Face Hub dataset repo "
    "(token from HF_TOKEN; needs the network).",
)
@_errors
def export(run, format_, out, push_to_hub):
    """Write the selected rows of the run folder RUN in a trainer's format."""
    from generator.export import export as run_export

    result = run_export(run, format_, out=out, push_to_hub=push_to_hub)
    click.echo(f"{result.rows} {result.format} rows -> {result.path}")
    if result.kinds:
        click.echo("  pairs: " + ", ".join(f"{k} {v}" for k, v in result.kinds.items()))
    if result.status != "complete":
        click.echo(
            f"  note: the run is {result.status}; this holds its {result.seeds_done} finished "
            "seeds (run its command again to finish it, then export again)",
            err=True,
        )
    if push_to_hub:
        click.echo(f"  pushed to https://huggingface.co/datasets/{push_to_hub}")


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=str),
    help="Where to write the HTML page (default: RUN/report.html).",
)
@_errors
def report(run, out):
    """Summarize the run folder RUN: a table here and a self-contained report.html."""
    from rich.console import Console

    from generator.report import summary, write_report

    result = write_report(run, out=out)
    Console(highlight=False).print(summary(result), soft_wrap=True)
    click.echo(f"report -> {result.path}")


@main.command("eval")
@click.argument("seeds", nargs=-1, type=click.Path(path_type=str))
@eval_options
@_errors
def eval_(seeds, compare, overwrite, **options):
    """Measure a model's curriculum-trap symptoms on held-back SEEDS (files, or run folders
    whose unselected candidates are used): prudence, over-refusal, accuracy, calibration
    (ECE, Brier, AUROC), hedging and recovery, each with a 95% interval."""
    from rich.console import Console

    from generator.evaluate import EvalConfig, evaluate
    from generator.evaluate import compare as compare_folders
    from generator.evaluate.page import compare_summary, summary

    if compare:
        if seeds or options["unanswerable"] or options["answerable"]:
            raise click.UsageError("--compare takes two eval folders and no SEEDS")
        result = compare_folders(*compare, out=options["out"])
        Console(highlight=False).print(compare_summary(result), soft_wrap=True)
        click.echo(f"{result.common} questions asked of both; page -> {result.path}")
        return
    if not (seeds or options["unanswerable"] or options["answerable"]):
        raise click.UsageError("give SEEDS, --unanswerable or --answerable files, or --compare A B")
    config = EvalConfig(
        seeds=tuple(seeds),
        unanswerable=tuple(options.pop("unanswerable")),
        answerable=tuple(options.pop("answerable")),
        base_urls=tuple(options.pop("base_urls")),
        **options,
    )
    with stoppable("every answer so far is kept"), Bar("evaluating") as bar:
        result = evaluate(
            config,
            progress=bar,
            **_run_arguments(overwrite),
        )
    Console(highlight=False).print(summary(result), soft_wrap=True)
    click.echo(f"{result.asked} asked, {result.reused} answered before -> {result.path}")
    if result.failures:
        click.echo(
            f"  no answer to {sum(result.failures.values())} questions ("
            + ", ".join(f"{k} {v}" for k, v in result.failures.items())
            + "); run the same command again to ask them again",
            err=True,
        )


@main.group()
def templates():
    """See and customize the prompt templates and phrase banks."""


@templates.command("list")
@option(
    "--prompts", type=click.Path(file_okay=False, path_type=str), help="Overlay folder to include."
)
@_errors
def templates_list(prompts):
    """List every template and phrase bank (marking the ones an overlay replaces)."""
    from generator.templates import Prompts

    p = Prompts(prompts)
    for name in p.names():
        origin = "overlay" if p.overlay and (p.overlay / name).is_file() else "default"
        click.echo(f"{name:<32} {origin:<8} {p.sha256(name)[:12]}")


@templates.command("show")
@click.argument("name")
@option(
    "--prompts", type=click.Path(file_okay=False, path_type=str), help="Overlay folder to include."
)
@_errors
def templates_show(name, prompts):
    """Print one template or phrase bank, as the run would use it."""
    from generator.templates import Prompts

    click.echo(Prompts(prompts).source(name), nl=False)


@templates.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@_errors
def templates_init(directory, force):
    """Copy the default templates into DIRECTORY to edit; use it with --prompts DIRECTORY."""
    from generator.templates import init_templates

    written = init_templates(directory, force=force)
    click.echo(
        f"wrote {len(written)} files to {directory}; edit any of them and pass "
        f"--prompts {directory} (delete the ones you keep as default)"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
