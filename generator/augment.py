"""Add behaviors to an existing dataset, in the dataset's own format.

`augment` runs an ordinary generation run on the dataset's rows with a quota per behavior
(`RunConfig.quota`): seeds go in a shuffled order and a behavior stops once it has its
rows, so a small mix of a large dataset costs only what it needs. The output is the
original rows, unchanged, plus the new rows in the input's file type and shape:

- JSONL: the original lines byte for byte, then the new rows;
- CSV/TSV: the original bytes, then the new rows with the same header and delimiter;
- a JSON list: the same items (same indentation), then the new ones;
- Parquet and `save_to_disk` folders: the same table with the new rows appended, in
  its own schema.

A mix fraction is of the original row count; `refusal` counts a refusal and its contrast
as two rows and never splits them. `--shuffle` mixes the new rows in (deterministic with
`--seed`). The run folder keeps every candidate and the manifest, like any run.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from generator import generators, jsontext, outputs
from generator.errors import ConfigError, InputError, param
from generator.generators import default_mix, owner, quota_key
from generator.io import OnError, Shape, detect_shape, iter_seeds, load_json, records
from generator.run import RunConfig, RunResult, generate
from generator.runfolder import Run
from generator.shapes import ASSISTANT_ROLES, USER_ROLES, with_response
from generator.templates import Prompts

_BOM = b"\xef\xbb\xbf"
# The file names each input type may be written to.
_SUFFIXES = {
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "json": (".json",),
    "csv": (".csv", ".tsv"),
    "parquet": (".parquet",),
}


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


# --------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class Layout:
    """How the input stores its rows, so new rows can be written the same way."""

    path: Path
    kind: str  # jsonl | json | csv | parquet | disk
    shape: Shape
    columns: tuple[str, ...]
    first: dict[str, Any]  # the first row, for the chat turn keys and role names

    def new_row(self, prompt: str, response: str, row_id: Any) -> dict[str, Any]:
        """A new row in the input's shape: known columns filled, the others empty."""
        empty = "" if self.kind == "csv" else None
        row: dict[str, Any] = dict.fromkeys(self.columns, empty)
        shape = self.shape
        if shape.name in ("messages", "conversations"):
            row[shape.prompt] = self._turns(prompt, response)
        else:
            row[shape.prompt] = prompt
            row[shape.response] = response
            if shape.input:
                row[shape.input] = ""
        if shape.id:
            row[shape.id] = row_id
        return row

    def replace(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """An input row with its response rewritten (a `replaces` behavior's row)."""
        return with_response(row, self.shape, response)

    def _turns(self, prompt: str, response: str) -> list[dict[str, str]]:
        turns = [t for t in self.first.get(self.shape.prompt) or [] if isinstance(t, dict)]
        role, text = ("from", "value") if turns and "from" in turns[0] else ("role", "content")
        roles = [str(t.get(role, "")) for t in turns]
        user = next((r for r in roles if r.lower() in USER_ROLES), None)
        assistant = next((r for r in roles if r.lower() in ASSISTANT_ROLES), None)
        if role == "from":
            user, assistant = user or "human", assistant or "gpt"
        # a dataset that opens every conversation with a system turn keeps it
        system = [t for t in turns[:1] if str(t.get(role, "")).lower() == "system"]
        return [
            *[{role: t.get(role), text: t.get(text)} for t in system],
            {role: user or "user", text: prompt},
            {role: assistant or "assistant", text: response},
        ]


def layout(
    path: Path, prompt_column: str | None, response_column: str | None, on_error: OnError = None
) -> Layout:
    rows = records(path, on_error)  # first: it refuses a pipe before anything opens it
    if path.is_dir():
        kind = "disk"
    else:
        suffix = path.suffix.lower()
        kind = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}.get(
            suffix, {".tsv": "csv", ".parquet": "parquet"}.get(suffix, "")
        )
        if kind == "json" and _is_jsonl(path):
            kind = "jsonl"
    for where, row in rows:
        shape = detect_shape(row.keys(), str(path), prompt_column, response_column)
        if shape.name not in ("messages", "conversations") and not shape.response:
            raise InputError(
                f"{where}: no response column found (columns: {', '.join(row)}); augment "
                "builds on the dataset's answers: name it with --response-column"
            )
        return Layout(path, kind, shape, tuple(row.keys()), row)
    raise InputError(f"{path}: no rows found (the file is empty); augment a dataset with rows")


