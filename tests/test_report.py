"""`hedgerow report` on real runs: the terminal table, report.html, and the page in Chromium."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner

from generator.cli import main
from generator.plots import PLOTS
from generator.report import distinct_n, openings
from generator.values import CATEGORIES

from .conftest import EXAMPLES, read_jsonl, write_jsonl

NETWORK = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def generate(out, *extra):
    result = invoke("generate", EXAMPLES, "-o", out, "--candidates", "2", *extra)
    assert result.exit_code == 0, result.output
    return out


def isolated(mp, tmp, **env):
    """The autouse isolation is per test; a module-wide run gets the same by hand."""
    for name in list(os.environ):
        if name.startswith(("HEDGEROW_", "OPENAI_")):
            mp.delenv(name)
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    for name, value in env.items():
        mp.setenv(name, value)
    mp.chdir(tmp)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One run scored by the embedded model (the slow part, shared) and its report."""
    tmp = tmp_path_factory.mktemp("scored")
    with pytest.MonkeyPatch.context() as mp:
        isolated(mp, tmp)
        run = generate(tmp / "run", "--scorer", "embedded")
        result = invoke("report", run)
    assert result.exit_code == 0, result.output
    return run, result.output


CAPITALS = {  # of large countries: the 270M base model knows most of them, some surely
    "France": "Paris",
    "Japan": "Tokyo",
    "Russia": "Moscow",
    "Australia": "Canberra",
    "Brazil": "Brasília",
}
FABRICATED = [  # made-up people and firms: nothing to know
    ("who-veltrazon", "Who founded the company Veltrazon Dynamics?", "Marta Quelwick"),
    ("who-ostrell", "Who wrote the novel The Ostrell Ledger?", "Idris Varnholt"),
]
KINDS = (*CATEGORIES, "unmeasured")


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """One run whose seeds the embedded model was probed on (unscored), and its report."""
    tmp = tmp_path_factory.mktemp("probed")
    seeds = [
        {"id": f"cap-{c.lower()}", "question": f"What is the capital of {c}?", "answer": a}
        for c, a in CAPITALS.items()
    ]
    seeds += [{"id": i, "question": q, "answer": a} for i, q, a in FABRICATED]
    seeds.append(
        {"id": "essay", "question": "Explain why the sky is blue.", "answer": "Light.\nBlue."}
    )
    write_jsonl(tmp / "seeds.jsonl", seeds)
    with pytest.MonkeyPatch.context() as mp:
        isolated(mp, tmp, HEDGEROW_PROBE="embedded", HEDGEROW_SCORER="none")
        made = invoke(
            "generate",
            "seeds.jsonl",
            "-o",
            "run",
            "--candidates",
            "2",
            "--behaviors",
            "hedge,refusal",
        )
        assert made.exit_code == 0, made.output
        result = invoke("report", "run")
    assert result.exit_code == 0, result.output
    return tmp / "run", result.output


def selected_counts(run):
    return Counter(r["behavior"] for r in read_jsonl(run / "dataset.jsonl"))


def test_scored_report_has_every_plot_and_matches_the_dataset(scored):
    run, output = scored
    page = (run / "report.html").read_text(encoding="utf-8")
    for name in PLOTS:
        assert f'<figure id="plot-{name}" class="plot">' in page
    assert page.count("<svg") == len(PLOTS)
    assert not NETWORK.search(page) and "<script" not in page and "<link" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # six inlined SVGs, no id used twice
    cutoff = json.loads((run / "manifest.json").read_text())["scorer"]["cutoff_nll"]
    assert f"cutoff ({cutoff:.2f})" in page
    assert not list(run.glob("*.tmp"))
    # the terminal: each behavior with its candidates, its selected count and a mean NLL
    counts = selected_counts(run)
    assert set(counts) == {"hedge", "refusal", "contrast", "near_miss"}
    made = Counter(
        r["behavior"]
        for r in read_jsonl(run / "candidates.jsonl")
        if r.get("status") in ("selected", "dropped")
    )
    for behavior, n in counts.items():
        line = re.search(rf"^{behavior}\s+(\d+)\s+(\d+)\s+\d+\s+([\d.]+)\s", output, re.M)
        assert line, output
        assert int(line[2]) == n and int(line[1]) == made[behavior]
        assert made[behavior] % 2 == 0 and made[behavior] >= 2 * n  # --candidates 2
        assert 0 < float(line[3]) < 10
        summary = f'<tr id="summary-{behavior}"><td>{behavior}</td><td>{made[behavior]}</td>'
        assert f"{summary}<td>{n}</td>" in page
    assert "dropped: not_best" in output
    assert output.splitlines()[-1] == f"report -> {run / 'report.html'}"


