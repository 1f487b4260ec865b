"""What an answer says, read with string and number matching a reader can audit (no model
judge): whether it declines, whether it is right, what confidence it states, whether it
hedges, and whether a recovery probe got back to the right final answer.

- declines and hedges: the cues of `prompts/checks.toml` (the ones the refusal and hedge
  checks use), matched anywhere in the answer;
- right: `probe.answers` (the last number for a final-number reference, containment of
  the short answer otherwise) on the answer's own words, and not a decline;
- stated confidence: `prompts/eval/confidence.toml` (see its comments); the statement
  is cut out of the answer before anything else reads it, so "Confidence: 90%" is
  neither a hedge nor the last number of an answer.

Every verdict keeps the text it was decided on (`decline_cue`, `hedge_cue`, `stated`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from generator.checks import Cues
from generator.evaluate.sets import RECOVERY, Item
from generator.probe.answers import Answers
from generator.templates import Prompts

BANK = "eval/confidence.toml"
_NUMBER = r"(?<![\d.])(\d{1,3}(?:\.\d+)?)"
_PROBABILITY = r"(?<![\d.])(0?\.\d+|[01](?:\.0+)?)(?![\d.]|\s*%)"


@dataclass(frozen=True)
class Parse:
    """An answer split into its own words and its stated confidence."""

    answer: str  # the text without its confidence statement
    confidence: float | None
    stated: str | None = None  # the words the confidence was read from
    how: str | None = None  # percent | probability | level | phrase

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "stated": self.stated, "how": self.how}


def _words(phrases) -> str:
    """An alternation of phrases, longest first, spaces matching any white space."""
    ordered = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True)
    return "|".join(r"\s+".join(map(re.escape, p.split())) for p in ordered)


class Confidence:
    """Reads a stated confidence by the table in `eval/confidence.toml`."""

    def __init__(self, prompts: Prompts):
        bank = prompts.bank(BANK)
        nouns, adjectives = _words(bank["nouns"]), _words(bank["adjectives"])
        words = _words(bank["percent_words"])
        pct = rf"{_NUMBER}\s*(?:%|(?:{words})\b)" if words else rf"{_NUMBER}\s*%"
        gap = r"[^\d\n.!?;%]{0,40}?"  # "Confidence: ", "my confidence here is high, around "
        flags = re.IGNORECASE
        self.levels = {k.lower(): v for k, v in bank["levels"].items()}
        self.phrases = {" ".join(k.lower().split()): v for k, v in bank["phrases"].items()}
        level_words = _words(self.levels)
        self.statements = [
            ("percent", re.compile(rf"\b(?:{nouns})\b{gap}{pct}", flags)),
            ("percent", re.compile(rf"{pct}\s+(?:\w+\s+)?(?:{adjectives}|{nouns})\b", flags)),
            ("probability", re.compile(rf"\b(?:{nouns})\b{gap}{_PROBABILITY}", flags)),
        ]
        if level_words:
            self.statements.append(
                ("level", re.compile(rf"\b(?:{nouns})\b{gap}({level_words})\b", flags))
            )
        phrase_words = _words(self.phrases).replace("'", "['’]")
        self.phrase = re.compile(rf"\b({phrase_words})\b", flags) if phrase_words else None

    def parse(self, text: str) -> Parse:
        """The last confidence statement in `text`, else its first confidence phrase."""
        found = []
        for how, pattern in self.statements:
            for m in pattern.finditer(text):
                value = self._value(how, m.group(1))
                if value is not None:
                    found.append((m.end(), m.start(), how, value, m))
        if found:
            *_, how, value, m = max(found, key=lambda f: (f[0], -f[1]))
            answer = _cut(text, m.start(), m.end())
            return Parse(answer, value, m.group(0).strip(), how)
        if self.phrase is not None and (m := self.phrase.search(text)):
            said = " ".join(m.group(1).lower().replace("’", "'").split())
            return Parse(text.strip(), self.phrases[said], m.group(0), "phrase")
        return Parse(text.strip(), None)

    def _value(self, how: str, said: str) -> float | None:
        if how == "level":
            return self.levels.get(" ".join(said.lower().split()))
        number = float(said)
        if how == "percent":
            number /= 100
        return number if 0 <= number <= 1 else None


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def _cut(text: str, start: int, end: int) -> str:
    """`text` without the statement at [start, end): its whole sentence when one comes
    before it ("Lisbon. I'm about 90% sure of this."), else only the statement and the
    brackets it leaves empty ("Lisbon (confidence: 0.9)")."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, start)]
    opening = ends[-1] if ends else 0
    if text[:opening].strip():
        close = _SENTENCE_END.search(text, end)
        left, right = text[:opening], text[close.end() if close else len(text) :]
    else:
        left = re.sub(r"[\s(\[{,;:\-–—]*$", "", text[:start])
        right = re.sub(r"^[\s)\]}.,;:]*", "", text[end:])
    own_line = re.search(r"\n\s*$", left) or re.match(r"\s*\n", right)
    left, right = left.strip(), right.strip()
    return (left + (("\n" if own_line else " ") if left and right else "") + right).strip()


class Verdicts:
    """Judges answers; one per eval, built from the run's templates."""

    def __init__(self, prompts: Prompts):
        self.cues = Cues.load(prompts)
        self.answers = Answers(prompts)
        self.confidence = Confidence(prompts)

    @staticmethod
    def _cue(patterns, text: str) -> str | None:
        for pattern in patterns:
            if m := pattern.search(text):
                return m.group(0)
        return None

    def judge(self, item: Item, text: str) -> tuple[Parse, dict[str, Any]]:
        """The answer's parse and verdict (see the module docstring)."""
        if item.set == RECOVERY:
            said = " ".join(text.split())
            right = any(self.answers.correct(e, said) for e in item.expected)
            noticed = self._cue(self.cues.recovery, text)
            verdict = {"recovered": right, "noticed": noticed is not None, "recovery_cue": noticed}
            return Parse(text.strip(), None), verdict
        parse = self.confidence.parse(text)
        decline = self._cue(self.cues.decline, text)
        hedge = self._cue(self.cues.hedge, parse.answer)
        said = " ".join(parse.answer.split())  # `correct` reads one line
        matches = any(self.answers.correct(e, said) for e in item.expected)
        verdict = {
            "declined": decline is not None,
            "decline_cue": decline,
            "hedged": hedge is not None,
            "hedge_cue": hedge,
            "correct": (matches and decline is None) if item.expected else None,
            "empty": not text.strip(),
        }
        return parse, verdict
