import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "seeds.jsonl"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No API keys, no HEDGEROW_* settings but --scorer none, caches and outputs under
    tmp_path."""
    for name in list(os.environ):
        if name.startswith(("HEDGEROW_", "OPENAI_")):
            monkeypatch.delenv(name)
    # Scoring is tested where it is the subject (test_scoring.py); elsewhere a run on the
    # embedded model would only make the suite slower.
    monkeypatch.setenv("HEDGEROW_SCORER", "none")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
