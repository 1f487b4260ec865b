"""`hedgerow report`: one run folder summarized for the terminal and as a single HTML page.

Rows are streamed and only what the page shows is kept: fit values and lengths, hashed
n-grams for diversity, opening counts and a few reservoir-sampled rows. Plots are
matplotlib figures inlined as SVG, so `report.html` opens offline and can be sent around
as one file.
"""

from __future__ import annotations

import html
import random
import re
import shlex
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import generators, outputs
from generator.calibration import Gather, Reliability, terminal_line
from generator.calibration import section as knowledge_section
from generator.manifest import tally
from generator.plots import draw
from generator.plots import order as _order
from generator.runfolder import CANDIDATES, Run

SAMPLES = 3
TOP_OPENINGS = 3
_WORD = re.compile(r"\w+(?:['’]\w+)*")


def _words(text: str) -> list[str]:
    """Lowercased word tokens (the unit of lengths, n-grams and openings)."""
    return _WORD.findall(text.lower())


class _Diversity:
    """Distinct 1-, 2- and 3-grams and opening words of texts added one at a time."""

    def __init__(self, opening_words: int = 2):
        # 64-bit hashes in flat arrays, deduplicated once at the end: an eighth of the
        # memory a set of a large run's 3-grams would take.
        self.grams = [array("q"), array("q"), array("q")]
        self.opening_words = opening_words
        self.openings: Counter[str] = Counter()

    def add(self, tokens: list[str]) -> None:
        for n, grams in enumerate(self.grams, 1):
            grams.extend(hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1))
        if tokens:
            self.openings[" ".join(tokens[: self.opening_words])] += 1

    def distinct(self, n: int) -> float:
        import numpy as np

        grams = self.grams[n - 1]
        return len(np.unique(np.frombuffer(grams, dtype=np.int64))) / len(grams) if grams else 0.0

    def top(self, k: int | None = None) -> list[tuple[str, float]]:
        texts = sum(self.openings.values())
        ranked = sorted(self.openings.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [(opening, count / texts) for opening, count in ranked]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the texts' lowercased words (0.0 when none)."""
    if n not in (1, 2, 3):
        raise ValueError("n must be 1, 2 or 3")
    d = _Diversity()
    for text in texts:
        d.add(_words(text))
    return d.distinct(n)


def openings(texts: Iterable[str], words: int = 2) -> list[tuple[str, float]]:
    """The texts' first `words` words, most common first, each with its share of the texts."""
    d = _Diversity(words)
    for text in texts:
        d.add(_words(text))
    return d.top()


@dataclass(frozen=True)
class BehaviorSummary:
    name: str
    candidates: int
    selected: int
    dropped: int
    mean_nll_candidates: float | None
    mean_nll_selected: float | None
    distinct: tuple[float, float, float]
    openings: tuple[tuple[str, float], ...]  # the most common, with their shares


@dataclass(frozen=True)
class Report:
    path: Path  # the HTML page written
    run: Path
    status: str
    seeds_done: int
    seeds_total: int | None
    scored: bool
    behaviors: tuple[BehaviorSummary, ...]
    dropped: dict[str, int]
    skipped: dict[str, int]
    failed: dict[str, int]
    reliability: Reliability  # stated confidence against the probe's measurement


class _Behavior:
    """What the page needs of one behavior, gathered while streaming."""

    def __init__(self, name: str):
        self.nll_candidates = array("d")
        self.nll_selected = array("d")
        self.lengths = array("l")
        self.diversity = _Diversity()
        self.samples: list[tuple[int, dict]] = []
        self.seen = 0
        self.rng = random.Random(f"report:{name}")  # the same run gives the same page

    def sample(self, index: int, row: dict) -> None:
        """Reservoir sampling: every selected row is equally likely to be shown."""
        self.seen += 1
        if len(self.samples) < SAMPLES:
            self.samples.append((index, row))
        elif (j := self.rng.randrange(self.seen)) < SAMPLES:
            self.samples[j] = (index, row)


def _nll(row: dict) -> float | None:
    fit = row.get("fit")
    return fit.get("nll") if isinstance(fit, dict) else None


def _turn(row: dict, role: str) -> str:
    texts = [m.get("content") or "" for m in row.get("messages") or [] if m.get("role") == role]
    return texts[-1] if texts else ""


def _brief(row: dict) -> dict:
    return {
        "seed_id": row.get("seed_id"),
        "pair_id": row.get("pair_id"),
        "prompt": _turn(row, "user"),
        "response": _turn(row, "assistant"),
        "attributes": row.get("attributes") or {},
        "knowledge": row.get("knowledge") if isinstance(row.get("knowledge"), dict) else None,
        "nll": _nll(row),
    }


def _collect(run: Run) -> dict[str, Any]:
    per: dict[str, _Behavior] = {}

    def behavior(name: str) -> _Behavior:
        return per.setdefault(name, _Behavior(name))

    def candidates():
        for row in run.rows(CANDIDATES):
            if row.get("status") not in ("skipped", "failed") and (nll := _nll(row)) is not None:
                behavior(row["behavior"]).nll_candidates.append(nll)
            yield row

    counts = tally(candidates())
    # partner behavior -> its owner (a contrast -> refusal), from the installed behaviors
    partner_of = {cls.partner: cls.name for cls in generators.registry().values() if cls.partner}
    hedges: Counter[tuple[float, str]] = Counter()
    refusals: Counter[str] = Counter()
    reliability = Gather()
    for index, row in enumerate(run.rows()):
        b, attrs = behavior(row["behavior"]), row.get("attributes") or {}
        reliability.add(row)
        if (nll := _nll(row)) is not None:
            b.nll_selected.append(nll)
        tokens = _words(_turn(row, "assistant"))
        b.lengths.append(len(tokens))
        b.diversity.add(tokens)
        if row["behavior"] not in partner_of:  # a partner is shown beside its owner's row
            b.sample(index, _brief(row))
        if row["behavior"] == "hedge":
            stated = attrs.get("confidence")
            stated = stated if isinstance(stated, int | float) else -1.0  # -1: states none
            hedges[(stated, str(attrs.get("level", "?")))] += 1
        elif row["behavior"] == "refusal":
            kind = str(attrs.get("kind", "?"))
            refusals[f"{kind} ({attrs['entity_kind']})" if attrs.get("entity_kind") else kind] += 1
    sampled = [s for owner in partner_of.values() if owner in per for s in per[owner].samples]
    partners = {s["pair_id"] for _, s in sampled if s["pair_id"]}
    contrasts = {}
    if partners:  # a second pass over the selected rows, only for the few sampled pairs
        for row in run.rows():
            if row["behavior"] in partner_of and row.get("pair_id") in partners:
                contrasts.setdefault(row["pair_id"], {**_brief(row), "behavior": row["behavior"]})
    return {
        "counts": counts,
        "per": per,
        "hedges": hedges,
        "refusals": refusals,
        "contrasts": contrasts,
        "reliability": reliability.result(run.manifest, run.path),
        "reference": list((run.reference or {}).get("nll") or []),
        "cutoff": (run.manifest.get("scorer") or {}).get("cutoff_nll"),
        "scorer": (run.manifest.get("config") or {}).get("scorer"),
    }


def _mean(values: array) -> float | None:
    return sum(values) / len(values) if values else None


def _summaries(data: dict[str, Any]) -> tuple[BehaviorSummary, ...]:
    counts, per = data["counts"], data["per"]
    names = _order([*counts["candidates"], *per])
    out = []
    for name in names:
        b = per.get(name) or _Behavior(name)
        cands, sel = counts["candidates"].get(name, 0), counts["selected"].get(name, 0)
        out.append(
            BehaviorSummary(
                name=name,
                candidates=cands,
                selected=sel,
                dropped=cands - sel,
                mean_nll_candidates=_mean(b.nll_candidates),
                mean_nll_selected=_mean(b.nll_selected),
                distinct=(
                    b.diversity.distinct(1),
                    b.diversity.distinct(2),
                    b.diversity.distinct(3),
                ),
                openings=tuple(b.diversity.top(TOP_OPENINGS)),
            )
        )
    return tuple(out)


def write_report(path: Path | str, out: Path | str | None = None) -> Report:
    """Read the run folder at `path` and write its report page (default: inside it)."""
    run = Run(path)
    own = run.path / "report.html"
    target = outputs.check_target(_target(run.path, out), owned=[own])  # before the work
    data = _collect(run)
    behaviors = _summaries(data)
    seeds = run.manifest.get("seeds") or {}
    report = Report(
        path=target,
        run=run.path,
        status=run.status,
        seeds_done=seeds.get("done", run.done),
        seeds_total=seeds.get("total"),
        scored=any(b.nll_candidates or b.nll_selected for b in data["per"].values()),
        behaviors=behaviors,
        dropped=dict(data["counts"]["dropped"].most_common()),
        skipped=dict(data["counts"]["skipped"].most_common()),
        failed=dict(data["counts"]["failed"].most_common()),
        reliability=data["reliability"],
    )
    page = _page(run, report, data, draw(report, data))
    outputs.write(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return report


def _target(run: Path, out: Path | str | None) -> Path:
    if out is None:
        return run / "report.html"
    out = Path(out)
    return out / "report.html" if out.is_dir() else out


def summary(report: Report):
    """The terminal summary: the run's path and status, a rich table per behavior and a line
    of drop reasons. Print it with `soft_wrap=True`: a path is never broken across lines."""
    from rich.box import SIMPLE_HEAD
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def nll(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    # Two-line headers and no vertical rules: the table fits an 80-column terminal.
    table = Table(
        box=SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    table.add_column("behavior", no_wrap=True)
    for header in ("candidates", "selected", "dropped", "NLL\ncand.", "NLL\nsel.", "distinct-2"):
        table.add_column(header, justify="right")
    table.add_column("top\nopening", justify="right")
    for b in report.behaviors:
        table.add_row(
            b.name,
            str(b.candidates),
            str(b.selected),
            str(b.dropped),
            nll(b.mean_nll_candidates),
            nll(b.mean_nll_selected),
            f"{b.distinct[1]:.2f}",
            f"{b.openings[0][1]:.0%}" if b.openings else "—",
        )
    heading = Text(f"{report.run} ({report.status})")
    lines = [Text(f"dropped: {_listed(report.dropped) or 'none'}")]
    if report.skipped:
        lines.append(Text(f"seeds skipped: {_listed(report.skipped)}"))
    if report.failed:
        lines.append(Text(f"failed: {_listed(report.failed)}"))
    if knowledge := terminal_line(report.reliability):
        lines.append(Text(knowledge))
    return Group(heading, table, *lines)


# --- page ----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#1d2330}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .5em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:0}
dt{color:#5b6475}dd{margin:0}code{font-size:.92em}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.25em .7em;text-align:right;
border-bottom:1px solid #e3e6eb}td:first-child,th:first-child,.text{text-align:left}
td.text{min-width:18em}
.plots{display:grid;align-items:start;gap:1.2em;
grid-template-columns:repeat(auto-fit,minmax(480px,1fr))}
figure.plot{margin:0;border:1px solid #e3e6eb;border-radius:6px;padding:.6em}
figure.plot svg{width:100%;height:auto}#plot-fit{grid-column:1/-1}
figcaption{color:#5b6475;font-size:.9em}
p.note{color:#5b6475;font-style:italic}
.sample{border-left:3px solid #2a6fdb;margin:.8em 0;padding:.2em .8em}
.sample .meta{color:#5b6475;font-size:.85em}.partner{border-left-color:#a9b3c1}
.turn{white-space:pre-wrap;margin:.2em 0}.role{font-weight:600;color:#5b6475}
mark.slip{background:#ffd6d6}mark.recovery{background:#d9f2dc}
"""


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(run: Run, report: Report, data: dict[str, Any], plots: dict) -> str:
    m = run.manifest
    command = shlex.join(str(c) for c in m["command"]) if m.get("command") else "unknown"
    scorer = m.get("scorer") or {}
    total = report.seeds_total if report.seeds_total is not None else "?"
    facts = [
        ("run", f"<code>{_e(report.run)}</code>"),
        ("status", _e(report.status)),
        ("seeds", f"{report.seeds_done} of {total} done"),
        ("command", f"<code>{_e(command)}</code>"),
        ("scorer", _e(scorer.get("model") or scorer.get("scorer") or "none")),
    ]
    if report.skipped:
        facts.append(("seeds skipped", _e(_listed(report.skipped))))
    if report.failed:
        facts.append(("failed", _e(_listed(report.failed))))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hedgerow report: {_e(report.run.name)}</title><style>{_CSS}</style></head>",
        f"<body><header><h1>hedgerow report: {_e(report.run.name)}</h1><dl>",
        *(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts),
        "</dl></header>",
        '<h2>Rows and diversity</h2><table id="summary"><thead><tr><th>behavior</th>'
        "<th>candidates</th><th>selected</th><th>dropped</th><th>mean NLL cand.</th>"
        "<th>mean NLL sel.</th><th>distinct-1</th><th>distinct-2</th><th>distinct-3</th>"
        '<th>top opening share</th><th class="text">top openings</th></tr></thead><tbody>',
    ]
    for b in report.behaviors:
        nll = [
            "—" if v is None else f"{v:.3f}" for v in (b.mean_nll_candidates, b.mean_nll_selected)
        ]
        tops = ", ".join(f"“{_e(o)}” {s:.0%}" for o, s in b.openings) or "—"
        parts.append(
            f'<tr id="summary-{_e(b.name)}"><td>{_e(b.name)}</td><td>{b.candidates}</td>'
            f"<td>{b.selected}</td><td>{b.dropped}</td><td>{nll[0]}</td><td>{nll[1]}</td>"
            + "".join(f"<td>{d:.3f}</td>" for d in b.distinct)
            + (f"<td>{b.openings[0][1]:.0%}</td>" if b.openings else "<td>—</td>")
        )
        parts.append(f'<td class="text">{tops}</td></tr>')
    parts.append(
        '</tbody></table><p class="note">distinct-n: distinct n-grams / all n-grams over '
        "the selected responses (lowercased words); openings: their first two words.</p>"
    )
    parts.append(knowledge_section(report.reliability))
    parts.append('<h2>Plots</h2><div class="plots">')
    for name, (svg, caption) in plots.items():
        if svg is None:
            parts.append(f'<p class="note" id="no-plot-{name}">{_e(caption)}</p>')
        else:
            parts.append(
                f'<figure id="plot-{name}" class="plot">{svg}'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
    parts.append("</div><h2>Samples</h2>")
    per = data["per"]
    for name in _order(per):
        if not per[name].samples:
            continue
        parts.append(f"<h3>{_e(name)}</h3>")
        for _, s in sorted(per[name].samples, key=lambda pair: pair[0]):
            parts.append(_sample(name, s))
            if (partner := data["contrasts"].get(s["pair_id"])) is not None:
                parts.append(_sample(partner["behavior"], partner, "partner"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _sample(behavior: str, s: dict, extra: str = "") -> str:
    meta = [f"seed {s['seed_id']}"]
    made_by = generators.owner(behavior)  # None: a behavior no installed generator makes
    note = made_by.sample_note({**s, "behavior": behavior}) if made_by is not None else None
    if note:
        meta.append(note)
    if (k := s["knowledge"]) is not None:  # what the probe measured on the question asked
        meta.append(f"{k.get('category')}, p_correct {k.get('p_correct')}")
    if s["nll"] is not None:
        meta.append(f"NLL {s['nll']:.3f}")
    marked = made_by.spans if made_by is not None else ()
    response = _marked(s["response"], s["attributes"], marked) if marked else _e(s["response"])
    return (
        f'<div class="sample {extra}"><div class="meta">{_e(" · ".join(meta))}</div>'
        f'<div class="turn"><span class="role">user</span> {_e(s["prompt"])}</div>'
        f'<div class="turn"><span class="role">assistant</span> {response}</div></div>'
    )


def _marked(text: str, attributes: dict, names: tuple[str, ...]) -> str:
    """The response with its marked parts (a near-miss's slip and recovery) highlighted,
    when the spans are sound."""
    spans = []
    for cls in names:
        span = attributes.get(cls) or {}
        start, end = span.get("start"), span.get("end")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
            spans.append((start, end, cls))
    out, at = [], 0
    for start, end, cls in sorted(spans):
        if start < at:
            continue  # overlapping spans: keep the first
        out += [_e(text[at:start]), f'<mark class="{cls}">{_e(text[start:end])}</mark>']
        at = end
    return "".join(out) + _e(text[at:])


__all__ = ["Report", "BehaviorSummary", "distinct_n", "openings", "summary", "write_report"]
