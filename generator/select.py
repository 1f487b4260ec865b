"""Selection: per seed and output slot, keep the best valid candidate; pairs stay whole.

A unit is one example, or a refusal with its contrast (same `pair_id`): units are
validated, compared and kept or dropped together, so refusal:contrast stays exactly 1:1.
With fit scores, a unit with a row less natural than `cutoff` (an NLL drawn from the seeds'
own responses, see `Reference.cutoff`) is dropped, and the best remaining unit is
the most natural to the base model (lowest mean NLL, GRAPE's rule); without a scorer it
is the first valid one, deterministically. A unit whose score failed is dropped
(`fit_failed`): it cannot be ranked. Units compete only within their slot, so
only within one behavior. Across seeds, `NearDuplicates` then drops a unit that nearly
repeats one already kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from generator.values import REQUEST_FAILED, Example, Seed, Skip


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
    fit = example.fit
    return cutoff is not None and fit is not None and fit.nll is not None and fit.nll > cutoff


def _unscored(example: Example) -> bool:
    return example.fit is not None and example.fit.error is not None


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
            if any(_unscored(ex) for ex, _ in unit):  # the fit says why (a NaN score, …)
                for ex, _ in unit:
                    verdict[ex.id] = (
                        False,
                        "fit_failed" if _unscored(ex) else "pair_partner_fit_failed",
                    )
                continue
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


def fallback(generator, seed: Seed, reference: str | None, verdicts: list) -> Decision | None:
    """The generator's own row (`Generator.fallback`) for a seed it gave candidates, or
    unusable replies, none of which made the dataset; none while a request failed (the
    same command asks it again) or when the generator skipped the seed outright."""
    if not verdicts or any(isinstance(v, Decision) and v.selected for v in verdicts):
        return None
    if any(isinstance(v, Skip) and v.reason == REQUEST_FAILED for v in verdicts):
        return None
    if all(isinstance(v, Skip) and v.status == "skipped" for v in verdicts):
        return None
    example = generator.fallback(seed, reference, verdicts)
    return Decision(example, (), True) if example is not None else None


_WORD = re.compile(r"\w+")
_PERMUTATIONS = 64  # MinHash size: Jaccard estimated to about ±0.05 near the threshold


def _band(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=8).digest()  # 8 bytes per band, not 120


def _borrowed(row: dict) -> str | None:
    """For the answered half of an "I don't know" pair: the known seed whose question and
    answer it borrows (and whose own contrast it repeats by design)."""
    return (row.get("attributes") or {}).get("contrast_seed_id")


class NearDuplicates:
    """Drops a selected unit whose prompt *and* response both nearly match (estimated
    Jaccard similarity of word 3-grams at least `threshold`) those of an earlier kept row
    of the same behavior from another seed.

    MinHash and LSH come from datasketch. Rows of one seed never count against each other
    (its rows may share their answer by design), and templated responses to
    different questions are not duplicates: both halves must match. Units are judged in
    output order, so the result does not depend on which request came back first; a
    resumed run first re-reads the rows it already kept (`keep`). Memory: about 2 KB per
    kept row.
    """

    def __init__(self, threshold: float):
        from datasketch import MinHashLSH

        self.threshold = threshold
        self._lsh: dict[str, MinHashLSH] = {}
        # key -> (prompt signature, response signature, seed id, the seed it borrows from)
        self._kept: dict[int, tuple] = {}
        self._blank = None

    def _signature(self, text: str):
        from datasketch import MinHash

        words = _WORD.findall(text.lower())
        grams = {" ".join(words[i : i + 3]).encode() for i in range(max(1, len(words) - 2))}
        if self._blank is None:  # drawing the permutations is most of a MinHash's cost
            self._blank = MinHash(num_perm=_PERMUTATIONS, seed=1)
        signature = MinHash(
            num_perm=_PERMUTATIONS,
            permutations=self._blank.permutations,
            scheme=self._blank.scheme,
        )
        signature.update_batch(list(grams))
        return signature

    def _index(self, behavior: str):
        from datasketch import MinHashLSH

        if behavior not in self._lsh:
            self._lsh[behavior] = MinHashLSH(
                threshold=self.threshold, num_perm=_PERMUTATIONS, hashfunc=_band
            )
        return self._lsh[behavior]

    def _match(self, row: dict, prompt, response) -> bool:
        seed, borrowed = row["seed_id"], _borrowed(row)
        for key in self._index(row["behavior"]).query(prompt):
            p, r, kept_seed, kept_borrowed = self._kept[key]
            if borrowed == kept_seed or (kept_borrowed and kept_borrowed == seed):
                continue  # a borrowed contrast and the seed it comes from
            if (p == prompt.hashvalues).mean() >= self.threshold and (
                r == response.hashvalues
            ).mean() >= self.threshold:
                return True
        return False

    def _insert(self, row: dict, prompt, response) -> None:
        key = len(self._kept)
        self._kept[key] = (prompt.hashvalues, response.hashvalues, row["seed_id"], _borrowed(row))
        self._index(row["behavior"]).insert(key, prompt, check_duplication=False)

    def _signatures(self, row: dict, prompts: dict):
        """The row's prompt and response signatures (`prompts` caches the prompts signed
        so far: a seed's rows mostly share theirs)."""
        turns = row["messages"]
        prompt = turns[0]["content"]
        if prompt not in prompts:
            prompts[prompt] = self._signature(prompt)
        return prompts[prompt], self._signature(turns[-1]["content"])

    def keep(self, rows) -> None:
        """Rows kept earlier (a resumed run's dataset): later rows are compared with them."""
        for row in rows:
            self._insert(row, *self._signatures(row, {}))

    def filter(self, dataset_rows: list[dict], candidate_rows: list[dict]) -> list[dict]:
        """One seed's selected rows minus near-duplicate units; their candidate rows are
        marked dropped in place (reason `near_duplicate`, or `pair_partner_near_duplicate`)."""
        units: dict[str, list[dict]] = {}
        for row in dataset_rows:
            units.setdefault(row["pair_id"] or row["id"], []).append(row)
        dropped: dict[str, str] = {}
        prompts: dict = {}
        kept = []  # indexed after the whole seed: its own rows never count against each other
        for unit in units.values():
            signed = [(row, *self._signatures(row, prompts)) for row in unit]
            matches = {row["id"] for row, p, r in signed if self._match(row, p, r)}
            if matches:
                for row in unit:
                    dropped[row["id"]] = (
                        "near_duplicate" if row["id"] in matches else "pair_partner_near_duplicate"
                    )
                continue
            kept.extend(signed)
        for row, p, r in kept:
            self._insert(row, p, r)
        for row in candidate_rows:
            if row.get("id") in dropped:
                row["status"] = "dropped"
                row["drop_reason"] = dropped[row["id"]]
        return [row for row in dataset_rows if row["id"] not in dropped]