def _is_jsonl(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{")


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


# --------------------------------------------------------------------------- writing


def _id_maker(layout: Layout, chosen: list[dict]) -> list[Any]:
    """New rows' ids: continue a whole-number id column (numbers, or digits in a CSV),
    else the example ids."""
    column = layout.shape.id
    first = layout.first.get(column) if column else None
    numeric = isinstance(first, int) and not isinstance(first, bool)
    digits = isinstance(first, str) and first.isdigit()
    if not (numeric or digits):
        return [row["id"] for row in chosen]
    top = 0
    for _, row in records(layout.path, lambda error: None):
        value = row.get(column)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            top = max(top, value)
    ids = range(top + 1, top + 1 + len(chosen))
    return list(ids) if numeric else [str(i) for i in ids]


@dataclass(frozen=True)
class Edit:
    """What a writer does to the input: rows to add, responses to rewrite (by the record
    they rewrite, see `_position`), and whether and how to shuffle."""

    new: list[dict]
    replaced: dict[int, str]
    shuffle: bool
    seed: int


def _mixed(items: list, new: list, edit: Edit) -> list:
    """The items, then the new ones, shuffled together with --shuffle."""
    out = items + new
    if edit.shuffle:
        random.Random(f"shuffle\x1f{edit.seed}").shuffle(out)
    return out


def _position(where: str) -> int:
    """The record a reader's `where` names, counted from 1: the line of a JSONL or CSV
    file ("f.jsonl:3"), else the item or row ("f.json: item 2", "f.parquet: row 7")."""
    return int(re.split(r"[: ]", where)[-1])


def _edited(layout: Layout, items: list[dict], replaced: dict[int, str]) -> list[dict]:
    """Items (in file order, the first numbered 1) with their rewritten responses."""
    return [
        layout.replace(item, replaced[i]) if i in replaced else item
        for i, item in enumerate(items, 1)
    ]


def _write_lines(layout: Layout, edit: Edit, tmp: Path) -> None:
    """JSONL and CSV: the original bytes stay as they are; new lines follow (or mix in).
    A rewritten JSONL row is that one line written again; a CSV with rewritten rows is
    written again whole (the csv module's quoting)."""
    raw = layout.path.read_bytes()
    if layout.kind == "csv":
        delimiter = "\t" if layout.path.suffix.lower() == ".tsv" else ","
        ending = "\r\n" if b"\r\n" in raw[: raw.find(b"\n") + 1] else "\n"
        text = raw.decode("utf-8-sig")
        header, _, body = text.partition("\n")
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=layout.columns, delimiter=delimiter, lineterminator=ending
        )
        for row in edit.new:
            writer.writerow(row)
        added = buf.getvalue()
        if edit.replaced:
            body = _csv_replaced(layout, text, edit.replaced, delimiter, ending)
            bom = _BOM if raw.startswith(_BOM) else b""
            raw = bom + (header + "\n" + body).encode("utf-8")
        if edit.shuffle:  # whole records, quoted newlines included
            rows = list(csv.reader(io.StringIO(body), delimiter=delimiter))
            rows += list(csv.reader(io.StringIO(added), delimiter=delimiter))
            random.Random(f"shuffle\x1f{edit.seed}").shuffle(rows)
            buf = io.StringIO()
            csv.writer(buf, delimiter=delimiter, lineterminator=ending).writerows(rows)
            blob = (header + "\n" + buf.getvalue()).encode("utf-8")
        else:
            blob = raw + (b"" if raw.endswith(b"\n") else ending.encode()) + added.encode()
    else:
        bom = _BOM if raw.startswith(_BOM) else b""  # stays at the front, even shuffled
        lines = raw[len(bom) :].split(b"\n")  # as the reader numbers them
        for number in edit.replaced:
            line = lines[number - 1]
            end = b"\r" if line.endswith(b"\r") else b""
            row = layout.replace(json.loads(line), edit.replaced[number])
            lines[number - 1] = jsontext.dumps(row, ensure_ascii=False).encode() + end
        lines = [line + b"\n" for line in lines if line.strip()]  # the last one ended too
        added = [jsontext.dumps(r, ensure_ascii=False).encode() + b"\n" for r in edit.new]
        blob = bom + b"".join(_mixed(lines, added, edit))
    tmp.write_bytes(blob)


def _csv_replaced(
    layout: Layout, text: str, replaced: dict[int, str], delimiter: str, ending: str
) -> str:
    """A CSV's records after its header, with the rewritten responses, written again;
    a record is numbered by the line it ends on, as the reader numbers it."""
    import io

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=ending)
    for record in reader:
        number = reader.line_num
        if number in replaced and len(record) == len(header):
            row = layout.replace(dict(zip(header, record, strict=True)), replaced[number])
            record = list(row.values())
        writer.writerow(record)
    return buf.getvalue()


