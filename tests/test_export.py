import json
import os
import subprocess
import sys

import datasets
import pytest
from click.testing import CliRunner

from generator.cli import main

from .conftest import EXAMPLES, read_jsonl


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    # --probe none: every seed hedged (at no number), so every DPO construction is made;
    # test_probe.py exports a probed run's "I don't know" pairs
    result = invoke(
        "generate", EXAMPLES, "-o", out, "--candidates", "2", "--scorer", "none", "--probe", "none"
    )
    assert result.exit_code == 0, result.output
    return out


def load_jsonl(path):
    """Read the file the way a trainer does: datasets' JSON loader."""
    return datasets.load_dataset("json", data_files=str(path), split="train")


@pytest.mark.parametrize(
    "fmt,columns",
    [
        ("openai", ["messages"]),
        ("alpaca", ["instruction", "input", "output"]),
        ("sharegpt", ["conversations"]),
    ],
)
def test_sft_formats_load_and_hold_every_selected_row(run, tmp_path, fmt, columns):
    out = tmp_path / f"{fmt}.jsonl"
    result = invoke("export", run, "--format", fmt, "-o", out)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(run / "dataset.jsonl")
    assert f"{len(rows)} {fmt} rows -> {out}" in result.output
    loaded = load_jsonl(out)
    assert sorted(loaded.column_names) == sorted(columns) and len(loaded) == len(rows)
    for row, got in zip(rows, loaded, strict=True):
        prompt, response = row["messages"][0]["content"], row["messages"][1]["content"]
        if fmt == "openai":
            assert got["messages"] == [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": response},
            ]
        elif fmt == "alpaca":
            assert got == {"instruction": prompt, "input": "", "output": response}
        else:
            assert [t["from"] for t in got["conversations"]] == ["human", "gpt"]
            assert [t["value"] for t in got["conversations"]] == [prompt, response]


def test_default_output_lands_in_the_run_folder(run):
    result = invoke("export", run, "--format", "openai")
    assert result.exit_code == 0, result.output
    assert (run / "openai.jsonl").is_file()
    assert not list(run.glob("*.tmp"))


def test_hf_folder_loads_with_the_metadata_as_columns(run, tmp_path):
    out = tmp_path / "hf"
    result = invoke("export", run, "--format", "hf", "-o", out)
    assert result.exit_code == 0, result.output
    loaded = datasets.load_from_disk(str(out))
    rows = read_jsonl(run / "dataset.jsonl")
    assert len(loaded) == len(rows)
    assert {"id", "behavior", "pair_id", "messages", "confidence", "level", "kind", "nll"} <= set(
        loaded.column_names
    )
    for row, got in zip(rows, loaded, strict=True):
        assert got["id"] == row["id"] and got["behavior"] == row["behavior"]
        assert got["response"] == row["messages"][1]["content"]
        assert got["confidence"] == row["attributes"].get("confidence")
        assert json.loads(got["attributes"]) == row["attributes"]
    # exporting again replaces the folder whole
    assert invoke("export", run, "--format", "hf", "-o", out).exit_code == 0
    assert len(datasets.load_from_disk(str(out))) == len(rows)


