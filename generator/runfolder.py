"""The run folder: append-only JSONL outputs that survive a crash and resume exactly.

`dataset.jsonl` and `candidates.jsonl` are only appended to. After each batch of seeds
both are flushed and fsynced, then one line is appended to `journal.jsonl` recording how
many seeds are done and how long each file is at that moment. On (re)start, every file
is cut back to its last journaled length: a line half-written by a killed process, or
rows of a seed that was not journaled, disappear, and that seed is simply done again.
Generation is deterministic, so the resumed run writes the same bytes as one that never
stopped.

A seed can be written *unsettled* (its requests failed: a re-run should ask them again).
Every checkpoint after it also records where the first unsettled seed began (`retry`),
and a resume cuts the files back to there, so that seed and every later one are done
again: answers that arrived come from the response cache, the failed ones are asked
again, and the files end as if nothing had failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from generator import jsontext, outputs
from generator.errors import RunFolderError
from generator.outputs import JOURNAL

DATASET = "dataset.jsonl"
CANDIDATES = "candidates.jsonl"
MANIFEST = "manifest.json"
REFERENCE = "reference.json"  # the seeds' own responses, scored: fits are ranked against it
PROBE = "probe.jsonl"  # the knowledge probe's answers and verdicts, one line per seed
LOCK = ".lock"
_DATA_FILES = (DATASET, CANDIDATES)


def default_folder(seeds, fingerprint: str) -> Path:
    """outputs/<first input's name>-<fingerprint>: the same command finds the same folder."""
    stem = Path(seeds[0]).name.split(".")[0] or "run"
    return Path("outputs") / f"{stem}-{fingerprint[:8]}"


def dumps(row: dict[str, Any]) -> str:
    """One JSONL line (the single serialisation used for every output row)."""
    return jsontext.dumps(row, ensure_ascii=False) + "\n"


def _valid_lines(path: Path) -> tuple[list[dict], int]:
    """The complete JSON lines of a file and the byte length they span."""
    rows, good = [], 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(raw))
            except ValueError:
                break
            good += len(raw)
    return rows, good


