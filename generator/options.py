"""The CLI's options: how one gets its HEDGEROW_* variable, the lists several commands
share (the pipeline's, the timeout, the probe's), and the defaults read from the registry.

Nothing heavy is imported here: `hedgerow --help` builds every option.
"""

from __future__ import annotations

import click


def default_behaviors() -> str:
    """The installed behaviors that run when none are named (the registry's defaults)."""
    from generator.generators import defaults

    return ",".join(defaults())


def default_mix() -> str:
    """The shares `augment` adds per behavior when no --mix is given (the registry's)."""
    from generator import generators

    return generators.default_mix()


class Finite(click.FloatRange):
    """A float range that also refuses nan and inf (click's ranges let nan through)."""

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def option(*names, **kwargs):
    """A click option with its HEDGEROW_* environment variable."""
    long = next(n for n in names if n.startswith("--"))
    kwargs.setdefault("envvar", "HEDGEROW_" + long[2:].upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


# generate, augment and score: the backend's requests and an openai:URL scorer's
TIMEOUT = option(
    "--timeout",
    type=Finite(min=0, min_open=True),
    default=120.0,  # scoring.TIMEOUT (not imported here: --help stays instant)
    show_default=True,
    help="Seconds to wait for one response (of --backend openai or an openai:URL scorer) "
    "before sending it again; a scorer tries 3 times, then the command stops (finished "
    "work is kept).",
)

# generate, augment and score: how the knowledge probe asks
PROBE_SAMPLES = option(
    "--probe-samples",
    type=click.IntRange(min=1, max=64),
    default=10,
    show_default=True,
    help="Sampled answers per probed question (plus one greedy answer).",
)
PROBE_TEMPERATURE = option(
    "--probe-temperature",
    type=Finite(0, 2),
    default=1.0,
    show_default=True,
    help="Temperature of the probe's sampled answers.",
)

# --engine ray and its cluster: generate, augment and score
RAY_OPTIONS = [
    option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where the heavy work runs: this process, or a Ray cluster's workers (pip "
        "install 'hedgerow[ray]'); the output is the same.",
    ),
    option(
        "--ray-address",
        help="--engine ray: the cluster to join (auto, ray://HOST:PORT; default: "
        "RAY_ADDRESS, else a local Ray).",
    ),
    option(
        "--ray-workers",
        type=click.IntRange(min=1),
        help="--engine ray: worker actors (default: as many as the nodes hold, each node's "
        "CPUs / --ray-threads).",
    ),
    option(
        "--ray-threads",
        type=click.IntRange(min=1),
        help="--engine ray: llama.cpp threads per worker (default 1).",
    ),
    option(
        "--ray-block",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="--engine ray: seeds (or rows) a worker takes at a time.",
    ),
]

RUN_OPTIONS = [
    option(
        "--backend",
        type=click.Choice(["offline", "openai"]),
        default="offline",
        show_default=True,
        help="Where candidates come from.",
    ),
    option("--model", help="Model name for --backend openai."),
    option(
        "--base-url",
        "base_urls",
        multiple=True,
        help="OpenAI-compatible endpoint for --backend openai (default: OPENAI_BASE_URL, "
        "else OpenAI's); repeat it to spread requests over replicas (the API key comes "
        "from OPENAI_API_KEY).",
    ),
    option(
        "--concurrency",
        type=click.IntRange(min=1),
        help="Requests in flight for --backend openai (default 16).",
    ),
    TIMEOUT,
    option(
        "--retries",
        type=click.IntRange(min=0),
        default=6,
        show_default=True,
        help="Retries of a request after a 5xx, timeout or broken connection (rate limits "
        "are retried for up to 15 minutes).",
    ),
    option(
        "--reasks",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Times an unusable reply goes back to the model with the error.",
    ),
    option(
        "--candidates",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Candidates per seed and behavior slot; the best valid one is kept.",
    ),
    option(
        "--scorer",
        default="embedded",
        show_default=True,
        help="Fit scorer: embedded (the bundled Gemma 3 270M base model), gguf:PATH, "
        "openai:URL (a /v1/completions with echo and logprobs; openai:URL1,URL2 takes "
        "replicas in turn) or none.",
    ),
    option(
        "--probe",
        default="embedded",
        show_default=True,
        help="Knowledge probe (sets each hedge's confidence, and says \"I don't know\" where "
        "the model does not): embedded (the --scorer model when in-process, else the bundled "
        "one), gguf:PATH, openai:URL (a /v1/completions; openai:URL1,URL2 takes replicas in "
        "turn) or none.",
    ),
    PROBE_SAMPLES,
    PROBE_TEMPERATURE,
    option(
        "--fit-threshold",
        type=Finite(0, 1),
        default=0.95,
        show_default=True,
        help="Drop candidates less natural to the scorer than this share of the seeds' own "
        "responses (1: only those less natural than all of them).",
    ),
    option(
        "--near-duplicates",
        type=Finite(0, 1),
        default=0.85,
        show_default=True,
        help="Drop a row whose prompt and response both match an earlier row of the same "
        "behavior this closely (Jaccard similarity of word 3-grams, MinHash); 0 turns it off.",
    ),
    option(
        "--keep-calculator-annotations",
        is_flag=True,
        help="Keep GSM8K-style calculator annotations (<<48/2=24>>) in every behavior's "
        "responses; by default they are stripped from all of them alike.",
    ),
    option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Random seed: the same seed gives the same bytes.",
    ),
    option(
        "--prompts",
        type=click.Path(file_okay=False, path_type=str),
        help="Folder of templates overlaying the defaults file by file.",
    ),
    option("--prompt-column", help="Column holding the prompt (default: auto-detected)."),
    option("--response-column", help="Column holding the reference answer (default: auto)."),
    option(
        "--on-error",
        type=click.Choice(["fail", "skip"]),
        default="fail",
        show_default=True,
        help="A bad input row: stop with its file and line (fail), or skip it and list it "
        "in the manifest (skip).",
    ),
    *RAY_OPTIONS,
    option("--overwrite", is_flag=True, help="Start the run folder over instead of resuming."),
]


