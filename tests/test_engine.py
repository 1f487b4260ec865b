"""`--engine ray`: the seeds processed by a Ray cluster's workers, the run folder written by
the driver alone, and the bytes of a single-process run: on a local Ray, on a two-node
cluster on this machine, with a worker killed mid-run, and after the driver is killed
and the command run again."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, synthetic_seeds

pytestmark = pytest.mark.ray

OUTPUTS = ("dataset.jsonl", "candidates.jsonl")


def hedgerow(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """The CLI in a child process: each run starts (and ends) its own local Ray."""
    return subprocess.run(
        [sys.executable, "-m", "generator.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
    )


def same_bytes(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        made = (b / name).read_bytes()
        assert made and made == (a / name).read_bytes(), name


def engine(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["engine"]


def test_a_local_ray_writes_the_bytes_of_one_process(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 30)
    done = hedgerow("generate", seeds, "-o", tmp_path / "one")
    assert done.returncode == 0, done.stderr
    done = hedgerow(
        "generate", seeds, "-o", tmp_path / "ray", "--engine", "ray", "--ray-block", "4"
    )
    assert done.returncode == 0, done.stderr
    same_bytes(tmp_path / "one", tmp_path / "ray")
    used = engine(tmp_path / "ray")
    assert used["name"] == "ray" and used["nodes"] == 1
    assert sum(used["seeds_per_worker"].values()) == 60
    assert engine(tmp_path / "one") == {"name": "local"}


@pytest.mark.model
@pytest.mark.parametrize("probe", ["none", "embedded"])
def test_scored_and_probed_runs_on_ray_write_the_bytes_of_one_process(tmp_path, probe):
    flags = ["--candidates", "2", "--scorer", "embedded", "--probe", probe]
    flags += ["--probe-samples", "3"]
    done = hedgerow("generate", EXAMPLES, "-o", tmp_path / "one", *flags)
    assert done.returncode == 0, done.stderr
    ray = ["--engine", "ray", "--ray-workers", "2", "--ray-block", "2"]
    done = hedgerow("generate", EXAMPLES, "-o", tmp_path / "ray", *flags, *ray)
    assert done.returncode == 0, done.stderr
    same_bytes(tmp_path / "one", tmp_path / "ray")
    rows = [json.loads(line) for line in (tmp_path / "ray" / "candidates.jsonl").open()]
    assert all(r["fit"]["nll"] > 0 for r in rows if "messages" in r)  # the workers scored
    used = engine(tmp_path / "ray")
    assert used["workers"] == 2  # actors per stage, not the probe's and the rows' together
    if probe != "none":  # the workers probed, each seed once, to the driver's verdicts
        assert any(r["knowledge"] for r in rows if "messages" in r)
        probed = (tmp_path / "ray" / "probe.jsonl").read_bytes()
        assert probed and probed == (tmp_path / "one" / "probe.jsonl").read_bytes()
        assert sum(used["probes_per_worker"].values()) == probed.count(b"\n")
    else:
        assert "probes_per_worker" not in used


@pytest.mark.model
def test_score_on_ray_writes_the_bytes_of_one_process(tmp_path):
    flags = ["--scorer", "embedded", "--probe", "embedded", "--probe-samples", "3"]
    done = hedgerow("score", EXAMPLES, "-o", tmp_path / "one.jsonl", *flags)
    assert done.returncode == 0, done.stderr
    ray = ["--engine", "ray", "--ray-workers", "2", "--ray-block", "3"]
    done = hedgerow("score", EXAMPLES, "-o", tmp_path / "ray.jsonl", *flags, *ray)
    assert done.returncode == 0, done.stderr
    made = (tmp_path / "ray.jsonl").read_bytes()
    assert made == (tmp_path / "one.jsonl").read_bytes()
    rows = [json.loads(line) for line in made.splitlines()]
    assert all(r["fit"]["nll"] > 0 for r in rows) and any(r["knowledge"] for r in rows)
    assert "engine: ray, 2 workers on 1 node" in done.stdout
    counts = done.stdout.split("rows per worker: ")[1].splitlines()[0]
    assert sum(int(part.split()[1]) for part in counts.split(", ")) == len(rows)


def test_a_failure_on_a_worker_is_the_one_line_the_driver_would_print(tmp_path):
    prompts = tmp_path / "prompts" / "scoring"
    prompts.mkdir(parents=True)
    (prompts / "frame.j2").write_text("{{ nothing.at_all }}\n")  # fails when a row is framed
    out = tmp_path / "fit.jsonl"
    flags = ["-o", out, "--scorer", "embedded", "--prompts", prompts.parent]
    done = hedgerow("score", EXAMPLES, *flags, "--engine", "ray")
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.strip() == "Error: template scoring/frame.j2, line 1: 'nothing' is undefined"


@pytest.mark.model
def test_score_on_ray_with_a_worker_killed_loses_and_repeats_nothing(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 60)
    done = hedgerow("score", seeds, "-o", tmp_path / "one.jsonl", "--scorer", "embedded")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "ray.jsonl"
    partial = tmp_path / "ray.jsonl.partial"
    killed = []

    def kill_one():  # once rows are being written, SIGKILL a worker in the middle
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = _workers()
            if partial.exists() and partial.read_bytes().count(b"\n") > 4 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    ray = ["--engine", "ray", "--ray-block", "4"]
    done = hedgerow("score", seeds, "-o", out, "--scorer", "embedded", *ray)
    killer.join()
    assert done.returncode == 0, done.stderr
    assert killed and not partial.exists()  # a worker really died mid-run
    assert out.read_bytes() == (tmp_path / "one.jsonl").read_bytes()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_two_node_cluster_on_this_machine_writes_the_same_bytes(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 20)
    assert hedgerow("generate", seeds, "-o", tmp_path / "one").returncode == 0
    address = f"127.0.0.1:{_port()}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    try:
        head = [*ray, "start", "--head", "--port", address.split(":")[1], "--num-cpus", "1"]
        head += ["--include-dashboard=false", "--disable-usage-stats"]
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
        node = [*ray, "start", "--address", address, "--num-cpus", "1", "--disable-usage-stats"]
        subprocess.run(node, env=env, check=True, capture_output=True, timeout=120)
        done = hedgerow(
            "generate", seeds, "-o", tmp_path / "two", "--engine", "ray", "--ray-block", "3",
            env={"RAY_ADDRESS": address},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        # two CPUs in all, but one a node: a worker of two threads has nowhere to go
        wide = hedgerow(
            "generate", seeds, "-o", tmp_path / "wide", "--engine", "ray", "--ray-threads", "2",
            env={"RAY_ADDRESS": address}, timeout=120,
        )  # fmt: skip
        assert wide.returncode == 1 and "no node of the cluster has 2 CPUs" in wide.stderr
    finally:
        subprocess.run([*ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    same_bytes(tmp_path / "one", tmp_path / "two")
    used = engine(tmp_path / "two")
    assert used["nodes"] == 2 and used["workers"] == 2


def _workers() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ray::_Worker"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_a_worker_killed_mid_run_loses_and_repeats_nothing(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 400)
    assert hedgerow("generate", seeds, "-o", tmp_path / "one").returncode == 0
    run = tmp_path / "ray"
    killed = []

    def kill_one():  # once rows are being written, SIGKILL a worker in the middle
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            candidates = run / "candidates.jsonl"
            workers = _workers()
            if candidates.exists() and candidates.stat().st_size > 0 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    done = hedgerow("generate", seeds, "-o", run, "--engine", "ray", "--ray-block", "5")
    killer.join()
    assert done.returncode == 0, done.stderr
    assert killed  # a worker really died mid-run
    same_bytes(tmp_path / "one", run)
    assert sum(engine(run)["seeds_per_worker"].values()) == 800


def test_a_killed_driver_resumes_to_the_same_bytes(tmp_path):
    seeds = synthetic_seeds(tmp_path / "s.jsonl", 2000)
    assert hedgerow("generate", seeds, "-o", tmp_path / "one").returncode == 0
    run = tmp_path / "ray"
    command = [sys.executable, "-m", "generator.cli", "generate", str(seeds), "-o", str(run)]
    command += ["--engine", "ray", "--ray-block", "5"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = run / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        lines = journal.read_text().splitlines() if journal.exists() else []
        if len(lines) >= 2 and json.loads(lines[-1]).get("done", 0) > 0:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    done_before = json.loads(journal.read_text().splitlines()[-1]).get("done", 0)
    assert 0 < done_before < 4000  # killed mid-run
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], env=env)
    assert again.returncode == 0, again.stderr
    assert "(resumed after " in again.stdout
    same_bytes(tmp_path / "one", run)


def test_without_ray_installed_it_is_one_line_naming_the_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from generator.cli import main\n"
        f"main(['generate', {str(EXAMPLES)!r}, '-o', 'x', '--engine', 'ray'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: --engine ray needs Ray, which is not installed: pip install 'hedgerow[ray]'"
    )
    assert not (tmp_path / "x").exists()


def test_a_cluster_that_cannot_be_reached_is_one_line_in_seconds(tmp_path):
    start = time.monotonic()
    done = hedgerow(
        "generate", EXAMPLES, "-o", tmp_path / "x", "--engine", "ray",
        "--ray-address", f"127.0.0.1:{_port()}",
    )  # fmt: skip
    assert done.returncode == 1 and time.monotonic() - start < 30
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no Ray cluster answers there" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "shape, said",
    [
        (["--ray-workers", "1000"], "--ray-workers 1000: the cluster holds "),
        (["--ray-threads", "1000"], "--ray-threads 1000: no node of the cluster has 1000 CPUs"),
    ],
)
def test_more_workers_or_threads_than_the_cluster_holds_is_one_line_not_a_hang(
    tmp_path, shape, said
):
    start = time.monotonic()
    done = hedgerow(
        "generate", EXAMPLES, "-o", tmp_path / "x", "--engine", "ray", *shape, timeout=120
    )  # fmt: skip
    assert done.returncode == 1 and time.monotonic() - start < 60
    assert len(done.stderr.strip().splitlines()) == 1 and said in done.stderr
    assert not (tmp_path / "x").exists()


def test_workers_are_counted_node_by_node():
    """An actor's CPUs are on one node: two nodes of 3 CPUs hold two actors of 2, not 3."""
    from generator.engine import Cluster
    from generator.errors import ConfigError

    cluster = Cluster.__new__(Cluster)  # the arithmetic alone, no Ray
    cluster.threads = 2
    assert cluster._fit(None, [3, 3]) == 2
    assert cluster._fit(1, [3, 3]) == 1
    with pytest.raises(ConfigError, match=r"holds 2 workers of 2 CPUs \(6 CPUs on 2 nodes\)"):
        cluster._fit(3, [3, 3])
    cluster.threads = 4
    with pytest.raises(ConfigError, match="no node of the cluster has 4 CPUs .*at most 3 on one"):
        cluster._fit(None, [3, 3])
    cluster.threads = 1  # a head started with --num-cpus 0 and no node beside it
    with pytest.raises(ConfigError, match=r"no CPUs for workers \(0 CPUs on 1 node\); start a"):
        cluster._fit(None, [0])


def test_an_endpoint_run_on_ray_says_it_is_not_available_yet(tmp_path):
    done = hedgerow(
        "generate", EXAMPLES, "-o", tmp_path / "x", "--engine", "ray",
        "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
    )  # fmt: skip
    assert done.returncode == 1
    assert "--engine ray runs --backend offline for now" in done.stderr
    assert not (tmp_path / "x").exists()


def test_an_unknown_engine_is_one_line_from_generate_and_from_score(tmp_path):
    # the Python API takes any string (the CLI's choices do not reach this): both entry
    # points refuse it the same way, before anything is read or written
    from generator.errors import ConfigError
    from generator.run import RunConfig, generate
    from generator.scoring.dataset import score_dataset

    said = "engine spark: unknown engine; use local or ray"
    config = RunConfig(seeds=(str(EXAMPLES),), out=str(tmp_path / "run"), engine="spark")
    with pytest.raises(ConfigError, match=said):
        generate(config)
    out = tmp_path / "fit.jsonl"
    with pytest.raises(ConfigError, match=said):
        score_dataset([str(EXAMPLES)], str(out), scorer="embedded", engine="spark")
    assert not out.exists()