def test_dpo_pairs_are_built_from_the_runs_contrasts(run, tmp_path):
    out = tmp_path / "dpo.jsonl"
    result = invoke("export", run, "--format", "dpo", "-o", out)
    assert result.exit_code == 0, result.output
    loaded = load_jsonl(out)
    assert sorted(loaded.column_names) == ["chosen", "prompt", "rejected"]
    pairs = list(loaded)
    assert all(p["chosen"].strip() and p["rejected"].strip() for p in pairs)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    rows = read_jsonl(run / "dataset.jsonl")
    by = {(p["prompt"], p["chosen"]): p["rejected"] for p in pairs}

    refusals = [r for r in rows if r["behavior"] == "refusal"]
    contrasts = {r["pair_id"]: r for r in rows if r["behavior"] == "contrast"}
    assert refusals
    for refusal in refusals:
        contrast = contrasts[refusal["pair_id"]]
        if refusal["attributes"]["kind"] == "unknown_to_model":
            # the decline wins over what the model said when the probe asked it ...
            said = by[(refusal["messages"][0]["content"], refusal["messages"][1]["content"])]
            assert said == refusal["attributes"]["model_answer"]
            # ... and the known question's answer wins over declining it
            declined = [
                p["rejected"]
                for p in pairs
                if (p["prompt"], p["chosen"]) == tuple(m["content"] for m in contrast["messages"])
            ]
            assert refusal["messages"][1]["content"] in declined
            continue
        fake, real = refusal["attributes"]["entity"], refusal["attributes"]["replaced"]
        # the decline wins over a confident answer about the made-up entity ...
        fabricated = by[(refusal["messages"][0]["content"], refusal["messages"][1]["content"])]
        assert fabricated == contrast["messages"][1]["content"].replace(real, fake)
        # ... and the real question's answer wins over declining it
        declined = [
            p["rejected"]
            for p in pairs
            if (p["prompt"], p["chosen"]) == tuple(m["content"] for m in contrast["messages"])
        ]
        assert refusal["messages"][1]["content"].replace(fake, real) in declined

    near = [r for r in rows if r["behavior"] == "near_miss"]
    assert near
    for row in near:
        trace = row["messages"][1]["content"]
        rejected = by[(row["messages"][0]["content"], trace)]
        assert trace.startswith(rejected) and len(rejected) < len(trace)
        assert row["attributes"]["slip"]["wrong"] in rejected
        recovery = row["attributes"]["recovery"]
        assert trace[recovery["start"] : recovery["end"]] not in rejected

    # a hedge pair exists exactly for the seeds that also have a near-miss
    hedged = {r["seed_id"] for r in rows if r["behavior"] == "hedge"}
    slipped = {r["seed_id"] for r in near}
    hedge_pairs = [
        p
        for p in pairs
        if any(p["chosen"] == r["messages"][1]["content"] for r in rows if r["behavior"] == "hedge")
    ]
    assert len(hedge_pairs) == len(hedged & slipped) > 0
    assert len(pairs) == 2 * len(refusals) + len(near) + len(hedged & slipped)
    assert f"over_refusal {len(refusals)}" in result.output


def test_an_unfinished_run_exports_only_what_its_journal_vouches_for(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with (copy / "dataset.jsonl").open("a") as fh:  # a seed written after the checkpoint
        fh.write('{"id": "torn", "messages": [{"role"')
    result = invoke("export", copy, "--format", "openai", "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "o.jsonl")) == len(read_jsonl(run / "dataset.jsonl"))
    assert "the run is interrupted" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["{examples}", "--format", "openai"], "not a hedgerow run folder"),
        (["{missing}", "--format", "openai"], "no such folder"),
        (
            ["{run}", "--format", "openai", "--push-to-hub", "me/x"],
            "--push-to-hub needs --format hf",
        ),
    ],
)
def test_bad_exports_are_one_line_errors(run, tmp_path, args, message):
    values = {"examples": EXAMPLES.parent, "missing": tmp_path / "nope", "run": run}
    result = invoke("export", *[a.format(**values) for a in args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_push_to_an_unreachable_hub_saves_first_and_says_so(run, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_canary_export_1234"}
    out = tmp_path / "hf"
    cmd = [sys.executable, "-m", "generator", "export", str(run), "--format", "hf", "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "--push-to-hub", "someone/data"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "pushing to the hub repo someone/data failed" in line
    assert "hf_canary_export_1234" not in proc.stderr + proc.stdout
    assert len(datasets.load_from_disk(str(out))) == len(read_jsonl(run / "dataset.jsonl"))


def test_an_output_never_replaces_a_folder_it_did_not_write(run, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    for fmt, target, message in (
        ("openai", precious, "is a folder; name a file"),
        ("hf", precious, "save_to_disk did not write"),
        ("openai", run, f"-o {run} is a run folder"),
        ("openai", run / "dataset.jsonl", f"is inside the run folder {run}"),
        ("openai", ".", "is a folder"),
    ):
        result = invoke("export", run, "--format", fmt, "-o", target)
        assert result.exit_code == 1, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert (precious / "keep.txt").read_text() == "keep"
    assert len(read_jsonl(run / "dataset.jsonl")) > 0


def test_a_run_with_no_selected_rows_exports_empty_files(tmp_path):
    from .conftest import write_jsonl

    seeds = write_jsonl(tmp_path / "s.jsonl", [{"question": "Write a poem about rain."}])
    assert invoke("generate", seeds, "-o", tmp_path / "run", "--behaviors", "hedge").exit_code == 0
    assert read_jsonl(tmp_path / "run" / "dataset.jsonl") == []
    for fmt in ("openai", "dpo", "hf"):
        result = invoke("export", tmp_path / "run", "--format", fmt)
        assert result.exit_code == 0, result.output
        assert f"0 {fmt} rows" in result.output
    assert len(datasets.load_from_disk(str(tmp_path / "run" / "hf"))) == 0
