"""The openai backend against real servers on loopback: our fault-injecting one
(tests/fakeserver.py) and llama.cpp's own OpenAI-compatible server with the embedded model."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator.cli import main
from tests.conftest import ROOT, read_jsonl, write_jsonl
from tests.fakeserver import FakeServer, Plan

BEHAVIORS = ("hedge", "refusal", "near_miss")


def seeds(path: Path, n: int) -> Path:
    rows = [
        {
            "id": f"s{i}",
            "question": f"A shop sells {i + 2} boxes of {i + 3} pens. How many pens is that?",
            "answer": f"{i + 2} * {i + 3} = {(i + 2) * (i + 3)} pens.\n#### {(i + 2) * (i + 3)}",
        }
        for i in range(n)
    ]
    return write_jsonl(path, rows)


def generate(url, *args, env=None):
    base = ["generate", "--backend", "openai", "--model", "fake", "--base-url", url]
    return CliRunner().invoke(main, [*base, *args], env=env, catch_exceptions=False)


def accounted(run: Path, n: int, behaviors=BEHAVIORS) -> Counter:
    """Every (seed, behavior) has a candidate or a failed/skipped row; returns statuses."""
    rows = read_jsonl(run / "candidates.jsonl")
    seen = {
        (r["seed_id"], "refusal" if r["behavior"] == "contrast" else r["behavior"]) for r in rows
    }
    assert seen == {(f"s{i}", b) for i in range(n) for b in behaviors}
    for row in rows:
        if row["status"] in ("failed", "skipped"):
            assert row["reason"] and row["detail"] is not None
    return Counter(r["status"] for r in rows)


def test_batch_with_every_fault_completes_and_accounts_for_every_seed(tmp_path, capsys):
    plan = Plan(fault_rate=0.3, retry_after=0.1, stall_seconds=2.0, seed=7)
    with FakeServer(plan) as server:
        result = generate(
            server.url,
            str(seeds(tmp_path / "s.jsonl", 30)),
            "-o",
            "run",
            "--timeout",
            "0.5",
            "--concurrency",
            "8",
        )
    assert result.exit_code == 0, result.output
    statuses = accounted(tmp_path / "run", 30)
    assert statuses["selected"] >= 100  # faults are retried or re-asked, not lost
    injected = server.log.outcomes
    for fault in ("429", "500", "stall", "truncate", "garbage", "bad_content"):
        assert injected[fault] > 0, injected
    with capsys.disabled():  # the figure (pytest -s shows it)
        print(f"\nfaults injected: {dict(injected)}; statuses: {dict(statuses)}")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    requests = manifest["requests"]
    assert requests["retries"] >= injected["429"] + injected["500"] + injected["garbage"]
    assert requests["reasks"] >= 1
    assert manifest["token_usage"]["prompt"] > 0 and manifest["token_usage"]["completion"] > 0
    pairs = Counter(r["behavior"] for r in read_jsonl(tmp_path / "run" / "dataset.jsonl"))
    assert pairs["refusal"] == pairs["contrast"] > 0


def test_a_request_that_keeps_failing_is_recorded_and_the_run_goes_on(tmp_path):
    plan = Plan(fault_rate=1.0, faults=("500",))
    with FakeServer(plan) as server:
        result = generate(
            server.url,
            str(seeds(tmp_path / "s.jsonl", 2)),
            "-o",
            "run",
            "--behaviors",
            "hedge",
            "--retries",
            "2",
        )
    # every request failed: exit 1 (see below), but each one is a row and both seeds ran
    assert result.exit_code == 1, result.output
    failed = [r for r in read_jsonl(tmp_path / "run" / "candidates.jsonl")]
    assert [(r["status"], r["reason"]) for r in failed] == [("failed", "request_failed")] * 2
    assert [r["detail"] for r in failed] == ["HTTP 500: oops"] * 2
    assert "all 2 requests" in result.output


def test_rerun_sends_nothing_and_a_changed_template_resends_only_its_requests(tmp_path):
    data = str(seeds(tmp_path / "s.jsonl", 6))
    with FakeServer() as server:
        assert generate(server.url, data, "-o", "run").exit_code == 0
        first = len(server.log.keys)
        dataset = (tmp_path / "run" / "dataset.jsonl").read_bytes()
        assert first == 6 * 3
        # the same command again: the run is complete, nothing is asked
        assert generate(server.url, data, "-o", "run").exit_code == 0
        # start over: every answer comes from the cache
        result = generate(server.url, data, "-o", "run", "--overwrite")
        assert result.exit_code == 0, result.output
        assert len(server.log.keys) == first
        assert "18 from the cache" in result.output
        assert (tmp_path / "run" / "dataset.jsonl").read_bytes() == dataset
        # edit the hedge request template: only the six hedge requests are new
        overlay = tmp_path / "mine" / "hedge"
        overlay.mkdir(parents=True)
        user = (ROOT / "prompts" / "hedge" / "user.j2").read_text()
        (overlay / "user.j2").write_text(user + "\nKeep it short.\n")
        result = generate(server.url, data, "-o", "run", "--overwrite", "--prompts", "mine")
        assert result.exit_code == 0, result.output
        assert len(server.log.keys) == first + 6
        assert "12 from the cache" in result.output


def test_response_format_falls_back_where_the_server_lacks_json_schema(tmp_path):
    with FakeServer(Plan(reject_json_schema=True)) as server:
        result = generate(
            server.url, str(seeds(tmp_path / "s.jsonl", 5)), "-o", "run", "--concurrency", "1"
        )
    assert result.exit_code == 0, result.output
    assert server.log.formats["json_schema"] == 1  # refused once, remembered after that
    assert server.log.formats["json_object"] == 15
    assert accounted(tmp_path / "run", 5)["selected"] > 0


def test_sustained_rate_limits_open_the_circuit_then_the_run_recovers(tmp_path):
    plan = Plan(rate_limit_seconds=3.0, retry_after=0.5)
    with FakeServer(plan) as server:
        started = time.monotonic()
        result = generate(
            server.url,
            str(seeds(tmp_path / "s.jsonl", 12)),
            "-o",
            "run",
            "--behaviors",
            "hedge",
            "--concurrency",
            "8",
        )
    assert result.exit_code == 0, result.output
    limited = [t for t, outcome in server.log.times if outcome == "429"]
    # Measured: with the throttle switched off, each request honouring Retry-After alone,
    # about 70 requests hit the wall in those 3 s; with it, about 20.
    assert len(limited) <= 30, len(limited)
    assert time.monotonic() - started >= 3.0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["requests"]["circuit_openings"] >= 1
    assert accounted(tmp_path / "run", 12, ("hedge",))["selected"] == 12  # one hedge a seed


def test_several_base_urls_share_the_requests(tmp_path):
    with FakeServer() as a, FakeServer() as b:
        result = CliRunner().invoke(
            main,
            [
                "generate",
                str(seeds(tmp_path / "s.jsonl", 10)),
                "-o",
                "run",
                "--backend",
                "openai",
                "--model",
                "fake",
                "--base-url",
                a.url,
                "--base-url",
                b.url,
                "--concurrency",
                "4",
            ],
        )
    assert result.exit_code == 0, result.output
    assert len(a.log.keys) > 5 and len(b.log.keys) > 5
    assert len(a.log.keys) + len(b.log.keys) == 30


def test_dry_run_renders_every_request_and_sends_none(tmp_path):
    with FakeServer() as server:
        result = CliRunner().invoke(
            main,
            [
                "generate",
                str(seeds(tmp_path / "s.jsonl", 4)),
                "--dry-run",
                "--backend",
                "openai",
                "--model",
                "gpt-4o-mini",
                "--candidates",
                "2",
            ],
        )
        assert server.log.keys == []
    assert result.exit_code == 0, result.output
    assert "would send 24 requests" in result.output
    assert "prompt tokens" in result.output and "$" in result.output
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_the_api_key_is_sent_but_never_written(tmp_path):
    canary = "sk-canary-9f8e7d6c5b4a39281706"
    env = {"OPENAI_API_KEY": canary}
    data = str(seeds(tmp_path / "s.jsonl", 3))
    with FakeServer() as server:
        result = generate(server.url, data, "-o", "run", env=env)
        assert result.exit_code == 0, result.output
        assert server.log.authorization == {f"Bearer {canary}"}
    with FakeServer(Plan(auth_error=True)) as server:
        refused = generate(server.url, data, "-o", "run2", env=env)
    assert refused.exit_code == 1
    assert "check OPENAI_API_KEY" in refused.output and "***" in refused.output
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "s.jsonl"]
    assert any(p.name == "cache.sqlite" for p in written)
    for path in written:
        assert canary.encode() not in path.read_bytes(), path
    assert canary not in result.output + refused.output


def _proxy_env(proxy: str, no_proxy: str) -> dict:
    # both spellings: a lower-case one already in the environment would win otherwise
    names = {"http_proxy": proxy, "https_proxy": proxy, "no_proxy": no_proxy}
    return {**names, **{k.upper(): v for k, v in names.items()}}


def test_requests_go_through_the_proxy_the_environment_names(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: only a proxy can answer for it
        s.bind(("127.0.0.1", 0))
        upstream = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    data = str(seeds(tmp_path / "s.jsonl", 2))
    # The fake server answers a proxied request (an absolute URL) as it would a direct one.
    with FakeServer() as proxy:
        env = _proxy_env(f"http://127.0.0.1:{proxy.port}", "")
        through = generate(upstream, data, "-o", "run", env=env)
        assert through.exit_code == 0, through.output
        assert len(proxy.log.keys) == 6
        env = _proxy_env(env["HTTP_PROXY"], "127.0.0.1")
        direct = generate(upstream, data, "-o", "run2", "--retries", "0", env=env)
    assert direct.exit_code == 1 and "connection refused" in direct.output
    assert len(proxy.log.keys) == 6  # NO_PROXY: nothing more went to the proxy


def _run_cli(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "generator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_run_resends_at_most_what_was_in_flight(tmp_path, how):
    data = str(seeds(tmp_path / "s.jsonl", 40))
    args = ["generate", data, "--backend", "openai", "--model", "fake", "--concurrency", "4"]
    with FakeServer(Plan(delay=0.05)) as reference:
        proc = _run_cli([*args, "--base-url", reference.url, "-o", "whole"])
        assert proc.wait(60) == 0, proc.stderr.read()
    with FakeServer(Plan(delay=0.05)) as server:
        proc = _run_cli([*args, "--base-url", server.url, "-o", "run"])
        deadline = time.monotonic() + 30
        while server.log.outcomes["ok"] < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(how)
        code = proc.wait(30)
        assert code == (-9 if how == signal.SIGKILL else 130), proc.stderr.read()
        before = len(server.log.keys)
        assert 50 <= before < 120
        if how == signal.SIGINT:
            manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
            assert manifest["status"] == "interrupted"
            rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")  # whole lines only
            assert manifest["seeds"]["done"] == len({r["seed_id"] for r in rows}) > 0
        proc = _run_cli([*args, "--base-url", server.url, "-o", "run"])
        assert proc.wait(60) == 0, proc.stderr.read()
    repeated = sum(n - 1 for n in Counter(server.log.keys).values() if n > 1)
    assert repeated <= 4, repeated  # at most --concurrency requests were in flight
    assert len(set(server.log.keys)) == 120
    whole = (tmp_path / "whole" / "dataset.jsonl").read_bytes()
    assert (tmp_path / "run" / "dataset.jsonl").read_bytes() == whole


def test_a_batch_against_the_llama_cpp_server(tmp_path, llama_server):
    # A 270M base model cannot follow the instructions, but the protocol path is real:
    # structured output falls back to llama.cpp's schema grammar, replies are parsed and
    # checked, and every seed ends produced or failed with its reason.
    overlay = tmp_path / "p"
    overlay.mkdir()
    (overlay / "llm.toml").write_text("[params]\ntemperature = 0.7\nmax_tokens = 120\n")
    data = str(seeds(tmp_path / "s.jsonl", 1))
    args = ["-o", "run", "--prompts", str(overlay), "--concurrency", "2", "--reasks", "1"]
    result = generate(llama_server, data, *args)
    assert result.exit_code == 0, result.output
    statuses = accounted(tmp_path / "run", 1)
    assert sum(statuses.values()) >= 3
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["token_usage"]["completion"] > 0  # the server's own usage, summed
    assert manifest["requests"]["sent"] >= 3
    again = generate(llama_server, data, *args, "--overwrite")
    assert again.exit_code == 0 and "(0 sent," in again.output, again.output


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "fault, cause",
    [
        ("500", "HTTP 500: oops"),
        ("garbage", "an HTML page instead of a chat completion"),
        ("empty", "an empty body instead of a chat completion"),
        ("truncate", "the connection closed before the reply was complete"),
        ("stall", "no reply within 0.3 s (--timeout)"),
        ("refused", "connection refused"),
    ],
)
def test_a_run_whose_every_request_fails_exits_1_and_the_same_command_asks_again(
    tmp_path, fault, cause
):
    data = str(seeds(tmp_path / "s.jsonl", 3))
    args = ["--behaviors", "hedge,near_miss", "--retries", "0", "--timeout", "0.3"]
    with FakeServer() as clean:
        assert generate(clean.url, data, "-o", "clean", *args).exit_code == 0
    port = _closed_port()
    plan = Plan(fault_rate=1.0, faults=(fault,), stall_seconds=1.0)
    if fault == "refused":
        failed = generate(f"http://127.0.0.1:{port}/v1", data, "-o", "run", *args)
    else:
        with FakeServer(plan, port=port) as server:
            failed = generate(server.url, data, "-o", "run", *args)
    assert failed.exit_code == 1, failed.output
    (line,) = failed.output.strip().splitlines()
    assert line.startswith(f"Error: all 6 requests to http://127.0.0.1:{port}/v1 failed ({cause}")
    assert line.endswith("run the same command again (finished work is kept)")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert sum(manifest["counts"]["request_failures"].values()) == 6
    # the endpoint fixed, the same command asks exactly what failed, and ends where a run
    # that never failed does
    with FakeServer(port=port) as server:
        again = generate(server.url, data, "-o", "run", *args)
    assert again.exit_code == 0, again.output
    assert len(server.log.keys) == 6
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"


def test_no_row_made_because_requests_failed_exits_1_even_when_some_replies_came(tmp_path):
    data = str(seeds(tmp_path / "s.jsonl", 4))
    plan = Plan(fault_rate=1.0, faults=("500", "bad_content"), seed=5)
    with FakeServer(plan) as server:
        result = generate(
            server.url, data, "-o", "run", "--behaviors", "hedge", "--retries", "0", "--reasks", "0"
        )
    assert server.log.outcomes["500"] and server.log.outcomes["bad_content"]
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    unusable = server.log.outcomes["bad_content"]
    assert f"failed (HTTP 500: oops) and {unusable} replies were unusable;" in line


def test_failed_requests_are_counted_by_why_and_a_rerun_asks_only_them(tmp_path):
    data = str(seeds(tmp_path / "s.jsonl", 20))
    args = ["--retries", "0", "--concurrency", "4"]
    with FakeServer() as clean:
        assert generate(clean.url, data, "-o", "clean", *args).exit_code == 0
    plan = Plan(fault_rate=0.3, faults=("500", "empty"), seed=3)
    with FakeServer(plan) as server:
        first = generate(server.url, data, "-o", "run", *args)
        assert first.exit_code == 0, first.output  # some requests were answered
        rows = read_jsonl(tmp_path / "run" / "candidates.jsonl")
        failed = [r for r in rows if r.get("reason") == "request_failed"]
        by_cause = Counter(r["detail"] for r in failed)
        assert set(by_cause) == {"HTTP 500: oops", "an empty body instead of a chat completion"}
        line = next(x for x in first.output.splitlines() if "without an answer" in x)
        assert f"requests without an answer: {len(failed)} (" in line
        for cause, n in by_cause.items():
            assert f"{cause} {n}" in line
        assert "run the same command again to ask them again" in line
        asked = len(server.log.keys)
        server.plan.fault_rate = 0
        again = generate(server.url, data, "-o", "run", *args)
        assert again.exit_code == 0, again.output
        assert len(server.log.keys) - asked == len(failed)  # the answered ones are cached
        assert "without an answer" not in again.output
        assert generate(server.url, data, "-o", "run", *args).exit_code == 0
        assert len(server.log.keys) - asked == len(failed)  # settled: nothing more to ask
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_augment_against_a_dead_endpoint_exits_1_and_writes_no_output(tmp_path):
    data = seeds(tmp_path / "d.jsonl", 10)
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    args = ["augment", str(data), "--mix", "hedge=0.4", "--run", "run", "-o", "out.jsonl"]
    args += ["--backend", "openai", "--model", "fake", "--retries", "0"]
    dead = CliRunner().invoke(main, [*args, "--base-url", url])
    assert dead.exit_code == 1, dead.output
    assert "failed (connection refused); check --base-url" in dead.output
    assert len(dead.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists()
    with FakeServer() as server:
        fixed = CliRunner().invoke(main, [*args, "--base-url", server.url])
    assert fixed.exit_code == 0, fixed.output
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 14


def test_openai_base_url_is_the_openai_backends_default_and_nothing_to_the_offline_one(
    tmp_path,
):
    data = str(seeds(tmp_path / "s.jsonl", 2))
    with FakeServer() as server:
        env = {"OPENAI_BASE_URL": server.url}  # exported in the shell, for any OpenAI client
        offline = CliRunner().invoke(main, ["generate", data, "-o", "offline"], env=env)
        assert offline.exit_code == 0, offline.output
        assert server.log.keys == []
        args = ["generate", data, "-o", "run", "--backend", "openai", "--model", "fake"]
        result = CliRunner().invoke(main, args, env=env)  # no API key: a local server needs none
        assert result.exit_code == 0, result.output
        assert len(server.log.keys) == 6
    # set for hedgerow, it is a flag given to a backend that has no use for it
    env = {"HEDGEROW_BASE_URL": server.url}
    refused = CliRunner().invoke(main, ["generate", data, "-o", "r2"], env=env)
    assert refused.exit_code == 1 and "--base-url is for --backend openai" in refused.output


@pytest.mark.slow
def test_a_rerun_after_failures_killed_midway_still_ends_with_the_clean_bytes(tmp_path):
    data = str(seeds(tmp_path / "s.jsonl", 40))
    args = ["generate", data, "--backend", "openai", "--model", "fake", "--concurrency", "4"]
    with FakeServer(Plan(delay=0.02)) as clean:
        proc = _run_cli([*args, "--base-url", clean.url, "-o", "clean"])
        assert proc.wait(60) == 0, proc.stderr.read()
    port = _closed_port()
    with FakeServer(Plan(fault_rate=0.2, faults=("500",), seed=1), port=port) as server:
        proc = _run_cli([*args, "--base-url", server.url, "-o", "run", "--retries", "0"])
        assert proc.wait(60) == 0, proc.stderr.read()
    failed = sum(
        r.get("reason") == "request_failed"
        for r in read_jsonl(tmp_path / "run" / "candidates.jsonl")
    )
    assert failed > 0
    with FakeServer(Plan(delay=0.3), port=port) as server:
        for kill in (1, 2):  # killed twice while it redoes the seeds, then left to finish
            proc = _run_cli([*args, "--base-url", server.url, "-o", "run"])
            deadline = time.monotonic() + 30
            while server.log.outcomes["ok"] < 4 * kill and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -9
        assert server.log.outcomes["ok"] < failed  # it was stopped before it was done
        proc = _run_cli([*args, "--base-url", server.url, "-o", "run"])
        assert proc.wait(60) == 0, proc.stderr.read()
        assert len(set(server.log.keys)) == failed
    for name in ("dataset.jsonl", "candidates.jsonl"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
