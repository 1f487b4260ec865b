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

from .conftest import EXAMPLES, read_jsonl

NETWORK = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def generate(out, *extra):
    result = invoke("generate", EXAMPLES, "-o", out, "--candidates", "2", *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One run scored by the embedded model (the slow part, shared) and its report."""
    tmp = tmp_path_factory.mktemp("scored")
    # The autouse isolation is per test; this module-wide run gets the same by hand.
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("HEDGEROW_", "OPENAI_")):
                mp.delenv(name)
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.chdir(tmp)
        run = generate(tmp / "run", "--scorer", "embedded")
        result = invoke("report", run)
    assert result.exit_code == 0, result.output
    return run, result.output


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
    for name in set(PLOTS) - {"fit"}:
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


def test_report_renders_in_headless_chromium(scored, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    run, _ = scored
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
        finally:
            browser.close()
    assert all(url.startswith("file:") for url in requests), requests
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1280 and image.height > 1500
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is None or len(colors) > 100  # drawn plots, not a blank page