def svg_group(page: str, gid: str) -> str:
    """The SVG group matplotlib drew for an artist with that gid (prefixed by its plot)."""
    found = re.search(rf'<g id="{re.escape(gid)}">(.*?)</g>', page, re.S)
    assert found, gid
    return found[1]


def rectangle(group: str) -> tuple[float, float]:
    """Width and height of the one bar drawn in an SVG group (a closed 4-point path)."""
    corners = [(float(x), float(y)) for x, y in re.findall(r"([\d.]+) ([\d.]+)", group)[:4]]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return max(xs) - min(xs), max(ys) - min(ys)


def test_a_probed_report_plots_stated_confidence_against_measured_and_the_categories(probed):
    run, output = probed
    page = (run / "report.html").read_text(encoding="utf-8")
    for name in ("reliability", "knowledge"):
        assert f'<figure id="plot-{name}" class="plot">' in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert not NETWORK.search(page) and "<script" not in page
    rows = read_jsonl(run / "dataset.jsonl")

    # the reliability diagram, by hand from the selected hedges that state a measured number
    hedges = [r["attributes"] for r in rows if r["behavior"] == "hedge"]
    measured = [a for a in hedges if a["confidence"] is not None]
    assert all(a["level"] == "unmeasured" for a in hedges if a["confidence"] is None)
    levels: dict[tuple[float, str], list[float]] = {}
    for a in measured:
        levels.setdefault((a["confidence"], a["level"]), []).append(a["p_correct"])
    assert len(levels) >= 2, levels  # known and less known capitals: levels to compare
    heights = {}
    for (stated, name), ps in levels.items():
        mean_p, gap = sum(ps) / len(ps), sum(abs(stated - p) for p in ps) / len(ps)
        assert (
            f'<tr id="level-{name}"><td>{name}</td><td>{stated:.2f}</td><td>{len(ps)}</td>'
            f"<td>{mean_p:.3f}</td><td>{gap:.3f}</td></tr>"
        ) in page
        heights[mean_p] = rectangle(svg_group(page, f"reliability-level-{name}"))[1]
    scale = [h / p for p, h in heights.items() if p > 0]
    assert scale and max(scale) - min(scale) < 0.01 * max(scale)  # bar height = mean p
    points = {(a["confidence"], a["p_correct"]) for a in measured}
    assert svg_group(page, "reliability-hedges").count("<path") == len(points)  # one mark each
    assert "<path" in svg_group(page, "reliability-diagonal")
    gap = sum(abs(a["confidence"] - a["p_correct"]) for a in measured) / len(measured)
    assert f"{gap:.3f} over {len(measured)} hedges" in page

    # rows per behavior by their question's category (a contrast's is the seed it asks)
    per: dict[str, Counter] = {}
    for r in rows:
        kind = r["knowledge"]["category"] if r["knowledge"] else "unmeasured"
        per.setdefault(r["behavior"], Counter())[kind] += 1
    assert per["refusal"]["Unknown"] >= 1 and per["hedge"]["Unknown"] == 0  # "I don't know"
    widths = []
    for behavior, counts in per.items():
        cells = "".join(f"<td>{counts[k]}</td>" for k in KINDS)
        assert f'<tr id="knowledge-{behavior}"><td>{behavior}</td>{cells}</tr>' in page
        for kind in KINDS:
            width = rectangle(svg_group(page, f"knowledge-{behavior}-{kind}"))[0]
            assert (width > 0) == (counts[kind] > 0), (behavior, kind)
            if counts[kind]:
                widths.append(width / counts[kind])
    assert max(widths) - min(widths) < 0.01 * max(widths)  # each segment as long as its rows

    # the probe's summary, from probe.jsonl by hand
    probe = read_jsonl(run / "probe.jsonl")
    categories = Counter(p["knowledge"]["category"] for p in probe if p["knowledge"])
    reasons = Counter(p["reason"] for p in probe if not p["knowledge"])
    assert categories["HighlyKnown"] and categories["Unknown"] >= len(FABRICATED)
    listed = ", ".join(f"{c} {categories[c]}" for c in CATEGORIES)
    assert f'<dd id="probe-categories">{listed}</dd>' in page
    assert reasons == {"not_knowledge": 1}
    assert '<dd id="probe-not-checkable">not_knowledge 1</dd>' in page
    declined = {
        r["seed_id"]
        for r in rows
        if r["behavior"] == "refusal" and r["attributes"]["kind"] == "unknown_to_model"
    }
    assert declined and f'<dd id="probe-pairs">{len(declined)}</dd>' in page
    # and the terminal's line
    line = (
        f"knowledge (seeds): {listed}, not checkable 1; "
        f"mean |stated − p_correct| {gap:.3f} over {len(measured)} hedges"
    )
    assert line in output.splitlines(), output


