"""Export a run's selected rows in the shape a trainer reads.

- `openai`: `{"messages": [user, assistant]}` and nothing else (OpenAI fine-tuning,
  TRL's SFTTrainer);
- `alpaca`: `{"instruction", "input": "", "output"}` (axolotl, Alpaca loaders);
- `sharegpt`: `{"conversations": [{"from": "human", …}, {"from": "gpt", …}]}`;
- `dpo`: `{"prompt", "chosen", "rejected"}`, plain strings (TRL's DPOTrainer);
- `hf`: a `datasets` save_to_disk folder with the metadata as columns.

DPO pairs come from contrasts inside the run (see `preference_pairs`), so a seed gives
pairs only where the run holds both sides.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import jsontext, outputs
from generator.errors import ExportError, param
from generator.runfolder import Run, dumps
from generator.values import turns as _turns

FORMATS = ("openai", "alpaca", "sharegpt", "dpo", "hf")


def openai_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt, response = _turns(row)
    return {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
    }


def alpaca_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt, response = _turns(row)
    return {"instruction": prompt, "input": "", "output": response}


def sharegpt_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt, response = _turns(row)
    return {
        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": response}]
    }


def hf_row(row: dict[str, Any]) -> dict[str, Any]:
    """A flat row with typed metadata columns; the rest of `attributes` as JSON text."""
    prompt, response = _turns(row)
    attributes = row.get("attributes") or {}
    fit = row.get("fit") or {}
    provenance = row.get("provenance") or {}
    confidence = attributes.get("confidence")
    return {
        "id": row["id"],
        "seed_id": row["seed_id"],
        "behavior": row["behavior"],
        "pair_id": row.get("pair_id"),
        "prompt": prompt,
        "response": response,
        "messages": openai_row(row)["messages"],
        "confidence": float(confidence) if confidence is not None else None,
        "level": attributes.get("level"),
        "kind": attributes.get("kind"),
        "nll": fit.get("nll"),
        "tokens": fit.get("tokens"),
        "percentile": fit.get("percentile"),
        "backend": provenance.get("backend"),
        "model": provenance.get("model"),
        "template": provenance.get("template"),
        "attributes": jsontext.dumps(attributes, ensure_ascii=False, sort_keys=True),
    }


# --------------------------------------------------------------------------- DPO


def preference_pairs(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """DPO pairs from one run's selected rows (in file order, one seed's rows together).

    Each behavior makes its own (`Generator.preference_pairs`; the built-ins' are
    described in the README): a refusal's decline over a confident answer and its
    contrast's answer over declining it, a near-miss's recovered trace over the same trace
    cut before its recovery, a hedge over a confidently wrong answer another behavior of
    the seed offered (`Generator.wrong_answers`). Pairs whose two sides are equal or empty
    are left out; rows of a behavior no installed generator owns give none.
    """
    from generator import generators

    known = generators.registry()
    for _, group in itertools.groupby(rows, key=lambda r: r["seed_id"]):
        by: dict[str, list[dict]] = {}
        for row in group:
            if (cls := generators.owner(row["behavior"])) is not None:
                by.setdefault(cls.name, []).append(row)
        wrong = [w for name, own in by.items() for w in known[name].wrong_answers(own)]
        for name, own in by.items():
            for kind, prompt, chosen, rejected in known[name].preference_pairs(own, wrong):
                if chosen.strip() and rejected.strip() and chosen.strip() != rejected.strip():
                    yield {"kind": kind, "prompt": prompt, "chosen": chosen, "rejected": rejected}


# --------------------------------------------------------------------------- writing


@dataclass
class ExportResult:
    path: Path
    format: str
    rows: int
    status: str  # the run's status: exporting an unfinished run exports its finished seeds
    seeds_done: int
    kinds: dict[str, int] = field(default_factory=dict)  # dpo: pairs per construction


def _write_jsonl(rows: Iterator[dict[str, Any]], tmp: Path) -> int:
    count = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps(row))
            count += 1
    return count


def _write_hf(rows: Iterator[dict[str, Any]], tmp: Path):
    import datasets

    features = datasets.Features(
        {
            **{
                name: datasets.Value("string")
                for name in ("id", "seed_id", "behavior", "pair_id", "prompt", "response")
            },
            "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
            "confidence": datasets.Value("float64"),
            **{name: datasets.Value("string") for name in ("level", "kind")},
            "nll": datasets.Value("float64"),
            "tokens": datasets.Value("int64"),
            "percentile": datasets.Value("float64"),
            **{name: datasets.Value("string") for name in ("backend", "model", "template")},
            "attributes": datasets.Value("string"),
        }
    )
    datasets.disable_progress_bars()  # the command prints its own one-line result
    rows = list(rows)
    if rows:
        dataset = datasets.Dataset.from_list(rows, features=features)
    else:  # an empty table of the same schema
        import pyarrow as pa

        dataset = datasets.Dataset(pa.Table.from_pylist([], schema=features.arrow_schema))
    outputs.clean(tmp)
    # One shard even when empty: datasets cannot load a folder of zero shards back.
    dataset.save_to_disk(str(tmp), num_shards=1)
    return dataset


def _push(dataset, target: Path, push_to_hub: str) -> None:
    try:
        dataset.push_to_hub(push_to_hub, token=os.environ.get("HF_TOKEN") or None)
    except Exception as e:  # the hub client raises many types; the message says enough
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"{target}: saved, but pushing to the hub repo {push_to_hub} failed ({first}); "
            "check the network and HF_TOKEN, then push again"
        ) from None


def export(
    run: str | Path, format: str, out: str | Path | None = None, push_to_hub: str | None = None
) -> ExportResult:
    """Write the run's selected rows as `format` to `out` (default: in the run folder)."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if push_to_hub and format != "hf":
        raise ExportError(f"{param('push_to_hub')} needs {param('format')} hf")
    folder = Run(run)
    default = folder.path / ("hf" if format == "hf" else f"{format}.jsonl")
    target = outputs.check_target(
        Path(out) if out else default,
        "datasets" if format == "hf" else "file",
        owned=[default],  # the one file export may write in the run folder it reads
    )
    rows = folder.rows()
    kinds: Counter = Counter()
    if format == "hf":
        dataset = outputs.write(target, lambda tmp: _write_hf(map(hf_row, rows), tmp))
        count = len(dataset)
        if push_to_hub:
            _push(dataset, target, push_to_hub)
    elif format == "dpo":

        def counted():
            for pair in preference_pairs(rows):
                kinds[pair.pop("kind")] += 1
                yield pair

        count = outputs.write(target, lambda tmp: _write_jsonl(counted(), tmp))
    else:
        shape = {"openai": openai_row, "alpaca": alpaca_row, "sharegpt": sharegpt_row}
        count = outputs.write(target, lambda tmp: _write_jsonl(map(shape[format], rows), tmp))
    return ExportResult(
        target, format, count, folder.status, folder.done, dict(sorted(kinds.items()))
    )
