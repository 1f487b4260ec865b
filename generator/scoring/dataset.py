"""`hedgerow score`: fit-score the rows of any dataset the loader reads, and probe them.

Each row is written back as it was, plus a `fit` field (nll, tokens, percentile among the
dataset's own rows, truncated); a row without a response gets `"fit": null`. With a
probe, each row also gets `knowledge` (what the target model knows of its question: the
knowledge probe's SliCK category), or `"knowledge": null` and `knowledge_reason` for a
row whose reference cannot be checked. Rows are appended to `OUT.partial` as they are
done — a killed run resumes from there, and probes no row it wrote again — and `OUT`
appears, whole, when the last row is done. One score writes an output at a time (the
lock every output uses), and the output is never one of the inputs.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import jsontext, outputs
from generator import probe as probing
from generator.engine import check as check_engine
from generator.errors import ConfigError, InputError, param
from generator.io import detect_shape, input_stats, records, to_seed
from generator.probe.answers import BANK as PROBE_BANK
from generator.scoring import FRAME, TIMEOUT, Reference, make
from generator.templates import Prompts
from generator.values import CATEGORIES

BATCH = 16  # rows handed to the scorer at once
FOREIGN = 5  # rows the summary names as the least natural
PROBE_SEED = 0  # generate's default --seed: the verdicts match its probe.jsonl's
ADDED = ("fit", "knowledge", "knowledge_reason")  # the fields score writes on a row


@dataclass
class ScoreResult:
    path: Path
    rows: int
    scored: int
    resumed_from: int
    mean_nll: float | None
    foreign: list[dict[str, Any]] = field(default_factory=list)  # least natural first
    failed: int = 0  # rows whose score failed (their fit says why)
    failure: str | None = None  # the first one's reason
    # With a probe: rows per SliCK category (every category, in order), and the rows
    # that could not be checked, by why; None without one.
    knowledge: dict[str, int] | None = None
    not_checkable: dict[str, int] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "local"})  # where it ran


def _rows(paths: Sequence[str], prompt_column, response_column) -> Iterator[tuple[dict, Any]]:
    """(row, seed) for every row of every input, in order."""
    index = 0
    for path in map(Path, paths):
        shape = None
        for where, row in records(path):
            if shape is None:
                shape = detect_shape(row.keys(), str(path), prompt_column, response_column)
            yield row, to_seed(row, shape, where, index)
            index += 1
        if shape is None:
            raise InputError(
                f"{path}: no rows found (the file is empty); add rows or drop the file "
                "from the command"
            )


def _fingerprint(
    paths: Sequence[str], spec: str, prompts: Prompts, columns, probe: dict | None = None
) -> str:
    frame = prompts.sha256(FRAME) if spec != "none" else None
    settings: list = [input_stats(paths), spec, frame, columns]
    if probe is not None:  # without one, the fingerprint of a score before probes existed
        settings.append(probe)
    blob = jsontext.dumps(settings, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _probe_settings(spec: str, samples: int, temperature: float, prompts: Prompts) -> dict:
    """What decides a probe's verdicts: a partial written with others is not resumed."""
    return {
        "probe": spec,
        "samples": samples,
        "temperature": temperature,
        "seed": PROBE_SEED,
        "frame": prompts.sha256(probing.FRAME),
        "bank": prompts.sha256(PROBE_BANK),
    }


def _resume(partial: Path, fingerprint: str) -> int:
    """Rows already scored in `partial` by the same command (0 if none); a torn last
    line is cut off."""
    try:
        with partial.open("rb") as fh:
            header = json.loads(fh.readline() or b"{}")
            if header.get("fingerprint") != fingerprint:
                return -1
            good = fh.tell()
            done = 0
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                good += len(line)
                done += 1
        os.truncate(partial, good)
        return done
    except (OSError, ValueError):
        return -1


