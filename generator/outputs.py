"""Whole-file outputs (exports, augmented datasets): where they may go, and writing them
so a reader sees the old version or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from generator.errors import ConfigError

_DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def check_target(target: Path | str, folder: bool, protect: Iterable[Path | str] = ()) -> Path:
    """`target` if an output may be written there, else a one-line error saying why.

    Never the inputs or the run folder (or a folder holding them); a folder in the way of a
    file is refused, and a folder output replaces only a `datasets` folder."""
    target = Path(target)
    where = target.resolve()
    for path in protect:
        kept = Path(path).resolve()
        if where == kept or where in kept.parents:
            raise ConfigError(f"-o {target} would replace {path}; choose another path")
    if target.is_dir():
        if not folder:
            raise ConfigError(f"-o {target} is a folder; name a file to write")
        if not any((target / m).exists() for m in _DATASETS_MARKERS):
            raise ConfigError(
                f"-o {target} is a folder that save_to_disk did not write; choose a new path"
            )
    elif target.exists() and folder:
        raise ConfigError(f"-o {target} is a file; name a folder to write")
    return target


def temporary(target: Path) -> Path:
    """A name beside `target` for writing it before it is renamed into place."""
    return target.with_name(f".{target.name}.tmp")


def replace(tmp: Path, target: Path) -> None:
    """Put the finished `tmp` at `target` (an old `datasets` folder is removed first)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(tmp, target)


def write_error(target: Path, error: OSError) -> ConfigError:
    """A failed write as one line, with the fix that fits the cause."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free some space or choose another -o"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "choose a folder you can write to"
    else:
        fix = "choose another -o"
    return ConfigError(f"{target}: cannot write it ({error.strerror or error}); {fix}")


def clean(tmp: Path) -> None:
    """Remove what a failed write left behind (if it can: this runs while handling one)."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
