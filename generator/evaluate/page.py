"""How an eval is shown: a table for the terminal, and `eval.html` / `compare.html` in
the report's style (one self-contained page, plots as inline SVG, no scripts)."""

from __future__ import annotations

import shlex
from typing import Any

from generator.plots import STYLE, _figure, _svg
from generator.report import _CSS, _e

# name: (what it measures, which way is better)
FIGURES = {
    "prudence": ("declines on questions with no true answer or that should be refused", "higher"),
    "over_refusal": ("declines on answerable questions", "lower"),
    "accuracy": (
        "right answers to questions with a checkable reference (a decline is not)",
        "higher",
    ),
    "ece": ("expected calibration error of the stated confidence (10 bins)", "lower"),
    "brier": ("Brier score of the stated confidence", "lower"),
    "auroc": ("AUROC: a right answer states more confidence than a wrong one", "higher"),
    "confidence_stated": ("checkable answers that state a confidence", "higher"),
    "hedge_rate": ("answers (not declines) that hedge in their own words", "neither"),
    "recovery": ("near-misses continued to the right final answer", "higher"),
}
_A, _B, _IDEAL = "#a9b3c1", "#2a6fdb", "#222222"
WORST = 5


def _value(figure: dict[str, Any] | None) -> str:
    if not figure or figure.get("value") is None:
        return "—"
    return f"{figure['value']:.3f}"


def _interval(figure: dict[str, Any] | None) -> str:
    if not figure or not figure.get("interval"):
        return "—"
    low, high = figure["interval"]
    return f"{low:.3f} – {high:.3f}"


def _count(figure: dict[str, Any]) -> str:
    return f"{figure['k']}/{figure['count']}" if "k" in figure else str(figure["count"])


# --------------------------------------------------------------------------- terminal


def summary(result):
    """The terminal table of one eval's figures."""
    from rich.box import SIMPLE_HEAD
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for header, justify in (
        ("figure", "left"),
        ("value", "right"),
        ("95% interval", "right"),
        ("n", "right"),
    ):
        table.add_column(header, justify=justify, no_wrap=True)
    for name, figure in result.figures.items():
        table.add_row(name, _value(figure), _interval(figure), _count(figure))
    return table


def compare_summary(comparison):
    """The terminal table of two evals side by side."""
    from rich.box import SIMPLE_HEAD
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for header in ("figure", "A", "B", "change", "95% interval", "not noise"):
        table.add_column(header, justify="left" if header == "figure" else "right", no_wrap=True)
    for name, entry in comparison.changes.items():
        change = entry["change"]
        delta = "—" if change["value"] is None else f"{change['value']:+.3f}"
        table.add_row(
            name,
            _value(entry["a"]),
            _value(entry["b"]),
            delta,
            _interval(change),
            "yes" if change["excludes_zero"] else "no",
        )
    return table


# --------------------------------------------------------------------------- plots


def _plot(draw, name: str, *args) -> str:
    import matplotlib

    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"hedgerow-eval-{name}"}):
        fig = draw(*args)
        return _svg(fig, name)


def _reliability(evals: list[tuple[str, list[dict], str]]):
    fig = _figure(width=5.2, height=4.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=_IDEAL, linestyle="--", linewidth=1, label="calibrated")
    for label, bins, color in evals:
        shown = [b for b in bins if b["count"]]
        ax.plot(
            [b["confidence"] for b in shown],
            [b["accuracy"] for b in shown],
            "o-",
            color=color,
            label=label,
        )
        for b in shown:
            ax.annotate(
                str(b["count"]),
                (b["confidence"], b["accuracy"]),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, -10),
                color=color,
            )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("stated confidence (mean of its bin)")
    ax.set_ylabel("share right")
    ax.legend(loc="upper left")
    return fig


def _intervals(evals: list[tuple[str, dict, str]]):
    names = [n for n in FIGURES if any(f.get(n, {}).get("value") is not None for _, f, _ in evals)]
    fig = _figure(width=6.4, height=0.9 + 0.42 * max(1, len(names)))
    ax = fig.subplots()
    for i, (label, figs, color) in enumerate(evals):
        offset = (i - (len(evals) - 1) / 2) * 0.25
        for row, name in enumerate(names[::-1]):
            figure = figs.get(name) or {}
            if figure.get("value") is None:
                continue
            low, high = figure.get("interval") or (figure["value"], figure["value"])
            ax.plot([low, high], [row + offset] * 2, color=color, linewidth=2)
            ax.plot(
                [figure["value"]],
                [row + offset],
                "o",
                color=color,
                label=label if row == 0 else None,
            )
    ax.set_yticks(range(len(names)), names[::-1])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("value, with its 95% interval")
    if len(evals) > 1:
        ax.legend(loc="lower right")
    return fig


