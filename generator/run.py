"""One run, end to end: load ─► generate ─► validate ─► (score) ─► select ─► write.

`generate(config)` is the library call behind `hedgerow generate`. It never prints: it
reports progress through an optional callback and returns a `RunResult`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from generator import __version__, backends, generators
from generator.checks import BANK as CHECKS_BANK
from generator.checks import Checker
from generator.errors import ConfigError, InputError, NotAvailableError
from generator.io import iter_seeds
from generator.runfolder import CANDIDATES, RunFolder, iter_rows
from generator.select import select
from generator.templates import Prompts
from generator.values import Seed, Skip

DEFAULT_BEHAVIORS = ("hedge", "refusal", "near_miss")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's output (and so its fingerprint)."""

    seeds: tuple[str, ...]
    out: str | None = None
    behaviors: tuple[str, ...] = DEFAULT_BEHAVIORS
    backend: str = "offline"
    candidates: int = 1
    seed: int = 0
    limit: int | None = None
    scorer: str = "none"
    prompts: str | None = None
    prompt_column: str | None = None
    response_column: str | None = None


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


@dataclass
class RunResult:
    """What a run did: where it wrote, and its counts."""

    path: Path | None
    seeds: int
    resumed_from: int
    counts: dict[str, Any]
    seconds: float
    status: str = "complete"
    manifest: dict[str, Any] = field(default_factory=dict)


def tally(rows: Iterable[dict[str, Any]], counts: dict[str, Counter] | None = None):
    """Counts per behavior and reason from candidate rows (one definition for all reports)."""
    counts = (
        counts
        if counts is not None
        else {k: Counter() for k in ("candidates", "selected", "dropped", "skipped")}
    )
    for row in rows:
        behavior = row["behavior"]
        status = row.get("status")
        if status == "skipped":
            counts["skipped"][f"{behavior}:{row['reason']}"] += 1
            continue
        counts["candidates"][behavior] += 1
        if status == "selected":
            counts["selected"][behavior] += 1
        else:
            counts["dropped"][row.get("drop_reason") or "unknown"] += 1
    return counts


def _plain(counts: dict[str, Counter]) -> dict[str, dict[str, int]]:
    return {k: dict(sorted(v.items())) for k, v in counts.items()}


