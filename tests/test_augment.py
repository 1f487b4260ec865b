import csv
import json

import pytest
from click.testing import CliRunner

from generator.cli import main

from .conftest import EXAMPLES, read_jsonl, write_jsonl

SEEDS = read_jsonl(EXAMPLES)
ALPACA = [{"instruction": r["question"], "input": "", "output": r["answer"]} for r in SEEDS]
MIX = "hedge=0.5,refusal=0.5,near_miss=0.25"  # 12 rows: 6 hedges, 3 pairs, 3 near-misses


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def added_rows(run):
    """The run's dataset rows by (prompt, response), to find what each new row is."""
    return {
        (r["messages"][0]["content"], r["messages"][1]["content"]): r
        for r in read_jsonl(run / "dataset.jsonl")
    }


def test_an_alpaca_json_list_stays_one_with_every_row_and_the_mix(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps(ALPACA, indent=2))
    result = invoke("augment", source, "--mix", MIX, "--run", tmp_path / "run")
    assert result.exit_code == 0, result.output
    out = tmp_path / "data.augmented.json"
    assert out.read_text().startswith('[\n  {\n    "instruction"')  # its indentation kept
    rows = json.loads(out.read_text())
    assert rows[: len(ALPACA)] == ALPACA  # every original row intact, in order
    new = rows[len(ALPACA) :]
    assert all(list(r) == ["instruction", "input", "output"] for r in new)
    made = added_rows(tmp_path / "run")
    behaviors = [made[(r["instruction"], r["output"])]["behavior"] for r in new]
    assert behaviors.count("hedge") == 6 and behaviors.count("near_miss") == 3
    assert behaviors.count("refusal") == behaviors.count("contrast") == 3
    # pairs are whole: every refusal's contrast came with it
    pairs = [made[(r["instruction"], r["output"])]["pair_id"] for r in new]
    refusal_pairs = [p for p, b in zip(pairs, behaviors, strict=True) if b == "refusal"]
    contrast_pairs = [p for p, b in zip(pairs, behaviors, strict=True) if b == "contrast"]
    assert sorted(refusal_pairs) == sorted(contrast_pairs)
    assert f"{len(ALPACA)} rows + 15 new -> data.augmented.json" in result.output


def test_odd_refusal_shares_round_to_whole_pairs_and_shortfalls_are_said(tmp_path):
    source = write_jsonl(tmp_path / "d.jsonl", SEEDS)
    result = invoke("augment", source, "--mix", "refusal=0.3,near_miss=1", "--run", tmp_path / "r")
    assert result.exit_code == 0, result.output
    # 0.3 * 12 = 3.6 rows -> 2 pairs; only 4 seeds hold a worked calculation
    assert "refusal         4 added of 4" in result.output
    assert "near_miss       4 added of 12" in result.output
    assert "short: near_miss has 8 rows fewer than asked" in result.output


def test_chat_jsonl_keeps_its_bytes_turn_keys_and_role_names(tmp_path):
    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": r["question"]},
                {"from": "gpt", "value": r["answer"]},
            ]
        }
        for r in SEEDS
    ]
    messages = [
        {
            "messages": [
                {"role": "user", "content": r["question"]},
                {"role": "assistant", "content": r["answer"]},
            ]
        }
        for r in SEEDS
    ]
    for name, rows, keys in (
        ("share", sharegpt, ("from", "value", "human", "gpt")),
        ("chat", messages, ("role", "content", "user", "assistant")),
    ):
        source = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        out = tmp_path / f"{name}-out.jsonl"
        result = invoke("augment", source, "-o", out, "--mix", "hedge=0.25")
        assert result.exit_code == 0, result.output
        assert out.read_bytes().startswith(source.read_bytes())
        new = read_jsonl(out)[len(rows) :]
        assert len(new) == 3
        field = "conversations" if name == "share" else "messages"
        role, text, user, assistant = keys
        for row in new:
            assert list(row) == [field]
            assert [t[role] for t in row[field]] == [user, assistant]
            assert row[field][1][text].strip()


def test_csv_keeps_its_bytes_and_header(tmp_path):
    source = tmp_path / "d.csv"
    with source.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "answer"])
        writer.writeheader()
        writer.writerows(SEEDS)
    out = tmp_path / "o.csv"
    result = invoke("augment", source, "-o", out, "--mix", "hedge=0.5")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(source.read_bytes())
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [dict(r) for r in rows[:12]] == [{k: str(v) for k, v in r.items()} for r in SEEDS]
    assert len(rows) == 18 and all(r["id"] and r["question"] and r["answer"] for r in rows[12:])
    assert len({r["id"] for r in rows}) == 18  # new ids do not collide with the old


