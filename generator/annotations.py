"""Calculator annotations: GSM8K's `<<48/2=24>>`, one policy for every behavior's output.

A worked answer from GSM8K writes `48/2 = <<48/2=24>>24`: the annotation is markup for a
calculator, not something a person writes. By default every response and the reference it
is checked against lose them (`remove`), so a hedge, a near-miss and a contrast built from
the same seed differ by content only; `--keep-calculator-annotations` keeps them all.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from generator.values import Example

# One line at most: `<<` and `>>` in code (`cout << x`) rarely close on the same line
# around an `=`, an annotation always does.
ANNOTATION = re.compile(r"<<([^<>=\n]+)=([^<>\n]*)>>")


def remove(text: str) -> str:
    """`text` without calculator annotations."""
    return ANNOTATION.sub("", text)


def _offset_map(text: str):
    """A function taking an offset in `text` to the same place in `remove(text)`."""
    starts, ends, removed = [], [], []
    total = 0
    for m in ANNOTATION.finditer(text):
        starts.append(m.start())
        ends.append(m.end())
        total += m.end() - m.start()
        removed.append(total)

    def shift(offset: int) -> int:
        i = bisect.bisect_right(starts, offset) - 1
        if i < 0:
            return offset
        if offset < ends[i]:  # inside an annotation: where it stood
            return starts[i] - (removed[i] - (ends[i] - starts[i]))
        return offset - removed[i]

    return shift


def apply(example: Example, keep: bool, spans: Iterable[str] = ()) -> Example:
    """`example` under the policy: its response stripped unless `keep`, with the spans it
    marks (attributes named in `spans`, each with `start`/`end` offsets into the response
    and the texts they quote) moved to match."""
    if keep or not ANNOTATION.search(example.response):
        return example
    shift = _offset_map(example.response)
    attributes = dict(example.attributes)
    for name in spans:
        span = attributes.get(name)
        if isinstance(span, dict):
            attributes[name] = {key: _moved(key, value, shift) for key, value in span.items()}
    return replace(example, response=remove(example.response), attributes=attributes)


def _moved(key: str, value: Any, shift) -> Any:
    if key in ("start", "end") and isinstance(value, int) and not isinstance(value, bool):
        return shift(value)
    return remove(value) if isinstance(value, str) else value


def reference(text: str | None, keep: bool) -> str | None:
    """The reference answer a response is checked against, under the same policy."""
    return text if keep or text is None else remove(text)