class Pipeline:
    """The stages of one run, wired once and applied seed by seed."""

    def __init__(self, config: RunConfig):
        if config.candidates < 1:
            raise ConfigError("--candidates must be at least 1")
        if config.scorer != "none":
            raise NotAvailableError(
                f"--scorer {config.scorer}: fit scoring is not available "
                "in this version yet; use --scorer none"
            )
        self.config = config
        self.prompts = Prompts(config.prompts)
        self.generators = generators.get(config.behaviors, self.prompts)
        self.checker = Checker(self.prompts)
        self.checker.cues  # noqa: B018  (compile the cues now: a bad pattern fails before work)
        names = sorted({t for g in self.generators for t in g.templates()} | {CHECKS_BANK})
        self.template_hashes = {name: self.prompts.sha256(name) for name in names}
        self.backend = backends.get(config.backend, prompts=self.prompts, seed=config.seed)

    def seeds(self) -> Iterator[Seed]:
        c = self.config
        return iter_seeds(c.seeds, c.prompt_column, c.response_column, c.limit)

    def survey(self) -> int:
        """One pass over the input: validate it, count it, learn its vocabulary."""
        corpus = None
        if any(g.name == "refusal" for g in self.generators):
            from generator.corpus import CorpusWords

            corpus = CorpusWords()
        total = 0
        for seed in self.seeds():
            total += 1
            if corpus is not None:
                corpus.add_text(seed.prompt)
                corpus.add_text(seed.response or "")
        self.backend.corpus = corpus
        return total

    def fingerprint(self) -> str:
        """A hash of everything that decides the output: inputs, settings, templates."""
        inputs = []
        for name in self.config.seeds:
            path = Path(name).resolve()
            # A save_to_disk folder is rewritten in place: its files tell, not the folder.
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            try:
                stats = [(p, p.stat()) for p in files]
            except OSError as e:
                raise InputError(f"{name}: cannot read it ({e.strerror}); check the path") from None
            inputs.append([[str(p), st.st_size, st.st_mtime_ns] for p, st in stats])
        settings = asdict(self.config)
        settings.pop("out")
        settings.pop("seeds")  # `inputs` names them, resolved: ./a.jsonl and a.jsonl are one
        settings["prompts"] = (
            str(Path(self.config.prompts).resolve()) if self.config.prompts else None
        )
        blob = json.dumps(
            {"inputs": inputs, "settings": settings, "templates": self.template_hashes},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def process(self, seed: Seed) -> tuple[list[dict], list[dict]]:
        """One seed through generate, validate and select: (dataset rows, candidate rows)."""
        produced: list[list[dict] | Skip] = []
        checked = []
        for generator in self.generators:
            out = self.backend.produce(generator, seed, self.config.candidates)
            produced.append(out)
            if not isinstance(out, Skip):
                checked.extend((ex, self.checker.check(ex, seed.response)) for ex in out)
        decisions = iter(select(checked))
        candidate_rows, dataset_rows = [], []
        for out in produced:
            if isinstance(out, Skip):
                candidate_rows.append(out.to_row())
                continue
            for _ in out:
                decision = next(decisions)
                candidate_rows.append(decision.to_row())
                if decision.selected:
                    dataset_rows.append(decision.example.to_row())
        return dataset_rows, candidate_rows


def default_out(config: RunConfig, fingerprint: str) -> Path:
    """outputs/<first input's name>-<fingerprint>: the same command finds the same folder."""
    stem = Path(config.seeds[0]).name.split(".")[0] or "run"
    return Path("outputs") / f"{stem}-{fingerprint[:8]}"


def generate(
    config: RunConfig,
    progress: Progress | None = None,
    command: list[str] | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Run (or resume) one generation run; returns where it wrote and what it counted."""
    started = time.time()
    pipeline = Pipeline(config)
    total = pipeline.survey()
    fingerprint = pipeline.fingerprint()
    if dry_run:
        counts = None
        if progress:
            progress.start(total, 0)
        for seed in pipeline.seeds():
            counts = tally(pipeline.process(seed)[1], counts)
            if progress:
                progress.advance()
        return RunResult(
            None, total, 0, _plain(counts or tally([])), time.time() - started, status="dry-run"
        )

    folder = RunFolder(
        Path(config.out) if config.out else default_out(config, fingerprint), fingerprint
    )
    resumed_from = folder.open(overwrite=overwrite)
    status = "interrupted"
    if progress:
        progress.start(total, min(resumed_from, total))
    try:
        for index, seed in enumerate(pipeline.seeds()):
            if index < resumed_from:
                continue
            folder.write(*pipeline.process(seed))
            if progress:
                progress.advance()
        status = "complete"
    finally:
        try:
            folder.checkpoint()
            counts = _plain(tally(iter_rows(folder.path / CANDIDATES)))
            seconds = time.time() - started
            manifest = _manifest(
                config,
                pipeline,
                command,
                fingerprint,
                counts,
                status,
                total,
                folder.done,
                resumed_from,
                started,
                seconds,
            )
            folder.write_manifest(manifest)
        finally:
            folder.close()
    return RunResult(folder.path, total, resumed_from, counts, seconds, status, manifest)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"hedgerow": __version__, "python": platform.python_version()}
    for package in ("jinja2", "click", "datasets", "openai", "tenacity", "rich"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def redact(argv: list[str] | None) -> list[str] | None:
    """A command line with secret values blanked (an API key is never written anywhere)."""
    if argv is None:
        return None
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            hide = arg == "--api-key"
            out.append(arg)
    return out


def _manifest(
    config: RunConfig,
    pipeline: Pipeline,
    command: list[str] | None,
    fingerprint: str,
    counts: dict,
    status: str,
    total: int,
    done: int,
    resumed_from: int,
    started: float,
    seconds: float,
) -> dict[str, Any]:
    selected = counts["selected"]
    processed = done - resumed_from
    return {
        "hedgerow": __version__,
        "status": status,
        "command": redact(command),
        "config": asdict(config),
        "fingerprint": fingerprint,
        "versions": _versions(),
        "templates": pipeline.template_hashes,
        "seeds": {"total": total, "done": done, "resumed_from": resumed_from},
        "counts": counts,
        "pairs": min(selected.get("refusal", 0), selected.get("contrast", 0)),
        "token_usage": {"prompt": 0, "completion": 0},
        "timings": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(seconds, 3),
            "seeds_per_second": round(processed / seconds, 2) if seconds > 0 else None,
        },
    }
