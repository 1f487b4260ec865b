"""A dataset written back in its own format: the input's layout (file type, shape,
columns), the rows `augment` adds and the responses it rewrites, one writer per type.

- JSONL: the original lines byte for byte (a rewritten row: that line written again),
  then the new rows;
- CSV/TSV: the original bytes (with rewritten rows, the file written again whole), then
  the new rows with the same header and delimiter;
- a JSON list: the same items (same indentation, separators, escapes), then the new ones;
- Parquet and `save_to_disk` folders: the same table, new rows appended, in its schema.
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import jsontext, outputs
from generator.errors import InputError
from generator.io import OnError, Shape, detect_shape, load_json, records
from generator.shapes import ASSISTANT_ROLES, USER_ROLES, with_response

_BOM = b"\xef\xbb\xbf"
# The file names each input type may be written to.
SUFFIXES = {
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "json": (".json",),
    "csv": (".csv", ".tsv"),
    "parquet": (".parquet",),
}


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


# --------------------------------------------------------------------------- writing


def new_ids(layout: Layout, chosen: list[dict]) -> list[Any]:
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


def position(where: str) -> int:
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


WRITERS = {
    "jsonl": _write_lines,
    "csv": _write_lines,
    "json": _write_json,
    "parquet": _write_parquet,
    "disk": _write_disk,
}
