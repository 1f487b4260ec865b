"""How a row becomes a seed: the file's shape, detected from its first row's columns.

Shapes: Alpaca, chat `messages`, ShareGPT `conversations`, `prompt`/`completion`,
`question`/`answer` (any capitalisation, e.g. `Best Answer`), or the user's columns. A
prompt is text; an answer is text or a finite number (written as its text).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from generator.errors import InputError
from generator.values import Seed

# Column names are compared after folding case, spaces, dashes and underscores.
PROMPT_COLUMNS = ("prompt", "question", "instruction", "query", "problem", "input")
RESPONSE_COLUMNS = (
    "completion",
    "response",
    "answer",
    "bestanswer",
    "output",
    "solution",
    "target",
)
ID_COLUMNS = ("id", "seedid", "uid")
MAX_TEXT = 1_000_000  # characters in one prompt or answer: far past any model's context


def _fold(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


@dataclass(frozen=True)
class Shape:
    """How one file's rows map to seeds."""

    name: str
    prompt: str  # the column (or list field) the prompt comes from
    response: str | None
    id: str | None = None
    input: str | None = None  # Alpaca's optional context, appended to the instruction


def detect_shape(
    columns: Iterable[str],
    where: str,
    prompt_column: str | None = None,
    response_column: str | None = None,
) -> Shape:
    """Pick the prompt/response columns from a row's column names (or the user's flags)."""
    names = list(columns)
    by_fold: dict[str, str] = {}
    for name in names:
        by_fold.setdefault(_fold(name), name)

    def find(wanted: Iterable[str]) -> str | None:
        return next((by_fold[w] for w in wanted if w in by_fold), None)

    def given(flag: str, value: str) -> str:
        if value in names:
            return value
        if _fold(value) in by_fold:
            return by_fold[_fold(value)]
        raise InputError(
            f"{where}: {flag} {value!r} is not a column (columns: {', '.join(names) or 'none'})"
        )

    id_col = find(ID_COLUMNS)
    if prompt_column or response_column:
        prompt = given("--prompt-column", prompt_column) if prompt_column else find(PROMPT_COLUMNS)
        response = (
            given("--response-column", response_column)
            if response_column
            else find(RESPONSE_COLUMNS)
        )
        if prompt is None:
            raise InputError(
                f"{where}: no prompt column found (columns: {', '.join(names)}); "
                "name it with --prompt-column"
            )
        return Shape("columns", prompt, response, id_col)
    for chat in ("messages", "conversations"):
        if chat in by_fold:
            return Shape(chat, by_fold[chat], None, id_col)
    if "instruction" in by_fold and "output" in by_fold:
        return Shape(
            "alpaca", by_fold["instruction"], by_fold["output"], id_col, input=by_fold.get("input")
        )
    prompt = find(PROMPT_COLUMNS)
    if prompt is None:
        raise InputError(
            f"{where}: no prompt column found (columns: "
            f"{', '.join(names) or 'none'}); name it with --prompt-column "
            "(and --response-column)"
        )
    return Shape("columns", prompt, find(RESPONSE_COLUMNS), id_col)


USER_ROLES = ("user", "human")  # a conversation's roles, lower-cased, as files spell them
ASSISTANT_ROLES = ("assistant", "gpt", "model", "bot")


def _turn_text(turn: Any, where: str) -> tuple[str, str]:
    if not isinstance(turn, dict):
        raise InputError(
            f"{where}: a conversation turn is {type(turn).__name__}, "
            "expected an object with role and content"
        )
    role = str(turn.get("role", turn.get("from", ""))).lower()
    content = turn.get("content", turn.get("value", ""))
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise InputError(
            f"{where}: a turn's content is {type(content).__name__}, expected text; "
            "make every turn's content a string"
        )
    return role, content


def with_response(row: dict[str, Any], shape: Shape, response: str) -> dict[str, Any]:
    """`row` with its reference answer replaced by `response`, where `to_seed` read it
    (the last assistant turn of a conversation); everything else as it was."""
    row = dict(row)
    if shape.name not in ("messages", "conversations"):
        row[shape.response] = response
        return row
    turns = list(row[shape.prompt])
    for i in reversed(range(len(turns))):
        turn = turns[i]
        if isinstance(turn, dict) and _turn_text(turn, "")[0] in ASSISTANT_ROLES:
            turns[i] = {**turn, ("content" if "content" in turn else "value"): response}
            break
    row[shape.prompt] = turns
    return row


def _from_chat(turns: Any, field: str, where: str) -> tuple[str, str | None]:
    if not isinstance(turns, list):
        raise InputError(
            f"{where}: field '{field}' is {type(turns).__name__}, expected a list of turns"
        )
    parsed = [_turn_text(t, where) for t in turns]
    last_assistant = max(
        (i for i, (r, _) in enumerate(parsed) if r in ASSISTANT_ROLES), default=None
    )
    before = parsed if last_assistant is None else parsed[:last_assistant]
    user = next((c for r, c in reversed(before) if r in USER_ROLES), None)
    if user is None:
        raise InputError(
            f"{where}: field '{field}' has no user turn; each conversation needs a user message"
        )
    return user, None if last_assistant is None else parsed[last_assistant][1]


def _text(row: dict[str, Any], column: str, where: str, required: bool) -> str | None:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError(f"{where}: field '{column}' is empty; fill it or remove the row")
        return None
    if isinstance(value, str):
        return value
    if (
        not required
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    ):
        return str(value)  # a numeric answer is still an answer (NaN is not a number)
    raise InputError(
        f"{where}: field '{column}' is {type(value).__name__}, expected text; "
        "make it a string in every row"
    )


def to_seed(row: dict[str, Any], shape: Shape, where: str, index: int = 0) -> Seed:
    """One row as a seed, by the file's shape."""
    if shape.name in ("messages", "conversations"):
        prompt, response = _from_chat(row.get(shape.prompt), shape.prompt, where)
        if not prompt.strip():
            raise InputError(f"{where}: the user turn is empty; fill it or remove the row")
    else:
        prompt = _text(row, shape.prompt, where, required=True)
        if shape.input:
            extra = _text(row, shape.input, where, required=False)
            if extra:
                prompt = f"{prompt}\n\n{extra}"
        response = _text(row, shape.response, where, required=False) if shape.response else None
    for text, field in ((prompt, shape.prompt), (response or "", shape.response)):
        if len(text) > MAX_TEXT:
            what = (
                f"field '{field}'"
                if shape.name not in ("messages", "conversations")
                else (f"a turn of '{field}'")
            )
            raise InputError(
                f"{where}: {what} holds {len(text):,} characters, more than a seed may "
                f"({MAX_TEXT:,}); shorten it or remove the row"
            )
    given_id = row.get(shape.id) if shape.id else None
    seed_id = str(given_id) if isinstance(given_id, str | int) and str(given_id) else None
    for text in (prompt, response or ""):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"{where}: text holds an unpaired surrogate escape such as "
                "\\ud800; fix that escape in the row"
            ) from None
    return Seed.make(prompt, response, id=seed_id, source=where, index=index)
