"""The shape of every phrase bank, declared once and checked when the bank is loaded.

A bank is a TOML file under `prompts/`, and a user's `--prompts DIR` may replace it: it is
untrusted input, so `Prompts.bank` validates it against its schema here (pydantic, strict:
no "5" for 5, no 5 for "5") and a wrong or missing field is one line naming the bank, the
field and the file to fix, before any generator reads it.

To add a field to a bank: one line in that bank's class below (`name: type`, with a
default if the field may be left out). To add a bank file: a class, and its name in
`SCHEMAS`. A field a bank's class does not declare is refused as a misspelling, and
tests/test_banks.py checks that every shipped bank has a schema and passes it, and
that every field is typed.
"""

from __future__ import annotations

import datetime
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.errors import TemplateError


class Bank(BaseModel):
    # strict: a quoted "2" is not a count; forbid: a misspelt field would silently fall
    # back to its default
    model_config = ConfigDict(strict=True, extra="forbid")


Text = Annotated[str, Field(min_length=1)]
Words = Annotated[list[str], Field(min_length=1)]  # phrases, cues or patterns: at least one
Count = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


# --------------------------------------------------------------------------- the banks


class Checks(Bank):  # checks.toml: the cues every behavior (and `hedgerow eval`) reads
    meta_talk: Words
    hedge: Words
    decline: Words
    recovery: Words
    common_words: list[str] = []


class HedgeChecks(Bank):  # hedge/checks.toml
    hedge_min_overlap: Share = 0.5


class RefusalChecks(Bank):  # refusal/checks.toml
    nonexistence: Words


class Llm(Bank):  # llm.toml
    params: dict[str, int | float | str | bool] = {}


class HedgeLevel(Bank):
    name: Text
    min_p: Share  # the level of a seed whose measured p_correct is at least this
    confidence: Annotated[float, Field(gt=0, lt=1)]
    openers: Words
    closers: Words


class HedgeUnmeasured(Bank):
    openers: Words
    closers: Words


class HedgePhrases(Bank):  # hedge/phrases.toml
    skip_prompt_starts: list[str] = []
    levels: Annotated[list[HedgeLevel], Field(min_length=1)]
    unmeasured: HedgeUnmeasured


class NearMissPhrases(Bank):  # near_miss/phrases.toml
    slips: Words
    recoveries: Words


class RefusalEntities(Bank):  # refusal/entities.toml
    not_names: Words
    adjectives_of_origin: Words
    organization_words: Words
    event_words: Words
    place_words: Words
    person_titles: Words
    mention_cues: Words
    place_cues: Words
    work_cues: Words
    person_cues: Words
    knowledge_cues: Words
    given_text_starts: Words
    number_words: Words
    self_contained_quantities: Count = 2
    character_verbs: Words
    document_words: Words
    concept_words: Words
    concepts: Words
    units: Words
    place_starts: Words


class RefusalKind(Bank):
    name: Text
    describe: Text


class RefusalKinds(Bank):  # refusal/kinds.toml
    kinds: Annotated[list[RefusalKind], Field(min_length=1)]


class EntityKindWords(Bank):
    described: str = ""
    noun: str = ""


class UnknownToModel(Bank):
    openers: Words
    reasons: Words
    offers: Words


class RefusalPhrases(Bank):  # refusal/phrases.toml
    syllable_start: Words
    syllable_middle: Words
    syllable_end: Words
    given_names: Words
    work_patterns: Words
    work_nouns: Words
    work_adjectives: Words
    openers: Words
    reasons: Words
    offers: Words
    kinds: dict[str, EntityKindWords] = {}
    unknown_to_model: UnknownToModel


class ProbeExemplar(Bank):
    question: Text
    answer: Text


class ProbeBank(Bank):  # probe/probe.toml
    exemplars: Annotated[int, Field(ge=0, le=16)]
    partner_min_p: Share
    max_answer_tokens: Annotated[int, Field(ge=1, le=256)]
    short_answer_words: Annotated[int, Field(ge=1)]
    span_words: Annotated[int, Field(ge=1)]
    sentence_words: Annotated[int, Field(ge=1)]
    articles: list[str]
    stopwords: list[str]
    not_answers: list[str]
    make_up_starts: list[str]
    question_starts: list[str]
    several_words: list[str]
    fallback: list[ProbeExemplar] = []


class EvalExemplar(Bank):
    question: Text
    answer: Text
    confidence: str = ""  # as the frame shows it ("80%"); "" shows none


class EvalChat(Bank):
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    max_tokens: Annotated[int, Field(ge=1)] = 400


class EvalFrame(Bank):
    max_tokens: Annotated[int, Field(ge=1)] = 48
    recovery_max_tokens: Annotated[int, Field(ge=1)] = 128
    stops: Words


class EvalBank(Bank):  # eval/eval.toml
    chat: EvalChat
    frame: EvalFrame
    exemplars: list[EvalExemplar] = []
    recovery_exemplars: list[EvalExemplar] = []


class EvalConfidence(Bank):  # eval/confidence.toml
    nouns: Words
    adjectives: Words
    percent_words: list[str] = []
    levels: dict[str, Share] = {}
    phrases: dict[str, Share] = {}


