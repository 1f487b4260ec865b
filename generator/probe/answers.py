"""What a probed answer is checked against, and the check: string and number matching a
reader can audit, no model judge.

A reference is checkable when it is

- a final number (`#### 252`, "the answer is 252"): an answer is right when the last
  number it states is equal;
- a short answer (a name, a number, a few words): right when the answer contains it,
  after accents, articles, punctuation and case are folded;
- one sentence whose words beyond the question's form one short run ("The capital of
  Portugal is Lisbon." asked "What is the capital of Portugal?" gives "Lisbon"): matched
  like a short answer.

Anything else (an essay, a list, a rewrite, a poem) is long-form and not checkable.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from generator.templates import Prompts

BANK = "probe/probe.toml"

_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_THE_ANSWER = re.compile(r"\bthe (?:final )?answer is:?\s*\$?\s*(-?[\d,]*\.?\d+)", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_WORD = re.compile(r"\d[\d,]*(?:\.\d+)?|[\w'’-]+")
_CLAUSE = re.compile(r"[,;:()]|\.(?:\s|$)|\s[-–—]\s")


def load_bank(prompts: Prompts):
    """The probe's bank (`banks.ProbeBank`), checked when it loads."""
    from generator.banks import ProbeBank

    return ProbeBank.model_validate(prompts.bank(BANK))


@dataclass(frozen=True)
class Expected:
    """What a right answer must say: a number, or a short text span."""

    kind: str  # "number" | "span"
    text: str  # as the frame shows it to the model in an exemplar
    number: float | None = None


def fold(text: str, articles: frozenset[str] = frozenset()) -> str:
    """Lower case, no accents, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    words = re.findall(r"[^\W_]+", text.replace("'", "").replace("’", ""))
    return " ".join(w for w in words if w not in articles)


def _stem(word: str) -> str:
    w = fold(word)
    for suffix in ("ing", "ed", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


class Answers:
    """The expected answer of a seed, and whether a sampled answer is right."""

    def __init__(self, prompts: Prompts):
        self.bank = load_bank(prompts)
        self.articles = frozenset(fold(w) for w in self.bank.articles)
        self.stop = frozenset(fold(w) for w in self.bank.stopwords)
        self.not_answers = frozenset(fold(w) for w in self.bank.not_answers)
        self.make_up = tuple(fold(w) for w in self.bank.make_up_starts)
        self.lookups = tuple(fold(w) for w in self.bank.question_starts)
        self.several = frozenset(fold(w) for w in self.bank.several_words)

    def expected(self, question: str, reference: str | None) -> Expected | str:
        """The expected answer, or the reason the reference cannot be checked."""
        if not reference or not reference.strip():
            return "no_reference"
        final = _FINAL.findall(reference) or _THE_ANSWER.findall(reference)
        if final and (number := to_number(final[-1])) is not None:
            return Expected("number", final[-1].replace(",", ""), number)
        if self.makes_up(question):
            return "not_knowledge"
        if set(fold(question).split()) & self.several:
            return "many_answers"
        text = reference.strip()
        if "\n" in text:
            return "long_form"
        words = _WORD.findall(text)
        if not words:
            return "long_form"
        if len(words) <= self.bank.short_answer_words:
            short = text.rstrip(".!").strip()
            if fold(short, self.articles) in self.not_answers or not fold(short, self.articles):
                return "not_a_fact"
            if re.fullmatch(r"\$?\s*" + _NUMBER.pattern, short):
                number = short.lstrip("$ ").replace(",", "")
                return Expected("number", number, to_number(number))
            return Expected("span", short)
        if len(words) > self.bank.sentence_words or len(re.findall(r"[.!?](?:\s|$)", text)) > 2:
            return "long_form"
        if not self.asks(question):
            return "no_short_answer"
        span = self._span(question, text)
        if not span:
            return "no_short_answer"
        if re.fullmatch(_NUMBER.pattern, span):
            return Expected("number", span.replace(",", ""), to_number(span))
        return Expected("span", span)

    def makes_up(self, question: str) -> bool:
        """A prompt that asks for something made up (a poem, a rewrite): no fact to know."""
        head = fold(question)
        return any(head == s or head.startswith(s + " ") for s in self.make_up)

    def asks(self, question: str) -> bool:
        """A prompt that asks a question, so a sentence answering it names the answer."""
        head = fold(question)
        return question.rstrip().endswith("?") or any(
            head == s or head.startswith(s + " ") for s in self.lookups
        )

    def _span(self, question: str, sentence: str) -> str | None:
        """The first run of words the sentence adds to the question, if it is short."""
        asked = {_stem(w) for w in _WORD.findall(question)}
        for clause in _CLAUSE.split(sentence):
            run: list[str] = []
            for word in _WORD.findall(clause):
                new = _stem(word) not in asked and fold(word) not in self.stop
                if new:
                    run.append(word)
                elif run:
                    break
            if run:
                return " ".join(run) if len(run) <= self.bank.span_words else None
        return None

    def correct(self, expected: Expected, answer: str) -> bool:
        """Whether `answer` (the model's text up to its first newline) is right."""
        line = answer.split("\n", 1)[0]
        if expected.kind == "number":
            numbers = _NUMBER.findall(line)
            got = to_number(numbers[-1]) if numbers else None
            return got is not None and abs(got - expected.number) <= 1e-9 * max(
                1.0, abs(expected.number)
            )
        want = fold(expected.text, self.articles)
        return bool(want) and f" {want} " in f" {fold(line, self.articles)} "
