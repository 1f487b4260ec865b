"""`hedgerow score --probe`: known vs unknown for a dataset people already have, measured
by the real embedded model (a 270M base model)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator.cli import main
from generator.scoring import dataset
from tests.conftest import read_jsonl
from tests.test_probe import ENV, hedgerow  # the CLI in a process of its own

pytestmark = pytest.mark.model  # nearly every test here runs the embedded model

CAPITALS = [  # capitals of large countries: the 270M base model answers these greedily
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Russia", "Moscow"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("the United Kingdom", "London"),
]
MADE_UP = [  # people who do not exist: nothing to know
    ("Who founded the company Brimwater Halvex?", "Talia Orrinsby founded Brimwater Halvex."),
    ("Who painted the mural The Drowned Lantern?", "It was painted by Osric Pellhaven."),
    ("Who was the first mayor of Quenvale Harbor?", "Its first mayor was Edda Marrowick."),
]
OPEN = [  # references that cannot be checked, each for its own reason
    (
        "Write a short poem about the sea.",
        "Grey waves roll in,\nsalt on the wind.",
        "not_knowledge",
    ),
    ("Name three primary colours.", "Red, blue and yellow.", "many_answers"),
]


def alpaca(prompt: str, response: str) -> dict:
    return {"instruction": prompt, "input": "", "output": response}


ROWS = [
    *(alpaca(f"What is the capital of {c}?", f"The capital of {c} is {a}.") for c, a in CAPITALS),
    *(alpaca(q, a) for q, a in MADE_UP),
    *(alpaca(q, a) for q, a, _ in OPEN),
]
# Every setting a flag (ENV's are overridden). Fewer samples than the default: the same
# verdicts' shape, in half the time.
FLAGS = ("--scorer", "embedded", "--probe", "embedded", "--probe-samples", "5")


def command(data: Path, out: Path, *flags: str) -> list:
    return ["score", data, "-o", out, *flags]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The dataset scored and probed once, uninterrupted (the slow part, shared)."""
    tmp = tmp_path_factory.mktemp("scored")
    data = tmp / "mine.json"
    data.write_text(json.dumps(ROWS), encoding="utf-8")
    done = hedgerow(*command(data, tmp / "whole.jsonl", *FLAGS))
    return data, tmp / "whole.jsonl", done.stdout


def test_known_capitals_and_made_up_people_get_their_categories(scored):
    _, out, _ = scored
    rows = read_jsonl(out)
    added = ("fit", "knowledge", "knowledge_reason")
    assert [{k: v for k, v in r.items() if k not in added} for r in rows] == ROWS
    assert all(r["fit"]["tokens"] > 0 for r in rows)  # scored too: --scorer embedded
    capitals = [r["knowledge"] for r in rows[: len(CAPITALS)]]
    made_up = [r["knowledge"] for r in rows[len(CAPITALS) : len(CAPITALS) + len(MADE_UP)]]
    assert all(k["samples"] == 5 for k in capitals + made_up)
    assert sum(k["greedy_correct"] for k in capitals) >= len(CAPITALS) - 1
    assert sum(k["category"] in ("HighlyKnown", "MaybeKnown") for k in capitals) >= 5
    assert sum(k["p_correct"] for k in capitals) / len(capitals) >= 0.4
    assert all(k["category"] == "Unknown" and k["p_correct"] == 0 for k in made_up)
    for row, (_, _, reason) in zip(rows[-len(OPEN) :], OPEN, strict=True):
        assert row["knowledge"] is None and row["knowledge_reason"] == reason
    assert not any("knowledge_reason" in r for r in rows[: -len(OPEN)])


SHARE = re.compile(r"^ {4}(\w+(?: \w+)?) +(\d+)% \((\d+) rows?\)(.*)$")


def test_the_printed_shares_are_the_rows_categories(scored):
    _, out, stdout = scored
    rows = read_jsonl(out)
    printed = {m[1]: m.groups()[1:] for line in stdout.splitlines() if (m := SHARE.match(line))}
    found = Counter(r["knowledge"]["category"] for r in rows if r["knowledge"])
    found["not checkable"] = sum(r["knowledge"] is None for r in rows)
    assert set(printed) == {"HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown", "not checkable"}
    for name, (percent, n, _) in printed.items():
        assert int(n) == found[name], name
        assert int(percent) == round(100 * found[name] / len(ROWS)), name
    assert f"knowledge of the model, {len(ROWS) - len(OPEN)} rows checked:" in stdout
    unknown = printed["Unknown"][2]
    assert "does not know; fine-tuning on them teaches it to make things up (SliCK)" in unknown
    assert printed["not checkable"][2] == ": many_answers 1, not_knowledge 1"
    assert "scored, mean nll" in stdout  # the fit summary is still there


