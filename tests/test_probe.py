"""The knowledge probe: which references are checkable, how answers are matched, the
categories, and the real embedded model probed in-process and through its server."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.errors import TemplateError
from generator.probe.answers import Answers, Expected, fold
from generator.templates import Prompts
from generator.values import Knowledge

from .conftest import read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def answers():
    return Answers(Prompts())


@pytest.mark.parametrize(
    "question, reference, kind, text",
    [
        ("What is the capital of Chile?", "Santiago", "span", "Santiago"),
        ("What is the capital of Chile?", "The capital of Chile is Santiago.", "span", "Santiago"),
        (
            "Who composed the opera Carmen?",
            "Georges Bizet composed Carmen in 1875.",
            "span",
            "Georges Bizet",
        ),
        ("How many moons does Mars have?", "Mars has 2 moons, Phobos and Deimos.", "number", "2"),
        ("Tom has 3 bags of 12 pears. How many pears?", "3 * 12 = 36\n#### 36", "number", "36"),
        ("What is 15% of 200?", "15% of 200 is 30, so the answer is 30.", "number", "30"),
        ("Name the largest desert in Africa.", "The Sahara.", "span", "The Sahara"),
    ],
)
def test_checkable_references_give_their_short_answer(answers, question, reference, kind, text):
    expected = answers.expected(question, reference)
    assert isinstance(expected, Expected), expected
    assert (expected.kind, expected.text) == (kind, text)


@pytest.mark.parametrize(
    "question, reference, reason",
    [
        ("Write a haiku about rain.", "Soft rain on the roof", "not_knowledge"),
        ("Explain how tides work.", "Tides come from the Moon's pull.", "not_knowledge"),
        ("Name three primary colors.", "Red, blue and yellow.", "many_answers"),
        ("What is a good habit?", "One\ntwo\nthree", "long_form"),
        ("Is the sky blue?", "Yes.", "not_a_fact"),
        ("What is the capital of Chile?", "", "no_reference"),
        (
            "Why do cats purr?",
            "Cats purr for many reasons. They purr when content. They also purr when hurt, "
            "and scientists still argue about how the sound is made in the larynx.",
            "long_form",
        ),
    ],
)
def test_long_form_and_open_references_are_not_checkable(answers, question, reference, reason):
    assert answers.expected(question, reference) == reason


@pytest.mark.parametrize(
    "expected, answer, right",
    [
        (Expected("span", "Santiago"), "Santiago", True),
        (Expected("span", "Santiago"), "santiago, of course\nQuestion: next", True),
        (Expected("span", "São Paulo"), "Sao Paulo", True),
        (Expected("span", "The Sahara"), "the sahara desert", True),
        (Expected("span", "Santiago"), "Valparaíso", False),
        (Expected("span", "Paris"), "Parisian food", False),  # whole words only
        (Expected("span", "Santiago"), "\nSantiago", False),  # the answer ends at a newline
        (Expected("number", "36", 36.0), "36 pears", True),
        (Expected("number", "36", 36.0), "3 * 12 = 36", True),
        (Expected("number", "1250", 1250.0), "1,250", True),
        (Expected("number", "36", 36.0), "about 35", False),
        (Expected("number", "36", 36.0), "thirty-six", False),
    ],
)
def test_an_answer_is_right_by_containment_or_numeric_equality(answers, expected, answer, right):
    assert answers.correct(expected, answer) is right


@given(st.text(max_size=40))
def test_fold_is_idempotent_and_never_keeps_punctuation_or_case(text):
    once = fold(text)
    assert fold(once) == once
    assert once == once.casefold() and "," not in once and "  " not in once


@given(st.booleans(), st.lists(st.booleans(), min_size=1, max_size=16))
def test_categories_follow_slick_from_greedy_and_samples(greedy, right):
    k = Knowledge.measure(greedy, right)
    assert k.correct == sum(right) and k.samples == len(right)
    assert k.p_correct == round(sum(right) / len(right), 4)
    expected = (
        ("HighlyKnown" if all(right) else "MaybeKnown")
        if greedy
        else ("WeaklyKnown" if any(right) else "Unknown")
    )
    assert k.category == expected


def test_a_wrong_type_in_the_probe_bank_is_one_line_naming_the_field(tmp_path):
    (tmp_path / "probe").mkdir()
    source = Prompts().source("probe/probe.toml").replace("exemplars = 4", 'exemplars = "four"')
    (tmp_path / "probe" / "probe.toml").write_text(source, encoding="utf-8")
    with pytest.raises(TemplateError) as e:
        Answers(Prompts(tmp_path))
    message = str(e.value)
    assert "probe.toml" in message and "exemplars" in message and "\n" not in message


# ---------------------------------------------------------------- the real embedded model

KNOWN = [  # capitals of large countries: the 270M base model gets these right
    ("cap-france", "What is the capital of France?", "Paris"),
    ("cap-germany", "What is the capital of Germany?", "Berlin"),
    ("cap-russia", "What is the capital of Russia?", "Moscow"),
    ("cap-japan", "What is the capital of Japan?", "Tokyo"),
    ("cap-italy", "What is the capital of Italy?", "Rome"),
]
FABRICATED = [  # people and firms that do not exist: nothing to know
    ("who-veltrazon", "Who founded the company Veltrazon Dynamics?", "Marta Quelwick"),
    ("who-ostrell", "Who wrote the novel The Ostrell Ledger?", "Idris Varnholt"),
]
LONG_FORM = ("essay", "Explain why the sky is blue.", "Sunlight scatters off air.\nBlue most.")


def probe_seeds(path: Path) -> Path:
    rows = [{"id": i, "question": q, "answer": a} for i, q, a in [*KNOWN, *FABRICATED, LONG_FORM]]
    return write_jsonl(path, rows)


# The probe on, the scorer off (the module's runs share one, outside the autouse setup)
ENV = {"HEDGEROW_PROBE": "embedded", "HEDGEROW_SCORER": "none"}


def hedgerow(*args, check=True):
    env = {**os.environ, **ENV}
    done = subprocess.run(
        [sys.executable, "-m", "generator", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    """One run probed by the embedded model (the slow part, shared)."""
    tmp = tmp_path_factory.mktemp("probed")
    seeds = probe_seeds(tmp / "seeds.jsonl")
    hedgerow("generate", seeds, "-o", tmp / "run", "--behaviors", "hedge,refusal")
    return tmp, seeds


def by_seed(path: Path) -> dict:
    return {r["seed_id"]: r for r in read_jsonl(path)}


def test_a_known_question_probes_higher_and_is_hedged_more_confidently(probed_run):
    tmp, _ = probed_run
    probed = by_seed(tmp / "run" / "probe.jsonl")
    known = [probed[i]["knowledge"] for i, _, _ in KNOWN]
    fake = [probed[i]["knowledge"] for i, _, _ in FABRICATED]
    assert min(k["p_correct"] for k in known) > max(k["p_correct"] for k in fake)
    assert sum(k["greedy_correct"] for k in known) >= 4  # it knows most capitals
    assert all(k["category"] == "Unknown" for k in fake)
    hedges = [r for r in read_jsonl(tmp / "run" / "candidates.jsonl") if r["behavior"] == "hedge"]
    hedged = {r["seed_id"]: r for r in hedges if r.get("status") not in ("skipped", "failed")}
    for seed_id, _, _ in KNOWN:
        row = hedged[seed_id]
        k = probed[seed_id]["knowledge"]
        assert row["knowledge"] == k and row["attributes"]["p_correct"] == k["p_correct"]
        assert abs(row["attributes"]["confidence"] - k["p_correct"]) <= 0.15
    skipped = {r["seed_id"]: r["reason"] for r in hedges if r.get("status") == "skipped"}
    assert all(skipped[i] == "unknown_to_model" for i, _, _ in FABRICATED)


def test_an_unknown_seed_is_declined_and_paired_with_a_known_one(probed_run):
    tmp, _ = probed_run
    rows = read_jsonl(tmp / "run" / "candidates.jsonl")
    pairs = {}
    for row in rows:
        if row.get("attributes", {}).get("kind") == "unknown_to_model":
            pairs.setdefault(row["pair_id"], {})[row["behavior"]] = row
    assert {p["refusal"]["seed_id"] for p in pairs.values()} == {i for i, _, _ in FABRICATED}
    known = {i: q for i, q, _ in KNOWN}
    partners = []
    for pair in pairs.values():
        refusal, contrast = pair["refusal"], pair["contrast"]
        assert refusal["messages"][0]["content"] in {q for _, q, _ in FABRICATED}  # its own
        assert "don't know" in refusal["messages"][1]["content"].lower()
        partner = contrast["attributes"]["contrast_seed_id"]
        assert contrast["messages"][0]["content"] == known[partner]
        assert contrast["knowledge"]["greedy_correct"]
        partners.append(partner)
    assert len(partners) == len(set(partners))  # each known seed is a contrast at most once
    dataset = read_jsonl(tmp / "run" / "dataset.jsonl")
    behaviors = Counter(r["behavior"] for r in dataset)
    assert behaviors["refusal"] == behaviors["contrast"]


def test_no_question_is_stated_at_two_confidences_and_long_form_states_none(probed_run):
    tmp, _ = probed_run
    stated: dict[str, set] = {}
    for row in read_jsonl(tmp / "run" / "candidates.jsonl"):
        if row["behavior"] == "hedge" and row.get("status") not in ("skipped", "failed"):
            stated.setdefault(row["messages"][0]["content"], set()).add(
                row["attributes"]["confidence"]
            )
    assert stated and all(len(levels) == 1 for levels in stated.values())
    essay = by_seed(tmp / "run" / "probe.jsonl")["essay"]
    assert essay["knowledge"] is None and essay["reason"] == "not_knowledge"
    assert stated[LONG_FORM[1]] == {None}  # hedged, but at no number
    manifest = json.loads((tmp / "run" / "manifest.json").read_text())
    assert manifest["probe"]["categories"]["Unknown"] == len(FABRICATED)


@pytest.mark.model
def test_same_seed_same_bytes_and_a_killed_probe_resumes_without_probing_twice(
    probed_run, tmp_path
):
    tmp, seeds = probed_run
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "generator",
            "generate",
            str(seeds),
            "-o",
            str(tmp_path / "k"),
            "--behaviors",
            "hedge,refusal",
        ],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe_file = tmp_path / "k" / "probe.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if probe_file.exists() and probe_file.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = probe_file.read_bytes()
    kept = before[: before.rfind(b"\n") + 1]  # a line torn by the kill is probed again
    assert 0 < kept.count(b"\n") < len(KNOWN) + len(FABRICATED) + 1, "killed mid-probe"
    hedgerow("generate", seeds, "-o", tmp_path / "k", "--behaviors", "hedge,refusal")
    for name in ("dataset.jsonl", "candidates.jsonl", "probe.jsonl"):
        assert (tmp_path / "k" / name).read_bytes() == (tmp / "run" / name).read_bytes(), name
    after = (tmp_path / "k" / "probe.jsonl").read_bytes()
    assert after.startswith(kept)  # what landed before the kill was not probed again
    ids = [r["seed_id"] for r in read_jsonl(tmp_path / "k" / "probe.jsonl")]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bogus", "--probe bogus: not a probe"),
        ("gguf:/no/such/model.gguf", "does not exist"),
        ("openai:http://127.0.0.1:9/v1", "cannot reach"),
    ],
)
def test_a_bad_probe_is_one_line_exit_1(tmp_path, spec, message):
    seeds = probe_seeds(tmp_path / "s.jsonl")
    done = hedgerow("generate", seeds, "-o", tmp_path / "r", "--probe", spec, check=False)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


class _HTML(BaseHTTPRequestHandler):
    def do_GET(self):  # /models
        self._send(b'{"object": "list", "data": [{"id": "m"}]}', "application/json")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(b"<html><body>Welcome to nginx!</body></html>", "text/html")

    def _send(self, body, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_probe_server_answering_html_is_one_line_exit_1(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HTML)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        seeds = probe_seeds(tmp_path / "s.jsonl")
        done = hedgerow(
            "generate", seeds, "-o", tmp_path / "r", "--probe", f"openai:{url}", check=False
        )
    finally:
        server.shutdown()
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--probe openai:" in lines[0] and "Traceback" not in done.stderr


class _Flaky(BaseHTTPRequestHandler):
    """No /models (404), and a 503 for the first two completions, then answers."""

    posts: list = []

    def do_GET(self):
        self._send(404, b'{"error": {"message": "no such route"}}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        type(self).posts.append(body)
        if len(type(self).posts) <= 2:
            self._send(503, b'{"error": {"message": "warming up"}}')
        else:
            texts = [{"index": i, "text": " Paris\nQ: next"} for i in range(body["n"])]
            self._send(200, json.dumps({"choices": texts}).encode())

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_probe_server_that_fails_at_first_is_asked_again_and_its_answers_used():
    import asyncio

    from generator.probe.server import ServerSampler

    _Flaky.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    async def run():
        sampler = ServerSampler(f"openai:{url}", url)
        try:
            return await sampler.sample("Q: capital of France?\nA:", 3, 1.0, 8, 7), sampler
        finally:
            await sampler.aclose()

    try:
        sampled, sampler = asyncio.run(run())
    finally:
        server.shutdown()
    assert sampled.greedy == "Paris" and sampled.samples == ("Paris",) * 3
    # two 503s, then the greedy request and one request with n=3
    assert len(_Flaky.posts) == 4 and [b["n"] for b in _Flaky.posts[2:]] == [1, 3]
    assert _Flaky.posts[0]["model"] == "default"  # no /models: any name goes
    assert sampler.describe()["n_per_request"] is True


def test_probing_through_llama_cpps_server_agrees_with_in_process(llama_server, tmp_path):
    seeds = write_jsonl(
        tmp_path / "s.jsonl",
        [{"id": i, "question": q, "answer": a} for i, q, a in [*KNOWN[:2], *FABRICATED[:1]]],
    )
    hedgerow(
        "generate",
        seeds,
        "-o",
        tmp_path / "r",
        "--behaviors",
        "hedge",
        "--probe",
        f"openai:{llama_server}",
    )
    probed = by_seed(tmp_path / "r" / "probe.jsonl")
    assert all(len(p["samples"]) == 10 for p in probed.values())
    assert probed[KNOWN[0][0]]["knowledge"]["greedy_correct"]  # France: Paris, greedily
    assert probed[FABRICATED[0][0]]["knowledge"]["category"] == "Unknown"


@pytest.mark.model
def test_an_i_dont_know_pair_exports_as_dpo_against_the_models_own_answer(probed_run, tmp_path):
    tmp, _ = probed_run
    out = tmp_path / "dpo.jsonl"
    hedgerow("export", tmp / "run", "--format", "dpo", "-o", out)
    pairs = read_jsonl(out)
    probed = by_seed(tmp / "run" / "probe.jsonl")
    rows = read_jsonl(tmp / "run" / "dataset.jsonl")
    unknown = [
        r
        for r in rows
        if r["behavior"] == "refusal" and r["attributes"]["kind"] == "unknown_to_model"
    ]
    assert unknown
    for row in unknown:
        prompt, decline = (m["content"] for m in row["messages"])
        rejected = [p["rejected"] for p in pairs if (p["prompt"], p["chosen"]) == (prompt, decline)]
        assert rejected == [probed[row["seed_id"]]["greedy"]]  # the model's own wrong answer
        assert not probed[row["seed_id"]]["knowledge"]["greedy_correct"]


def test_a_short_money_answer_is_a_number_an_answer_can_equal(answers):
    expected = answers.expected("What is the total of the bill?", "$9.00")
    assert (expected.kind, expected.text, expected.number) == ("number", "9.00", 9.0)
    assert answers.correct(expected, "The total is $9.")


def test_a_probe_over_several_urls_sends_each_seeds_requests_to_one_of_them_in_turn():
    import asyncio
    import hashlib

    from generator.probe.server import ServerSampler

    from .fakeserver import FakeServer, Plan

    frames = [f"Q: question {i}?\nA:" for i in range(4)]

    async def run(url):
        sampler = ServerSampler(f"openai:{url}", url)
        try:
            return [await sampler.sample(f, 2, 1.0, 8, 7) for f in frames]
        finally:
            await sampler.aclose()

    def asked(server):
        return set(server.log.keys)

    key = {hashlib.sha256(f.encode()).hexdigest()[:16]: f for f in frames}
    with FakeServer(Plan()) as one, FakeServer(Plan()) as two:
        spread = asyncio.run(run(f"{one.url},{two.url}"))
        got = {key[k] for k in asked(one)}, {key[k] for k in asked(two)}
        alone = asyncio.run(run(one.url))
    assert got == ({frames[1], frames[3]}, {frames[0], frames[2]})
    assert spread == alone  # the fake server echoes the prompt: its first line is the answer
    assert [s.greedy for s in spread] == [f.split("\n")[0] for f in frames]
