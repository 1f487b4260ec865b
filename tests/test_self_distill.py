"""Self-distillation (SDFT): the target model's own rewrite of each reference, checked as the
paper checks it, the reference kept when every rewrite fails, and `augment --mix
self_distill=1.0` writing the rewrites over the rows they rewrote."""

import json
import re

import pytest
from click.testing import CliRunner

from generator.cli import main
from generator.generators.self_distill import SelfDistill, numbers
from generator.templates import Prompts
from generator.values import Example, short_hash
from tests import fakeserver
from tests.conftest import read_jsonl, write_jsonl
from tests.fakeserver import FakeServer

SEEDS = [
    {
        "id": "math",
        "question": "Ann has 3 bags of 6 apples. How many apples?",
        "answer": "3 * 6 = 18 apples.\n#### 18",
    },
    {
        "id": "fact",
        "question": "Who wrote Frankenstein, and when?",
        "answer": "Mary Shelley wrote it; it came out in 1818.",
    },
    {"id": "hard", "question": "What is 12 squared?", "answer": "12 * 12 = 144\n#### 144"},
    {"id": "open", "question": "Name a colour.", "answer": ""},
]

# What the model answers to each question, candidate by candidate (sample 0, 1, 2).
REWRITES = {
    "Ann has 3 bags": [
        "Looking at the reference answer, it is 18.",  # talks about the reference
        "Each bag has 6 apples and there are 3 bags, so she has 3 x 6 = 18.00 apples.",
        "She has 19 apples.",  # wrong
    ],
    "Who wrote Frankenstein": [
        "It was written by Shelley in 1818.",  # drops a name (Mary)
        "Mary Shelley wrote Frankenstein, published in 1818.",
        "Mary Shelley wrote it in 1817.",  # changes a number
    ],
    "12 squared": [
        "Now it's your turn: 144.",
        "12 squared is 124.",
        "It is one hundred and forty-four.",  # no number: the final answer is not kept
    ],
}


def _sample(seed_param: int, run_seed: int = 0, k: int = 3) -> int:
    """Which candidate a request is, from the per-sample seed the client sends."""
    for i in range(k):
        if int(short_hash(str(run_seed), str(i)), 16) % (2**31) == seed_param:
            return i
    raise AssertionError(f"unknown sample seed {seed_param}")


@pytest.fixture
def model(monkeypatch):
    """The fake server, answering the self-distillation request from REWRITES."""
    cooperative = fakeserver.answer
    samples = {}

    def answer(messages):
        user = messages[-1]["content"]
        if "Example answer (a guide" not in user:
            return cooperative(messages)
        question = fakeserver._between(user, "question")
        key = next(k for k in REWRITES if k in question)
        return json.dumps({"response": REWRITES[key][samples[question]]})

    monkeypatch.setattr(fakeserver, "answer", answer)
    with FakeServer() as server:
        original = server._respond

        # Plan() has no delay and no faults: nothing awaits between noting the sample
        # and `answer`, so concurrent requests cannot swap their samples.
        async def respond(method, path, body, writer, arrived):
            if method == "POST" and path.endswith("/chat/completions"):
                request = json.loads(body)
                question = fakeserver._between(request["messages"][-1]["content"], "question")
                samples[question] = _sample(request["seed"])
            return await original(method, path, body, writer, arrived)

        server._respond = respond
        yield server


def _example(response: str) -> Example:
    return Example("x", "s", "self_distill", "q", response)


@pytest.mark.parametrize(
    ("reference", "response", "failures"),
    [
        ("3 * 6 = 18.\n#### 18", "So 18.00 in all.", []),
        ("3 * 6 = 18.\n#### 18", "So 1,8 in all, or 17.", ["changed_final_answer"]),
        ("3 * 6 = 18.\n#### 18", "The reference answer says 18.", ["talks_about_reference"]),
        ("Paris is the capital of France.", "France's capital is Paris.", []),
        ("Paris is the capital of France.", "It is Lyon.", ["dropped_a_name"]),
        ("It has 1,000 rooms.", "There are 1000 rooms.", []),
        ("It has 1,000 rooms.", "There are 100 rooms.", ["changed_a_number"]),
        ("Blue.", "Your turn: blue.", ["talks_about_reference"]),
    ],
)
def test_the_checks_are_the_papers(reference, response, failures):
    generator = SelfDistill(Prompts(None))
    assert generator.check(_example(response), reference) == failures


