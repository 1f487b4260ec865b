import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator.cli import main

from .conftest import EXAMPLES, read_jsonl, synthetic_seeds, write_jsonl


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_folder(tmp_path, name="run", *extra):
    out = tmp_path / name
    result = invoke("generate", EXAMPLES, "-o", out, *extra)
    assert result.exit_code == 0, result.output
    return out


def test_examples_give_all_behaviors_and_whole_pairs(tmp_path):
    out = run_folder(tmp_path)
    rows = read_jsonl(out / "dataset.jsonl")
    behaviors = {r["behavior"] for r in rows}
    assert behaviors == {"hedge", "refusal", "contrast", "near_miss"}
    refusals = sorted(r["pair_id"] for r in rows if r["behavior"] == "refusal")
    contrasts = sorted(r["pair_id"] for r in rows if r["behavior"] == "contrast")
    assert refusals == contrasts and len(refusals) == len(set(refusals)) > 0
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["provenance"]["backend"] == "offline"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["seeds"]["done"] == 12
    assert manifest["counts"]["selected"]["refusal"] == manifest["pairs"] == len(refusals)
    assert manifest["templates"]["hedge/offline.j2"]
    # every seed a generator could not use is accounted for, with its reason
    candidates = read_jsonl(out / "candidates.jsonl")
    skipped = [c for c in candidates if c["status"] == "skipped"]
    assert {"no_worked_calculation", "self_contained", "creative_prompt"} <= {
        c["reason"] for c in skipped
    }
    assert sum(manifest["counts"]["skipped"].values()) == len(skipped)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = run_folder(tmp_path, "a", "--candidates", "2")
    b = run_folder(tmp_path, "b", "--candidates", "2")
    c = run_folder(tmp_path, "c", "--candidates", "2", "--seed", "7")
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "dataset.jsonl").read_bytes() != (c / "dataset.jsonl").read_bytes()


def test_default_folder_is_per_settings_and_a_rerun_resumes(tmp_path):
    first = invoke("generate", EXAMPLES)
    assert first.exit_code == 0
    (folder,) = list(Path("outputs").iterdir())
    assert folder.name.startswith("seeds-")
    before = (folder / "dataset.jsonl").read_bytes()
    again = invoke("generate", EXAMPLES)
    assert "resumed after 12 seeds" in again.output
    assert (folder / "dataset.jsonl").read_bytes() == before
    invoke("generate", EXAMPLES, "--seed", "3")
    assert len(list(Path("outputs").iterdir())) == 2


def test_behaviors_limit_and_dry_run(tmp_path):
    out = run_folder(tmp_path, "h", "--behaviors", "hedge", "--limit", "3")
    assert {r["behavior"] for r in read_jsonl(out / "dataset.jsonl")} == {"hedge"}
    assert {r["seed_id"] for r in read_jsonl(out / "dataset.jsonl")} == {
        "ex-capital",
        "ex-author",
        "ex-river",
    }
    dry = invoke("generate", EXAMPLES, "--dry-run", "-o", tmp_path / "dry")
    assert dry.exit_code == 0 and "nothing written" in dry.output
    assert not (tmp_path / "dry").exists()


