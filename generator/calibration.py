"""The reliability picture of `hedgerow report`: what the rows state against what the
knowledge probe measured.

A hedge row states its level's confidence (`attributes.confidence`) and carries the share
of the probe's samples the model got right on its question (`attributes.p_correct`);
every row carries its question's `knowledge` (None where nothing was measured). The
selected rows are gathered while the report streams them, in bounded memory: a level's
confidence and a share of K samples take few values, so points are counted, not kept.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.plots import order
from generator.runfolder import PROBE, iter_rows
from generator.values import CATEGORIES

UNMEASURED = "unmeasured"
KINDS = (*CATEGORIES, UNMEASURED)  # a row's question: one of SliCK's categories, or none


@dataclass(frozen=True)
class Level:
    """The selected hedges stated at one level, and what was measured on their questions."""

    name: str
    stated: float
    rows: int
    mean_p: float
    mean_gap: float  # mean |stated − p_correct|


@dataclass(frozen=True)
class Reliability:
    probe: dict[str, Any] | None  # the manifest's probe block (None: nothing was probed)
    why_none: str  # why there is no probe, for the page's notes ("" when there is one)
    per_behavior: dict[str, dict[str, int]]  # selected rows by their question's category
    points: dict[tuple[float, float], int]  # (stated, p_correct) -> selected hedge rows
    levels: tuple[Level, ...]  # most confident first
    unmeasured: dict[str, int]  # selected hedges stating no number, by why
    mean_gap: float | None  # mean |stated − p_correct| over the measured hedges

    @property
    def measured(self) -> int:
        return sum(level.rows for level in self.levels)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Gather:
    """Selected rows in, a `Reliability` out."""

    def __init__(self) -> None:
        self.per_behavior: dict[str, Counter[str]] = {}
        self.points: Counter[tuple[float, float]] = Counter()
        self.levels: dict[tuple[float, str], list[float]] = {}  # rows, sum p, sum gap
        self.unmeasured: Counter[str] = Counter()

    def add(self, row: dict) -> None:
        knowledge = row.get("knowledge")
        category = knowledge.get("category") if isinstance(knowledge, dict) else None
        kind = category if category in CATEGORIES else UNMEASURED
        self.per_behavior.setdefault(row["behavior"], Counter())[kind] += 1
        if row["behavior"] != "hedge":
            return
        attrs = row.get("attributes") or {}
        stated, p = attrs.get("confidence"), attrs.get("p_correct")
        if not (_number(stated) and _number(p)):
            # a run from before the probe states a number it never measured: not probed
            self.unmeasured[str(attrs.get("unmeasured") or "not_probed")] += 1
            return
        self.points[(float(stated), float(p))] += 1
        level = self.levels.setdefault((float(stated), str(attrs.get("level", "?"))), [0, 0, 0])
        level[0] += 1
        level[1] += p
        level[2] += abs(stated - p)

    def result(self, manifest: dict[str, Any], folder: Path) -> Reliability:
        probe, why = probe_block(manifest, folder)
        levels = tuple(
            Level(name, stated, int(n), total_p / n, total_gap / n)
            for (stated, name), (n, total_p, total_gap) in sorted(self.levels.items(), reverse=True)
        )
        rows = sum(level.rows for level in levels)
        gap = sum(level.mean_gap * level.rows for level in levels) / rows if rows else None
        return Reliability(
            probe=probe,
            why_none=why,
            per_behavior={b: {k: c[k] for k in KINDS} for b, c in self.per_behavior.items()},
            points=dict(sorted(self.points.items())),
            levels=levels,
            unmeasured=dict(self.unmeasured.most_common()),
            mean_gap=gap,
        )


def probe_block(manifest: dict[str, Any], folder: Path) -> tuple[dict[str, Any] | None, str]:
    """The run's probe summary and, when it has none, why. A run killed before its
    manifest was written is counted from its probe.jsonl (its pairs are not known yet)."""
    if manifest:
        if manifest.get("probe"):
            return manifest["probe"], ""
        config = manifest.get("config") or {}
        if config.get("probe") == "none":
            return None, "it was run with --probe none"
        if "probe" not in config:
            return None, "it was made before hedgerow had a knowledge probe"
        return None, "nothing was probed"
    if not (folder / PROBE).is_file():
        return None, f"no {PROBE} in the run folder"
    categories: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    try:
        for row in iter_rows(folder / PROBE):
            if isinstance(k := row.get("knowledge"), dict):
                categories[k.get("category")] += 1
            else:
                reasons[str(row.get("reason") or "?")] += 1
    except ValueError:
        pass  # a line torn by the kill: the seeds before it are counted
    return {
        "categories": {c: categories[c] for c in CATEGORIES},
        "not_checkable": dict(sorted(reasons.items())),
        "pairs_unknown_to_known": None,
    }, ""


def listed(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def gap_text(r: Reliability) -> str:
    """ "0.048 over 9 hedges": the mean |stated − p_correct| (terminal and page)."""
    if r.mean_gap is None:
        return "no hedge states a measured confidence"
    return f"{r.mean_gap:.3f} over {r.measured} hedge{'s' * (r.measured != 1)}"


def terminal_line(r: Reliability) -> str | None:
    """The summary's knowledge line (None without a probe)."""
    if r.probe is None:
        return None
    p = r.probe
    parts = [listed(p.get("categories") or {})]
    if not_checkable := sum((p.get("not_checkable") or {}).values()):
        parts.append(f"not checkable {not_checkable}")
    return f"knowledge (seeds): {', '.join(parts)}; mean |stated − p_correct| {gap_text(r)}"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def section(r: Reliability) -> str:
    """The page's Knowledge section: the probe's summary and the tables behind the plots."""
    parts = ["<h2>Knowledge</h2>"]
    if r.probe is None:
        parts.append(
            f'<p class="note" id="no-probe">No knowledge probe: {_e(r.why_none)}, so no row '
            "states a measured confidence.</p>"
        )
    else:
        p = r.probe
        engine = ": ".join(str(p[k]) for k in ("probe", "model") if p.get(k))
        if engine and p.get("shared_with_scorer"):
            engine = f"{engine} (the scorer's model)"
        facts = []
        if engine:
            facts.append(("probe", f"{_e(engine)}"))
        if p.get("samples") is not None:
            facts.append(
                ("samples", f"{p['samples']} at temperature {p.get('temperature')}, and one greedy")
            )
        facts.append(("categories", _e(listed(p.get("categories") or {}))))
        facts.append(("not-checkable", _e(listed(p.get("not_checkable") or {}) or "none")))
        if p.get("pairs_unknown_to_known") is not None:
            facts.append(("pairs", str(p["pairs_unknown_to_known"])))
        gap = gap_text(r)
        if r.unmeasured:
            gap += f" ({sum(r.unmeasured.values())} state none: {listed(r.unmeasured)})"
        facts.append(("gap", _e(gap)))
        labels = {
            "categories": "seeds by category",
            "not-checkable": "seeds not checkable",
            "pairs": "“I don't know” pairs",
            "gap": "mean |stated − p_correct|",
        }
        parts.append('<dl id="probe">')
        parts += [f'<dt>{_e(labels.get(k, k))}</dt><dd id="probe-{k}">{v}</dd>' for k, v in facts]
        parts.append("</dl>")
    if r.levels:
        parts.append(
            '<table id="levels"><thead><tr><th>hedge level</th><th>stated</th><th>hedges</th>'
            "<th>mean p_correct</th><th>mean |stated − p_correct|</th></tr></thead><tbody>"
        )
        for level in r.levels:
            parts.append(
                f'<tr id="level-{_e(level.name)}"><td>{_e(level.name)}</td>'
                f"<td>{level.stated:.2f}</td><td>{level.rows}</td><td>{level.mean_p:.3f}</td>"
                f"<td>{level.mean_gap:.3f}</td></tr>"
            )
        parts.append("</tbody></table>")
    if any(c[k] for c in r.per_behavior.values() for k in CATEGORIES):
        parts.append(
            '<table id="knowledge"><thead><tr><th>behavior</th>'
            + "".join(f"<th>{k}</th>" for k in KINDS)
            + "</tr></thead><tbody>"
        )
        for b in order(r.per_behavior):
            counts = r.per_behavior[b]
            parts.append(
                f'<tr id="knowledge-{_e(b)}"><td>{_e(b)}</td>'
                + "".join(f"<td>{counts[k]}</td>" for k in KINDS)
                + "</tr>"
            )
        parts.append(
            '</tbody></table><p class="note">Selected rows by what the probe measured on the '
            "question each one asks (the contrast of an “I don't know” pair asks a seed the "
            "model knows); unmeasured: not checkable, or not probed.</p>"
        )
    return "\n".join(parts)
