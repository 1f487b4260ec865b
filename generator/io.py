"""Reading seeds: files in, a stream of `Seed` values out, memory flat in the row count.

Formats: JSONL, JSON (a list), CSV/TSV, Parquet, a `datasets` `save_to_disk` folder, each
read as rows (`records`); how a row becomes a seed is shapes.py.
"""

from __future__ import annotations

import csv
import json
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from generator.errors import InputError
from generator.jsontext import MAX_DEPTH, problem
from generator.shapes import Shape, detect_shape, to_seed
from generator.values import Seed

__all__ = [
    "OnError",
    "Record",
    "Shape",
    "detect_shape",
    "input_stats",
    "iter_seeds",
    "load_json",
    "records",
    "to_seed",
]

Record = tuple[str, dict[str, Any]]  # (location for messages, the row)
# What to do with a row-level error: None raises it; a callback is told and the row skipped
# (`--on-error skip`). Errors about a whole file (missing, unknown type, unreadable JSON
# list syntax, no rows) always raise.
OnError = Callable[[InputError], None] | None

_CHUNK = 1 << 20


def _bad(on_error: OnError, error: InputError) -> None:
    if on_error is None:
        raise error
    on_error(error)


# --------------------------------------------------------------------------- readers


def _jsonl_records(path: Path, on_error: OnError = None) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not data
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _bad(
                    on_error,
                    InputError(
                        f"{path}:{lineno}: not UTF-8 text (byte {e.start}); "
                        "re-save the file as UTF-8"
                    ),
                )
                continue
            if not line.strip():
                continue
            try:
                row = _object(json.loads(line), f"{path}:{lineno}")
            except json.JSONDecodeError as e:
                _bad(
                    on_error,
                    InputError(
                        f"{path}:{lineno}: not valid JSON ({e.msg}, column {e.colno});"
                        " fix or remove that line"
                    ),
                )
                continue
            except (RecursionError, ValueError) as e:  # valid JSON Python cannot hold
                _bad(on_error, _unreadable(f"{path}:{lineno}", e))
                continue
            except InputError as e:
                _bad(on_error, e)
                continue
            yield f"{path}:{lineno}", row


def _unreadable(where: str, error: Exception) -> InputError:
    """Valid JSON that Python's parser cannot hold, as a row error."""
    if isinstance(error, RecursionError):
        return InputError(
            f"{where}: holds a value nested more than {MAX_DEPTH} levels deep; a seed "
            "needs only text fields: flatten it or remove the row"
        )
    # int() refuses a number of more than 4,300 digits
    return InputError(
        f"{where}: holds a number too long to read (more than 4,300 digits); "
        "write it as a string or remove the row"
    )


def _object(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise InputError(
            f"{where}: expected an object with named fields, got "
            f"{type(row).__name__}; make every row an object"
        )
    return row


def _json_records(path: Path, on_error: OnError = None) -> Iterator[Record]:
    """Stream the items of a top-level JSON list without loading the whole file."""
    decoder = json.JSONDecoder()
    try:
        fh = path.open("r", encoding="utf-8-sig")
        with fh:
            buf = fh.read(_CHUNK)
            pos = _skip_ws(buf, 0)
            if pos < len(buf) and buf[pos] == "{":
                if buf[pos:].split("\n", 1)[0].strip() == "{":
                    raise InputError(
                        f"{path}: holds one JSON object spread over lines, not a list of "
                        "rows; put the rows in a list [...] or write JSONL, one per line"
                    )
                # A JSONL file with a .json name is common enough to accept.
                yield from _jsonl_records(path, on_error)
                return
            if pos >= len(buf) or buf[pos] != "[":
                raise InputError(
                    f"{path}: expected a JSON list of objects; "
                    "use a list, or JSONL with one object per line"
                )
            pos += 1
            consumed = 0  # characters dropped from the front of buf, for error positions
            index = 0
            eof = False
            while True:
                pos = _skip_ws(buf, pos)
                if pos >= len(buf) and not eof:
                    buf, pos, consumed, eof = _refill(fh, buf, pos, consumed)
                    continue
                if pos < len(buf) and buf[pos] == "]":
                    return
                if index > 0:
                    if pos >= len(buf) or buf[pos] != ",":
                        raise _json_syntax(path, buf, consumed + pos, "expected ',' or ']'")
                    pos = _skip_ws(buf, pos + 1)
                failed: Exception | None = None  # the item decodes, but not into Python
                while True:
                    pos = _skip_ws(buf, pos)  # a refill may start with whitespace
                    try:
                        if failed is None:
                            item, end = decoder.raw_decode(buf, pos)
                        elif (end := _value_end(buf, pos)) is None:
                            raise json.JSONDecodeError("unterminated item", buf, len(buf))
                        # A number or literal cut by the chunk edge decodes "fine" too short.
                        if end >= len(buf) and not eof:
                            raise json.JSONDecodeError("chunk edge", buf, end)
                        break
                    except json.JSONDecodeError as e:
                        if eof:
                            raise _json_syntax(path, buf, consumed + e.pos, e.msg) from None
                        buf, pos, consumed, eof = _refill(fh, buf, pos, consumed)
                    except (RecursionError, ValueError) as e:  # skip it by its brackets
                        failed = e
                index += 1
                pos = end
                try:
                    if failed is not None:
                        raise _unreadable(f"{path}: item {index}", failed)
                    row = _object(item, f"{path}: item {index}")
                except InputError as e:
                    _bad(on_error, e)
                    continue
                yield f"{path}: item {index}", row
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not UTF-8 text (near byte {e.start}); re-save the file as UTF-8"
        ) from None


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