def test_prompts_overlay_changes_output(tmp_path):
    overlay = tmp_path / "mine"
    (overlay / "hedge").mkdir(parents=True)
    (overlay / "hedge" / "offline.j2").write_text("{{ opener }} [{{ percent }}%] {{ answer }}")
    out = run_folder(tmp_path, "o", "--prompts", overlay, "--behaviors", "hedge")
    row = read_jsonl(out / "dataset.jsonl")[0]
    assert "%] " in row["messages"][1]["content"]
    assert (
        row["provenance"]["template_sha256"]
        == __import__("hashlib").sha256((overlay / "hedge" / "offline.j2").read_bytes()).hexdigest()
    )


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["missing.jsonl"], "missing.jsonl: no such file"),
        (b"", ["e.jsonl"], "e.jsonl: no rows found"),
        (b'{"question": "a"}\nnot json\n', ["e.jsonl"], "e.jsonl:2: not valid JSON"),
        (b'{"question": "\xff"}\n', ["e.jsonl"], "e.jsonl:1: not UTF-8"),
        (b'{"foo": "a", "bar": 1}\n', ["e.jsonl"], "columns: foo, bar"),
        (b'{"question": "a"}\n', ["e.jsonl", "--backend", "openai"], "needs --model NAME"),
        (
            b'{"question": "a"}\n',
            ["e.jsonl", "--backend", "openai", "--model", "m"],
            "set OPENAI_API_KEY",
        ),
        (b'{"question": "a"}\n', ["e.jsonl", "--scorer", "bert"], "--scorer bert: not a scorer"),
        (b'{"question": "a"}\n', ["e.jsonl", "--scorer", "gguf:nope.gguf"], "does not exist"),
        (b'{"question": "a"}\n', ["e.jsonl", "--scorer", "gguf:e.jsonl"], "not a GGUF model"),
        (b'{"question": "a"}\n', ["e.jsonl", "--scorer", "gguf:."], "is a folder"),
        (b'{"question": "a"}\n', ["e.jsonl", "--model", "x"], "--model is for --backend openai"),
        (b'{"question": "a"}\n', ["e.jsonl", "--behaviors", "poems"], "unknown behavior poems"),
        (b'{"question": "a"}\n', ["e.jsonl", "--behaviors", ","], "--behaviors is empty"),
        (b'{"question": "a"}\n', ["e.jsonl", "--behaviors", "hedge,hedge"], "hedge twice"),
        (b'{"question": "a"}\n', ["e.jsonl", "gone.jsonl", "--limit", "1"], "gone.jsonl"),
        (
            b'{"question": "a"}\n',
            ["e.jsonl", "--backend", "openai", "--model", "m", "--base-url", "not a url"],
            "--base-url 'not a url' is not an http(s) URL",
        ),
        (
            b'{"question": "a"}\n',
            ["e.jsonl", "--backend", "openai", "--model", "m", "--base-url", "ftp://h/v1"],
            "--base-url 'ftp://h/v1' is not an http(s) URL",
        ),
        (
            b'{"question": "a"}\n',
            ["e.jsonl", "--backend", "openai", "--model", "m", "--base-url", "http://h:x/v1"],
            "is not an http(s) URL",
        ),
    ],
)
def test_bad_input_is_one_line_exit_1(tmp_path, setup, args, message):
    if setup is not None:
        (tmp_path / "e.jsonl").write_bytes(setup)
    result = CliRunner().invoke(main, ["generate", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_bad_openai_base_url_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "e.jsonl").write_text('{"question": "a"}\n')
    args = ["generate", "e.jsonl", "-o", "run", "--backend", "openai", "--model", "m"]
    result = CliRunner().invoke(main, args, env={"OPENAI_BASE_URL": "localhost:8000"})
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: OPENAI_BASE_URL 'localhost:8000' is not an http(s) URL; give the endpoint's "
        "address, e.g. http://localhost:8000/v1"
    )
    assert not (tmp_path / "run").exists()