# --------------------------------------------------------------------------- pages


def _head(title: str, facts: list[tuple[str, str]]) -> list[str]:
    """The page's opening: its title and a list of facts (values already escaped)."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>",
        f"<body><header><h1>{_e(title)}</h1><dl>",
        *(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts),
        "</dl></header>",
    ]


def _plots(evals: list[tuple[str, dict[str, Any], str]]) -> list[str]:
    """The plots of one eval or of two: (label, its eval.json data, colour) each."""
    parts = ['<h2>Plots</h2><div class="plots">']
    if any(b["count"] for _, data, _ in evals for b in data["reliability"]):
        series = [(label, data["reliability"], color) for label, data, color in evals]
        parts.append(
            _figure_block(
                "reliability",
                _plot(_reliability, "reliability", series),
                "Reliability: the share right of the answers in each confidence bin (its "
                "count beside it), against the calibrated diagonal.",
            )
        )
    else:
        parts.append('<p class="note" id="no-plot-reliability">No answer stated a confidence.</p>')
    series = [(label, data["figures"], color) for label, data, color in evals]
    svg = _plot(_intervals, "figures", series)
    parts += [_figure_block("figures", svg, "Each figure with its 95% interval."), "</div>"]
    return parts


def _model(model: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in model.items() if k != "bytes")


def _better(better: str) -> str:
    return f" ({better} is better)" if better in ("higher", "lower") else ""


def _figure_rows(figures: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for name, figure in figures.items():
        meaning, better = FIGURES.get(name, ("", ""))
        rows.append(
            f'<tr id="figure-{_e(name)}"><td>{_e(name)}</td><td>{_value(figure)}</td>'
            f"<td>{_interval(figure)}</td><td>{_count(figure)}</td>"
            f'<td class="text">{_e(meaning)}{_better(better)}</td></tr>'
        )
        for group, sub in (figure.get("by") or {}).items():
            if len(figure["by"]) > 1:
                rows.append(
                    f'<tr class="group"><td>&nbsp;&nbsp;{_e(group)}</td><td>{_value(sub)}</td>'
                    f"<td>{_interval(sub)}</td><td>{_count(sub)}</td><td></td></tr>"
                )
    return rows


def _worst(items: list[dict]) -> dict[str, tuple[str, list[dict]]]:
    """Every failure of each kind, the most confident first."""

    def conf(i):
        return -((i.get("parse") or {}).get("confidence") or -1)

    answered = [i for i in items if i["status"] == "answered"]
    questions = [i for i in answered if i["set"] != "recovery"]
    kinds = {
        "fabricated": (
            "Answered a question with no true answer",
            [i for i in questions if i["should_decline"] and not i["verdict"]["declined"]],
        ),
        "over_refused": (
            "Declined an answerable question",
            [i for i in questions if not i["should_decline"] and i["verdict"]["declined"]],
        ),
        "confidently_wrong": (
            "Wrong, at a stated confidence",
            [
                i
                for i in questions
                if i["verdict"]["correct"] is False and not i["verdict"]["declined"] and conf(i) < 0
            ],
        ),
        "unrecovered": (
            "Did not recover from a slip",
            [i for i in answered if i["set"] == "recovery" and not i["verdict"]["recovered"]],
        ),
    }
    return {k: (title, sorted(found, key=conf)) for k, (title, found) in kinds.items()}


def _example(item: dict) -> str:
    parse, verdict = item.get("parse") or {}, item["verdict"]
    meta = [item["set"], item["group"]]
    if item.get("expected"):
        meta.append("expected: " + " | ".join(item["expected"]))
    if parse.get("confidence") is not None:
        meta.append(f"stated {parse['confidence']:.0%} ({parse.get('stated')})")
    for cue in ("decline_cue", "hedge_cue", "recovery_cue"):
        if verdict.get(cue):
            meta.append(f"{cue.split('_')[0]}: “{verdict[cue]}”")
    prefix = (
        f'<div class="turn"><span class="role">answer so far</span> {_e(item["prefix"])}</div>'
        if item.get("prefix")
        else ""
    )
    return (
        f'<div class="sample"><div class="meta">{_e(" · ".join(meta))}</div>'
        f'<div class="turn"><span class="role">question</span> {_e(item["question"])}</div>'
        f'{prefix}<div class="turn"><span class="role">model</span> {_e(item["answer"])}'
        "</div></div>"
    )


def write_page(data: dict[str, Any], folder) -> str:
    """eval.html: the facts, the figures table, the plots and the worst examples."""
    items = data["items"]
    sets = data["sets"]
    facts = [
        ("eval", f"<code>{_e(folder)}</code>"),
        ("model", _e(_model(data["model"]))),
        (
            "command",
            f"<code>{_e(shlex.join(data['command']))}</code>" if data.get("command") else "—",
        ),
        ("questions", _e(", ".join(f"{k} {v}" for k, v in sets.items()))),
    ]
    if data.get("unanswered"):
        facts.append(("no answer (asked again on a re-run)", _e(_listed(data["unanswered"]))))
    parts = _head(f"hedgerow eval: {data['model'].get('model')}", facts)
    parts += [*_table(data["figures"]), *_plots([("this model", data, _B)])]
    parts.append("<h2>Worst examples</h2>")
    for key, (title, found) in _worst(items).items():
        shown = f"{min(WORST, len(found))} of {len(found)} shown" if found else "none"
        parts.append(f'<h3 id="worst-{key}">{_e(title)} ({shown})</h3>')
        parts += [_example(i) for i in found[:WORST]]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table(figures: dict[str, dict[str, Any]]) -> list[str]:
    return [
        '<h2>Figures</h2><table id="figures"><thead><tr><th>figure</th><th>value</th>'
        '<th>95% interval</th><th>n</th><th class="text">what it measures</th></tr></thead><tbody>',
        *_figure_rows(figures),
        '</tbody></table><p class="note">Proportions: Wilson score intervals. ECE, Brier, '
        "AUROC: percentile bootstrap (2000 resamples, fixed seed). Every item, answer and "
        "verdict is in eval.json.</p>",
    ]


def _figure_block(name: str, svg: str, caption: str) -> str:
    caption = f"<figcaption>{_e(caption)}</figcaption>"
    return f'<figure id="plot-{name}" class="plot">{svg}{caption}</figure>'


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def write_compare(comparison, da: dict[str, Any], db: dict[str, Any]) -> str:
    """compare.html: A and B side by side, each change with its interval."""
    a, b = comparison.a, comparison.b
    facts = [
        ("A", f"<code>{_e(a)}</code> — {_e(_model(da['model']))}"),
        ("B", f"<code>{_e(b)}</code> — {_e(_model(db['model']))}"),
        (
            "questions",
            f"{comparison.questions[0]} and {comparison.questions[1]}, "
            f"{comparison.common} asked of both",
        ),
    ]
    parts = _head("hedgerow eval: A against B", facts)
    parts.append(
        '<h2>Figures</h2><table id="compare"><thead><tr><th>figure</th><th>A</th><th>B</th>'
        "<th>change (B − A)</th><th>95% interval</th><th>excludes 0</th></tr></thead><tbody>"
    )
    for name, entry in comparison.changes.items():
        parts.append(_change_row(name, entry["a"], entry["b"], entry["change"], name))
        for group, change in entry["by"].items():
            if len(entry["by"]) > 1:
                parts.append(
                    _change_row(
                        f"  {group}", entry["a"]["by"][group], entry["b"]["by"][group], change, None
                    )
                )
    parts.append(
        '</tbody></table><p class="note">Change intervals: Newcombe\'s for a difference of '
        "proportions, a bootstrap of the difference for ECE, Brier and AUROC; both treat the "
        "evals as independent samples (conservative when they asked the same questions).</p>"
    )
    parts += _plots([("A", da, _A), ("B", db, _B)])
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _change_row(label: str, fa: dict, fb: dict, change: dict, name: str | None) -> str:
    delta = "—" if change["value"] is None else f"{change['value']:+.3f}"
    row_id = f' id="change-{_e(name)}"' if name else ' class="group"'
    return (
        f"<tr{row_id}><td>{_e(label)}</td><td>{_value(fa)}</td><td>{_value(fb)}</td>"
        f"<td>{delta}</td><td>{_interval(change)}</td>"
        f"<td>{'yes' if change['excludes_zero'] else 'no'}</td></tr>"
    )