def _together(options: list):
    """A decorator adding `options` to a command, in --help in their order."""

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


ray_options = _together(RAY_OPTIONS)
run_options = _together(RUN_OPTIONS)  # every command that runs the pipeline: generate, augment


def eval_option(*names, **kwargs):
    """An eval option; its environment variable is HEDGEROW_EVAL_<FLAG> (the model under
    test is not generate's --model)."""
    long = next(n for n in names if n.startswith("--"))
    kwargs.setdefault("envvar", "HEDGEROW_EVAL_" + long[2:].upper().replace("-", "_"))
    return option(*names, **kwargs)


EVAL_OPTIONS = [
    eval_option(
        "--unanswerable",
        multiple=True,
        type=click.Path(path_type=str),
        help="Questions with no true answer: SelfAware (question, answerable), XSTest (prompt, "
        "type, label) or a question column. Repeatable.",
    ),
    eval_option(
        "--answerable",
        multiple=True,
        type=click.Path(path_type=str),
        help="Answerable look-alikes: XSTest (prompt, type, label), SelfAware, or a question "
        "column (with an answer column: knowledge questions). Repeatable.",
    ),
    eval_option(
        "--backend",
        type=click.Choice(["local", "openai"]),
        default="local",
        show_default=True,
        help="local: --model embedded or gguf:PATH, in-process; openai: an endpoint.",
    ),
    eval_option("--model", help="embedded (default), gguf:PATH, or the endpoint's model name."),
    eval_option(
        "--base-url",
        "base_urls",
        multiple=True,
        help="OpenAI-compatible endpoint for --backend openai (key: OPENAI_API_KEY).",
    ),
    eval_option(
        "--api",
        type=click.Choice(["chat", "completions"]),
        default="chat",
        show_default=True,
        help="--backend openai: a chat model, or a base model's /completions (few-shot frame).",
    ),
    eval_option("--concurrency", type=click.IntRange(min=1), help="Requests in flight (16)."),
    eval_option(
        "--timeout",
        type=Finite(min=0, min_open=True),
        default=120.0,
        show_default=True,
        help="Seconds to wait for one answer before retrying it.",
    ),
    eval_option(
        "--retries",
        type=click.IntRange(min=0),
        default=6,
        show_default=True,
        help="Retries of a request after a 5xx, timeout or broken connection.",
    ),
    eval_option(
        "-o",
        "--out",
        help="Eval folder (default outputs/eval-<input>-<hash>); with "
        "--compare, the page to write (default B/compare.html).",
    ),
    eval_option(
        "--limit", type=click.IntRange(min=1), help="Read only the first N rows of each input."
    ),
    eval_option("--seed", type=int, default=0, show_default=True, help="Random seed."),
    eval_option(
        "--prompts",
        type=click.Path(file_okay=False, path_type=str),
        help="Folder of templates overlaying the defaults (eval/*).",
    ),
    eval_option("--prompt-column", help="Seeds: the prompt column (default: auto-detected)."),
    eval_option("--response-column", help="Seeds: the reference column (default: auto)."),
    eval_option("--overwrite", is_flag=True, help="Start the eval folder over."),
    eval_option(
        "--compare",
        nargs=2,
        type=click.Path(file_okay=False, path_type=str),
        metavar="A B",
        help="Compare two eval folders (before and after fine-tuning) instead.",
    ),
]
eval_options = _together(EVAL_OPTIONS)
