"""The `hedgerow` command: parse flags, call one library function, print the result.

Exit codes: 0 done, 1 a user error (one line saying how to fix it), 2 bad usage,
130 interrupted (finished work is kept; the same command resumes).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from pathlib import Path

import click

from generator import __version__
from generator.errors import HedgerowError


def _default_behaviors() -> str:
    """The installed behaviors that run when none are named (the registry's defaults)."""
    from generator.generators import defaults

    return ",".join(defaults())


def _default_mix() -> str:
    from generator.generators import default_mix

    return default_mix()


def _errors(fn):
    """Typed library errors become one-line click errors (exit 1), in one place."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HedgerowError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


class _Finite(click.FloatRange):
    """A float range that also refuses nan and inf (click's ranges let nan through)."""

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _option(*names, **kwargs):
    """A click option with its HEDGEROW_* environment variable."""
    long = next(n for n in names if n.startswith("--"))
    kwargs.setdefault("envvar", "HEDGEROW_" + long[2:].upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hedgerow")
def main():
    """Generate behavioral fine-tuning data: hedges, refusal/contrast pairs, near-misses."""


class _Bar:
    """A rich progress bar with rate and ETA, on stderr, only when it is a terminal."""

    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        console = Console(stderr=True)
        self.enabled = console.is_terminal

        class Rate(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed or 0:.1f} seeds/s")

        class Requests(ProgressColumn):
            def render(self, task):
                return Text(task.fields.get("requests", ""))

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            Requests(),
            console=console,
            disable=not self.enabled,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, total: int, done: int) -> None:
        self.task = self.progress.add_task("seeds", total=total, completed=done)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def say(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, requests=text)

    def note(self, stats) -> None:
        errors = sum(stats.errors.values())
        text = (
            f"{stats.sent} sent {stats.cached} cached "
            f"{stats.prompt_tokens + stats.completion_tokens:,} tokens "
            f"{errors} errors {stats.failed} failed"
        )
        self.progress.update(self.task, requests=text)


GRACE = 1.0  # seconds a stop signal waits for the run to reach an await before forcing


class _Stop:
    """What Ctrl-C and SIGTERM do while a command works (see `_stoppable`).

    The first signal stops the work where it is safe to: inside the event loop, by a
    KeyboardInterrupt raised between two task steps (so no step, and no seed, is cut in
    half; asyncio then cancels every task at its await, and the in-process scorer stops
    at its next llama_decode); outside it, by a KeyboardInterrupt right where the code
    is, as Python does. If the loop has not got there within GRACE seconds it is stuck
    in something that does not return (a blocking read), and the signal is sent again to
    the main thread, which raises KeyboardInterrupt out of that call. A second signal
    from outside exits at once: the run folder keeps what its journal records, like
    after a kill.
    """

    def __init__(self, kept: str):
        self.message = f"interrupted: {kept}; run the same command to resume"
        self.signals = 0
        self.forcing = False
        self.delivered = False  # the forced KeyboardInterrupt was raised
        self.active = True
        self.lock = threading.RLock()  # re-entered by a signal handler on the main thread
        self.reached = threading.Event()  # the loop ran the interrupt

    def handle(self, signum, frame) -> None:
        asyncio = sys.modules.get("asyncio")  # not imported: no loop can be running
        loop = asyncio and asyncio._get_running_loop()
        if self.forcing:  # our own signal, sent by `_watch`: out of the call that blocks
            self.forcing = False
            self.delivered = True
            task = loop and asyncio.current_task(loop)
            if task is not None:  # it ends with our KeyboardInterrupt: nothing to report
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise KeyboardInterrupt
        self.signals += 1
        if self.signals > 1 or not self.active:
            self.exit_now()
        if loop is None:
            raise KeyboardInterrupt
        try:
            loop.call_soon_threadsafe(self._interrupt)
        except RuntimeError:  # the loop is closing
            raise KeyboardInterrupt from None
        threading.Thread(target=self._watch, args=(signum,), daemon=True).start()

    def _interrupt(self) -> None:
        with self.lock:  # either this or `_watch` stops the work, never both
            if self.forcing or self.delivered:
                return
            self.reached.set()
        raise KeyboardInterrupt

    def _watch(self, signum: int) -> None:
        self.reached.wait(GRACE)
        with self.lock:
            if self.active and not self.reached.is_set():
                self.forcing = True
                signal.pthread_kill(threading.main_thread().ident, signum)

    def exit_now(self) -> None:
        with self.lock:
            self.active = False
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h\n")  # the progress bar hid the cursor
        sys.stderr.write(self.message + "\n")
        sys.stderr.flush()
        os._exit(130)

    def stopped(self) -> None:
        with self.lock:  # no forced signal after this: the main thread is leaving
            self.active = False


@contextlib.contextmanager
def _stoppable(kept: str):
    """Ctrl-C and SIGTERM stop the work inside promptly, wherever it waits: exit 130,
    saying what is kept (`_Stop` says how)."""
    stop = _Stop(kept)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if main_thread:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup`, `cmd &`: left so
                previous[signum] = signal.signal(signum, stop.handle)
    try:
        yield
    except KeyboardInterrupt:
        stop.stopped()
        click.echo(stop.message, err=True)
        sys.exit(130)
    finally:
        stop.stopped()
        for signum, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(signum, handler)


# generate, augment and score: the backend's requests and an openai:URL scorer's
_TIMEOUT = _option(
    "--timeout",
    type=_Finite(min=0, min_open=True),
    default=120.0,  # scoring.TIMEOUT (not imported here: --help stays instant)
    show_default=True,
    help="Seconds to wait for one response (of --backend openai or an openai:URL scorer) "
    "before sending it again; a scorer tries 3 times, then the command stops (finished "
    "work is kept).",
)

# generate, augment and score: how the knowledge probe asks
_PROBE_SAMPLES = _option(
    "--probe-samples",
    type=click.IntRange(min=1, max=64),
    default=10,
    show_default=True,
    help="Sampled answers per probed question (plus one greedy answer).",
)
_PROBE_TEMPERATURE = _option(
    "--probe-temperature",
    type=_Finite(0, 2),
    default=1.0,
    show_default=True,
    help="Temperature of the probe's sampled answers.",
)

_RUN_OPTIONS = [
    _option(
        "--backend",
        type=click.Choice(["offline", "openai"]),
        default="offline",
        show_default=True,
        help="Where candidates come from.",
    ),
    _option("--model", help="Model name for --backend openai."),
    _option(
        "--base-url",
        "base_urls",
        multiple=True,
        help="OpenAI-compatible endpoint for --backend openai (default: OPENAI_BASE_URL, "
        "else OpenAI's); repeat it to spread requests over replicas (the API key comes "
        "from OPENAI_API_KEY).",
    ),
    _option(
        "--concurrency",
        type=click.IntRange(min=1),
        help="Requests in flight for --backend openai (default 16).",
    ),
    _TIMEOUT,
    _option(
        "--retries",
        type=click.IntRange(min=0),
        default=6,
        show_default=True,
        help="Retries of a request after a 5xx, timeout or broken connection (rate limits "
        "are retried for up to 15 minutes).",
    ),
    _option(
        "--reasks",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Times an unusable reply goes back to the model with the error.",
    ),
    _option(
        "--candidates",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Candidates per seed and behavior slot; the best valid one is kept.",
    ),
    _option(
        "--scorer",
        default="embedded",
        show_default=True,
        help="Fit scorer: embedded (the bundled Gemma 3 270M base model), gguf:PATH, "
        "openai:URL (a /v1/completions with echo and logprobs) or none.",
    ),
    _option(
        "--probe",
        default="embedded",
        show_default=True,
        help="Knowledge probe (sets each hedge's confidence, and says \"I don't know\" where "
        "the model does not): embedded (the --scorer model when in-process, else the bundled "
        "one), gguf:PATH, openai:URL (a /v1/completions) or none.",
    ),
    _PROBE_SAMPLES,
    _PROBE_TEMPERATURE,
    _option(
        "--fit-threshold",
        type=_Finite(0, 1),
        default=0.95,
        show_default=True,
        help="Drop candidates less natural to the scorer than this share of the seeds' own "
        "responses (1: only those less natural than all of them).",
    ),
    _option(
        "--near-duplicates",
        type=_Finite(0, 1),
        default=0.85,
        show_default=True,
        help="Drop a row whose prompt and response both match an earlier row of the same "
        "behavior this closely (Jaccard similarity of word 3-grams, MinHash); 0 turns it off.",
    ),
    _option(
        "--keep-calculator-annotations",
        is_flag=True,
        help="Keep GSM8K-style calculator annotations (<<48/2=24>>) in every behavior's "
        "responses; by default they are stripped from all of them alike.",
    ),
    _option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Random seed: the same seed gives the same bytes.",
    ),
    _option(
        "--prompts",
        type=click.Path(file_okay=False, path_type=str),
        help="Folder of templates overlaying the defaults file by file.",
    ),
    _option("--prompt-column", help="Column holding the prompt (default: auto-detected)."),
    _option("--response-column", help="Column holding the reference answer (default: auto)."),
    _option(
        "--on-error",
        type=click.Choice(["fail", "skip"]),
        default="fail",
        show_default=True,
        help="A bad input row: stop with its file and line (fail), or skip it and list it "
        "in the manifest (skip).",
    ),
    _option("--overwrite", is_flag=True, help="Start the run folder over instead of resuming."),
]


def _run_options(fn):
    """The options of every command that runs the pipeline (generate, augment)."""
    for option in reversed(_RUN_OPTIONS):
        fn = option(fn)
    return fn


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
    """generate()'s arguments besides the config (the API key is read here, never written)."""
    import os

    return {
        "command": ["hedgerow", *sys.argv[1:]],
        "overwrite": overwrite,
        "api_key": os.environ.get("OPENAI_API_KEY") or None,
    }


@main.command()
@click.argument("seeds", nargs=-1, required=True, type=click.Path(path_type=str))
@_option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=str),
    help="Run folder (default: outputs/<input>-<settings hash>, so a re-run resumes).",
)
@_option(
    "--behaviors",
    default=_default_behaviors,
    show_default="hedge,refusal,near_miss and installed plugins' defaults",
    help="Comma-separated behaviors to generate.",
)
@_run_options
@_option("--limit", type=click.IntRange(min=1), help="Use only the first N seeds.")
@_option("--dry-run", is_flag=True, help="Render and check everything, write nothing.")
@_errors
def generate(seeds, behaviors, dry_run, **options):
    """Turn SEEDS (JSONL, JSON, CSV, Parquet, save_to_disk folders) into a run folder."""
    from generator.run import generate as run_generate

    config = _run_config(seeds, behaviors, **options)
    with _stoppable("finished seeds are saved"), _Bar("generating") as bar:
        result = run_generate(
            config, progress=bar, dry_run=dry_run, **_run_arguments(options["overwrite"])
        )
    _print_summary(result)


@main.command()
@click.argument("dataset", type=click.Path(path_type=str))
@_option(
    "-o",
    "--out",
    "output",
    envvar="HEDGEROW_AUGMENT_OUT",  # not HEDGEROW_OUT: that is generate's run folder
    type=click.Path(path_type=str),
    help="The augmented dataset (default: <name>.augmented.<ext> here; a folder for a "
    "save_to_disk input).",
)
@_option(
    "--mix",
    default=_default_mix,
    show_default="hedge=0.2,refusal=0.1,near_miss=0.1 and installed plugins' defaults",
    help="Rows to add per behavior, as shares of the dataset's row count; a refusal and "
    "its contrast count as two rows.",
)
@_option(
    "--run",
    "run_folder",
    type=click.Path(file_okay=False, path_type=str),
    help="Run folder for the generated rows (default: outputs/<name>-<settings hash>; a "
    "re-run resumes it).",
)
@_option("--shuffle", is_flag=True, help="Mix the new rows in among the originals (by --seed).")
@_run_options
@_errors
def augment(dataset, output, mix, run_folder, shuffle, **options):
    """Add hedges, refusal pairs and near-misses to DATASET, written in its own format:
    every original row unchanged, then the new rows."""
    from generator.augment import augment as run_augment
    from generator.augment import parse_mix

    shares = parse_mix(mix)
    config = _run_config([dataset], ",".join(shares), out=run_folder, limit=None, **options)
    with _stoppable("finished seeds are saved"), _Bar("augmenting") as bar:
        result = run_augment(
            config,
            shares,
            out=output,
            shuffle=shuffle,
            progress=bar,
            **_run_arguments(options["overwrite"]),
        )
    added = sum(result.added.values())
    click.echo(f"{result.original} rows + {added} new -> {result.path}")
    for name, wanted in result.wanted.items():
        click.echo(f"  {name:<10} {result.added.get(name, 0):>6} added of {wanted}")
    click.echo(f"  run folder (every candidate, manifest): {result.run.path}")
    _print_request_failures(result.run)
    skipped_rows = (result.run.manifest.get("input_errors") or {}).get("skipped_rows")
    if skipped_rows:
        click.echo(f"  input rows skipped (--on-error skip; see its manifest.json): {skipped_rows}")
    for name, missing in result.short.items():
        click.echo(
            f"  short: {name} has {missing} rows fewer than asked; the dataset's rows gave "
            f"no more that passed the checks (see {result.run.path}/candidates.jsonl)",
            err=True,
        )


def _print_summary(result) -> None:
    counts = result.counts
    where = "dry run, nothing written" if result.path is None else str(result.path)
    if result.resumed_from:
        where += f" (resumed after {result.resumed_from} seeds)"
    if result.retried:
        where += f" (redid {result.retried} seeds from the first whose requests had failed)"
    click.echo(f"{result.seeds} seeds -> {where}")
    behaviors = sorted(set(counts["candidates"]) | {k.split(":")[0] for k in counts["skipped"]})
    for behavior in behaviors:
        skipped = sum(v for k, v in counts["skipped"].items() if k.startswith(behavior + ":"))
        click.echo(
            f"  {behavior:<10} {counts['selected'].get(behavior, 0):>6} selected"
            f"  {counts['candidates'].get(behavior, 0):>6} candidates"
            f"  {skipped:>6} seeds skipped"
        )
    if counts["dropped"]:
        reasons = ", ".join(f"{k} {v}" for k, v in counts["dropped"].items())
        click.echo(f"  dropped: {reasons}")
    if counts.get("failed"):
        reasons = ", ".join(f"{k} {v}" for k, v in counts["failed"].items())
        click.echo(f"  failed (see candidates.jsonl): {reasons}")
    _print_request_failures(result)
    skipped_rows = (result.manifest.get("input_errors") or {}).get("skipped_rows")
    if skipped_rows:
        click.echo(f"  input rows skipped (--on-error skip; see manifest.json): {skipped_rows}")
    r = result.requests
    if r is not None:
        click.echo(
            f"  requests: {r['requests']} ({r['sent']} sent, {r['cached']} from the cache, "
            f"{r['retries']} retries, {r['reasks']} re-asks, {r['failed']} failed)"
        )
        if result.path is None:
            cost = r.get("estimated_prompt_cost_usd")
            click.echo(
                f"  would send {r['requests'] - r['cached']} requests, about "
                f"{r.get('estimated_prompt_tokens', 0):,} prompt tokens (characters / 4)"
                + (f", about ${cost:.2f} of input" if cost is not None else "")
                + "; completions add at most max_tokens each"
            )
        else:
            usage = result.manifest.get("token_usage", {})
            click.echo(
                f"  tokens: {usage.get('prompt', 0):,} prompt, "
                f"{usage.get('completion', 0):,} completion"
            )


def _print_request_failures(result) -> None:
    """Requests that got no answer, by why, and that the same command asks them again."""
    failures = result.request_failures
    if not failures:
        return
    ranked = sorted(failures.items(), key=lambda kv: -kv[1])
    why = ", ".join(f"{cause} {n}" for cause, n in ranked[:3])
    if len(ranked) > 3:
        why += f", {sum(n for _, n in ranked[3:])} other"
    click.echo(
        f"  requests without an answer: {sum(failures.values())} ({why}); run the same "
        "command again to ask them again (finished work is kept)",
        err=True,
    )


@main.command()
@click.argument("dataset", nargs=-1, required=True, type=click.Path(path_type=str))
@_option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=str),
    help="Output JSONL (default: <input>.fit.jsonl here).",
)
@_option(
    "--scorer",
    default="embedded",
    show_default=True,
    help="Fit scorer: embedded, gguf:PATH, openai:URL or none (with --probe: only probe).",
)
@_option(
    "--probe",
    default="none",
    show_default=True,
    help="Knowledge probe: what the model knows of each row's question (SliCK's "
    "categories): embedded (the --scorer model when in-process, else the bundled one), "
    "gguf:PATH, openai:URL (a /v1/completions) or none.",
)
@_PROBE_SAMPLES
@_PROBE_TEMPERATURE
@_option(
    "--prompts",
    type=click.Path(file_okay=False, path_type=str),
    help="Folder of templates overlaying the defaults (scoring/frame.j2 frames each row).",
)
@_option("--prompt-column", help="Column holding the prompt (default: auto-detected).")
@_option("--response-column", help="Column holding the response (default: auto).")
@_option("--overwrite", is_flag=True, help="Score again over an existing output.")
@_TIMEOUT
@_errors
def score(dataset, out, scorer, probe, probe_samples, probe_temperature, **options):
    """Fit-score every row of DATASET under a base model: each row comes back with `fit`
    (nll in nats/token, lower is more natural; percentile among the dataset's rows), and
    with --probe its `knowledge` (what the model knows of the row's question)."""
    from generator.scoring.dataset import score_dataset

    label = "scoring" if probe == "none" else "probing" if scorer == "none" else "scoring+probing"
    with _stoppable("scored rows are kept"), _Bar(label) as bar:

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
    if result.knowledge is not None:
        _print_knowledge(result)
    if scorer != "none":
        _print_fit(result)


def _print_knowledge(result) -> None:
    """Rows per SliCK category, the Unknown share named for what it teaches, and the rows
    that could not be checked, by why; every share is of all rows."""

    def share(n: int) -> str:
        return f"{n / result.rows:>4.0%} ({n} {'row' if n == 1 else 'rows'})"

    checkable = sum(result.knowledge.values())
    click.echo(f"  knowledge of the model, {checkable} rows checked:")
    for category, n in result.knowledge.items():
        line = f"    {category:<13} {share(n)}"
        if category == "Unknown":
            line += (
                ": examples the model does not know; fine-tuning on them teaches it to "
                "make things up (SliCK)"
            )
        click.echo(line)
    if result.not_checkable:
        why = ", ".join(f"{reason} {n}" for reason, n in result.not_checkable.items())
        unchecked = result.rows - checkable
        click.echo(f"    {'not checkable':<13} {share(unchecked)}: {why}")


def _print_fit(result) -> None:
    if result.failed:
        why = (result.failure or "").split("; ")[0]
        if result.mean_nll is None:
            raise click.ClickException(
                f"{result.path}: no row got a finite score ({why}); fix the scorer, then "
                "score again with --overwrite"
            )
        click.echo(f"  {result.failed} rows not scored (their fit.error says why): {why}", err=True)
    if result.mean_nll is None:
        click.echo("  no row had a response to score")
        return
    click.echo(f"  {result.scored} scored, mean nll {result.mean_nll:.3f} nats/token")
    click.echo("  least natural to the base model:")
    for row in result.foreign:
        prompt = " ".join(row["prompt"].split())
        click.echo(f"    row {row['row']:>6}  nll {row['nll']:.3f}  {prompt[:70]}")


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@_option(
    "--format",
    "format_",
    type=click.Choice(["openai", "alpaca", "sharegpt", "dpo", "hf"]),
    required=True,
    help="openai: messages only; alpaca; sharegpt; dpo: prompt/chosen/rejected pairs; "
    "hf: a datasets save_to_disk folder with the metadata as columns.",
)
@_option(
    "-o",
    "--out",
    envvar="HEDGEROW_EXPORT_OUT",  # not HEDGEROW_OUT: that is generate's run folder
    type=click.Path(path_type=str),
    help="Output file (hf: folder); default RUN/<format>.jsonl, RUN/hf for hf.",
)
@_option(
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


def _eval_option(*names, **kwargs):
    """An eval option; its environment variable is HEDGEROW_EVAL_<FLAG> (the model under
    test is not generate's --model)."""
    long = next(n for n in names if n.startswith("--"))
    kwargs.setdefault("envvar", "HEDGEROW_EVAL_" + long[2:].upper().replace("-", "_"))
    return _option(*names, **kwargs)


@main.command("eval")
@click.argument("seeds", nargs=-1, type=click.Path(path_type=str))
@_eval_option(
    "--unanswerable",
    multiple=True,
    type=click.Path(path_type=str),
    help="Questions with no true answer: SelfAware (question, answerable), XSTest (prompt, "
    "type, label) or a question column. Repeatable.",
)
@_eval_option(
    "--answerable",
    multiple=True,
    type=click.Path(path_type=str),
    help="Answerable look-alikes: XSTest (prompt, type, label), SelfAware, or a question "
    "column (with an answer column: knowledge questions). Repeatable.",
)
@_eval_option(
    "--backend",
    type=click.Choice(["local", "openai"]),
    default="local",
    show_default=True,
    help="local: --model embedded or gguf:PATH, in-process; openai: an endpoint.",
)
@_eval_option("--model", help="embedded (default), gguf:PATH, or the endpoint's model name.")
@_eval_option(
    "--base-url",
    "base_urls",
    multiple=True,
    help="OpenAI-compatible endpoint for --backend openai (key: OPENAI_API_KEY).",
)
@_eval_option(
    "--api",
    type=click.Choice(["chat", "completions"]),
    default="chat",
    show_default=True,
    help="--backend openai: a chat model, or a base model's /completions (few-shot frame).",
)
@_eval_option("--concurrency", type=click.IntRange(min=1), help="Requests in flight (16).")
@_eval_option(
    "--timeout",
    type=_Finite(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to wait for one answer before retrying it.",
)
@_eval_option(
    "--retries",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Retries of a request after a 5xx, timeout or broken connection.",
)
@_eval_option(
    "-o",
    "--out",
    help="Eval folder (default outputs/eval-<input>-<hash>); with "
    "--compare, the page to write (default B/compare.html).",
)
@_eval_option(
    "--limit", type=click.IntRange(min=1), help="Read only the first N rows of each input."
)
@_eval_option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@_eval_option(
    "--prompts",
    type=click.Path(file_okay=False, path_type=str),
    help="Folder of templates overlaying the defaults (eval/*).",
)
@_eval_option("--prompt-column", help="Seeds: the prompt column (default: auto-detected).")
@_eval_option("--response-column", help="Seeds: the reference column (default: auto).")
@_eval_option("--overwrite", is_flag=True, help="Start the eval folder over.")
@_eval_option(
    "--compare",
    nargs=2,
    type=click.Path(file_okay=False, path_type=str),
    metavar="A B",
    help="Compare two eval folders (before and after fine-tuning) instead.",
)
@_errors
def eval_(seeds, compare, overwrite, **options):
    """Measure a model's curriculum-trap symptoms on held-back SEEDS (files, or run folders
    whose unselected candidates are used): prudence, over-refusal, accuracy, calibration
    (ECE, Brier, AUROC), hedging and recovery, each with a 95% interval."""
    import os

    from rich.console import Console

    from generator import evaluate
    from generator.evaluate.page import compare_summary, summary

    if compare:
        if seeds or options["unanswerable"] or options["answerable"]:
            raise click.UsageError("--compare takes two eval folders and no SEEDS")
        result = evaluate.compare(*compare, out=options["out"])
        Console(highlight=False).print(compare_summary(result), soft_wrap=True)
        click.echo(f"{result.common} questions asked of both; page -> {result.path}")
        return
    if not (seeds or options["unanswerable"] or options["answerable"]):
        raise click.UsageError("give SEEDS, --unanswerable or --answerable files, or --compare A B")
    config = evaluate.EvalConfig(
        seeds=tuple(seeds),
        unanswerable=tuple(options.pop("unanswerable")),
        answerable=tuple(options.pop("answerable")),
        base_urls=tuple(options.pop("base_urls")),
        **options,
    )
    with _stoppable("every answer so far is kept"), _Bar("evaluating") as bar:
        result = evaluate.evaluate(
            config,
            progress=bar,
            command=["hedgerow", *sys.argv[1:]],
            overwrite=overwrite,
            api_key=os.environ.get("OPENAI_API_KEY") or None,
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
@_option(
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
@_option(
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