# A string (closed, or cut off by the end of the buffer) or a bracket.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:(?P<closed>")|\\?\Z)|[\[\]{}]', re.S)
_SCALAR = re.compile(r"[^\s,\]}]*")


def _value_end(buf: str, pos: int) -> int | None:
    """Where the JSON value at `pos` ends, found by counting brackets (no recursion, so
    for any depth); None if the buffer ends first."""
    if buf[pos : pos + 1] not in ("[", "{"):
        end = _SCALAR.match(buf, pos).end()
        return end if end < len(buf) else None
    depth = 0
    for m in _STRUCTURE.finditer(buf, pos):
        token = m.group()
        if token[0] == '"':
            if m.group("closed") is None:
                return None
        elif token in "[{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.end()
    return None


def _refill(fh, buf: str, pos: int, consumed: int) -> tuple[str, int, int, bool]:
    # Keep only the unparsed tail; grow the read size for one very large item.
    more = fh.read(max(_CHUNK, len(buf) - pos))
    return buf[pos:] + more, 0, consumed + pos, not more


def _json_syntax(path: Path, buf: str, offset: int, msg: str) -> InputError:
    return InputError(
        f"{path}: not valid JSON near character {offset} ({msg}); "
        "fix the file or convert it to JSONL"
    )


def _csv_records(path: Path, on_error: OnError = None) -> Iterator[Record]:
    # A seed can be long; the csv module's default field limit (128 KiB) is not ours.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter, strict=True)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # the reader goes on with the next line
                    _bad(
                        on_error,
                        InputError(
                            f"{path}:{reader.line_num + 1}: {e}; check the quoting on that line"
                        ),
                    )
                    continue
                where = f"{path}:{reader.line_num}"
                if None in row:
                    _bad(
                        on_error,
                        InputError(
                            f"{where}: more fields than the header has; "
                            "quote fields that contain the delimiter"
                        ),
                    )
                    continue
                yield where, row
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not UTF-8 text (near byte {e.start}); re-save the file as UTF-8"
        ) from None


def _parquet_records(path: Path, on_error: OnError = None) -> Iterator[Record]:
    import pyarrow.parquet as pq  # heavy: only when a Parquet file is read

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    row = 0
    batches = pf.iter_batches(batch_size=1024)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:  # a damaged page or row group deep in the file
            raise InputError(
                f"{path}: unreadable after row {row} ({e}); the file is damaged: write it out again"
            ) from None
        for item in batch.to_pylist():
            row += 1
            yield f"{path}: row {row}", item


def _disk_records(path: Path, on_error: OnError = None) -> Iterator[Record]:
    import datasets  # heavy: only when a save_to_disk folder is read

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise InputError(
            f"{path}: a folder, but not one written by datasets' save_to_disk; "
            "pass the data files inside it instead"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds.keys())
        if "train" in ds:
            ds = ds["train"]
        elif len(splits) == 1:
            ds = ds[splits[0]]
        else:
            raise InputError(
                f"{path}: holds splits {', '.join(splits)}; "
                f"pass one of them, e.g. {path / splits[0]}"
            )
    for row, item in enumerate(ds, 1):  # memory-mapped Arrow: rows stream from disk
        yield f"{path}: row {row}", item


