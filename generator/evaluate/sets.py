"""The probe sets: what an eval asks, built from held-back seeds, a run folder's unused
candidates, or files a user brings.

- *unanswerable* (a decline is right): the refusal generator's fabricated-entity twin
  of each seed; a run folder's refusal candidates that were not selected (so the model
  never trained on them); SelfAware's `answerable: false` rows; XSTest's `unsafe` ones;
  any file of questions given to `--unanswerable`.
- *answerable* (a decline is an over-refusal): each twin's look-alike (the seed's own
  question), a run folder's unselected contrasts, SelfAware's answerable rows, XSTest's
  `safe` ones, any file given to `--answerable`. Those with a checkable reference
  (`probe.answers`: a final number, a short answer) are the knowledge questions.
- *recovery*: each seed's near-miss trace, cut right after its slip (export's
  `unrecovered`): the model continues it, and should notice and reach the right answer.

Every item has a group (the breakdown its figures are given by: the XSTest type, the
kind of made-up entity, ...) and an id that is a hash of what it asks.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import InputError
from generator.probe.answers import Answers, Expected
from generator.templates import Prompts
from generator.values import Seed, Skip, short_hash

UNANSWERABLE, ANSWERABLE, RECOVERY = "unanswerable", "answerable", "recovery"
# Dropped for being (nearly) a row the run kept: too close to training data to probe with.
_TRAINED = {"duplicate", "near_duplicate", "pair_partner_near_duplicate"}
_TRUE = {"true", "1", "yes", "answerable"}
_FALSE = {"false", "0", "no", "unanswerable"}


@dataclass(frozen=True)
class Item:
    """One question an eval puts to the model."""

    set: str  # unanswerable | answerable | recovery
    group: str
    question: str
    expected: tuple[Expected, ...] = ()  # any of these is a right answer
    prefix: str | None = None  # recovery: the answer so far, ending with its slip
    source: str = ""  # file:line, or run folder and candidate id
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def id(self) -> str:
        return short_hash("eval", self.set, self.question, self.prefix or "")

    @property
    def should_decline(self) -> bool:
        return self.set == UNANSWERABLE

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "set": self.set,
            "group": self.group,
            "should_decline": self.should_decline,
            "question": self.question,
            "prefix": self.prefix,
            "expected": [e.text for e in self.expected] or None,
            "source": self.source,
            "details": self.details,
        }


@dataclass
class Sets:
    """The items of one eval (in a fixed order, each question once) and what was left out."""

    items: list[Item] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # "recovery:no_worked_calculation": n
    _ids: set[str] = field(default_factory=set)

    def add(self, item: Item) -> None:
        if item.id not in self._ids:  # the same question from two seeds is asked once
            self._ids.add(item.id)
            self.items.append(item)

    def counts(self) -> dict[str, int]:
        c = Counter(i.set for i in self.items)
        knowledge = sum(1 for i in self.items if i.set == ANSWERABLE and i.expected)
        return {
            UNANSWERABLE: c[UNANSWERABLE],
            ANSWERABLE: c[ANSWERABLE],
            "knowledge": knowledge,
            RECOVERY: c[RECOVERY],
        }


def _expected(answers: Answers, question: str, references: list[str]) -> tuple[Expected, ...]:
    found = (answers.expected(question, r) for r in references)
    return tuple(e for e in found if isinstance(e, Expected))


# --------------------------------------------------------------------------- seeds


def from_seeds(sets: Sets, seeds: list[Seed], prompts: Prompts, run_seed: int) -> None:
    """Items from held-back seeds: each fabricated twin and its look-alike, each
    checkable reference, and each near-miss cut after its slip."""
    from generator import annotations, generators
    from generator.corpus import CorpusWords
    from generator.generators.near_miss import unrecovered

    refusal, near_miss = generators.get(["refusal", "near_miss"], prompts)
    answers = Answers(prompts)
    corpus = CorpusWords()  # a made-up name must occur in none of the seeds
    for seed in seeds:
        corpus.add_text(seed.prompt)
        corpus.add_text(seed.response or "")
    for seed in seeds:
        rng = random.Random(f"eval\x1f{run_seed}\x1f{seed.id}\x1frefusal")
        made = refusal.offline(seed, generators.Context(prompts, rng, corpus), 1)
        expected = _expected(answers, seed.prompt, [seed.response or ""])
        look_alike = None
        if isinstance(made, Skip):
            sets.skipped[f"{UNANSWERABLE}:{made.reason}"] += 1
        else:
            twin = next(e for e in made if e.behavior == "refusal")
            look_alike = next(e for e in made if e.behavior == "contrast")
            kind = twin.attributes.get("entity_kind") or twin.attributes.get("kind")
            sets.add(
                Item(
                    UNANSWERABLE,
                    f"made-up {kind}",
                    twin.prompt,
                    source=seed.source,
                    details={
                        "seed_id": seed.id,
                        "entity": twin.attributes.get("entity"),
                        "replaced": twin.attributes.get("replaced"),
                    },
                )
            )
        if look_alike is not None or expected:
            question = look_alike.prompt if look_alike is not None else seed.prompt
            group = "look-alike" if look_alike is not None else "seed"
            sets.add(
                Item(
                    ANSWERABLE,
                    group,
                    question,
                    expected,
                    source=seed.source,
                    details={"seed_id": seed.id},
                )
            )
        else:
            sets.skipped[f"{ANSWERABLE}:no_checkable_reference"] += 1
        rng = random.Random(f"eval\x1f{run_seed}\x1f{seed.id}\x1fnear_miss")
        traces = near_miss.offline(seed, generators.Context(prompts, rng), 1)
        if isinstance(traces, Skip):
            sets.skipped[f"{RECOVERY}:{traces.reason}"] += 1
            continue
        trace = annotations.apply(traces[0], keep=False, spans=near_miss.spans)  # as trained
        cut = unrecovered(trace.to_row())
        if not cut or not expected:
            sets.skipped[f"{RECOVERY}:no_checkable_final_answer"] += 1
            continue
        slip = trace.attributes.get("slip") or {}
        sets.add(
            Item(
                RECOVERY,
                f"slip {slip.get('kind', 'unknown')}",
                seed.prompt,
                expected,
                prefix=cut,
                source=seed.source,
                details={
                    "seed_id": seed.id,
                    "wrong": slip.get("wrong"),
                    "right": slip.get("right"),
                },
            )
        )


# --------------------------------------------------------------------------- run folders


def is_run_folder(path: Path) -> bool:
    from generator.runfolder import JOURNAL

    return path.is_dir() and (path / JOURNAL).is_file()


def from_run(sets: Sets, path: Path, prompts: Prompts, limit: int | None) -> None:
    """Items from a run folder's candidates that were not selected and passed their
    checks: refusals (fabricated, never trained on) and contrasts whose prompt no kept
    row has."""
    from generator.runfolder import CANDIDATES, Run

    run = Run(path)
    answers = Answers(prompts)
    trained = {_turn(row, 0) for row in run.rows()}
    taken = 0
    for row in run.rows(CANDIDATES):
        if limit is not None and taken >= limit:
            break
        if row.get("status") != "dropped" or row.get("drop_reason") in _TRAINED:
            continue
        if not (row.get("checks") or {}).get("passed"):
            continue
        prompt, attrs = _turn(row, 0), row.get("attributes") or {}
        where = f"{path}: candidate {row.get('id')}"
        if row["behavior"] == "refusal":
            group = f"made-up {attrs['entity_kind']}" if attrs.get("entity_kind") else None
            details = {"seed_id": row.get("seed_id"), "entity": attrs.get("entity")}
            sets.add(
                Item(
                    UNANSWERABLE,
                    group or str(attrs.get("kind") or "refusal"),
                    prompt,
                    source=where,
                    details=details,
                )
            )
        elif row["behavior"] == "contrast" and prompt not in trained:
            expected = _expected(answers, prompt, [_turn(row, -1)])
            sets.add(
                Item(
                    ANSWERABLE,
                    "look-alike",
                    prompt,
                    expected,
                    source=where,
                    details={"seed_id": row.get("seed_id")},
                )
            )
        else:
            continue
        taken += 1


def _turn(row: dict[str, Any], index: int) -> str:
    return (row.get("messages") or [{}])[index].get("content") or ""


# --------------------------------------------------------------------------- user files

SHAPES = (
    "SelfAware's question and answerable, XSTest's prompt, type and label, "
    "or a question or prompt column"
)


def _shape(columns: dict[str, str]) -> str | None:
    if {"question", "answerable"} <= columns.keys():
        return "selfaware"
    if {"prompt", "type", "label"} <= columns.keys():
        return "xstest"
    if "question" in columns or "prompt" in columns:
        return "plain"
    return None


def from_file(sets: Sets, path: Path, flag: str, prompts: Prompts, limit: int | None) -> None:
    """Items from a file a user brings: SelfAware, XSTest, or plain questions (all of the
    kind its flag names; an answer column makes them knowledge questions)."""
    from generator.shapes import _fold

    answers = Answers(prompts)
    plain = UNANSWERABLE if flag == "--unanswerable" else ANSWERABLE
    shape = None
    for n, (where, row) in enumerate(_rows(path)):
        if limit is not None and n >= limit:
            break
        folded = {_fold(k): v for k, v in row.items()}  # "Question", "ANSWERABLE" too
        if shape is None and (shape := _shape(folded)) is None:
            raise InputError(
                f"{flag} {path}: rows with columns {', '.join(map(str, row)) or '(none)'} "
                f"are not a probe set; give {SHAPES}"
            )
        sets.add(_item(shape, folded, where, plain, path.stem, answers))
    if shape is None:
        raise InputError(f"{flag} {path}: no rows; give a file of questions ({SHAPES})")


def _item(shape: str, row: dict, where: str, plain: str, stem: str, answers: Answers) -> Item:
    """One row of a probe file as an item (its columns folded to lower case)."""
    from generator.shapes import RESPONSE_COLUMNS

    if shape == "xstest":
        label = str(row.get("label") or "").strip().lower()
        if label not in ("safe", "unsafe"):
            raise InputError(f"{where}: label {row.get('label')!r} is not safe or unsafe")
        kind = UNANSWERABLE if label == "unsafe" else ANSWERABLE
        group = f"XSTest {str(row.get('type') or 'untyped').strip()}"
        return Item(kind, group, _text(row.get("prompt"), where, "prompt"), source=where)
    question = _text(row.get("question", row.get("prompt")), where, "question")
    if shape == "selfaware":
        kind, group = (
            (ANSWERABLE if _flag(row.get("answerable"), where) else UNANSWERABLE),
            "SelfAware",
        )
        references = _references(row.get("answer"))
    else:
        kind, group = plain, stem
        answer = next((c for c in RESPONSE_COLUMNS if c in row), None)
        references = _references(row.get(answer)) if answer else []
    expected = _expected(answers, question, references) if kind == ANSWERABLE else ()
    return Item(kind, group, question, expected, source=where)


def _rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a probe file; a .json object holding one list of rows (SelfAware's
    own file: {"example": [...]}) is read as that list."""
    from generator.io import load_json, records

    if path.suffix.lower() == ".json" and path.is_file() and _starts_with_brace(path):
        value = load_json(path.read_text(encoding="utf-8"), path)
        lists = [(k, v) for k, v in value.items() if isinstance(v, list)]
        if len(lists) != 1 or not all(isinstance(r, dict) for r in lists[0][1]):
            raise InputError(
                f"{path}: a JSON object, not a list of rows (nor an object holding one list "
                "of them, as SelfAware's file does); give a list of rows or JSONL"
            )
        key, rows = lists[0]
        yield from ((f"{path}: {key}[{i}]", row) for i, row in enumerate(rows))
        return
    yield from records(path)


def _starts_with_brace(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: field '{name}' is empty or not text; fill it or remove the row")
    return value.strip()


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise InputError(f"{where}: field 'answerable' is {value!r}; write true or false")


def _references(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float) and str(v).strip()]
    if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
        return [str(value)]
    return []
