"""`probe.jsonl` in the run folder: every seed's probe, on disk before a row uses it.

Append-only, one line per probed seed, flushed at once and fsynced in batches; a line cut short
by a kill is dropped when the file is opened again, so a resumed run probes only the
seeds whose lines did not land (a probe is deterministic: the bytes are the same).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from generator import jsontext
from generator.probe import Probed
from generator.runfolder import PROBE


class ProbeStore:
    def __init__(self, folder: Path):
        self.path = folder / PROBE
        self.done: dict[str, Probed] = {}
        if self.path.is_file():
            good = 0
            with self.path.open("rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # torn by a kill: probed again
                    try:
                        row = json.loads(line)
                    except ValueError:
                        break
                    probed = Probed.from_row(row)
                    self.done[probed.seed_id] = _light(probed)
                    good += len(line)
            with self.path.open("r+b") as fh:
                fh.truncate(good)
        self._fh = self.path.open("ab")

    def add(self, probed: Probed) -> None:
        line = jsontext.dumps(probed.to_row(), ensure_ascii=False) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()  # a kill keeps it (the OS has it); sync() makes it durable
        self.done[probed.seed_id] = _light(probed)

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


def _light(probed: Probed) -> Probed:
    """What the run keeps in memory of a probe (the samples stay on disk)."""
    return replace(probed, samples=())
