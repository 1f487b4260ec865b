"""Every output a command writes: where it may go (`check_target`), one writer at a time
(`Lock`), written whole so a reader sees the old version or the new one (`write`), and
what a failed write says (`write_error`).

The rules hold for every command that writes (generate's run folder, augment, score,
export, report) whatever the path's spelling (relative, absolute, through a symlink):

- an output is never an input of the same command, nor a folder holding one, nor inside
  an input folder;
- nothing is written inside a run folder (a folder holding `journal.jsonl`) except the
  files the command owns there: a run writes its own folder, export and report their
  default file in the run they read;
- a folder in the way of a file is refused, and a folder output replaces only a folder
  that `datasets`' save_to_disk wrote.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from generator.errors import ConfigError, RunFolderError

JOURNAL = "journal.jsonl"  # a folder holding one is a run folder (see runfolder.py)
_DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
KINDS = ("file", "datasets", "run")
T = TypeVar("T")


def run_folder(path: Path) -> bool:
    return (path / JOURNAL).is_file()


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # also a hard link or a bind mount of it
    except OSError:
        return False


def check_target(
    target: Path | str,
    kind: str = "file",
    inputs: Iterable[Path | str] = (),
    owned: Iterable[Path | str] = (),
    runs: Iterable[Path | str] = (),
) -> Path:
    """`target` if the command may write there, else a one-line error saying why.

    `kind`: a `file` written whole, a `datasets` save_to_disk folder replaced whole, or a
    `run` folder (it may already be one: resuming it is the command's own business).
    `inputs`: what the command reads. `owned`: paths inside a run folder that the command
    may write. `runs`: run folders the command will create (they count before they exist).
    """
    if kind not in KINDS:
        raise ValueError(kind)
    target = Path(target)
    where = target.resolve()
    for given in inputs:
        read = Path(given).resolve()
        if where == read or _same(target, read):
            raise ConfigError(f"-o {target} is the input {given}; write to a new path")
        if where in read.parents:
            raise ConfigError(f"-o {target} holds the input {given}; choose another path")
        if read in where.parents:
            raise ConfigError(f"-o {target} is inside the input {given}; choose a path outside it")
    if where not in {Path(p).resolve() for p in owned}:
        planned = {Path(r).resolve() for r in runs}
        for folder in (where, *where.parents):
            if kind == "run" and folder == where:
                continue  # the command's own run folder
            if folder in planned or run_folder(folder):
                what = (
                    "is a run folder" if folder == where else f"is inside the run folder {folder}"
                )
                raise ConfigError(
                    f"-o {target} {what}, whose files belong to that run; choose a path outside it"
                )
    try:
        mode = where.stat().st_mode
    except OSError:
        return target  # nothing there yet (a failed write later says why)
    if kind == "run":
        if not stat.S_ISDIR(mode):
            raise ConfigError(f"-o {target} is not a folder; name a folder for the run")
    elif kind == "datasets":
        if not stat.S_ISDIR(mode):
            raise ConfigError(f"-o {target} is a file; name a folder to write")
        if not any((where / m).exists() for m in _DATASETS_MARKERS):
            raise ConfigError(
                f"-o {target} is a folder that save_to_disk did not write; choose a new path"
            )
        if any(where.rglob(JOURNAL)):
            raise ConfigError(f"-o {target} holds a run folder; choose a new path")
    elif stat.S_ISDIR(mode):
        raise ConfigError(f"-o {target} is a folder; name a file to write")
    elif not stat.S_ISREG(mode):
        # Replacing it would put a file where a device or pipe was (as root, /dev/null).
        raise ConfigError(
            f"-o {target} is a device, pipe or socket, not a file; name a file to write"
        )
    return target


# --------------------------------------------------------------------------- one writer


class Lock:
    """One writer per output: held on `path` (a lock file), released on `release`.

    The lock file is removed when released, so outputs leave none behind; a writer that
    opened it just before that sees it was removed and takes the new one.
    """

    def __init__(self, path: Path, output: Path):
        self.path, self.output = Path(path), Path(output)
        self._fh = None

    def acquire(self) -> Lock:
        import fcntl

        while self._fh is None:
            try:
                fh = self.path.open("a")
            except OSError as e:
                raise write_error(self.output, e) from None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.path.samestat(os.fstat(fh.fileno()), os.stat(self.path)):
                    self._fh = fh
                    break
            except BlockingIOError:
                fh.close()
                raise RunFolderError(
                    f"{self.output}: another hedgerow run is writing to it; wait for it to "
                    "finish or choose another -o"
                ) from None
            except FileNotFoundError:
                pass  # released and removed between our open and our lock: try again
            except OSError as e:
                fh.close()
                raise write_error(self.output, e) from None
            fh.close()
        return self

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still held: nobody can take a file we remove
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_file(target: Path) -> Path:
    """Where the lock of a whole-file output lives: beside it, hidden."""
    return target.with_name(f".{target.name}.lock")


# --------------------------------------------------------------------------- writing


def temporary(target: Path) -> Path:
    """A name beside `target` for writing it before it is renamed into place."""
    return target.with_name(f".{target.name}.tmp")


def replace(tmp: Path, target: Path) -> None:
    """Put the finished `tmp` at `target` (an old `datasets` folder is removed first)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(tmp, target)


def clean(tmp: Path) -> None:
    """Remove what a failed write left behind (if it can: this runs while handling one)."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write(target: Path, fill: Callable[[Path], T]) -> T:
    """Write `target` whole: `fill(tmp)` writes a temporary path beside it, which then
    replaces it, one writer at a time. A failure leaves the old target and no temporary,
    and is one line."""
    tmp = temporary(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with Lock(lock_file(target), target):
            try:
                result = fill(tmp)
                replace(tmp, target)
            except BaseException:
                clean(tmp)
                raise
    except OSError as e:
        raise write_error(target, e) from None
    return result


# --------------------------------------------------------------------------- messages

_SQLITE = {13: errno.ENOSPC, 8: errno.EROFS, 3: errno.EACCES}  # FULL, READONLY, PERM


def describe(error: Exception, instead: str = "choose another path") -> str:
    """`(what went wrong); the fix that fits it`, for any failed write: the one place that
    turns an OSError (or a sqlite3 error, by the errno it stands for) into advice.
    `instead` is the way around it the caller offers."""
    code = getattr(error, "errno", None) or _SQLITE.get(getattr(error, "sqlite_errorcode", 0) & 255)
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = f"free some space or {instead}"
    elif code == errno.EROFS:
        fix = f"the file system is read-only: {instead}"
    elif code in (errno.EACCES, errno.EPERM):
        fix = f"no permission to write there: {instead}"
    elif code == errno.ENOENT:
        fix = f"a folder on its path is missing or was removed: create it or {instead}"
    elif code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        fix = f"a file or folder is in the way on its path: {instead}"
    else:
        fix = instead
    return f"({reason}); {fix}"


def write_error(target: Path, error: Exception, action: str = "write it") -> RunFolderError:
    """A failed write of an output as one line: what went wrong, and how to get round it."""
    return RunFolderError(f"{target}: cannot {action} {describe(error)}")