_SHIPPED: dict[str, type[Bank]] = {
    "checks.toml": Checks,
    "hedge/checks.toml": HedgeChecks,
    "refusal/checks.toml": RefusalChecks,
    "llm.toml": Llm,
    "hedge/phrases.toml": HedgePhrases,
    "near_miss/phrases.toml": NearMissPhrases,
    "refusal/entities.toml": RefusalEntities,
    "refusal/kinds.toml": RefusalKinds,
    "refusal/phrases.toml": RefusalPhrases,
    "probe/probe.toml": ProbeBank,
    "eval/eval.toml": EvalBank,
    "eval/confidence.toml": EvalConfidence,
}


class _Schemas(Mapping):
    """The shipped banks' schemas, and those the registered behaviors declare
    (`Generator.schemas`): a behavior's module brings its banks' shapes with it."""

    def _all(self) -> dict[str, type[Bank]]:
        from generator import generators

        return {**generators.schemas(), **_SHIPPED}

    def __getitem__(self, name: str) -> type[Bank]:
        return self._all()[name]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


SCHEMAS: Mapping[str, type[Bank]] = _Schemas()


# --------------------------------------------------------------------------- checking


def check(name: str, data: dict[str, Any], path: Path) -> dict[str, Any]:
    """`data` as its schema reads it (defaults filled in); a bank without a schema (a
    plugin's own) as it is."""
    schema = SCHEMAS.get(name)
    if schema is None:
        return data
    try:
        return schema.model_validate(data).model_dump()
    except ValidationError as e:
        raise TemplateError(
            f"{name}: {_explain(schema, e.errors()[0])}; fix it in {path}"
        ) from None


def _explain(schema: type[Bank], error: dict[str, Any]) -> str:
    """One pydantic error as a sentence: where, what it must be, what it is."""
    loc = error["loc"]
    label, annotation, metadata = _follow(schema, loc)
    if error["type"] == "missing":
        return f"{label} is missing (it must be {_describe(annotation, metadata)})"
    if error["type"] == "extra_forbidden":
        parent = _unwrap(_follow(schema, loc[:-1])[1], [])[0]
        known = list(parent.model_fields) if _is_model(parent) else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"its fields: {', '.join(known)}"
        return f"{label} is not a field of this bank ({hint})"
    wrong_type = error["type"].endswith("_type")  # else a bound or a length
    value = error["input"]
    shown = _kind(value) if wrong_type else _short(value)
    return f"{label} must be {_describe(annotation, metadata)}, not {shown}"


def _follow(schema: type[Bank], loc: tuple) -> tuple[str, Any, list]:
    """The label, type and constraints at `loc` (field names, list indexes, table keys)."""
    label, annotation, metadata = "", schema, []
    after_index = False
    for part in loc:
        annotation, metadata = _unwrap(annotation, metadata)
        origin = typing.get_origin(annotation)
        if _is_model(annotation):
            field = annotation.model_fields.get(str(part))
            annotation, metadata = (field.annotation, list(field.metadata)) if field else (Any, [])
        elif origin is list and isinstance(part, int):
            annotation, metadata = typing.get_args(annotation)[0], []
            table = _is_model(_unwrap(annotation, [])[0])
            label += f" ({'table' if table else 'item'} {part + 1})"
            after_index = True
            continue
        elif origin is dict:
            annotation, metadata = typing.get_args(annotation)[1], []
        else:  # the member tag of a union: the union itself is what is wanted
            break
        label += (": " if after_index else "." if label else "") + str(part)
        after_index = False
    return label or "the bank", annotation, metadata


def _unwrap(annotation: Any, metadata: list) -> tuple[Any, list]:
    """`Annotated[T, Field(...)]` as T and its constraints."""
    while typing.get_origin(annotation) is Annotated:
        annotation, *more = typing.get_args(annotation)
        for item in more:
            metadata = [*metadata, *getattr(item, "metadata", [item])]
    return annotation, metadata


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


_NOUNS = {
    str: ("string", "strings"),
    int: ("whole number", "whole numbers"),
    float: ("number", "numbers"),
    bool: ("true/false value", "true/false values"),
}
_BOUNDS = {"gt": "above {:g}", "ge": "of {:g} or more", "lt": "below {:g}", "le": "of {:g} or less"}


def _describe(annotation: Any, metadata: list, plural: bool = False) -> str:
    """What a value of `annotation` is, in words: "a non-empty list of strings"."""
    annotation, metadata = _unwrap(annotation, metadata)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        members = [m for m in args if not (m is int and float in args)]  # a number is either
        words = [_describe(m, [], plural) for m in members]
        return ", ".join(words[:-1]) + " or " + words[-1]
    if origin is list:
        inner = _describe(args[0], [], plural=True)
        one, many = f"list of {inner}", f"lists of {inner}"
    elif origin is dict:
        inner = _describe(args[1], [], plural=True)
        one, many = f"table of {inner}", f"tables of {inner}"
    elif _is_model(annotation):
        one, many = "table", "tables"
    else:
        one, many = _NOUNS.get(annotation, ("value", "values"))
    if any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in metadata):
        one, many = f"non-empty {one}", f"non-empty {many}"
    text = many if plural else f"a {one}"
    bound = {a: getattr(m, a) for m in metadata for a in _BOUNDS if getattr(m, a, None) is not None}
    if "ge" in bound and "le" in bound:
        return f"{text} from {bound['ge']:g} to {bound['le']:g}"
    words = [_BOUNDS[a].format(bound[a]) for a in _BOUNDS if a in bound]
    return " ".join([text, *words[:1], *(f"and {w}" for w in words[1:])])


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    for kind, name in (
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a table"),
        (datetime.date | datetime.time, "a date or time"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
