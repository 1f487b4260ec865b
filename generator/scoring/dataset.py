"""`hedgerow score`: fit-score the rows of any dataset the loader reads.

Each row is written back as it was, plus a `fit` field (nll, tokens, percentile among the
dataset's own rows, truncated); a row without a response gets `"fit": null`. Rows are
appended to `OUT.partial` as they are scored — a killed run resumes from there — and
`OUT` appears, whole, when the last row is done. One score writes an output at a time
(the lock every output uses), and the output is never one of the inputs.
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
from generator.errors import ConfigError, InputError
from generator.io import detect_shape, input_stats, records, to_seed
from generator.scoring import FRAME, Reference, make
from generator.templates import Prompts

BATCH = 16  # rows handed to the scorer at once
FOREIGN = 5  # rows the summary names as the least natural


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


def _fingerprint(paths: Sequence[str], spec: str, prompts: Prompts, columns) -> str:
    blob = jsontext.dumps(
        [input_stats(paths), spec, prompts.sha256(FRAME), columns], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


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
) -> ScoreResult:
    """Score every row of `paths` into `out` (default `<first input>.fit.jsonl`).
    `timeout`: seconds an openai:URL scorer waits for one answer; `say` is told what
    a slow scorer is waiting for."""
    if scorer == "none":
        raise ConfigError(
            "hedgerow score needs a scorer; use --scorer embedded, gguf:PATH or openai:URL"
        )
    target = Path(out) if out else Path(Path(paths[0]).name.split(".")[0] + ".fit.jsonl")
    partial = target.with_name(target.name + ".partial")
    for path in (target, partial):
        outputs.check_target(path, inputs=paths)
    total = sum(1 for _ in _rows(paths, prompt_column, response_column))  # validates it too
    templates = Prompts(prompts)
    fingerprint = _fingerprint(paths, scorer, templates, [prompt_column, response_column])
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
                f"{target}: already exists; pass --overwrite or choose another -o FILE"
            )
        engine = make(scorer, templates, timeout=timeout)
        engine.on_wait = say
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
                asyncio.run(
                    _score_rows(
                        engine, paths, prompt_column, response_column, done, fh, progress, total
                    )
                )
            return _finish(partial, target, resumed_from, prompt_column, response_column)
        except OSError as e:
            raise outputs.write_error(target, e) from None


async def _score_rows(engine, paths, prompt_column, response_column, start, fh, progress, total):
    batch: list[tuple[dict, Any]] = []
    done = start

    async def flush() -> None:
        nonlocal done
        scorable = [seed for _, seed in batch if seed.response]
        fits = iter(await engine.score([(s.prompt, s.response) for s in scorable]))
        for row, seed in batch:
            fit = next(fits) if seed.response else None
            fh.write(
                jsontext.dumps(
                    {**row, "fit": fit.to_dict() if fit else None}, ensure_ascii=False, default=str
                )
                + "\n"
            )
        fh.flush()
        done += len(batch)
        batch.clear()
        if progress:
            progress(done, total)

    try:
        for i, item in enumerate(_rows(paths, prompt_column, response_column)):
            if i < start:
                continue
            batch.append(item)
            if len(batch) >= BATCH:
                await flush()
        if batch:
            await flush()
    finally:
        await engine.aclose()


def _finish(
    partial: Path, target: Path, resumed_from: int, prompt_column, response_column
) -> ScoreResult:
    """Rank every row's fit among the dataset's own and write `target` whole."""
    nlls = []
    failed, failure = 0, None
    with partial.open("rb") as fh:
        fh.readline()
        for line in fh:
            fit = json.loads(line).get("fit")
            if fit and fit.get("nll") is not None:
                nlls.append(round(fit["nll"], 4))
            elif fit:  # a failed score, not ranked
                failed += 1
                failure = failure or fit.get("error")
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
            [k for k in row if k != "fit"], str(target), prompt_column, response_column
        )
        foreign.append({"row": line, "nll": nll, "prompt": to_seed(row, shape, str(line)).prompt})
    mean = round(sum(nlls) / len(nlls), 4) if nlls else None
    return ScoreResult(target, rows, len(nlls), resumed_from, mean, foreign, failed, failure)
