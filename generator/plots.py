"""The plots of `hedgerow report`: matplotlib figures, each returned as inline SVG.

Figures are built on `matplotlib.figure.Figure` directly (never pyplot's global state),
with text kept as text, fixed hash salts and no date, so the same run gives the same page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

_CANDIDATE, _SELECTED, _REFERENCE, _CUTOFF = "#a9b3c1", "#2a6fdb", "#222222", "#d62728"
# SliCK's categories from known to unknown, then the rows nothing measured
_KINDS = {
    "HighlyKnown": "#2e8b57",
    "MaybeKnown": "#9ccc8c",
    "WeaklyKnown": "#f2b266",
    "Unknown": "#d9544f",
    "unmeasured": "#d5d9df",
}


def order(names: Iterable[str]) -> list[str]:
    """Behaviors in the page's order: the registry's (each owner, then its partner),
    then any others by name."""
    from generator import generators

    known = [b for cls in generators.registry().values() for b in cls.behaviors()]
    rank = {name: i for i, name in enumerate(known)}
    return sorted(set(names), key=lambda b: (rank.get(b, len(known)), b))


def _figure(rows: float = 1.0, width: float = 6.4, height: float = 2.8):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height * rows), layout="constrained")


def _svg(fig, name: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg") :], flags=re.S)
    # Six SVGs share one page: prefix their ids so no two elements anywhere share one.
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)
    return re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', text)


def _barh(ax, labels: list[str], values: list[int], color: str) -> None:
    from matplotlib.ticker import MaxNLocator

    bars = ax.barh(labels[::-1], values[::-1], color=color)
    ax.bar_label(bars, padding=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.12)
    ax.set_xlabel("rows")


STYLE = {  # every page's plots (report.html, eval.html)
    "svg.fonttype": "none",  # text stays text: small files, selectable labels
    "font.size": 10,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}


def draw(report, data: dict[str, Any]) -> dict[str, tuple[str | None, str]]:
    """Each plot's inline SVG (None when it has no data) and its caption or note."""
    import matplotlib

    plots = {}
    with matplotlib.rc_context(STYLE):
        for name, draw in PLOTS.items():
            # A fixed salt per plot: the same run gives the same page, with unique ids.
            with matplotlib.rc_context({"svg.hashsalt": f"hedgerow-{name}"}):
                plots[name] = draw(report, data)
    return plots


def _plot_rows(report, data):
    shown = [b for b in report.behaviors if b.candidates]
    if not shown:
        return None, "No candidates yet."
    import numpy as np

    fig = _figure()
    ax = fig.subplots()
    x = np.arange(len(shown))
    for offset, label, color, values in (
        (-0.2, "candidates", _CANDIDATE, [b.candidates for b in shown]),
        (0.2, "selected", _SELECTED, [b.selected for b in shown]),
    ):
        ax.bar_label(ax.bar(x + offset, values, 0.4, label=label, color=color), padding=2)
    ax.set_xticks(x, [b.name for b in shown])
    ax.set_ylabel("rows")
    ax.margins(y=0.15)
    ax.legend()
    return _svg(fig, "rows"), "Rows per behavior: every candidate, and the ones selected."


def _plot_drops(report, data):
    if not report.dropped:
        return None, "No candidate was dropped."
    fig = _figure(height=0.8 + 0.3 * len(report.dropped))
    _barh(fig.subplots(), list(report.dropped), list(report.dropped.values()), _CANDIDATE)
    return _svg(fig, "drops"), "Why candidates were dropped."