def score_dataset(
    paths: Sequence[str],
    out: str | None = None,
    scorer: str = "embedded",
    prompts: str | None = None,
    prompt_column: str | None = None,
    response_column: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    say: Callable[[str], None] | None = None,
    probe: str = "none",
    probe_samples: int = 10,
    probe_temperature: float = 1.0,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int | None = None,
    ray_threads: int | None = None,
    ray_block: int = BATCH,
) -> ScoreResult:
    """Score every row of `paths` into `out` (default `<first input>.fit.jsonl`), and with
    `probe` (a --probe value) measure what the target model knows of each row's question.
    `timeout`: seconds an openai:URL scorer or probe waits for one answer; `say` is told
    what a slow scorer is waiting for. `engine="ray"` scores and probes the rows on a Ray
    cluster's workers (`ray_*` as generate's), written here in order: the same bytes."""
    if scorer == "none" and probe == "none":
        raise ConfigError(
            "hedgerow score needs a scorer or a probe; use "
            f"{param('scorer')} embedded, gguf:PATH or "
            f"openai:URL, or {param('probe')} embedded, gguf:PATH or openai:URL"
        )
    target = Path(out) if out else Path(Path(paths[0]).name.split(".")[0] + ".fit.jsonl")
    partial = target.with_name(target.name + ".partial")
    for path in (target, partial):
        outputs.check_target(path, inputs=paths)
    total = sum(1 for _ in _rows(paths, prompt_column, response_column))  # validates it too
    templates = Prompts(prompts)
    settings = None
    if probe != "none":
        settings = _probe_settings(probe, probe_samples, probe_temperature, templates)
    fingerprint = _fingerprint(paths, scorer, templates, [prompt_column, response_column], settings)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise outputs.write_error(target, e) from None
    # Held from the resume check to the last row: a second score of the same output is
    # refused at once instead of appending to the same partial file.
    with outputs.Lock(outputs.lock_file(target), target):
        done = -1 if overwrite else _resume(partial, fingerprint)
        if done < 0 and target.exists() and not overwrite:
            raise ConfigError(
                f"{target}: already exists; pass {param('overwrite')} or choose another -o FILE"
            )
        check_engine(engine)
        cluster = None
        if engine == "ray":  # joined (or refused in one line) before any model or row
            from generator.engine import Cluster

            cluster = Cluster(ray_address, ray_workers, ray_threads, ray_block)
        specs = (scorer, probe, prompts, timeout, probe_samples, probe_temperature)
        measures = Measures(*specs)
        measures.setup(say)
        if measures.probe is not None:  # exemplars come from every row, done or not
            for _, seed in _rows(paths, prompt_column, response_column):
                measures.probe.offer(seed)
        try:
            if done < 0:
                done = 0
                partial.write_text(
                    jsontext.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8"
                )
            resumed_from = done
            if progress:
                progress(done, total)
            rows = _rows(paths, prompt_column, response_column)
            with partial.open("a", encoding="utf-8") as fh:
                # one event loop for the scorer and the probe (an HTTP session is bound
                # to the loop it was made in)
                if cluster is not None:
                    exemplars = measures.probe.pool if measures.probe is not None else None
                    job = Measures(*specs, exemplars)
                    used = asyncio.run(
                        _score_on(cluster, job, measures, rows, done, fh, progress, total)
                    )
                else:
                    asyncio.run(_score_rows(measures, rows, done, fh, progress, total))
                    used = {"name": "local"}
            result = _finish(
                partial,
                target,
                resumed_from,
                prompt_column,
                response_column,
                measures.probe is not None,
            )
            result.engine = used
            return result
        except OSError as e:
            raise outputs.write_error(target, e) from None


class Measures:
    """What score adds to its rows: a batch's fits, and a row's knowledge. Built once where
    it runs: in this process, or on each Ray worker (a job of generator.engine's, made
    with the driver's probe exemplars)."""

    def __init__(self, scorer, probe, prompts, timeout, samples, temperature, exemplars=None):
        self.specs = (scorer, probe, prompts, timeout, samples, temperature)
        self.exemplars = exemplars
        self.scorer = None
        self.probe = None

    def setup(self, say: Callable[[str], None] | None = None) -> None:
        scorer, probe, prompts, timeout, samples, temperature = self.specs
        templates = Prompts(prompts)
        self.scorer = make(scorer, templates, timeout=timeout)
        if self.scorer is not None:
            self.scorer.on_wait = say
        self.probe = probing.make(
            probe,
            templates,
            scorer=self.scorer,  # `embedded` reads the scorer's model: one copy in memory
            samples=samples,
            temperature=temperature,
            seed=PROBE_SEED,
            timeout=timeout or TIMEOUT,
        )
        if self.probe is not None and self.exemplars is not None:
            self.probe.pool = list(self.exemplars)

    async def fits(self, seeds: Sequence[Any]) -> list[dict[str, Any]]:
        """Each seed's `fit` field (null for a row without a response), in one call."""
        if self.scorer is None:
            return [{} for _ in seeds]
        scorable = [i for i, seed in enumerate(seeds) if seed.response]
        pairs = [(seeds[i].prompt, seeds[i].response) for i in scorable]
        fits = dict(zip(scorable, await self.scorer.score(pairs), strict=True))
        return [{"fit": fit.to_dict() if (fit := fits.get(i)) else None} for i in range(len(seeds))]

    async def knowledge(self, seed) -> dict[str, Any]:
        """The seed's knowledge fields (none without a probe)."""
        if self.probe is None:
            return {}
        probed = await self.probe.probe(seed)
        if probed.knowledge is not None:
            return {"knowledge": probed.knowledge.to_dict()}
        return {"knowledge": None, "knowledge_reason": probed.reason}

    async def run(self, seeds: Sequence[Any]) -> list[dict[str, Any]]:
        """A block's added fields, seed by seed (on a Ray worker)."""
        fits = await self.fits(seeds)
        pairs = zip(fits, seeds, strict=True)
        return [{**fit, **await self.knowledge(seed)} for fit, seed in pairs]

    async def aclose(self) -> None:
        if self.scorer is not None:
            await self.scorer.aclose()
        if self.probe is not None:
            await self.probe.aclose()