def test_parquet_and_save_to_disk_keep_their_schema(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([dict(r, n=i) for i, r in enumerate(SEEDS)])
    pq.write_table(table, tmp_path / "d.parquet")
    result = invoke("augment", tmp_path / "d.parquet", "--mix", "hedge=0.5")
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "d.augmented.parquet")
    assert out.schema == table.schema and out.num_rows == 18
    assert out.slice(0, 12).to_pylist() == table.to_pylist()
    assert out.column("n").to_pylist()[12:] == [None] * 6  # a column augment cannot fill

    folder = tmp_path / "disk"
    datasets.Dataset.from_list(SEEDS).save_to_disk(str(folder))
    result = invoke("augment", folder, "--mix", "hedge=0.5,refusal=0.5", "-o", tmp_path / "disk2")
    assert result.exit_code == 0, result.output
    loaded = datasets.load_from_disk(str(tmp_path / "disk2"))
    assert loaded.features == datasets.load_from_disk(str(folder)).features
    assert len(loaded) == 24 and loaded.select(range(12)).to_list() == SEEDS


def test_shuffle_is_deterministic_and_changes_only_the_order(tmp_path):
    source = write_jsonl(tmp_path / "d.jsonl", SEEDS)
    outs = {}
    for name, extra in (("plain", []), ("a", ["--shuffle"]), ("b", ["--shuffle"])):
        outs[name] = tmp_path / f"{name}.jsonl"
        result = invoke("augment", source, "-o", outs[name], "--mix", MIX, *extra)
        assert result.exit_code == 0, result.output
    assert outs["a"].read_bytes() == outs["b"].read_bytes()
    plain, mixed = outs["plain"].read_text().splitlines(), outs["a"].read_text().splitlines()
    assert plain != mixed and sorted(plain) == sorted(mixed)


def test_a_quota_stops_the_run_once_it_is_met_and_reruns_give_the_same_rows(tmp_path):
    rows = [
        {
            "question": f"Box {i} holds {3 + i % 7} rows of {4 + i % 5} cups. How many cups?",
            "answer": f"{3 + i % 7} * {4 + i % 5} = {(3 + i % 7) * (4 + i % 5)} cups.\n#### "
            f"{(3 + i % 7) * (4 + i % 5)}",
        }
        for i in range(400)
    ]
    source = write_jsonl(tmp_path / "d.jsonl", rows)
    for run in ("r1", "r2"):
        result = invoke(
            "augment",
            source,
            "--mix",
            "hedge=0.05",
            "--run",
            tmp_path / run,
            "-o",
            tmp_path / f"{run}.jsonl",
        )
        assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "r1" / "manifest.json").read_text())
    assert manifest["seeds"]["done"] < 40  # 20 hedge rows from about 10 seeds, not 400
    assert manifest["config"]["quota"] == [["hedge", 20]]
    assert (tmp_path / "r1.jsonl").read_bytes() == (tmp_path / "r2.jsonl").read_bytes()
    # the hedged seeds are a random sample, not the first rows of the file
    index = {r["question"]: i for i, r in enumerate(rows)}
    used = [
        index[r["messages"][0]["content"]] for r in read_jsonl(tmp_path / "r1" / "dataset.jsonl")
    ]
    assert max(used) > 100


