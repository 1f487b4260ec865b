"""Add behaviors to an existing dataset, in the dataset's own format.

`augment` runs an ordinary generation run on the dataset's rows with a quota per behavior
(`RunConfig.quota`): seeds go in a shuffled order and a behavior stops once it has its
rows, so a small mix of a large dataset costs only what it needs. The output is the
original rows, unchanged, plus the new rows in the input's file type and shape (written
by generator/writeback.py); a behavior that `replaces` (self_distill) has its rows
written over the rows they rewrote instead.

A mix fraction is of the original row count; `refusal` counts a refusal and its contrast
as two rows and never splits them. `--shuffle` mixes the new rows in (deterministic with
`--seed`). The run folder keeps every candidate and the manifest, like any run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from generator import generators, outputs
from generator.errors import ConfigError, InputError, param
from generator.generators import default_mix, owner, quota_key
from generator.io import iter_seeds
from generator.run import RunConfig, RunResult, generate
from generator.runfolder import Run
from generator.templates import Prompts
from generator.writeback import SUFFIXES, WRITERS, Edit, layout, new_ids, position


def parse_mix(text: str) -> dict[str, float]:
    """`hedge=0.2,refusal=0.1` -> {"hedge": 0.2, "refusal": 0.1}."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(
                f"{param('mix')}: {part!r} has no '='; write it as {key or 'hedge'}=0.1"
            )
        try:
            mix[key] = float(value)
        except ValueError:
            check_mix({key: 0.0}, empty_ok=True)  # an unknown behavior is the first thing to say
            raise ConfigError(
                f"{param('mix')}: {key}={value!r} is not a number; write e.g. {key}=0.1"
            ) from None
    return check_mix(mix)


def check_mix(mix: dict[str, float], empty_ok: bool = False) -> dict[str, float]:
    """The mix, if every key is an installed behavior and every share a finite number >= 0
    with one above 0; else a one-line error that says how to write it."""
    known = generators.registry()
    for key, share in mix.items():
        if key not in known:
            raise ConfigError(
                f"{param('mix')}: unknown behavior {key!r}; use {', '.join(sorted(known))} "
                "(a refusal's contrast comes with it)"
            )
        if not share >= 0 or share == float("inf"):
            raise ConfigError(
                f"{param('mix')}: {key}={share:g} is negative or not finite; use 0 or more"
            )
    if not empty_ok and not any(mix.values()):
        raise ConfigError(
            f"{param('mix')} asks for no rows; give at least one share, e.g. {default_mix()}"
        )
    return mix


def targets(mix: dict[str, float], rows: int, prompts: Prompts) -> dict[str, int]:
    """Rows to add per behavior, checked against the most the dataset's rows can give."""
    out = {}
    for gen in generators.get(tuple(mix), prompts):
        per = gen.rows_per_seed()
        wanted = mix[gen.name] * rows
        # a pair is two rows: round to whole pairs
        count = per * round(wanted / per) if gen.partner else round(wanted)
        most = per * rows
        if count > most:
            raise ConfigError(
                f"{param('mix')} {gen.name}={mix[gen.name]:g} asks for {count} rows, but "
                f"{rows} rows "
                f"can give at most {most} {gen.name} rows ({gen.name}={per:g} at most); "
                "lower it"
            )
        out[gen.name] = count
    return out


# --------------------------------------------------------------------------- choosing rows


def pick(rows: Iterable[dict[str, Any]], wanted: dict[str, int]) -> list[dict[str, Any]]:
    """The first rows of each behavior up to its target; pairs whole."""
    taken: dict[str, int] = dict.fromkeys(wanted, 0)
    units: dict[str, list[dict]] = {}
    order: list[str] = []
    for row in rows:
        key = row.get("pair_id") or row["id"]
        if key not in units:
            order.append(key)
        units.setdefault(key, []).append(row)
    chosen = []
    for key in order:
        unit = units[key]
        quota = quota_key(unit[0]["behavior"])
        if quota in taken and taken[quota] + len(unit) <= wanted[quota]:
            made_by = owner(quota)
            if made_by is not None and made_by.partner and len(unit) != 2:
                continue
            taken[quota] += len(unit)
            chosen.extend(unit)
    return chosen


# --------------------------------------------------------------------------- the command