def test_a_score_killed_mid_probe_resumes_to_the_same_bytes_probing_no_row_twice(scored, tmp_path):
    data, whole, stdout = scored
    out = tmp_path / "k.jsonl"
    partial = tmp_path / "k.jsonl.partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", *map(str, command(data, out, *FLAGS))],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_bytes().count(b"\n") >= 3:  # header, 2 rows
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = partial.read_bytes()
    rows_kept = kept.count(b"\n") - 1  # a line torn by the kill is done again
    assert 0 < rows_kept < len(ROWS), "killed mid-probe, a row at a time on disk"
    done = hedgerow(*command(data, out, *FLAGS))
    # The rows on disk are not asked again: the resumed run starts after them.
    assert f"(resumed after {rows_kept} rows)" in done.stdout.splitlines()[0]
    assert out.read_bytes() == whole.read_bytes()
    assert done.stdout.splitlines()[1:] == stdout.splitlines()[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.jsonl"]


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--probe", "bogus"], "--probe bogus: not a probe; use embedded, gguf:PATH"),
        (["--probe", "gguf:/no/such/model.gguf"], "/no/such/model.gguf does not exist"),
        (["--probe", "openai:http://127.0.0.1:9/v1"], "cannot reach http://127.0.0.1:9/v1"),
        (["--probe", "none"], "needs a scorer or a probe"),
    ],
)
def test_a_bad_probe_is_one_line_exit_1(tmp_path, flags, message):
    (tmp_path / "s.json").write_text(json.dumps(ROWS[:1]))
    result = invoke("score", "s.json", "--scorer", "none", *flags)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert message in line
    assert not (tmp_path / "s.fit.jsonl").exists()
    assert not (tmp_path / "s.fit.jsonl.lock").exists()


def test_probing_without_fit_scoring_takes_its_settings_from_the_environment(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([ROWS[0], ROWS[len(CAPITALS)]]))
    env = {"HEDGEROW_PROBE": "embedded", "HEDGEROW_PROBE_SAMPLES": "2"}
    result = invoke("score", "s.json", "--scorer", "none", env=env)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "s.fit.jsonl")
    assert all("fit" not in r and r["knowledge"]["samples"] == 2 for r in rows)
    assert rows[1]["knowledge"]["category"] == "Unknown"
    assert "scored, mean nll" not in result.output and "Unknown" in result.output


def test_a_partial_made_with_other_probe_settings_is_not_resumed(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(ROWS[:3]))

    def stop_after_one(done, total):
        if done == 1:
            raise KeyboardInterrupt

    def score(out, samples, progress=None):
        return dataset.score_dataset(
            ["s.json"],
            out=out,
            scorer="none",
            probe="embedded",
            probe_samples=samples,
            progress=progress,
        )

    with pytest.raises(KeyboardInterrupt):
        score("a.jsonl", 1, stop_after_one)  # one row lands: the probe writes row by row
    assert (tmp_path / "a.jsonl.partial").read_bytes().count(b"\n") == 2
    assert score("a.jsonl", 2).resumed_from == 0  # started over: 1 sample per row is not 2
    assert [r["knowledge"]["samples"] for r in read_jsonl(tmp_path / "a.jsonl")] == [2, 2, 2]
    with pytest.raises(KeyboardInterrupt):
        score("b.jsonl", 2, stop_after_one)
    assert score("b.jsonl", 2).resumed_from == 1  # the same settings: resumed
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()


def test_scoring_and_probing_through_one_server_share_the_run(llama_server, tmp_path):
    """An openai:URL scorer and probe in one score: both clients live in its one event
    loop."""
    (tmp_path / "s.json").write_text(json.dumps([ROWS[0], ROWS[len(CAPITALS)]]))
    url = f"openai:{llama_server}"
    result = invoke("score", "s.json", "--scorer", url, "--probe", url, "--probe-samples", "3")
    assert result.exit_code == 0, result.output
    france, made_up = read_jsonl(tmp_path / "s.fit.jsonl")
    assert france["fit"]["tokens"] > 0 and france["knowledge"]["greedy_correct"]
    assert made_up["knowledge"]["category"] == "Unknown"