def _plot_fit(report, data):
    if not report.scored:
        unscored = data["scorer"] == "none"
        return None, "No fit (NLL) plots: this run has no fit scores" + (
            " (it was run with --scorer none)." if unscored else " yet."
        )
    import numpy as np

    per, reference, cutoff = data["per"], data["reference"], data["cutoff"]
    shown = [n for n in order(per) if per[n].nll_candidates or per[n].nll_selected]
    values = [v for n in shown for v in per[n].nll_candidates + per[n].nll_selected]
    values += reference + ([cutoff] if cutoff is not None else [])
    lo, hi = min(values), max(values)
    # Enough bins to show a shape, few enough that a small run is not all spikes.
    most = max(len(per[n].nll_candidates) for n in shown)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, min(40, max(10, int(2 * most**0.5))) + 1)
    cols = min(len(shown), 4)
    # The page gives this plot a whole row: a fixed width keeps its text the others' size.
    fig = _figure(rows=-(-len(shown) // cols), width=12, height=2.6)
    axes = fig.subplots(-(-len(shown) // cols), cols, sharex=True, squeeze=False).ravel()
    for ax, name in zip(axes, shown, strict=False):
        b = per[name]
        for vals, label, kw in (
            (b.nll_candidates, "candidates", {"color": _CANDIDATE}),
            (b.nll_selected, "selected", {"color": _SELECTED, "alpha": 0.75}),
            (reference, "seeds' own responses", {"color": _REFERENCE, "histtype": "step"}),
        ):
            if vals:
                ax.hist(vals, bins=bins, density=True, label=label, **kw)
        if cutoff is not None:
            ax.axvline(cutoff, color=_CUTOFF, linestyle="--", label="cutoff")
        n, m = len(b.nll_candidates), len(b.nll_selected)
        ax.set_title(f"{name}\n{n} candidates, {m} selected", fontsize=10)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    for ax in axes[-cols:]:
        ax.set_xlabel("NLL (nats/token)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels))
    fig.supylabel("density")
    return _svg(fig, "fit"), (
        "Fit under the base model (NLL, nats/token; lower is more natural), each histogram "
        "scaled to area 1 so shapes compare; the seeds' own responses are the reference"
        + (f" and the dashed line the cutoff ({cutoff:.2f})." if cutoff is not None else ".")
    )


def _plot_hedge(report, data):
    hedges = data["hedges"]
    if not hedges:
        return None, "No hedges selected."
    from matplotlib.ticker import MaxNLocator

    keys = sorted(hedges, reverse=True)
    fig = _figure(height=2.4)
    ax = fig.subplots()
    labels = [f"{level}\n{'no number' if conf < 0 else f'{conf:.0%}'}" for conf, level in keys]
    bars = ax.bar(labels, [hedges[k] for k in keys], 0.6, color=_SELECTED)
    ax.bar_label(bars, padding=2)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.15)
    ax.set_ylabel("selected hedges")
    return _svg(fig, "hedge"), "Selected hedges per confidence level."


def _no_probe(r, what: str) -> str:
    return f"No {what}: this run has no knowledge probe ({r.why_none})."


def _plot_reliability(report, data):
    from generator.calibration import gap_text, listed

    r = report.reliability
    if not r.levels:
        if r.probe is None:
            return None, _no_probe(r, "reliability diagram")
        why = f" ({listed(r.unmeasured)})" if r.unmeasured else ""
        return None, f"No reliability diagram: no selected hedge states a measured confidence{why}."
    fig = _figure(height=3.0)
    each, levels = fig.subplots(1, 2, sharey=True)
    for ax, gid in ((each, "diagonal"), (levels, "diagonal-levels")):
        ax.plot([0, 1], [0, 1], ":", color=_REFERENCE, lw=1, label="stated = measured", gid=gid)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.12)  # room for the labels above a bar at 1
        ax.set_xlabel("stated confidence")
    x, y, n = [s for s, _ in r.points], [p for _, p in r.points], list(r.points.values())
    most = max(n)
    # marker area by rows: many hedges share a point (one level, a share of K samples)
    sizes = [20 + 160 * k / most for k in n]
    each.scatter(x, y, s=sizes, color=_SELECTED, alpha=0.7, zorder=3, gid="hedges")
    if len(n) <= 30:
        for xi, yi, k in zip(x, y, n, strict=True):
            each.annotate(str(k), (xi, yi), xytext=(6, -3), textcoords="offset points", fontsize=8)
    each.set_ylabel("measured p_correct")
    each.set_title(f"each hedge ({r.measured} rows)", fontsize=10)
    each.legend(loc="upper left")
    bars = levels.bar(
        [lv.stated for lv in r.levels], [lv.mean_p for lv in r.levels], 0.12, color=_SELECTED
    )
    for bar, lv in zip(bars, r.levels, strict=True):
        bar.set_gid(f"level-{lv.name}")  # ids the page's test finds the bars by
    labels = [f"{lv.mean_p:.2f}\nn={lv.rows}" for lv in r.levels]
    levels.bar_label(bars, labels=labels, padding=2, fontsize=8)
    levels.set_xticks([lv.stated for lv in r.levels], [f"{lv.stated:.0%}" for lv in r.levels])
    levels.set_title("mean per stated level", fontsize=10)
    return _svg(fig, "reliability"), (
        "Reliability: each selected hedge's stated confidence against the share of the "
        "probe's samples the model got right on its question (left; marker area and number: "
        "rows), and their mean per stated level (right). On the diagonal a hedge states what "
        f"the model knows. Mean |stated − p_correct|: {gap_text(r)}"
        + (f"; {sum(r.unmeasured.values())} state no number." if r.unmeasured else ".")
    )


def _plot_knowledge(report, data):
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    r = report.reliability
    shown = order(r.per_behavior)[::-1]
    if not any(r.per_behavior[b][k] for b in shown for k in _KINDS if k != "unmeasured"):
        if r.probe is None:
            return None, _no_probe(r, "knowledge categories")
        return None, "No knowledge categories: the probe measured no selected row's question."
    fig = _figure(height=1.2 + 0.35 * len(shown))
    ax = fig.subplots()
    left = np.zeros(len(shown))
    for kind, color in _KINDS.items():
        values = np.array([r.per_behavior[b][kind] for b in shown])
        bars = ax.barh(shown, values, left=left, color=color, label=kind)
        for bar, behavior in zip(bars, shown, strict=True):
            bar.set_gid(f"{behavior}-{kind}")
        ax.bar_label(bars, [str(v) if v else "" for v in values], label_type="center", fontsize=8)
        left += values
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("selected rows")
    fig.legend(loc="outside upper center", ncols=len(_KINDS), fontsize=8)
    return _svg(fig, "knowledge"), (
        "Selected rows per behavior by what the probe measured on their question: SliCK's "
        "categories, from HighlyKnown (the greedy answer and every sample right) to Unknown "
        "(none right); unmeasured: not checkable, or not probed."
    )


def _plot_refusal(report, data):
    refusals = data["refusals"]
    if not refusals:
        return None, "No refusals selected."
    ranked = refusals.most_common()
    fig = _figure(height=0.8 + 0.3 * len(ranked))
    _barh(fig.subplots(), [k for k, _ in ranked], [v for _, v in ranked], _SELECTED)
    return _svg(fig, "refusal"), "Selected refusals per kind (and kind of made-up entity)."


def _plot_lengths(report, data):
    per = data["per"]
    shown = [n for n in order(per) if per[n].lengths]
    if not shown:
        return None, "No rows selected yet."
    fig = _figure(height=0.9 + 0.45 * len(shown))
    ax = fig.subplots()
    ax.boxplot(
        [per[n].lengths for n in shown[::-1]],
        orientation="horizontal",
        tick_labels=[f"{n} ({len(per[n].lengths)})" for n in shown[::-1]],
        patch_artist=True,
        boxprops={"facecolor": "#dbe6fa"},
        medianprops={"color": _SELECTED, "linewidth": 2},
        flierprops={"markersize": 3},
    )
    ax.set_xlabel("words per selected response")
    return _svg(fig, "lengths"), "Length of the selected responses, in words."


# Each plot's figure id is plot-NAME; drawn in this order.
PLOTS = {
    "rows": _plot_rows,
    "drops": _plot_drops,
    "fit": _plot_fit,
    "hedge": _plot_hedge,
    "reliability": _plot_reliability,
    "knowledge": _plot_knowledge,
    "refusal": _plot_refusal,
    "lengths": _plot_lengths,
}