def test_a_run_without_a_probe_says_so_instead_of_an_empty_plot(tmp_path):
    run = generate(tmp_path / "run", "--scorer", "none", "--probe", "none")
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="plot-reliability"' not in page and 'id="plot-knowledge"' not in page
    for what in ("reliability diagram", "knowledge categories"):
        note = f"No {what}: this run has no knowledge probe (it was run with --probe none)."
        assert note in page
    assert (
        '<p class="note" id="no-probe">No knowledge probe: it was run with --probe none, so no '
        "row states a measured confidence.</p>"
    ) in page
    assert 'id="levels"' not in page and 'id="probe"' not in page
    assert "knowledge" not in result.output
    # every hedge is unmeasured: its bar says it states no number (not "0%")
    hedge = re.search(r'<figure id="plot-hedge".*?</figure>', page, re.S)[0]
    assert ">no number<" in hedge and ">0%<" not in hedge


def test_a_probed_run_killed_before_its_manifest_counts_its_probe_jsonl(probed, tmp_path):
    run, _ = probed
    killed = shutil.copytree(run, tmp_path / "killed")
    (killed / "manifest.json").unlink()
    (killed / "report.html").unlink()
    result = invoke("report", killed)
    assert result.exit_code == 0, result.output
    page = (killed / "report.html").read_text(encoding="utf-8")
    probe = read_jsonl(run / "probe.jsonl")
    categories = Counter(p["knowledge"]["category"] for p in probe if p["knowledge"])
    listed = ", ".join(f"{c} {categories[c]}" for c in CATEGORIES)
    assert f'<dd id="probe-categories">{listed}</dd>' in page
    assert 'id="probe-pairs"' not in page  # pairing is only known once the run has ended
    assert '<figure id="plot-reliability" class="plot">' in page
    assert f"knowledge (seeds): {listed}, not checkable 1;" in result.output


def test_distinct_n_counts_ngrams_within_each_text():
    texts = ["The cat sat.", "the CAT ran"]
    assert distinct_n(texts, 1) == 4 / 6  # the, cat, sat, ran of 6 words
    assert distinct_n(texts, 2) == 3 / 4  # "the cat" twice
    assert distinct_n(texts, 3) == 1.0
    assert distinct_n(["a b", "c"], 2) == 1.0  # no n-gram spans two texts
    assert distinct_n(["It's done, it's done!"], 2) == 2 / 3  # "it's" is one word
    assert distinct_n([], 1) == 0.0 and distinct_n(["one"], 3) == 0.0
    with pytest.raises(ValueError):
        distinct_n(texts, 4)


def test_openings_are_the_first_words_most_common_first():
    texts = ["I think so.", "i think not", "Maybe, yes", "I believe it", "", "I'm sure"]
    assert openings(texts) == [
        ("i think", 0.4),
        ("i believe", 0.2),
        ("i'm sure", 0.2),
        ("maybe yes", 0.2),
    ]
    assert openings(texts, words=1) == [("i", 0.6), ("i'm", 0.2), ("maybe", 0.2)]
    assert openings([]) == []


def test_unscored_run_reports_without_fit_plots_and_the_same_bytes_twice(tmp_path):
    run = generate(tmp_path / "run", "--scorer", "none")
    first = invoke("report", run)
    assert first.exit_code == 0, first.output
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="plot-fit"' not in page
    assert "No fit (NLL) plots: this run has no fit scores (it was run with --scorer none)" in page
    for name in set(PLOTS) - {"fit", "reliability", "knowledge"}:  # --probe none
        assert f'id="plot-{name}"' in page
    counts = selected_counts(run)
    for behavior, n in counts.items():
        assert re.search(rf"^{behavior}\s+{2 * n}\s+{n}\s+{n}\s+—\s+—\s", first.output, re.M)
    again = invoke("report", run, "-o", tmp_path / "again.html")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.html").read_bytes() == page.encode("utf-8")