def test_numbers_compare_by_value():
    assert numbers("1,000 and 2.50, then -3.") == numbers("1000 and 2.5, then -3")


def test_offline_it_is_skipped_because_it_needs_a_model(tmp_path):
    source = write_jsonl(tmp_path / "s.jsonl", SEEDS)
    out = CliRunner().invoke(
        main, ["generate", str(source), "--behaviors", "self_distill", "-o", "run"]
    )
    assert out.exit_code == 0, out.output
    rows = read_jsonl(tmp_path / "run" / "candidates.jsonl")
    reasons = {r["seed_id"]: (r["reason"], r["detail"]) for r in rows}
    assert reasons["open"][0] == "no_reference_answer"
    for seed in ("math", "fact", "hard"):
        assert reasons[seed][0] == "needs_a_model"
        assert "--backend openai --model NAME" in reasons[seed][1]
    assert not read_jsonl(tmp_path / "run" / "dataset.jsonl")


def _openai(url, *args):
    base = ["--backend", "openai", "--model", "fake", "--base-url", url, "--candidates", "3"]
    return CliRunner().invoke(main, [*args, *base], catch_exceptions=False)


def test_through_a_model_the_best_correct_rewrite_is_kept_else_the_reference(tmp_path, model):
    source = write_jsonl(tmp_path / "s.jsonl", SEEDS)
    out = _openai(model.url, "generate", str(source), "--behaviors", "self_distill", "-o", "run")
    assert out.exit_code == 0, out.output
    kept = {r["seed_id"]: r for r in read_jsonl(tmp_path / "run" / "dataset.jsonl")}
    assert set(kept) == {"math", "fact", "hard"}  # "open" has no answer to rewrite
    assert kept["math"]["messages"][-1]["content"] == REWRITES["Ann has 3 bags"][1]
    assert kept["fact"]["messages"][-1]["content"] == REWRITES["Who wrote Frankenstein"][1]
    assert kept["math"]["provenance"]["model"] == "fake"
    # every rewrite of "hard" failed: SDFT's fallback keeps the reference, and says why
    hard = kept["hard"]
    assert hard["messages"][-1]["content"] == "12 * 12 = 144\n#### 144"
    assert hard["attributes"]["fallback"] == ["changed_final_answer", "talks_about_reference"]
    assert hard["provenance"]["backend"] == "reference"
    failures = {
        (r["seed_id"], r.get("drop_reason"))
        for r in read_jsonl(tmp_path / "run" / "candidates.jsonl")
        if r["status"] == "dropped"
    }
    assert ("math", "failed:talks_about_reference") in failures
    assert ("math", "failed:changed_final_answer") in failures
    assert ("fact", "failed:dropped_a_name") in failures
    assert ("fact", "failed:changed_a_number") in failures


def test_augment_rewrites_the_dataset_in_place(tmp_path, model):
    source = write_jsonl(tmp_path / "train.jsonl", SEEDS)
    out = _openai(model.url, "augment", str(source), "--mix", "self_distill=1.0", "-o", "out.jsonl")
    assert out.exit_code == 0, out.output
    assert re.search(r"^4 rows \(3 rewritten\) \+ 0 new", out.output)
    written = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in written] == [s["id"] for s in SEEDS]
    answers = {r["id"]: r["answer"] for r in written}
    assert answers == {
        "math": REWRITES["Ann has 3 bags"][1],
        "fact": REWRITES["Who wrote Frankenstein"][1],
        "hard": SEEDS[2]["answer"],  # its fallback: the reference as it was
        "open": "",
    }
    assert all(r["question"] == s["question"] for r, s in zip(written, SEEDS, strict=True))
