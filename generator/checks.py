"""Validation: cheap per-behavior checks, each failure a named reason.

A check never edits an example; it returns the reasons it fails (empty when it passes).
The cues come from `prompts/checks.toml`, so a user can check another language or style.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from generator.templates import Prompts
from generator.values import Example

BANK = "checks.toml"


def normalize(text: str) -> str:
    """Whitespace folded, for 'contains verbatim' comparisons that survive reflowing."""
    return " ".join(text.split())


_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|per ?cent\b)", re.I)


def _percents(text: str) -> set[int]:
    return {round(float(n)) for n in _PERCENT.findall(text)}


@dataclass(frozen=True)
class Cues:
    """The compiled cue patterns of one run."""

    meta_talk: tuple[re.Pattern, ...]
    hedge: tuple[re.Pattern, ...]
    decline: tuple[re.Pattern, ...]
    nonexistence: tuple[re.Pattern, ...]
    recovery: tuple[re.Pattern, ...]

    @classmethod
    def load(cls, prompts: Prompts) -> Cues:
        from generator.errors import TemplateError

        compiled = {}
        for key in ("meta_talk", "hedge", "decline", "nonexistence", "recovery"):
            patterns = []
            for pattern in prompts.bank_list(BANK, key):
                try:
                    patterns.append(re.compile(pattern, re.IGNORECASE | re.MULTILINE))
                except (re.error, TypeError) as e:
                    raise TemplateError(
                        f"{prompts.path(BANK)}: {key} pattern {pattern!r}: "
                        f"{e}; fix the regular expression"
                    ) from None
            compiled[key] = tuple(patterns)
        return cls(**compiled)


def _any(patterns: tuple[re.Pattern, ...], text: str) -> bool:
    return any(p.search(text) for p in patterns)


def _spans(patterns: tuple[re.Pattern, ...], text: str) -> list[tuple[int, int]]:
    return [m.span() for p in patterns for m in p.finditer(text)]


class Checker:
    """Runs the checks of each behavior against examples."""

    def __init__(self, prompts: Prompts):
        self.prompts = prompts

    @cached_property
    def cues(self) -> Cues:
        return Cues.load(self.prompts)

    @cached_property
    def _by_behavior(self) -> dict[str, Callable[[Example, str | None], list[str]]]:
        return {
            "hedge": self.hedge,
            "refusal": self.refusal,
            "contrast": self.contrast,
            "near_miss": self.near_miss,
            "original": lambda example, reference: [],
        }

    def check(self, example: Example, reference: str | None) -> list[str]:
        """All failure reasons of `example` (empty list: it passes)."""
        failures = []
        if not example.response.strip():
            failures.append("empty_response")
        if not example.prompt.strip():
            failures.append("empty_prompt")
        if _any(self.cues.meta_talk, example.response):
            failures.append("meta_talk")
        behavior_check = self._by_behavior.get(example.behavior)
        if behavior_check is None:
            failures.append(f"unknown_behavior:{example.behavior}")
        else:
            failures.extend(behavior_check(example, reference))
        return failures

    @cached_property
    def min_overlap(self) -> float:
        value = self.prompts.bank(BANK).get("hedge_min_overlap", 0.5)
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            from generator.errors import TemplateError

            raise TemplateError(f"{self.prompts.path(BANK)}: hedge_min_overlap must be 0-1")
        return float(value)

    @cached_property
    def common_words(self) -> frozenset[str]:
        return frozenset(w.lower() for w in self.prompts.bank(BANK).get("common_words", []))

    def hedge(self, example: Example, reference: str | None) -> list[str]:
        failures = []
        if not _any(self.cues.hedge, example.response):
            failures.append("hedge_without_cue")
        common = self.common_words
        if not reference or not keeps_content(
            reference, example.response, self.min_overlap, common
        ):
            failures.append("hedge_changed_reference")
        confidence = example.attributes.get("confidence")
        # percentages the answer itself states (the reference's own) are not confidences
        stated = _percents(example.response) - _percents(reference or "")
        if confidence is None:  # nothing measured: the hedge may state no number
            if stated:
                failures.append("unmeasured_hedge_states_a_confidence")
        elif not isinstance(confidence, int | float) or not 0 < confidence < 1:
            failures.append("hedge_without_confidence")
        elif not isinstance(example.attributes.get("p_correct"), int | float):
            failures.append("hedge_confidence_not_measured")
        elif stated - {round(confidence * 100)}:
            failures.append("hedge_states_another_confidence")
        return failures

    def refusal(self, example: Example, reference: str | None) -> list[str]:
        failures = []
        if not _any(self.cues.decline, example.response):
            failures.append("refusal_does_not_decline")
        entity = example.attributes.get("entity")
        if entity and entity not in example.response:
            failures.append("refusal_not_specific")
        original = example.attributes.get("replaced")
        if original and original in example.prompt:
            failures.append("refusal_prompt_keeps_entity")
        if example.attributes.get("kind") == "unknown_to_model" and _any(
            self.cues.nonexistence, example.response
        ):
            failures.append("unknown_declined_as_nonexistent")
        return failures

    def contrast(self, example: Example, reference: str | None) -> list[str]:
        return ["contrast_declines"] if _any(self.cues.decline, example.response) else []

    def near_miss(self, example: Example, reference: str | None) -> list[str]:
        text = example.response
        slip = example.attributes.get("slip") or {}
        recovery = example.attributes.get("recovery") or {}
        try:
            s0, s1 = int(slip["start"]), int(slip["end"])
            r0, r1 = int(recovery["start"]), int(recovery["end"])
        except (KeyError, TypeError, ValueError):
            return ["near_miss_unmarked"]
        failures = []
        if text[s0:s1] != str(slip.get("wrong")) or not s1 <= r0 < r1 <= len(text):
            failures.append("near_miss_unmarked")
        else:
            said = text[r0:r1]
            if str(slip.get("right")) not in said or not _any(self.cues.recovery, said):
                failures.append("near_miss_no_recovery")
        # Exactly one marked slip: recovery cues may appear inside the recovery only.
        if any(not (r0 <= a and b <= r1) for a, b in _spans(self.cues.recovery, text)):
            failures.append("near_miss_extra_slip")
        final = example.attributes.get("final_answer")
        if not same_final_answer(str(final or ""), reference or "", text, r1):
            failures.append("near_miss_wrong_final_answer")
        return failures


_FINAL_MARK = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


_WORD = re.compile(r"\w{4,}")
_CAPITALISED = re.compile(r"\b[A-Z][\w'-]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def names(text: str, common: frozenset[str] = frozenset()) -> set[str]:
    """Capitalised words that are not just sentence openers: never written lower-case in
    `text` and not in `common` (the/this/however...)."""
    lower = set(re.findall(r"\b[a-z][\w'-]*", text))
    return {
        w for w in _CAPITALISED.findall(text) if w.lower() not in lower and w.lower() not in common
    }


def keeps_content(
    reference: str, response: str, min_overlap: float, common: frozenset[str] = frozenset()
) -> bool:
    """The response says what the reference says: verbatim, or its final answer, its names
    and at least `min_overlap` of its content words (a model rewords; it must not change
    facts)."""
    reference = normalize(reference)
    if reference in normalize(response):
        return True
    final = final_answer(reference)
    kept = re.compile(rf"(?<![\d.]){re.escape(final)}(?!\d|\.\d)") if final else None
    if kept is not None and not kept.search(response.replace(",", "")):
        return False
    if any(name not in response for name in names(reference, common)):
        return False
    words = _words(reference)
    return bool(words) and len(words & _words(response)) / len(words) >= min_overlap


def same_final_answer(final: str, reference: str, text: str, after: int) -> bool:
    """The trace ends at the reference's final answer: the same number where the
    reference has one, else the answer's words in the reference and after the recovery."""
    final = final.strip()
    if not final:
        return False
    ref = final_answer(reference)
    if ref is not None and _NUMBER.fullmatch(final.replace(",", "")):
        return final.replace(",", "") == ref and final_answer(text) == ref
    folded = normalize(final).lower().rstrip(".")
    return folded in normalize(reference).lower() and folded in normalize(text[after:]).lower()


def final_answer(text: str) -> str | None:
    """A worked answer's final answer: GSM8K's '#### N', else its last number."""
    marked = _FINAL_MARK.findall(text)
    if marked:
        return marked[-1].replace(",", "").strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None