def test_a_killed_single_behavior_run_still_reports_and_notes_empty_plots(tmp_path):
    run = generate(tmp_path / "run", "--behaviors", "hedge")
    (run / "manifest.json").unlink()  # as if killed before the run finished
    (tmp_path / "out").mkdir()
    result = invoke("report", run, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "running or killed" in result.output
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'id="plot-refusal"' not in page and "No refusals selected." in page
    assert 'id="plot-hedge"' in page and "refusal" not in result.output


@pytest.mark.parametrize("width", ["40", "200"])
def test_the_summary_names_the_run_on_one_line_however_long_its_path(tmp_path, monkeypatch, width):
    # The table is sized to the terminal; the run's path must not be wrapped with it (a
    # test, or a user copying the path, must not depend on where the run folder lives).
    monkeypatch.setenv("COLUMNS", width)
    run = generate(tmp_path / ("a-long-folder-name-" * 8) / "run", "--behaviors", "hedge")
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    assert f"{run} (complete)" in result.output.splitlines()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing", "no such folder"),
        (lambda tmp: (tmp / "plain").mkdir() or tmp / "plain", "not a hedgerow run folder"),
    ],
    ids=["missing", "not-a-run"],
)
def test_report_on_a_folder_that_is_not_a_run_is_one_line_exit_1(tmp_path, make, message):
    result = invoke("report", make(tmp_path))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_an_unwritable_report_path_is_one_line_exit_1(tmp_path):
    run = generate(tmp_path / "run", "--behaviors", "hedge")
    (tmp_path / "no").write_text("a file where a folder should be")
    result = invoke("report", run, "-o", tmp_path / "no" / "such" / "report.html")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "cannot write it" in result.output
    assert "in the way on its path" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    # a folder that is only missing is made, as every command that writes does
    made = invoke("report", run, "-o", tmp_path / "new" / "report.html")
    assert made.exit_code == 0 and (tmp_path / "new" / "report.html").is_file()


def test_importing_the_cli_and_report_loads_no_matplotlib():
    code = "import sys, generator.cli, generator.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_report_does_not_import_the_orchestrator():
    # its counts come from generator.manifest, not from the module that runs a run
    code = "import sys, generator.report; print('generator.run' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.browser
def test_report_renders_in_headless_chromium(scored, probed, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    run, _ = scored
    probed_run, _ = probed
    requests = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto((run / "report.html").as_uri())
            for name in PLOTS:
                svg = page.locator(f"#plot-{name} > svg")
                assert svg.is_visible(), name
                box = svg.bounding_box()
                assert box["width"] > 100 and box["height"] > 50, (name, box)
                marks = svg.evaluate("s => s.querySelectorAll('path, rect, use').length")
                assert marks > 0, name
                labels = svg.evaluate("s => s.querySelectorAll('text').length")
                assert labels > 0, name  # svg.fonttype none: labels are real text
            assert page.locator("#plot-rows svg text", has_text="near_miss").count() > 0
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            # the probed run's reliability diagram and categories, drawn and in view
            page.goto((probed_run / "report.html").as_uri())
            for name in ("reliability", "knowledge"):
                figure = page.locator(f"#plot-{name} > svg")
                assert figure.count() == 1, name  # drawn, not a note
                figure.scroll_into_view_if_needed()
                box = figure.bounding_box()
                assert figure.is_visible() and box["width"] > 300 and box["height"] > 100, box
            marks = page.locator("#reliability-hedges path")
            assert marks.count() > 0
            for i in range(marks.count()):
                box = marks.nth(i).bounding_box()
                assert box["width"] > 2 and box["height"] > 2, box  # a marker, not a speck
            assert page.locator("#plot-knowledge svg text", has_text="Unknown").count() > 0
            page.screenshot(path=str(tmp_path / "probed.png"), full_page=True)
        finally:
            browser.close()
    assert all(url.startswith("file:") for url in requests), requests
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1280 and image.height > 1500
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is None or len(colors) > 100  # drawn plots, not a blank page