@dataclass
class AugmentResult:
    path: Path
    run: RunResult
    original: int
    added: dict[str, int]  # rows added per mix key
    wanted: dict[str, int]
    short: dict[str, int] = field(default_factory=dict)  # mix keys that got fewer rows
    rewritten: dict[str, int] = field(default_factory=dict)  # a `replaces` behavior's rows


def _replaces(row: dict[str, Any]) -> bool:
    made_by = owner(row["behavior"])
    return made_by is not None and made_by.replaces


def default_output(dataset: Path) -> Path:
    """`<name>.augmented<suffix>` in the current folder."""
    name = dataset.name
    stem, dot, suffix = name.partition(".") if not dataset.is_dir() else (name, "", "")
    return Path(f"{stem}.augmented{dot}{suffix}")


def augment(
    config: RunConfig,
    mix: dict[str, float],
    out: str | Path | None = None,
    shuffle: bool = False,
    **run_options: Any,
) -> AugmentResult:
    """Generate `mix` from the dataset `config.seeds[0]` and write it out augmented."""
    check_mix(mix)
    if len(config.seeds) != 1:
        raise ConfigError("augment takes one dataset; merge the files first")
    source = Path(config.seeds[0])
    skip = (lambda error: None) if config.on_error == "skip" else None  # the run lists them
    shape = layout(source, config.prompt_column, config.response_column, skip)
    if shape.kind not in WRITERS:
        raise InputError(
            f"{source}: unknown file type '{source.suffix or '(none)'}'; augment reads and "
            "writes .jsonl, .json, .csv, .tsv, .parquet and save_to_disk folders"
        )
    target = outputs.check_target(
        Path(out) if out else default_output(source),
        "datasets" if shape.kind == "disk" else "file",
        inputs=[source],
        runs=[config.out] if config.out else [],  # the run folder it is about to create
    )
    if shape.kind != "disk":
        allowed = SUFFIXES[shape.kind]
        if shape.kind == "csv":
            allowed = (source.suffix.lower(),)
        if target.suffix.lower() not in allowed:
            raise ConfigError(
                f"-o {target}: augment writes the input's own format; give it a name "
                f"ending in {' or '.join(allowed)}"
            )
    rows = sum(
        1 for _ in iter_seeds([source], config.prompt_column, config.response_column, None, skip)
    )
    wanted = targets(mix, rows, Prompts(config.prompts))
    behaviors = tuple(name for name, count in wanted.items() if count > 0)
    if not behaviors:
        raise ConfigError(
            f"{param('mix')} {','.join(f'{k}={v:g}' for k, v in mix.items())} gives 0 rows for "
            f"{rows} rows (each share rounds down to nothing); raise a share"
        )
    config = replace(
        config, behaviors=behaviors, quota=tuple((b, wanted[b]) for b in behaviors), limit=None
    )
    result = generate(config, **run_options)
    if result.status != "complete":  # interrupted: the run folder resumes, nothing to write
        return AugmentResult(target, result, rows, {}, wanted)
    chosen = pick(Run(result.path).rows(), wanted)
    # a `replaces` behavior's row is written over the input row it rewrote, the rest added
    rewrites = [r for r in chosen if _replaces(r)]
    chosen = [r for r in chosen if not _replaces(r)]
    replaced = {
        position(r["provenance"]["seed_source"]): r["messages"][-1]["content"] for r in rewrites
    }
    ids = new_ids(shape, chosen)
    new = [
        shape.new_row(r["messages"][0]["content"], r["messages"][-1]["content"], i)
        for r, i in zip(chosen, ids, strict=True)
    ]
    outputs.write(
        target,
        lambda tmp: WRITERS[shape.kind](shape, Edit(new, replaced, shuffle, config.seed), tmp),
    )
    added = {name: 0 for name in wanted if not owner(name).replaces}
    rewritten = {name: 0 for name in wanted if owner(name).replaces}
    for row in chosen:
        added[quota_key(row["behavior"])] += 1
    for row in rewrites:
        rewritten[quota_key(row["behavior"])] += 1
    made = {**added, **rewritten}
    short = {k: v - made[k] for k, v in wanted.items() if made[k] < v}
    return AugmentResult(target, result, rows, added, wanted, short, rewritten)
