"""Typed errors. The library raises these; only `cli.py` turns them into exit codes.

    HedgerowError                 a user can fix it; the message says how (exit 1)
    ├── InputError                a seed file or dataset that cannot be read as seeds
    ├── TemplateError             a prompt template or phrase bank that does not load or render
    ├── ConfigError               flags or settings that do not fit together
    │   └── NotAvailableError     a flag for a feature this version does not have yet
    ├── RunFolderError            an output folder that cannot be used for this run
    ├── ScorerError               a fit scorer that cannot be loaded, reached or used
    ├── EndpointError             a generation endpoint that answered none of the requests
    ├── ExportError               a run that cannot be exported as asked
    ├── JSONValueError            a value strict JSON cannot hold (NaN) on its way to a file
    └── RunningLoopError          a blocking call made inside a running event loop

Every message is one line and names the file, line or field it is about. A message
names the library's parameters through `param("candidates")`: `str(error)` reads
"candidates must be at least 1" to a Python caller, and the CLI shows the same error as
"--candidates must be at least 1" (`error.show(flags)` with its own parameter-to-flag map).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_MARK = "\x1f"  # ASCII unit separator: never in a message's own text
_PARAM = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*){_MARK}")


def param(name: str) -> str:
    """A library parameter named in an error message (see the module's doc)."""
    return f"{_MARK}{name}{_MARK}"


class HedgerowError(Exception):
    """Base of every error a user can fix."""

    def __str__(self) -> str:
        return self.show({})

    def params(self) -> list[str]:
        """The parameters the message names, in order."""
        return _PARAM.findall(super().__str__())

    def show(self, names: Mapping[str, str] | Callable[[str], str]) -> str:
        """The message with each parameter shown as `names` calls it (a flag, say);
        a parameter `names` does not know keeps its own name."""
        name = names if callable(names) else (lambda p: names.get(p, p))
        return _PARAM.sub(lambda m: name(m.group(1)), super().__str__())


class InputError(HedgerowError):
    """A seed file or dataset that cannot be read as seeds."""


class TemplateError(HedgerowError):
    """A template or phrase bank that does not load or render."""


class ConfigError(HedgerowError):
    """Flags or settings that do not fit together."""


class NotAvailableError(ConfigError):
    """A feature that is planned but not in this version."""


class RunFolderError(HedgerowError):
    """An output folder that cannot be used for this run."""


class ScorerError(HedgerowError):
    """A fit scorer that cannot be loaded, reached or used."""


class EndpointError(HedgerowError):
    """A generation endpoint that answered none of a run's requests (the run is kept)."""


class ExportError(HedgerowError):
    """A run that cannot be exported as asked."""


class JSONValueError(HedgerowError, ValueError):
    """A value strict JSON cannot hold (NaN, infinity) on its way into a file."""


class RunningLoopError(HedgerowError, RuntimeError):
    """A blocking call (`generate`) made where an event loop already runs: await the
    coroutine (`agenerate`) instead."""


def refuse_in_loop(name: str, coroutine: str) -> None:
    """Refuse the blocking call `name` where an event loop already runs (`asyncio.run`
    cannot start a second one, and waiting would stall the caller's loop)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RunningLoopError(
        f"{name}() blocks, and an event loop is running here (a notebook, an async app); "
        f"await {coroutine}(...) instead"
    )
