"""A run's settings (`RunConfig`), what it did (`RunResult`), and how it reports progress.

These are the library's values for `generate`/`agenerate` (generator.run); the CLI
builds a RunConfig from its flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from generator import generators
from generator.errors import ConfigError, param


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's output (and so its fingerprint)."""

    seeds: tuple[str, ...]
    out: str | None = None
    # the registry's default behaviors (generators.defaults)
    behaviors: tuple[str, ...] = field(default_factory=lambda: generators.defaults())
    backend: str = "offline"
    candidates: int = 1
    seed: int = 0
    limit: int | None = None
    scorer: str = "embedded"
    fit_threshold: float = 0.95
    near_duplicates: float = 0.85  # Jaccard similarity that makes two rows duplicates; 0: off
    keep_calculator_annotations: bool = False  # GSM8K's <<48/2=24>> in every response
    # the knowledge probe: the target model asked each checkable question probe_samples
    # times (and once greedily); "embedded" is the --scorer's model when in-process
    probe: str = "embedded"
    probe_samples: int = 10
    probe_temperature: float = 1.0
    # `hedgerow augment`: rows wanted per behavior (refusal counts its contrasts too).
    # With a quota, seeds go in a shuffled order, a behavior stops once it has its rows,
    # and the run stops when every behavior has.
    quota: tuple[tuple[str, int], ...] = ()
    on_error: str = "fail"  # "skip": a bad input row is skipped and listed in the manifest
    prompts: str | None = None
    prompt_column: str | None = None
    response_column: str | None = None
    # --backend openai (the API key is never part of a config: it is never written)
    model: str | None = None
    base_urls: tuple[str, ...] = ()
    concurrency: int | None = None
    timeout: float = 120.0
    retries: int = 6
    reasks: int = 2
    # where seeds are processed (generator.engine): "local", or "ray" (a cluster's actors)
    engine: str = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray
    ray_workers: int | None = None  # actors (None: the cluster's CPUs / ray_threads)
    ray_threads: int | None = None  # llama.cpp threads per actor (None: 1)
    ray_block: int = 16  # seeds an actor takes at a time

    def check(self) -> None:
        """Settings that cannot work together: a one-line error naming the parameter."""
        if self.on_error not in ("fail", "skip"):
            raise ConfigError(f"{param('on_error')} must be fail or skip")
        if self.candidates < 1:
            raise ConfigError(f"{param('candidates')} must be at least 1")
        if self.backend == "openai" and not self.model:
            raise ConfigError(
                f"{param('backend')} openai needs {param('model')} NAME (the endpoint's model id)"
            )
        if self.backend != "openai":
            for flag, value in (
                (param("model"), self.model),
                (param("base_urls"), self.base_urls),
                (param("concurrency"), self.concurrency),
            ):
                if value:
                    raise ConfigError(
                        f"{flag} is for {param('backend')} openai; add {param('backend')} openai"
                    )
        if not 0 <= self.fit_threshold <= 1:
            raise ConfigError(f"{param('fit_threshold')} must be a share between 0 and 1")
        if not 0 <= self.near_duplicates <= 1:
            raise ConfigError(f"{param('near_duplicates')} must be a similarity between 0 and 1")


# Settings that change how a run reaches its endpoint or where it runs, not what it
# writes: changing them resumes the same run folder.
TRANSPORT = (
    "base_urls",
    "concurrency",
    "timeout",
    "retries",
    # where the seeds are processed never changes what is written
    "engine",
    "ray_address",
    "ray_workers",
    "ray_threads",
    "ray_block",
)
DEFAULT_CONCURRENCY = 16  # a hosted API's comfortable default; local servers take more
REFERENCE_SEEDS = 64  # seeds whose own responses, scored, make the reference distribution
LISTED_ERRORS = 100  # input rows skipped with --on-error skip: the manifest lists this many


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def note(self, stats: Any) -> None: ...
    def say(self, text: str) -> None: ...  # what the run is doing, when it is not a seed


@dataclass
class RunResult:
    """What a run did: where it wrote, and its counts."""

    path: Path | None
    seeds: int
    resumed_from: int
    counts: dict[str, Any]
    seconds: float
    status: str = "complete"  # or interrupted, dry-run (a run that made no row because
    # its requests failed raises EndpointError instead; its manifest says "failed")
    manifest: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, Any] | None = None  # --backend openai: what was asked and spent
    retried: int = 0  # seeds done again because their requests had failed last time

    @property
    def request_failures(self) -> dict[str, int]:
        """Requests that got no answer, by why; the same command asks them again."""
        return self.counts.get("request_failures", {})
