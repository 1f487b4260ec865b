"""Selection: per seed and output slot, keep the best valid candidate; pairs stay whole.

A unit is one example, or a refusal with its contrast (same `pair_id`): units are
validated, compared and kept or dropped together, so refusal:contrast stays exactly 1:1.
With fit scores, a unit with a row less natural than `cutoff` (an NLL drawn from the seeds'
own responses, see `Reference.cutoff`) is dropped, and the best remaining unit is
the most natural to the base model (lowest mean NLL, GRAPE's rule); without a scorer it
is the first valid one, deterministically. Units compete only within their slot, so
only within one behavior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from generator.values import Example


@dataclass(frozen=True)
class Decision:
    """One candidate's verdict: its check failures, and whether it made the dataset."""

    example: Example
    failures: tuple[str, ...]
    selected: bool
    reason: str | None = None  # why it was dropped

    def to_row(self) -> dict:
        row = self.example.to_row()
        row["slot"] = self.example.slot
        row["status"] = "selected" if self.selected else "dropped"
        row["checks"] = {"passed": not self.failures, "failures": list(self.failures)}
        row["drop_reason"] = self.reason
        return row


def _units(candidates: Sequence[tuple[Example, list[str]]]) -> dict[str, list]:
    units: dict[str, list] = {}
    for example, failures in candidates:
        units.setdefault(example.pair_id or example.id, []).append((example, failures))
    return units


def _mean_nll(unit: list) -> float | None:
    fits = [ex.fit for ex, _ in unit]
    if any(f is None for f in fits):
        return None
    return sum(f.nll for f in fits) / len(fits)


def _unnatural(example: Example, cutoff: float | None) -> bool:
    return cutoff is not None and example.fit is not None and example.fit.nll > cutoff


def select(
    candidates: Sequence[tuple[Example, list[str]]], cutoff: float | None = None
) -> list[Decision]:
    """Decide every candidate of one seed; the output order follows the input order."""
    verdict: dict[str, tuple[bool, str | None]] = {}
    slots: dict[str, list[list]] = {}
    for unit in _units(candidates).values():
        slots.setdefault(unit[0][0].slot, []).append(unit)
    for units in slots.values():
        valid, seen = [], set()
        for unit in units:
            if any(failures for _, failures in unit):
                for ex, failures in unit:
                    reason = f"failed:{failures[0]}" if failures else "pair_partner_failed"
                    verdict[ex.id] = (False, reason)
                continue
            key = tuple((ex.behavior, ex.prompt, ex.response) for ex, _ in unit)
            if key in seen:
                for ex, _ in unit:
                    verdict[ex.id] = (False, "duplicate")
                continue
            seen.add(key)
            if any(_unnatural(ex, cutoff) for ex, _ in unit):
                for ex, _ in unit:
                    unnatural = _unnatural(ex, cutoff)
                    verdict[ex.id] = (False, "unnatural" if unnatural else "pair_partner_unnatural")
                continue
            valid.append(unit)
        scored = [u for u in valid if _mean_nll(u) is not None]
        best = (
            min(scored, key=_mean_nll)
            if len(scored) == len(valid) and scored
            else (valid[0] if valid else None)
        )
        for unit in valid:
            for ex, _ in unit:
                verdict[ex.id] = (True, None) if unit is best else (False, "not_best")
    return [Decision(ex, tuple(failures), *verdict[ex.id]) for ex, failures in candidates]
