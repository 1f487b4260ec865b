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
) -> ScoreResult:
    """Score every row of `paths` into `out` (default `<first input>.fit.jsonl`), and with
    `probe` (a --probe value) measure what the target model knows of each row's question.
    `timeout`: seconds an openai:URL scorer or probe waits for one answer; `say` is told
    what a slow scorer is waiting for."""
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
        engine = make(scorer, templates, timeout=timeout)
        if engine is not None:
            engine.on_wait = say
        measure = probing.make(
            probe,
            templates,
            scorer=engine,  # `embedded` reads the scorer's model: one copy in memory
            samples=probe_samples,
            temperature=probe_temperature,
            seed=PROBE_SEED,
            timeout=timeout or TIMEOUT,
        )
        if measure is not None:  # exemplars come from every row, done or not
            for _, seed in _rows(paths, prompt_column, response_column):
                measure.offer(seed)
        try:
            if done < 0:
                done = 0
                partial.write_text(
                    jsontext.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8"
                )
            resumed_from = done
            if progress:
                progress(done, total)
            with partial.open("a", encoding="utf-8") as fh:
                # one event loop for the scorer and the probe (an openai client is bound
                # to the loop it was made in)
                asyncio.run(
                    _score_rows(
                        engine,
                        measure,
                        _rows(paths, prompt_column, response_column),
                        done,
                        fh,
                        progress,
                        total,
                    )
                )
            return _finish(
                partial, target, resumed_from, prompt_column, response_column, measure is not None
            )
        except OSError as e:
            raise outputs.write_error(target, e) from None


async def _score_rows(engine, measure, rows, start, fh, progress, total):
    """Rows from `start` on into `fh`: a batch's fits in one call, then each row probed
    and written; a probed row lands at once, so a killed run never probes it again."""
    batch: list[tuple[dict, Any]] = []
    done = start

    async def flush() -> None:
        nonlocal done
        fits: dict[int, Any] = {}
        if engine is not None:
            scorable = [i for i, (_, seed) in enumerate(batch) if seed.response]
            pairs = [(batch[i][1].prompt, batch[i][1].response) for i in scorable]
            fits = dict(zip(scorable, await engine.score(pairs), strict=True))
        for i, (row, seed) in enumerate(batch):
            added: dict[str, Any] = {}
            if engine is not None:
                fit = fits.get(i)
                added["fit"] = fit.to_dict() if fit else None
            if measure is not None:
                added.update(_knowledge(await measure.probe(seed)))
                row = {k: v for k, v in row.items() if k != "knowledge_reason"}  # a stale one
            fh.write(jsontext.dumps({**row, **added}, ensure_ascii=False, default=str) + "\n")
            if measure is not None:  # a probe costs seconds: each row is kept as it lands
                fh.flush()
                done += 1
                if progress:
                    progress(done, total)
        fh.flush()
        if measure is None:
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
        if engine is not None:
            await engine.aclose()
        if measure is not None:
            await measure.aclose()


def _knowledge(probed: probing.Probed) -> dict[str, Any]:
    """A row's knowledge fields: the measurement, or null and why none was made."""
    if probed.knowledge is not None:
        return {"knowledge": probed.knowledge.to_dict()}
    return {"knowledge": None, "knowledge_reason": probed.reason}


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
