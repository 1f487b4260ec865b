"""What an answer says, compared by string and number: its final answer, its names, and
whether a rewrite of it keeps its content. Shared by the behaviors' checks and their
generators (a near-miss is built around its reference's final answer)."""

from __future__ import annotations

import re

_FINAL_MARK = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"\w{4,}")
_CAPITALISED = re.compile(r"\b[A-Z][\w'-]+")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|per ?cent\b)", re.I)


def normalize(text: str) -> str:
    """Whitespace folded, for 'contains verbatim' comparisons that survive reflowing."""
    return " ".join(text.split())


def percents(text: str) -> set[int]:
    """The whole percentages a text states ("90%", "90 per cent")."""
    return {round(float(n)) for n in _PERCENT.findall(text)}


def words(text: str) -> set[str]:
    """Content words: four letters or more, lower-cased."""
    return set(_WORD.findall(text.lower()))


def names(text: str, common: frozenset[str] = frozenset()) -> set[str]:
    """Capitalised words that are not just sentence openers: never written lower-case in
    `text` and not in `common` (the/this/however...)."""
    lower = set(re.findall(r"\b[a-z][\w'-]*", text))
    return {
        w for w in _CAPITALISED.findall(text) if w.lower() not in lower and w.lower() not in common
    }


def keeps_final(reference: str, response: str) -> bool:
    """The response states the reference's final answer (its '#### N' or last number),
    as a number of its own; true when the reference has none."""
    final = final_answer(reference)
    if not final:
        return True
    kept = re.compile(rf"(?<![\d.]){re.escape(final)}(?!\d|\.\d)")
    return bool(kept.search(response.replace(",", "")))


def keeps_content(
    reference: str, response: str, min_overlap: float, common: frozenset[str] = frozenset()
) -> bool:
    """The response says what the reference says: verbatim, or its final answer, its names
    and at least `min_overlap` of its content words (a model rewords; it must not change
    facts)."""
    reference = normalize(reference)
    if reference in normalize(response):
        return True
    if not keeps_final(reference, response):
        return False
    if any(name not in response for name in names(reference, common)):
        return False
    ref_words = words(reference)
    return bool(ref_words) and len(ref_words & words(response)) / len(ref_words) >= min_overlap


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
