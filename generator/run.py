"""One run, end to end: load ─► generate ─► validate ─► (score) ─► select ─► write.

`generate(config)` is the library call behind `hedgerow generate`. It never prints: it
reports progress through an optional callback and returns a `RunResult`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from generator import annotations, backends, engine, generators, jsontext, runfolder, scoring
from generator import manifest as record
from generator.checks import BANK as CHECKS_BANK
from generator.checks import Checker
from generator.config import (  # re-exported: the library's values live beside generate
    DEFAULT_CONCURRENCY,
    LISTED_ERRORS,
    REFERENCE_SEEDS,
    TRANSPORT,
    Progress,
    RunConfig,
    RunResult,
)
from generator.errors import ConfigError, EndpointError, param, refuse_in_loop
from generator.generators import quota_key  # re-exported: a partner row counts toward its owner
from generator.io import input_stats, iter_seeds
from generator.runfolder import CANDIDATES, DATASET, REFERENCE, RunFolder, iter_rows
from generator.select import NearDuplicates, fallback, select
from generator.templates import Prompts
from generator.values import Example, Seed, Skip


class Pipeline:
    """The stages of one run, wired once and applied seed by seed."""

    def __init__(self, config: RunConfig, api_key: str | None = None, dry_run: bool = False):
        config.check()
        self.config = config
        self.prompts = Prompts(config.prompts)
        # Dry runs render and check; they score and probe nothing, so they load no model.
        self.scorer = (
            None if dry_run else scoring.make(config.scorer, self.prompts, timeout=config.timeout)
        )
        from generator import probe as probing
        from generator.probe.stage import KnowledgeStage

        measured = probing.make(
            "none" if dry_run else config.probe,
            self.prompts,
            scorer=self.scorer,
            samples=config.probe_samples,
            temperature=config.probe_temperature,
            seed=config.seed,
            timeout=config.timeout,
        )
        # the unknown seeds' "I don't know" needs partners the model knows
        self.generators = generators.get(config.behaviors, self.prompts)
        self.knowledge = KnowledgeStage(measured, pair=any(g.partner for g in self.generators))
        self.reference: scoring.Reference | None = None
        self.reference_seeds: list[Seed] = []
        self.dedup = NearDuplicates(config.near_duplicates) if config.near_duplicates else None
        self.quota = dict(config.quota)
        self.made: Counter = Counter()  # dataset rows kept per quota key
        self._order: list[Seed] | None = None
        self.input_errors: list[str] = []  # --on-error skip: the rows skipped, with why
        self.input_error_count = 0
        self.checker = Checker(self.prompts, self.generators)
        self.checker.compile()  # a bad cue pattern fails before any work
        self.window = 1  # seeds in flight: one at a time offline, many against an endpoint
        self.engine = engine.make(self)  # where seeds are processed (an engine's errors first)
        self.dry_run = dry_run
        self.corpus = None  # the input's vocabulary, learnt by `survey` for the backend
        self.backend: Any = None  # made by `connect`, once the run folder is known
        self.settings = None  # --backend openai: the endpoint's settings, checked now
        backend = backends.kind(config.backend)
        if config.backend == "openai":
            from generator.backends.openai import Settings, resolve

            concurrency = config.concurrency or DEFAULT_CONCURRENCY
            if concurrency < 1:
                raise ConfigError(f"{param('concurrency')} must be at least 1")
            settings = Settings(
                model=config.model,
                base_urls=config.base_urls,
                api_key=api_key,
                concurrency=concurrency,
                timeout=config.timeout,
                retries=config.retries,
                reasks=config.reasks,
            )
            self.settings = resolve(settings, dry_run)
            self.window = max(4, 2 * concurrency)
            used = [t for g in self.generators for t in g.llm_templates()]
        else:
            used = [t for g in self.generators for t in g.templates()]
        if config.scorer != "none":
            used.append(scoring.FRAME)
        if config.probe != "none":
            used += [probing.FRAME, probing.answers.BANK]
        used += [g.checks_bank for g in self.generators if self.prompts.has(g.checks_bank)]
        names = sorted({*used, *backend.templates(), CHECKS_BANK})
        self.prompts.check_banks(names)
        self.template_hashes = {name: self.prompts.sha256(name) for name in names}
        if config.backend == "openai":  # render one request now: a broken template fails first
            generators.check_model_path(self.generators)

    def connect(self, cache=None) -> None:
        """Make the backend, whole: with the run folder's response cache (--backend
        openai) and the input's vocabulary from `survey`."""
        options: dict[str, Any] = {
            "prompts": self.prompts,
            "seed": self.config.seed,
            "corpus": self.corpus,
        }
        if self.settings is not None:
            options |= {"settings": self.settings, "dry_run": self.dry_run, "cache": cache}
        self.backend = backends.get(self.config.backend, **options)

    def _skipped(self, error: Exception) -> None:
        self.input_error_count += 1
        if len(self.input_errors) < LISTED_ERRORS:
            self.input_errors.append(str(error))

    def seeds(self, survey: bool = False) -> Iterator[Seed]:
        """The input's seeds; with --on-error skip, bad rows are skipped (and counted once,
        by the survey)."""
        c = self.config
        on_error = None
        if c.on_error == "skip":
            on_error = self._skipped if survey else (lambda error: None)
        seeds = iter_seeds(c.seeds, c.prompt_column, c.response_column, c.limit, on_error)
        if not self.quota:
            return seeds
        if self._order is None:  # a quota takes its rows from a random sample of the seeds
            self._order = list(seeds)
            random.Random(f"order\x1f{c.seed}").shuffle(self._order)
        return iter(self._order)

    def wanted(self) -> list:
        """The generators whose behavior still needs rows (all of them without a quota)."""
        if not self.quota:
            return self.generators
        return [g for g in self.generators if self.made[g.name] < self.quota.get(g.name, 0)]

    def remember(self, rows: Iterable[dict[str, Any]]) -> None:
        """Dataset rows already kept (by this run, or the part of it a resume keeps)."""
        for row in rows:
            self.made[quota_key(row["behavior"])] += 1
            if self.dedup is not None:
                self.dedup.keep([row])

    def survey(self) -> int:
        """One pass over the input: validate it, count it, learn its vocabulary, and draw
        the seeds whose own responses make the fit reference (a reservoir sample)."""
        corpus = None
        if any(g.uses_corpus for g in self.generators):
            from generator.corpus import CorpusWords

            corpus = CorpusWords()
        rng = random.Random(f"reference\x1f{self.config.seed}")
        sample: list[Seed] = []
        answered = total = 0
        for seed in self.seeds(survey=True):
            total += 1
            self.knowledge.offer(seed)
            if corpus is not None:
                corpus.add_text(seed.prompt)
                corpus.add_text(seed.response or "")
            if seed.response:
                answered += 1
                if len(sample) < REFERENCE_SEEDS:
                    sample.append(seed)
                elif (j := rng.randrange(answered)) < REFERENCE_SEEDS:
                    sample[j] = seed
        self.corpus = corpus
        self.reference_seeds = sorted(sample, key=lambda s: s.index)
        return total

    async def score_reference(self) -> scoring.Reference:
        """The reference sample's own (prompt, response) pairs, scored."""
        keep = self.config.keep_calculator_annotations
        pairs = [(s.prompt, annotations.reference(s.response, keep)) for s in self.reference_seeds]
        return await scoring.reference(self.scorer, pairs)

    def fingerprint(self) -> str:
        """A hash of everything that decides the output: inputs, settings, templates."""
        inputs = input_stats(self.config.seeds)
        settings = asdict(self.config)
        for name in ("out", "seeds", *TRANSPORT):  # `inputs` names the seeds, resolved
            settings.pop(name)
        settings["prompts"] = (
            str(Path(self.config.prompts).resolve()) if self.config.prompts else None
        )
        blob = jsontext.dumps(
            {"inputs": inputs, "settings": settings, "templates": self.template_hashes},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _finish(self, generator, seed: Seed, out: list | Skip) -> list | Skip:
        """A generator's output under the run's one policy on calculator annotations,
        the same for every behavior, each row stamped with what the probe measured on the
        question it answers (a contrast from another seed: that seed's)."""
        if isinstance(out, Skip):
            return out
        keep = self.config.keep_calculator_annotations

        def finished(item: Example) -> Example:
            item = annotations.apply(item, keep, generator.spans)
            known = seed.knowledge
            if seed.partner is not None and item.prompt == seed.partner.prompt:
                known = seed.partner.knowledge
            return replace(item, knowledge=known)

        return [item if isinstance(item, Skip) else finished(item) for item in out]

    async def process(self, seed: Seed, wanted: list) -> tuple[list[dict], list[dict]]:
        """One seed (with what the probe measured attached) through the `wanted`
        generators, validate and select: (dataset rows, candidate rows)."""
        k = self.config.candidates
        produced = await asyncio.gather(
            *(self.backend.produce(generator, seed, k) for generator in wanted)
        )
        produced = [self._finish(g, seed, out) for g, out in zip(wanted, produced, strict=True)]
        # ...and the reference is checked under the same policy (a hedge quotes it verbatim).
        reference = annotations.reference(seed.response, self.config.keep_calculator_annotations)
        checked = [
            (item, self.checker.check(item, reference))
            for out in produced
            if not isinstance(out, Skip)
            for item in out
            if not isinstance(item, Skip)
        ]
        if self.scorer is not None and checked:
            scored = await scoring.fit_examples(
                self.scorer, self.reference, [ex for ex, _ in checked]
            )
            checked = [(ex, failures) for ex, (_, failures) in zip(scored, checked, strict=True)]
        cutoff = self.reference.cutoff(self.config.fit_threshold) if self.reference else None
        decisions = iter(select(checked, cutoff))
        candidate_rows, dataset_rows = [], []
        for generator, out in zip(wanted, produced, strict=True):
            verdicts = []
            for item in [out] if isinstance(out, Skip) else out:
                if isinstance(item, Skip):  # the generator's skip, or a failed request
                    candidate_rows.append(item.to_row())
                    verdicts.append(item)
                    continue
                decision = next(decisions)
                candidate_rows.append(decision.to_row())
                verdicts.append(decision)
                if decision.selected:
                    dataset_rows.append(decision.example.to_row())
            if kept := fallback(generator, seed, reference, verdicts):
                candidate_rows.append(kept.to_row())
                dataset_rows.append(kept.example.to_row())
        return dataset_rows, candidate_rows

    async def drive(
        self,
        start: int,
        sink: Callable[[tuple[list, list]], None],
        keep_reference: Callable[[scoring.Reference], None] | None = None,
        say: Callable[[str], None] | None = None,
        probe_store=None,
    ) -> None:
        """Process the seeds from index `start` on, `self.window` at a time, handing each
        seed's rows to `sink` in input order (so resuming and output bytes never depend on
        which request came back first). The knowledge probe runs first, over every seed
        `probe_store` (the run folder's probe.jsonl) does not hold yet. With a scorer, the
        reference distribution is scored next (unless a resumed run already has it) and
        handed to `keep_reference`."""

        def emit(seed: Seed, rows: tuple[list, list]) -> None:
            if self.quota:
                # Quotas are settled in output order, so the files do not depend on which
                # request came back first: a seed in flight when its quotas were met adds
                # nothing, and once every quota is met nothing more is written.
                full = {k for k, n in self.quota.items() if self.made[k] >= n}
                if len(full) == len(self.quota):
                    return
                rows = tuple(
                    [r for r in part if quota_key(r["behavior"]) not in full] for part in rows
                )
            if self.dedup is not None:  # in output order: the same rows win on every run
                rows = (self.dedup.filter(*rows), rows[1])
            self.made.update(quota_key(r["behavior"]) for r in rows[0])
            sink(rows)

        def todo() -> Iterator[Seed]:  # drawn after the rows ahead are kept: quotas hold
            for index, seed in enumerate(self.seeds()):
                if index < start:
                    continue
                if not self.wanted():  # every quota is met
                    return
                yield self.knowledge.attach(seed)

        if self.scorer is not None:
            self.scorer.on_wait = say  # a scorer server that is slow to answer says so
        try:
            probe = self.knowledge.probe
            pool = self.engine.probes(probe) if probe is not None else None
            await self.knowledge.run(self.seeds, probe_store, say, pool)
            if self.scorer is not None and self.reference is None:
                if say:
                    say(f"scoring {len(self.reference_seeds)} seeds' own answers for reference")
                self.reference = await self.score_reference()
                if say:
                    say("")
                if keep_reference:
                    keep_reference(self.reference)
            self.engine.start()  # a Ray pool starts with the reference and the vocabulary
            self.window = max(self.window, self.engine.window)
            # Stopped early, every seed finished is kept in order; the answers of the rest
            # are in the response cache, so the re-run asks only what was in flight.
            await engine.ordered(
                todo(),
                lambda seed: self.engine.submit(seed, self.wanted()),
                self.window,
                emit,
                self.engine.flush,
            )
        finally:
            await self.engine.aclose()
            await self.backend.aclose()
            await self.knowledge.aclose()
            if self.scorer is not None:
                await self.scorer.aclose()


def generate(
    config: RunConfig,
    progress: Progress | None = None,
    command: list[str] | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    api_key: str | None = None,
) -> RunResult:
    """Run (or resume) one generation run; returns where it wrote and what it counted.
    Blocks until done; inside a running event loop (a notebook, an async app) it raises
    RunningLoopError: await `agenerate` there, which takes the same arguments."""
    refuse_in_loop("generate", "agenerate")
    return asyncio.run(agenerate(config, progress, command, dry_run, overwrite, api_key))


async def agenerate(
    config: RunConfig,
    progress: Progress | None = None,
    command: list[str] | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    api_key: str | None = None,
) -> RunResult:
    """`generate` as a coroutine, for callers that run an event loop of their own."""
    from generator.backends.cache import FILE as CACHE_FILE
    from generator.backends.cache import ResponseCache

    started = time.time()
    pipeline = Pipeline(config, api_key=api_key, dry_run=dry_run)
    total = pipeline.survey()
    fingerprint = pipeline.fingerprint()
    path = Path(config.out) if config.out else runfolder.default_folder(config.seeds, fingerprint)
    asks = pipeline.settings is not None  # an endpoint: its replies go in a response cache

    def noted() -> None:
        if progress:
            progress.advance()
            if stats is not None:
                progress.note(stats)

    if dry_run:
        cached = asks and (path / CACHE_FILE).is_file()
        pipeline.connect(ResponseCache(path / CACHE_FILE, readonly=True) if cached else None)
        stats = pipeline.backend.stats
        counts = record.tally([])
        if progress:
            progress.start(total, 0)

        def count(rows: tuple[list, list]) -> None:
            record.tally(rows[1], counts)
            noted()

        try:
            await pipeline.drive(0, count)
        finally:
            if pipeline.backend.cache is not None:
                pipeline.backend.cache.close()
        return RunResult(
            None,
            total,
            0,
            record.plain(counts),
            time.time() - started,
            status="dry-run",
            requests=record.request_summary(stats, config),
        )

    folder = RunFolder(path, fingerprint, inputs=config.seeds)
    resumed_from = folder.open(overwrite=overwrite)
    carried = folder.carried.get("usage", {})
    pipeline.connect(ResponseCache(folder.path / CACHE_FILE) if asks else None)
    stats = pipeline.backend.stats
    status = "interrupted"
    if progress:
        progress.start(total, min(resumed_from, total))

    def write(rows: tuple[list, list]) -> None:
        if stats is not None:
            folder.carried = {"usage": record.token_usage(stats, carried)}
        folder.write(*rows, settled=record.settled(rows[1]))
        noted()

    def keep_reference(reference: scoring.Reference) -> None:
        folder.write_json(REFERENCE, {"scorer": config.scorer, "nll": list(reference.nll)})

    if pipeline.dedup is not None or pipeline.quota:  # what a resumed run already kept
        pipeline.remember(iter_rows(folder.path / DATASET))
    saved = folder.read_json(REFERENCE) if pipeline.scorer is not None else None
    if saved is not None:  # a resumed run ranks against the distribution it started with
        pipeline.reference = scoring.Reference(tuple(saved.get("nll", ())))
    from generator.probe.store import ProbeStore

    try:
        await pipeline.drive(
            resumed_from,
            write,
            keep_reference,
            progress.say if progress else None,
            probe_store=ProbeStore(folder.path) if pipeline.knowledge.probe else None,
        )
        status = "complete"
    except Exception:
        paid = (stats is not None and stats.sent) or pipeline.knowledge.probed_now
        if not paid:  # no answer paid for goes with it
            folder.abandon()  # failed before its first seed: leave nothing behind
        raise
    finally:
        try:
            if stats is not None:
                folder.carried = {"usage": record.token_usage(stats, carried)}
                pipeline.backend.cache.close()
            folder.checkpoint()
            counts = record.plain(record.tally(iter_rows(folder.path / CANDIDATES)))
            if status == "complete" and counts["request_failures"] and not counts["candidates"]:
                status = "failed"  # no row could be made because requests failed
            seconds = time.time() - started
            requests = record.request_summary(stats, config)
            manifest = record.build_manifest(
                config,
                pipeline,
                record.redact(command, api_key),
                fingerprint,
                counts,
                status,
                total,
                folder.done,
                resumed_from,
                started,
                seconds,
                record.token_usage(stats, carried),
                requests,
            )
            folder.write_manifest(manifest)
        finally:
            folder.close()
    if status == "failed":  # finished work is kept: the same command asks the rest again
        failures = counts["request_failures"]
        causes = dict(sorted(failures.items(), key=lambda kv: -kv[1])[:3])
        raise EndpointError(
            pipeline.backend.failed_message(sum(failures.values()), causes, record.unusable(counts))
        )
    return RunResult(
        folder.path,
        total,
        resumed_from,
        counts,
        seconds,
        status,
        manifest,
        requests=requests,
        retried=folder.retried,
    )
