"""JSON text as hedgerow writes it: strict, so every JSON reader reads it back.

Python's `json.dumps` writes bare `NaN` and `Infinity` by default, which no other JSON
parser accepts. Every JSON hedgerow writes (rows, manifests, caches, hashed blobs) goes
through `dumps` here, which refuses them with a message naming the field; ruff bans
`json.dumps` elsewhere in generator/ (pyproject.toml, TID251). `problem` is the same walk for rows
coming in: `io.py` refuses such a row before it can reach a writer.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from typing import Any, NamedTuple

from generator.errors import JSONValueError

# Levels of lists and objects a value may nest. A seed row needs two or three (a chat
# turn's content parts); Python's own parser and writer give out near 1,000.
MAX_DEPTH = 100


class Problem(NamedTuple):
    where: str  # e.g. "fit.nll", "messages[1].content"; a deep value: its top field
    what: str  # "NaN", "-Infinity", "nested more than 100 levels deep"
    deep: bool


def problem(value: Any, max_depth: int = MAX_DEPTH) -> Problem | None:
    """The first thing in `value` strict JSON cannot hold: a NaN or an infinity, or
    nesting deeper than `max_depth` (None when there is nothing)."""
    if isinstance(value, dict | list | tuple) and _clean(value, max_depth):
        return None  # the common case, looked at without naming every place
    queue: deque[tuple[Any, str, int]] = deque([(value, "", 1)])
    seen: set[int] = set()  # a shared or circular part is looked at once
    while queue:  # breadth first, without recursion: a deep value is what it looks for
        item, where, depth = queue.popleft()
        if isinstance(item, float):
            if not math.isfinite(item):
                return Problem(where, _constant(item), deep=False)
            continue
        if not isinstance(item, dict | list | tuple):
            continue
        if depth > max_depth:  # named by its top field: the full path would be huge
            top = re.split(r"[.\[]", where, maxsplit=1)[0]
            return Problem(top, f"nested more than {max_depth} levels deep", deep=True)
        if id(item) in seen:
            continue
        seen.add(id(item))
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in pairs:
            if isinstance(child, float | dict | list | tuple):
                name = f"{where}.{key}" if isinstance(item, dict) else f"{where}[{key}]"
                queue.append((child, name.removeprefix("."), depth + 1))
    return None


def _clean(value: dict | list | tuple, max_depth: int) -> bool:
    """True if `value` holds no NaN or infinity and nests at most `max_depth` levels."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return False
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, str):
                continue
            if isinstance(child, float):
                if not math.isfinite(child):
                    return False
            elif isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
    return True


def _constant(number: float) -> str:
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps` that never writes NaN or Infinity (a `JSONValueError` instead)."""
    try:
        return json.dumps(value, allow_nan=False, **options)  # noqa: TID251
    except (ValueError, RecursionError) as e:
        if "Circular reference" in str(e):  # json's own message says it; the walk would not end
            raise
        found = problem(value)
        if found is None:  # not ours to explain (a bad `default`)
            raise
        raise JSONValueError(
            f"cannot write {found.where or 'a value'} as JSON: it is {found.what}, which "
            "strict JSON cannot hold; this is a bug in hedgerow, please report it"
        ) from e
