"""A behavior that `replaces` rewrites the input's own responses: `augment` writes each of
its rows over the input row it came from, in every format, and leaves the rest of the file
as it was."""

import json
import re
import textwrap

import pytest

from tests.test_plugins import hedgerow, rows

REWRITE = '''
from pathlib import Path

from generator.generators import Generator, register


@register
class Rewrite(Generator):
    """Says the reference again, marked (a toy rewrite)."""

    name = "rewrite"
    template = "rewrite/offline.j2"
    bank = "rewrite/offline.j2"
    replaces = True
    default = False
    share = 1.0
    prompts_dir = Path(__file__).parent / "prompts"

    def offline(self, seed, ctx, k):
        if skip := self.unsuitable(seed):
            return skip
        if "skip me" in seed.prompt:
            return self.skip(seed, "asked_to_skip")
        text = self.prompts.render(self.template, answer=seed.response.strip())
        return [self.example(seed, "rewrite", 0, seed.prompt, text, {})]

    def check(self, example, reference):
        return ["toy_failure"] if "2 + 2" in example.prompt else []

    def fallback(self, seed, reference, verdicts):
        why = [v.failures[0] for v in verdicts]
        return self.example(seed, "rewrite", 1, seed.prompt, reference, {"fallback": why})
'''

ROWS = [
    {"id": 7, "instruction": "Name a primary colour.", "output": "Red.", "note": "a"},
    {"id": 8, "instruction": "What is 2 + 2?", "output": "4", "note": "b"},
    {"id": 9, "instruction": "Please skip me.", "output": "Kept as it was.", "note": "c"},
    {"id": 10, "instruction": "Spell 'cat'.", "output": "C-A-T", "note": "d, with a comma"},
]


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    (site / "rewriteplug" / "prompts" / "rewrite").mkdir(parents=True)
    (site / "rewriteplug" / "__init__.py").write_text(textwrap.dedent(REWRITE))
    (site / "rewriteplug" / "prompts" / "rewrite" / "offline.j2").write_text(
        "In my words: {{ answer }}\n"
    )
    info = site / "rewriteplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rewriteplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hedgerow.generators]\nrewrite = rewriteplug:Rewrite\n")
    return site


def _write(path, kind):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif kind == "json":
        path.write_text(json.dumps(ROWS, indent=2))
    elif kind == "csv":
        import csv

        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(ROWS[0]))
            writer.writeheader()
            writer.writerows(ROWS)
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    else:
        import datasets

        datasets.Dataset.from_list(ROWS).save_to_disk(str(path))


def _read(path, kind):
    if kind == "jsonl":
        return rows(path)
    if kind == "json":
        return json.loads(path.read_text())
    if kind == "csv":
        import csv

        with path.open(newline="") as fh:
            return [{**r, "id": int(r["id"])} for r in csv.DictReader(fh)]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    import datasets

    return datasets.load_from_disk(str(path)).to_list()


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "disk"])
def test_augment_rewrites_each_row_in_place_in_every_format(site, tmp_path, kind):
    source = tmp_path / ("data" if kind == "disk" else f"data.{kind}")
    _write(source, kind)
    out = tmp_path / ("out" if kind == "disk" else f"out.{kind}")
    done = hedgerow(site, "augment", source, "--mix", "rewrite=1.0", "-o", out)
    assert done.returncode == 0, done.stderr
    # the failed rewrite's row is its fallback (the reference), so 3 of 4 rows came back
    assert re.search(r"^4 rows \(3 rewritten\) \+ 0 new ", done.stdout)
    assert re.search(r"rewrite +3 rewritten of 4", done.stdout)
    written = _read(out, kind)
    assert len(written) == len(ROWS)  # nothing added: the rows were rewritten
    for before, after in zip(ROWS, written, strict=True):
        assert {k: v for k, v in after.items() if k != "output"} == {
            k: v for k, v in before.items() if k != "output"
        }
        if "skip me" in before["instruction"] or "2 + 2" in before["instruction"]:
            assert after["output"] == before["output"]  # skipped, or its fallback
        else:
            assert after["output"] == f"In my words: {before['output']}"


def test_rewrites_and_added_rows_together_and_chat_rows(site, tmp_path):
    source = tmp_path / "chat.jsonl"
    chats = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": r["instruction"]},
                {"role": "assistant", "content": r["output"]},
            ]
        }
        for r in ROWS
    ]
    source.write_text("".join(json.dumps(c) + "\n" for c in chats))
    out = tmp_path / "out.jsonl"
    done = hedgerow(site, "augment", source, "--mix", "rewrite=1.0,hedge=0.5", "-o", out)
    assert done.returncode == 0, done.stderr
    written = rows(out)
    rewritten, added = written[: len(chats)], written[len(chats) :]
    assert added and all(len(r["messages"]) == 3 for r in added)  # hedges, appended
    for before, after in zip(chats, rewritten, strict=True):
        assert after["messages"][:2] == before["messages"][:2]
        reply = after["messages"][2]["content"]
        asked = before["messages"][1]["content"]
        if "skip me" in asked or "2 + 2" in asked:
            assert reply == before["messages"][2]["content"]
        else:
            assert reply == "In my words: " + before["messages"][2]["content"]
    # the rows that were not rewritten keep their bytes
    lines = source.read_bytes().splitlines(keepends=True)
    assert out.read_bytes().splitlines(keepends=True)[2] == lines[2]


def test_a_behavior_s_fallback_row_stands_in_when_every_candidate_fails(site, tmp_path):
    source = tmp_path / "data.jsonl"
    _write(source, "jsonl")
    run = tmp_path / "run"
    done = hedgerow(site, "generate", source, "--behaviors", "rewrite", "-o", run)
    assert done.returncode == 0, done.stderr
    kept = {r["messages"][0]["content"]: r for r in rows(run / "dataset.jsonl")}
    assert set(kept) == {r["instruction"] for r in ROWS if "skip me" not in r["instruction"]}
    fallback = kept["What is 2 + 2?"]
    assert fallback["messages"][-1]["content"] == "4"
    assert fallback["attributes"] == {"fallback": ["toy_failure"]}
    assert kept["Name a primary colour."]["attributes"] == {}
    tried = [c for c in rows(run / "candidates.jsonl") if c.get("seed_id") == fallback["seed_id"]]
    assert [(c["status"], c.get("drop_reason")) for c in tried] == [
        ("dropped", "failed:toy_failure"),
        ("selected", None),
    ]