def _line(row: dict, added: dict[str, Any]) -> str:
    """A row as score writes it: as it was, plus what was measured."""
    if "knowledge" in added:
        row = {k: v for k, v in row.items() if k != "knowledge_reason"}  # a stale one
    return jsontext.dumps({**row, **added}, ensure_ascii=False, default=str) + "\n"


async def _score_rows(measures, rows, start, fh, progress, total):
    """Rows from `start` on into `fh`: a batch's fits in one call, then each row probed
    and written; a probed row lands at once, so a killed run never probes it again."""
    batch: list[tuple[dict, Any]] = []
    done = start
    probing_ = measures.probe is not None

    async def flush() -> None:
        nonlocal done
        fits = await measures.fits([seed for _, seed in batch])
        for (row, seed), fit in zip(batch, fits, strict=True):
            fh.write(_line(row, {**fit, **await measures.knowledge(seed)}))
            if probing_:  # a probe costs seconds: each row is kept as it lands
                fh.flush()
                done += 1
                if progress:
                    progress(done, total)
        fh.flush()
        if not probing_:
            done += len(batch)
            if progress:
                progress(done, total)
        batch.clear()

    try:
        for i, item in enumerate(rows):
            if i < start:
                continue
            batch.append(item)
            if len(batch) >= BATCH:
                await flush()
        if batch:
            await flush()
    finally:
        await measures.aclose()


async def _score_on(cluster, job, measures, rows, start, fh, progress, total) -> dict:
    """Rows from `start` on, measured in blocks by the cluster's workers and written here
    in input order, each as it lands; returns the engine's record."""
    from generator.engine import ordered

    pool = cluster.pool(job)
    done = start

    def keep(item, added) -> None:
        nonlocal done
        fh.write(_line(item[0], added))
        fh.flush()
        done += 1
        if progress:
            progress(done, total)

    todo = (item for i, item in enumerate(rows) if i >= start)
    try:
        await ordered(todo, lambda item: pool.submit(item[1]), pool.window, keep, pool.flush)
    finally:
        await pool.aclose()
        await measures.aclose()
    return cluster.describe(rows=pool)


def _finish(
    partial: Path, target: Path, resumed_from: int, prompt_column, response_column, probed: bool
) -> ScoreResult:
    """Rank every row's fit among the dataset's own, count the knowledge categories, and
    write `target` whole."""
    nlls = []
    failed, failure = 0, None
    categories: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
    unchecked: dict[str, int] = {}
    with partial.open("rb") as fh:
        fh.readline()
        for line in fh:
            row = json.loads(line)
            fit = row.get("fit")
            if fit and fit.get("nll") is not None:
                nlls.append(round(fit["nll"], 4))
            elif fit:  # a failed score, not ranked
                failed += 1
                failure = failure or fit.get("error")
            if probed and row["knowledge"] is not None:
                categories[row["knowledge"]["category"]] += 1
            elif probed:
                why = row["knowledge_reason"]
                unchecked[why] = unchecked.get(why, 0) + 1
    ranks = Reference(tuple(sorted(nlls)))
    worst: list[tuple[float, int, dict]] = []
    tmp = outputs.temporary(target)
    rows = 0
    with partial.open("rb") as src, tmp.open("w", encoding="utf-8") as dst:
        src.readline()
        for rows, line in enumerate(src, start=1):
            row = json.loads(line)
            fit = row.get("fit")
            if fit and fit.get("nll") is not None:
                fit["nll"] = round(fit["nll"], 4)
                fit["percentile"] = ranks.percentile(fit["nll"])
                heapq.heappush(worst, (fit["nll"], rows, row))
                if len(worst) > FOREIGN:
                    heapq.heappop(worst)
            dst.write(jsontext.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    partial.unlink()
    foreign = []
    for nll, line, row in sorted(worst, reverse=True):
        shape = detect_shape(
            [k for k in row if k not in ADDED], str(target), prompt_column, response_column
        )
        foreign.append({"row": line, "nll": nll, "prompt": to_seed(row, shape, str(line)).prompt})
    mean = round(sum(nlls) / len(nlls), 4) if nlls else None
    return ScoreResult(
        target,
        rows,
        len(nlls),
        resumed_from,
        mean,
        foreign,
        failed,
        failure,
        categories if probed else None,
        dict(sorted(unchecked.items())),
    )