@pytest.mark.parametrize(
    "args,message",
    [
        (["--mix", "hedges=0.1"], "unknown behavior 'hedges'; use hedge, near_miss, refusal"),
        (["--mix", "hedge=-0.1"], "hedge=-0.1 is negative"),
        (["--mix", "hedge=0"], "--mix asks for no rows"),
        (["--mix", "hedge"], "has no '='"),
        (["--mix", "near_miss=1.5"], "asks for 18 rows, but 12 rows can give at most 12 near_miss"),
        (["--mix", "refusal=2.5"], "can give at most 24 refusal rows"),
        (["-o", "{source}"], "is the input"),
    ],
)
def test_bad_mixes_and_outputs_are_one_line_errors(tmp_path, args, message):
    source = write_jsonl(tmp_path / "d.jsonl", SEEDS)
    result = invoke("augment", source, *[a.format(source=source) for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "d.augmented.jsonl").exists()


def test_a_dataset_without_answers_is_refused(tmp_path):
    source = write_jsonl(tmp_path / "q.jsonl", [{"question": r["question"]} for r in SEEDS])
    result = invoke("augment", source)
    assert result.exit_code == 1
    assert "no response column found" in result.output


def test_quota_runs_against_a_concurrent_endpoint_write_the_same_files(tmp_path):
    from tests.fakeserver import FakeServer, Plan

    rows = [
        {
            "question": f"A tin holds {i + 2} rows of {i + 3} pins. How many pins?",
            "answer": f"{i + 2} * {i + 3} = {(i + 2) * (i + 3)} pins.\n#### {(i + 2) * (i + 3)}",
        }
        for i in range(120)
    ]
    source = write_jsonl(tmp_path / "d.jsonl", rows)
    with FakeServer(Plan(delay=0.01, seed=3)) as server:
        for run in ("a", "b"):
            result = invoke(
                "augment",
                source,
                "--mix",
                "hedge=0.1,near_miss=0.05",
                "--run",
                tmp_path / run,
                "-o",
                tmp_path / f"{run}.jsonl",
                "--backend",
                "openai",
                "--model",
                "fake",
                "--base-url",
                server.url,
                "--concurrency",
                "8",
            )
            assert result.exit_code == 0, result.output
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    made = read_jsonl(tmp_path / "a" / "dataset.jsonl")
    assert sum(r["behavior"] == "hedge" for r in made) == 12
    assert sum(r["behavior"] == "near_miss" for r in made) == 6


def test_the_output_keeps_its_place_and_its_type(tmp_path):
    source = write_jsonl(tmp_path / "d.jsonl", SEEDS)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.md").write_text("mine")
    for args, message in (
        (["-o", folder], "is a folder; name a file"),
        (["-o", tmp_path / "d.parquet"], "give it a name ending in .jsonl or .ndjson or .json"),
        (["--mix", "hedge=0.01"], "gives 0 rows for 12 rows"),
    ):
        result = invoke("augment", source, *args)
        assert result.exit_code == 1, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert (folder / "notes.md").read_text() == "mine"
    assert not (tmp_path / "outputs").exists()  # refused before any generation


def test_json_style_bom_system_turns_and_numeric_ids_are_kept(tmp_path):
    bom = b"\xef\xbb\xbf"
    # a tab-indented list with ASCII escapes and a byte-order mark
    alpaca = [dict(r, instruction=r["instruction"] + " \u00e9") for r in ALPACA]
    (tmp_path / "t.json").write_bytes(bom + json.dumps(alpaca, indent="\t").encode())
    assert invoke("augment", tmp_path / "t.json", "--mix", "hedge=0.25").exit_code == 0
    out = (tmp_path / "t.augmented.json").read_bytes()
    assert out.startswith(bom + b'[\n\t{\n\t\t"instruction"') and b"\\u00e9" in out
    assert json.loads(out[3:])[:12] == alpaca
    # a compact list stays compact
    (tmp_path / "c.json").write_text(json.dumps(ALPACA, separators=(",", ":")))
    assert invoke("augment", tmp_path / "c.json", "--mix", "hedge=0.25").exit_code == 0
    compact = (tmp_path / "c.augmented.json").read_text()
    assert compact.startswith(json.dumps(ALPACA, separators=(",", ":"))[:-1] + ",")
    # a BOM stays in front of a shuffled JSONL, which still reads back
    (tmp_path / "b.jsonl").write_bytes(
        bom
        + (tmp_path / "t.json").read_bytes()[:0]
        + b"".join(json.dumps(r).encode() + b"\n" for r in SEEDS)
    )
    assert invoke("augment", tmp_path / "b.jsonl", "--shuffle", "--seed", "3").exit_code == 0
    shuffled = tmp_path / "b.augmented.jsonl"
    assert shuffled.read_bytes().startswith(bom)
    assert invoke("generate", shuffled, "--dry-run").exit_code == 0
    # every conversation opens with the same system turn: new ones do too
    chats = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": r["question"]},
                {"role": "assistant", "content": r["answer"]},
            ]
        }
        for r in SEEDS
    ]
    write_jsonl(tmp_path / "s.jsonl", chats)
    assert invoke("augment", tmp_path / "s.jsonl", "--mix", "hedge=0.25").exit_code == 0
    new = read_jsonl(tmp_path / "s.augmented.jsonl")[12:]
    assert new and all(r["messages"][0] == {"role": "system", "content": "Be brief."} for r in new)
    # a CSV of whole-number ids goes on counting
    with (tmp_path / "n.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "answer"])
        writer.writeheader()
        writer.writerows(dict(r, id=str(10 + i)) for i, r in enumerate(SEEDS))
    assert invoke("augment", tmp_path / "n.csv", "--mix", "hedge=0.25").exit_code == 0
    with (tmp_path / "n.augmented.csv").open(newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    assert ids[12:] == ["22", "23", "24"]
