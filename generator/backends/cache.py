"""The response cache: every answered request, keyed by exactly what was asked.

SQLite rather than an append-only JSONL file: a lookup is an indexed read instead of an
index held in memory for the whole file, and each answer is its own committed
transaction, so a process killed with SIGKILL loses nothing it had received (WAL mode;
the data is in the OS before `put` returns) and never leaves a torn record to skip.
The cache lives in the run folder and survives `--overwrite`: a key is the exact request
(model, messages, parameters, sample index), so an answer can never be served for a
different question, and a changed template changes only its own requests' keys.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from generator import jsontext
from generator.errors import RunFolderError
from generator.outputs import describe

FILE = "cache.sqlite"


def request_key(model: str, messages: list[dict], params: dict[str, Any], sample: int) -> str:
    """The cache key of one request: a hash of everything that decides its answer."""
    blob = jsontext.dumps(
        {"model": model, "messages": messages, "params": params, "sample": sample},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """Answers by request key, one committed row per answer."""

    def __init__(self, path: Path | str, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                self._db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
                self._db.execute("SELECT COUNT(*) FROM responses").fetchone()  # fail now
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL: a committed row survives a killed process (not a power cut,
                # which at worst loses answers we can ask for again).
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS responses "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
        except sqlite3.Error as e:
            raise RunFolderError(
                f"{self.path}: cannot open the response cache ({e}); delete the file "
                "to start the cache over, or choose another -o folder"
            ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                (key, jsontext.dumps(value, ensure_ascii=False)),
            )
        except sqlite3.Error as e:
            raise RunFolderError(
                f"{self.path}: cannot write the response cache "
                + describe(e, "choose another -o folder")
            ) from None

    def __contains__(self, key: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