def test_repeated_seed_ids_are_bad_input_and_repeated_rows_still_give_unique_ids(tmp_path):
    row = {"id": "same", "question": "Who painted the Mona Lisa?", "answer": "Leonardo."}
    seeds = write_jsonl(tmp_path / "d.jsonl", [row, dict(row, question="Who sculpted David?")])
    refused = invoke("generate", seeds, "-o", tmp_path / "r")
    assert refused.exit_code == 1
    assert "d.jsonl:2: seed id 'same' repeats an earlier row's" in refused.output
    skipped = invoke("generate", seeds, "-o", tmp_path / "s", "--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["seeds"]["total"] == 1 and manifest["input_errors"]["skipped_rows"] == 1
    # the same row twice without an id: its content-hash id repeats, example ids do not
    del row["id"]
    seeds = write_jsonl(tmp_path / "d.jsonl", [row, row])
    assert invoke("generate", seeds, "-o", tmp_path / "o").exit_code == 0
    ids = [r["id"] for r in read_jsonl(tmp_path / "o" / "candidates.jsonl") if "id" in r]
    pairs = [r["pair_id"] for r in read_jsonl(tmp_path / "o" / "dataset.jsonl") if r["pair_id"]]
    assert len(ids) == len(set(ids)) > 0 and len(set(pairs)) == len(pairs) // 2


def test_bad_usage_is_exit_2():
    assert CliRunner().invoke(main, ["generate"]).exit_code == 2
    assert CliRunner().invoke(main, ["generate", "x", "--candidates", "0"]).exit_code == 2


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
@pytest.mark.parametrize(
    "command, flag",
    [
        ("generate", "--timeout"),
        ("score", "--timeout"),
        ("generate", "--fit-threshold"),
        ("generate", "--near-duplicates"),
        ("generate", "--probe-temperature"),
    ],
)
def test_a_number_flag_refuses_nan_and_infinity(tmp_path, command, flag, value):
    # click's float ranges let nan through; it would reach the manifest as bare NaN
    result = CliRunner().invoke(main, [command, str(EXAMPLES), flag, value, "-o", "out"])
    assert result.exit_code == 2, result.output
    assert "is not a finite number" in result.output or "is not in the range" in result.output
    assert not (tmp_path / "out").exists()


def test_templates_commands(tmp_path):
    listed = invoke("templates", "list")
    assert "hedge/offline.j2" in listed.output and "default" in listed.output
    shown = invoke("templates", "show", "hedge/phrases.toml")
    assert "[[levels]]" in shown.output
    init = invoke("templates", "init", tmp_path / "t")
    assert init.exit_code == 0 and (tmp_path / "t" / "near_miss" / "offline.j2").is_file()
    missing = CliRunner().invoke(main, ["templates", "show", "nope.j2"])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\nfrom generator.cli import main\n"
        "try:\n    main(['generate', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'datasets', 'llama_cpp', 'torch', 'pyarrow', 'jinja2', 'aiohttp'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def read_jsonl_lenient(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # the line a kill cut short
            rows.append(json.loads(line))
    return rows


def wait_for_checkpoint(journal: Path, proc, timeout: float = 60.0) -> None:
    """Until the run has journaled a seed (a slow machine takes a while to get going)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and any(e.get("done") for e in read_jsonl_lenient(journal)):
            return
        time.sleep(0.05)


def test_sigkill_then_rerun_gives_the_uninterrupted_bytes(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 1500)
    cmd = [sys.executable, "-m", "generator", "generate", str(seeds)]
    subprocess.run([*cmd, "-o", str(tmp_path / "clean")], check=True, capture_output=True)
    rng = random.Random(4)
    progress = []
    for _ in range(3):
        proc = subprocess.Popen(
            [*cmd, "-o", str(tmp_path / "killed")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_checkpoint(tmp_path / "killed" / "journal.jsonl", proc)
        time.sleep(rng.uniform(0.0, 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        journal = read_jsonl_lenient(tmp_path / "killed" / "journal.jsonl")
        progress.append(max((e.get("done", 0) for e in journal), default=0))
    assert any(0 < done < 3000 for done in progress), progress  # killed mid-run, not before
    subprocess.run([*cmd, "-o", str(tmp_path / "killed")], check=True, capture_output=True)
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["seeds"]["done"] == 3000


def test_sigterm_stops_cleanly_and_keeps_finished_work(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 1500)
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", "generate", str(seeds), "-o", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_checkpoint(tmp_path / "run" / "journal.jsonl", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "resume" in err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")  # every line whole
    assert 0 < manifest["seeds"]["done"] < 3000
    assert len({r["seed_id"] for r in rows}) <= manifest["seeds"]["done"]
    # and the same command finishes it to exactly what an uninterrupted run writes
    cmd = [sys.executable, "-m", "generator", "generate", str(seeds)]
    subprocess.run([*cmd, "-o", str(tmp_path / "run")], check=True, capture_output=True)
    subprocess.run([*cmd, "-o", str(tmp_path / "clean")], check=True, capture_output=True)
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


# A command's work blocked in a call that never returns, inside the event loop (as a read
# of a pipe nobody writes to is): a stop signal must still stop it.
BLOCKED = """
import asyncio, os, sys
from generator.console import stoppable

async def work():
    read, _ = os.pipe()
    try:
        print("ready", flush=True)
        os.read(read, 1)  # blocks the event loop: nothing is ever written
    finally:
        print("cleaned up", file=sys.stderr, flush=True)

with stoppable("nothing to keep"):
    asyncio.run(work())
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_work_blocked_inside_the_event_loop(signum):
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.2)  # into the read
        proc.send_signal(signum)
        start = time.monotonic()
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130 and time.monotonic() - start < 3
    # the stop ran the work's own cleanup, then said what it says for every command
    assert err.splitlines() == [
        "cleaned up",
        "interrupted: nothing to keep; run the same command to resume",
    ]


def test_a_second_signal_stops_at_once_when_the_cleanup_hangs():
    hanging = BLOCKED.replace('print("cleaned up"', 'os.read(read, 1); print("cleaned up"')
    proc = subprocess.Popen(
        [sys.executable, "-c", hanging], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(2)  # forced out of the read, the cleanup blocks in the next one
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130 and time.monotonic() - start < 2
    assert err.strip().endswith("interrupted: nothing to keep; run the same command to resume")