class RunFolder:
    """Owns the files of one run folder while a run writes to it."""

    def __init__(
        self,
        path: Path,
        fingerprint: str,
        checkpoint_seconds: float = 1.0,
        inputs: Iterable[Path | str] = (),
    ):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.checkpoint_seconds = checkpoint_seconds
        self.inputs = tuple(inputs)  # what the run reads: never written, never inside it
        self._files: dict[str, Any] = {}
        self._sizes = dict.fromkeys(_DATA_FILES, 0)  # bytes of whole seeds in each file
        self._journal = None
        self._lock = outputs.Lock(self.path / LOCK, self.path)
        self._made: list[Path] = []  # folders this invocation created, innermost first
        self._fresh = False  # the folder was new or empty: everything in it is this run's
        self._discard = False
        self._last_checkpoint = 0.0
        self.done = 0
        self.retried = 0  # seeds a resume does again because their requests had failed
        self._retry: dict[str, Any] | None = None  # where the first unsettled seed began
        # Journaled with every checkpoint and read back on resume: running totals the
        # run keeps across restarts (the tokens it has spent).
        self.carried: dict[str, Any] = {}

    def _fail(self, action: str, error: OSError) -> RunFolderError:
        return outputs.write_error(self.path, error, action)

    def open(self, overwrite: bool = False) -> int:
        """Prepare the folder; returns how many seeds an earlier run already finished."""
        outputs.check_target(self.path, "run", inputs=self.inputs)
        self._made = [p for p in (self.path, *self.path.parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fresh = bool(self._made) or not any(self.path.iterdir())
        except OSError as e:
            self._remove_made()
            raise self._fail("create the folder", e) from None
        try:
            self._lock.acquire()
        except BaseException:
            self._remove_made()
            raise
        try:
            return self._prepare(overwrite)
        except BaseException:
            self._discard = self._fresh  # a folder made only to be refused goes again
            self.close()  # a refused folder must not stay locked by this process
            raise

    def _prepare(self, overwrite: bool) -> int:
        journal = self.path / JOURNAL
        ours = [
            name
            for name in (*_DATA_FILES, JOURNAL, MANIFEST, REFERENCE, PROBE)
            if (self.path / name).exists()
        ]
        if overwrite:
            try:
                for name in ours:
                    (self.path / name).unlink()
            except OSError as e:
                raise self._fail("remove the old run", e) from None
        elif journal.exists():
            self.done = self._recover(journal)
        elif ours:
            raise RunFolderError(
                f"{self.path}: holds {', '.join(ours)} but no journal, so it "
                "cannot be resumed; choose another -o folder or pass --overwrite"
            )
        try:
            for name in _DATA_FILES:
                self._files[name] = (self.path / name).open("ab")
            self._journal = journal.open("ab")
            self._sizes = {name: fh.tell() for name, fh in self._files.items()}
            if self._journal.tell() == 0:
                self._append_journal({"fingerprint": self.fingerprint, "created": time.time()})
        except OSError as e:
            raise self._fail("write", e) from None
        return self.done

    def _recover(self, journal: Path) -> int:
        entries, length = _valid_lines(journal)
        if not entries or entries[0].get("fingerprint") != self.fingerprint:
            raise RunFolderError(
                f"{self.path}: holds a run made with other settings or "
                "inputs; re-run its own command to resume it, choose another "
                "-o folder, or pass --overwrite to start over"
            )
        checkpoints = [e for e in entries[1:] if "done" in e]
        last = checkpoints[-1] if checkpoints else {"done": 0}
        sizes = last.get("sizes") or dict.fromkeys(_DATA_FILES, 0)
        self.carried = last.get("carried", {})
        done = last["done"]
        try:
            for name in _DATA_FILES:
                file = self.path / name
                actual = file.stat().st_size if file.exists() else 0
                if actual < sizes[name]:
                    raise RunFolderError(
                        f"{file}: shorter than its journal says ({actual} < "
                        f"{sizes[name]} bytes); it was edited or truncated, "
                        "so pass --overwrite to start over"
                    )
            with journal.open("ab") as fh:
                fh.truncate(length)
                if retry := last.get("retry"):
                    # Journal the cut before making it: a kill in between leaves files
                    # longer than the journal says, which the next start cuts again.
                    self.retried = done - retry["done"]
                    done, sizes = retry["done"], retry["sizes"]
                    entry = {"done": done, "sizes": sizes}
                    if self.carried:
                        entry["carried"] = self.carried
                    fh.write(dumps(entry).encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
            for name in _DATA_FILES:
                with (self.path / name).open("ab") as fh:
                    fh.truncate(sizes[name])
        except OSError as e:
            raise self._fail("repair the folder", e) from None
        return done

    def _append_journal(self, entry: dict[str, Any]) -> None:
        self._journal.write(dumps(entry).encode("utf-8"))
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def write(
        self, dataset_rows: list[dict], candidate_rows: list[dict], settled: bool = True
    ) -> None:
        """Append one seed's rows (buffered until the next checkpoint); an unsettled seed
        is done again, with every seed after it, when the run is resumed."""
        blobs = {
            CANDIDATES: "".join(map(dumps, candidate_rows)).encode("utf-8"),
            DATASET: "".join(map(dumps, dataset_rows)).encode("utf-8"),
        }
        try:
            for name, blob in blobs.items():
                self._files[name].write(blob)
        except OSError as e:
            raise self._fail("write", e) from None
        if not settled and self._retry is None:
            self._retry = {"done": self.done, "sizes": dict(self._sizes)}
        # Only now is the seed whole in both files: a checkpoint never records half of one,
        # even when an interrupt lands between the two writes above.
        for name, blob in blobs.items():
            self._sizes[name] += len(blob)
        self.done += 1
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Make every whole seed written so far durable and record it in the journal."""
        try:
            for fh in self._files.values():
                fh.flush()
                os.fsync(fh.fileno())
            entry = {"done": self.done, "sizes": dict(self._sizes)}
            if self._retry is not None:
                entry["retry"] = self._retry
            if self.carried:
                entry["carried"] = self.carried
            self._append_journal(entry)
        except OSError as e:
            raise self._fail("write", e) from None
        self._last_checkpoint = time.monotonic()

    def abandon(self) -> None:
        """The run failed before its first seed: a folder that was new or empty when it
        opened holds nothing but this run's empty files, so closing removes them (and
        the folder, if this run created it). A folder with earlier work stays as it is."""
        self._discard = self._fresh and self.done == 0

    def close(self) -> None:
        for fh in [*self._files.values(), self._journal]:
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
        self._files, self._journal = {}, None
        if self._discard:  # while still locked: no other run can be starting in it
            with contextlib.suppress(OSError):
                for entry in list(self.path.iterdir()):
                    if entry.name == LOCK:
                        continue
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
        self._lock.release()
        if self._discard:
            self._remove_made()
            self._discard = False

    def _remove_made(self) -> None:
        """Remove the (empty) folders this invocation created, innermost first."""
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something else is in it now
        self._made = []

    def write_json(self, name: str, value: dict[str, Any]) -> Path:
        """Write one JSON file of the run atomically (a reader never sees half of it)."""
        target = self.path / name
        tmp = target.with_suffix(".json.tmp")
        try:
            tmp.write_text(
                jsontext.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            os.replace(tmp, target)
        except OSError as e:
            raise self._fail(f"write {name}", e) from None
        return target

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        return self.write_json(MANIFEST, manifest)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file an earlier run of this folder wrote (None if there is none)."""
        return _read_json(self.path / name, "delete it or pass --overwrite")


def _read_json(path: Path, fix: str) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{path}: cannot read it ({e}); {fix}") from None


def iter_rows(path: Path):
    """Stream the JSON rows of a JSONL output file."""
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)


class Run:
    """A run folder opened for reading (export, report): only what its journal vouches for.

    Rows are read up to the last checkpoint, so a run that is still being written, or was
    killed mid-line, gives whole seeds only.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        journal = self.path / JOURNAL
        if not self.path.is_dir():
            what = "no such folder" if not self.path.exists() else "a file, not a folder"
            raise RunFolderError(
                f"{self.path}: {what}; pass a run folder written by hedgerow generate"
            )
        try:
            entries, _ = _valid_lines(journal) if journal.is_file() else ([], 0)
        except OSError as e:
            raise RunFolderError(f"{journal}: cannot read it ({e.strerror})") from None
        if not entries or "fingerprint" not in entries[0]:
            raise RunFolderError(
                f"{self.path}: not a hedgerow run folder (no {JOURNAL}); pass a folder "
                "written by hedgerow generate"
            )
        checkpoints = [e for e in entries[1:] if "done" in e]
        self.done = checkpoints[-1]["done"] if checkpoints else 0
        self.sizes = checkpoints[-1]["sizes"] if checkpoints else dict.fromkeys(_DATA_FILES, 0)
        fix = "re-run the run's command to rewrite it"
        self.manifest = _read_json(self.path / MANIFEST, fix) or {}
        self.reference = _read_json(self.path / REFERENCE, fix)

    @property
    def status(self) -> str:
        return self.manifest.get("status", "running or killed")

    def rows(self, name: str = DATASET):
        """The rows of `dataset.jsonl` or `candidates.jsonl` that the journal vouches for."""
        left = self.sizes.get(name, 0)
        try:
            with (self.path / name).open("rb") as fh:
                while left > 0:
                    raw = fh.readline(left)
                    if not raw:
                        break
                    left -= len(raw)
                    if raw.strip():
                        yield json.loads(raw)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise RunFolderError(
                f"{self.path / name}: cannot read it ({e}); re-run the run's command to repair it"
            ) from None