def _write_json(layout: Layout, edit: Edit, tmp: Path) -> None:
    """A JSON list written back in its own style: indentation (spaces or tabs),
    separators, ASCII escapes and byte-order mark."""
    raw = layout.path.read_bytes()
    bom = _BOM if raw.startswith(_BOM) else b""
    text = raw[len(bom) :].decode("utf-8")
    items = _edited(layout, load_json(text, layout.path), edit.replaced)
    after = text.lstrip()[1:]
    head = text[:4096]
    indent = None
    if after.startswith(("\n", "\r\n")):
        line = after.lstrip("\r\n").split("\n", 1)[0]
        indent = line[: len(line) - len(line.lstrip(" \t"))] or None
    colon = ": " if re.search(r'":\s', head) else ":"
    comma = "," if indent is not None or not re.search(r"[}\]\"\d],\s", head) else ", "
    escaped = text.isascii() and "\\u" in text
    body = jsontext.dumps(
        _mixed(items, edit.new, edit),
        ensure_ascii=escaped,
        indent=indent,
        separators=(comma, colon),
    )
    tmp.write_bytes(bom + (body + "\n").encode("utf-8"))


def _write_parquet(layout: Layout, edit: Edit, tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(layout.path)
    if edit.replaced:
        rows = _edited(layout, table.to_pylist(), edit.replaced)
        table = pa.Table.from_pylist(rows, schema=table.schema)
    added = pa.Table.from_pylist(edit.new, schema=table.schema)
    table = pa.concat_tables([table, added])
    if edit.shuffle:
        order = list(range(table.num_rows))
        random.Random(f"shuffle\x1f{edit.seed}").shuffle(order)
        table = table.take(order)
    pq.write_table(table, tmp)


def _write_disk(layout: Layout, edit: Edit, tmp: Path) -> None:
    import datasets

    datasets.disable_progress_bars()
    loaded = datasets.load_from_disk(str(layout.path))
    split = None
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        table = loaded[split]
    else:
        table = loaded
    if edit.replaced:
        table = table.map(
            lambda row, i: (
                layout.replace(row, edit.replaced[i + 1]) if i + 1 in edit.replaced else row
            ),
            with_indices=True,
            features=table.features,
            load_from_cache_file=False,
        )
    if edit.new:
        added = datasets.Dataset.from_list(edit.new, features=table.features)
        table = datasets.concatenate_datasets([table, added])
    if edit.shuffle:
        order = list(range(len(table)))
        random.Random(f"shuffle\x1f{edit.seed}").shuffle(order)
        table = table.select(order)
    if split is not None:
        loaded[split] = table
        table = loaded
    outputs.clean(tmp)
    table.save_to_disk(str(tmp))


_WRITERS = {
    "jsonl": _write_lines,
    "csv": _write_lines,
    "json": _write_json,
    "parquet": _write_parquet,
    "disk": _write_disk,
}


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
    if shape.kind not in _WRITERS:
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
        allowed = _SUFFIXES[shape.kind]
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
        _position(r["provenance"]["seed_source"]): r["messages"][-1]["content"] for r in rewrites
    }
    ids = _id_maker(shape, chosen)
    new = [
        shape.new_row(r["messages"][0]["content"], r["messages"][-1]["content"], i)
        for r, i in zip(chosen, ids, strict=True)
    ]
    outputs.write(
        target,
        lambda tmp: _WRITERS[shape.kind](shape, Edit(new, replaced, shuffle, config.seed), tmp),
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
