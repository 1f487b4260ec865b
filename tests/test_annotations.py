import json
import re

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from generator import annotations
from generator.cli import main
from generator.values import Example

from .conftest import read_jsonl, write_jsonl

SEEDS = [
    {
        "question": "A farm has 12 rows of 4 hens and sells half. How many hens are left?",
        "answer": "It has 12 * 4 = <<12*4=48>>48 hens.\n"
        "Half are sold, so 48 / 2 = <<48/2=24>>24 hens are left.\n#### 24",
    },
    {
        "question": "How long ago was the Treaty of Westphalia signed?",
        "answer": "It was signed in 1648, so 2024 - 1648 = <<2024-1648=376>>376 years ago.",
    },
]


def test_strip_removes_annotations_only():
    assert annotations.remove("So 48 / 2 = <<48/2=24>>24 hens.") == "So 48 / 2 = 24 hens."
    assert annotations.remove("cout << x;\ny >> z") == "cout << x;\ny >> z"


pieces = st.lists(
    st.one_of(
        st.text(alphabet="ab 12.\n", min_size=1, max_size=6),
        st.builds(lambda a, b: f"<<{a}*{b}={a * b}>>", st.integers(1, 99), st.integers(1, 99)),
    ),
    max_size=8,
)


@given(before=pieces, marked=st.text(alphabet="xyz 9", min_size=1, max_size=5), after=pieces)
def test_spans_move_with_the_stripped_text(before, marked, after):
    head, tail = "".join(before), "".join(after)
    text = head + marked + tail
    span = {"start": len(head), "end": len(head) + len(marked), "wrong": marked}
    example = Example("x", "s", "near_miss", "p", text, {"slip": span, "other": dict(span)})
    out = annotations.apply(example, keep=False, spans=("slip",))
    assert "<<" not in out.response or not annotations.ANNOTATION.search(out.response)
    moved = out.attributes["slip"]
    assert out.response[moved["start"] : moved["end"]] == marked == moved["wrong"]
    assert out.attributes["other"] == span  # not a declared span: left alone
    assert annotations.apply(example, keep=True, spans=("slip",)) == example


def run(tmp_path, name, *extra, env=None):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    out = tmp_path / name
    result = CliRunner().invoke(
        main,
        ["generate", str(seeds), "-o", str(out), "--candidates", "2", *extra],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out, read_jsonl(out / "dataset.jsonl"), read_jsonl(out / "candidates.jsonl")


def responses(rows):
    return {
        r["behavior"]: [m["content"] for m in r["messages"] if m["role"] == "assistant"]
        for r in rows
        if "messages" in r
    }


def test_every_behavior_strips_annotations_by_default_and_the_checks_hold(tmp_path):
    _, rows, candidates = run(tmp_path, "strip")
    by_behavior = responses(rows)
    assert {"hedge", "near_miss", "refusal", "contrast"} <= set(by_behavior)
    every = [m["content"] for r in candidates if "messages" in r for m in r["messages"]]
    assert every and not any("<<" in text for text in every)
    stripped = annotations.remove(SEEDS[0]["answer"])
    hedges = [r for r in rows if r["behavior"] == "hedge" and r["seed_id"] == rows[0]["seed_id"]]
    assert hedges and all(stripped in r["messages"][1]["content"] for r in hedges)
    assert all(c["checks"]["passed"] for c in candidates if c.get("checks"))
    # a near-miss still points at its slip and its recovery after the text moved
    for row in rows:
        if row["behavior"] == "near_miss":
            text, slip = row["messages"][1]["content"], row["attributes"]["slip"]
            assert text[slip["start"] : slip["end"]] == slip["wrong"]
            recovery = row["attributes"]["recovery"]
            assert slip["right"] in text[recovery["start"] : recovery["end"]]


def test_keep_calculator_annotations_keeps_them_everywhere_and_is_its_own_run(tmp_path):
    strip_out, _, _ = run(tmp_path, "strip")
    keep_out, rows, candidates = run(tmp_path, "keep", "--keep-calculator-annotations")
    env_out, env_rows, _ = run(tmp_path, "env", env={"HEDGEROW_KEEP_CALCULATOR_ANNOTATIONS": "1"})
    assert env_rows == rows
    for row in rows:  # every row built from a reference (a decline quotes none)
        if row["behavior"] != "refusal":
            assert re.search(r"<<[^>]+>>", row["messages"][1]["content"]), row["behavior"]
    hedges = [r for r in rows if r["behavior"] == "hedge" and "hens" in r["messages"][1]["content"]]
    assert all(SEEDS[0]["answer"] in r["messages"][1]["content"] for r in hedges)
    assert all(c["checks"]["passed"] for c in candidates if c.get("checks"))
    manifests = [json.loads((o / "manifest.json").read_text()) for o in (strip_out, keep_out)]
    assert [m["config"]["keep_calculator_annotations"] for m in manifests] == [False, True]
    assert manifests[0]["fingerprint"] != manifests[1]["fingerprint"]