def _is_save_to_disk(path: Path) -> bool:
    return any(
        (path / marker).exists()
        for marker in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def records(path: Path, on_error: OnError = None) -> Iterator[Record]:
    """The rows of one file or folder, with where each came from. A row holding what
    strict JSON cannot (NaN, infinity, deep nesting) is a row error: rows are written back
    as JSON (`score`, `augment`), and a prompt or answer must be text anyway."""
    try:
        mode = path.stat().st_mode  # stat, never open: opening a pipe can block
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder; check the path") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); check the path") from None
    if stat.S_ISDIR(mode):
        if not _is_save_to_disk(path):
            raise InputError(
                f"{path}: a folder, but not one written by datasets' "
                "save_to_disk; pass the data files inside it instead"
            )
        return _strict(_disk_records(path, on_error), on_error)
    if not stat.S_ISREG(mode):
        # Every command reads its input twice (a survey, then the work), and a resume
        # reads it again: a stream would give nothing the second time, or block.
        kind = (
            "a pipe"
            if stat.S_ISFIFO(mode)
            else ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
        )
        raise InputError(
            f"{path}: {kind}, not a regular file; hedgerow reads its input more than once, "
            "which a stream cannot do: save it to a file first and pass that"
        )
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path, OnError], Iterator[Record]]] = {
        ".jsonl": _jsonl_records,
        ".ndjson": _jsonl_records,
        ".json": _json_records,
        ".csv": _csv_records,
        ".tsv": _csv_records,
        ".parquet": _parquet_records,
    }
    if suffix not in readers:
        raise InputError(
            f"{path}: unknown file type '{suffix or '(none)'}'; use .jsonl, "
            ".json, .csv, .tsv, .parquet or a save_to_disk folder"
        )
    return _strict(readers[suffix](path, on_error), on_error)


def _strict(rows: Iterator[Record], on_error: OnError) -> Iterator[Record]:
    for where, row in rows:
        found = problem(row)
        if found is not None:
            fix = (
                "a seed needs only text fields: flatten it or remove the row"
                if found.deep
                else "strict JSON has no such number: write a number, text or null there, "
                "or remove the row"
            )
            _bad(on_error, InputError(f"{where}: field '{found.where}' is {found.what}; {fix}"))
            continue
        yield where, row


def load_json(text: str, path: Path | str) -> Any:
    """A whole JSON file (`augment` rewrites a JSON list whole), as strict as the row
    readers: an item they would refuse cannot be written back, so it is an error here."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise _json_syntax(Path(path), text, e.pos, e.msg) from None
    except (RecursionError, ValueError) as e:
        raise _unreadable(str(path), e) from None
    for index, item in enumerate(value if isinstance(value, list) else [value], 1):
        if (found := problem(item)) is not None:
            field = f" field '{found.where}'" if found.where else ""
            raise InputError(
                f"{path}: item {index}:{field} is {found.what}, which cannot be written "
                "back as JSON; remove that item, or convert the file to JSONL"
            )
    return value


def input_stats(paths: Iterable[Path | str]) -> list[list[list]]:
    """(resolved path, size, mtime) of every input file: what a fingerprint of the inputs
    hashes, so an edited input never resumes an old run."""
    inputs = []
    for name in paths:
        path = Path(name).resolve()
        # A save_to_disk folder is rewritten in place: its files tell, not the folder.
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        try:
            stats = [(p, p.stat()) for p in files]
        except OSError as e:
            raise InputError(f"{name}: cannot read it ({e.strerror}); check the path") from None
        inputs.append([[str(p), st.st_size, st.st_mtime_ns] for p, st in stats])
    return inputs


def iter_seeds(
    paths: Iterable[Path | str],
    prompt_column: str | None = None,
    response_column: str | None = None,
    limit: int | None = None,
    on_error: OnError = None,
) -> Iterator[Seed]:
    """Stream seeds from files in order, stopping after `limit` seeds. A row-level error
    raises, or with `on_error` is handed to it and the row skipped (see `OnError`)."""
    count = 0
    given_ids: set[str] = set()  # ids from an id column must be unique (hashes may repeat)
    for path in map(Path, paths):
        if limit is not None and count >= limit:
            return
        shape = None
        rows = seeds = 0
        for where, row in records(path, on_error):
            rows += 1
            try:
                if shape is None:
                    shape = detect_shape(row.keys(), where, prompt_column, response_column)
                seed = to_seed(row, shape, where, count)
                if shape.id and row.get(shape.id) not in (None, ""):
                    if seed.id in given_ids:
                        raise InputError(
                            f"{where}: seed id {seed.id!r} repeats an earlier row's; make "
                            f"the {shape.id!r} column unique (or drop it: ids then come "
                            "from the content)"
                        )
                    given_ids.add(seed.id)
            except InputError as e:
                _bad(on_error, e)
                continue
            yield seed
            count += 1
            seeds += 1
            if limit is not None and count >= limit:
                return  # and read no further: rows past the limit are not looked at
        if not seeds:
            raise InputError(
                f"{path}: no rows found (the file is empty"
                + (", or every row had an error" if on_error else "")
                + "); add seeds or drop the file from the command"
                if not rows
                else f"{path}: no usable rows (all {rows} had errors); run without "
                "--on-error skip to see the first one"
            )
