"""Prompt templates and phrase banks: one sandboxed Jinja2 environment over `prompts/`.

A user's `--prompts DIR` overlays the defaults file by file: a file present in DIR wins,
every other file comes from the shipped set. Seed text is only ever passed in as a
variable, never compiled as a template, so `{{ ... }}` in a seed stays data.

Templates may come from anywhere, so they are untrusted: they render in Jinja2's
immutable sandbox (no Python internals, no file access beyond the template folders), a
render is cut off after `RENDER_SECONDS` (in the main thread, where the CLI renders), a
string or list may not be multiplied, nor a number raised, into something huge, and a
rendered text may not pass `MAX_SIZE` characters.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
import threading
import time
import tomllib
import traceback
from functools import cached_property
from pathlib import Path
from typing import Any

from generator.errors import TemplateError, param
from generator.outputs import describe

_HERE = Path(__file__).resolve().parent
RENDER_SECONDS = 2.0  # one render of one template; the shipped ones take microseconds
MAX_SIZE = 1_000_000  # characters (or items) a template may build by multiplication


class _Overtime(Exception):
    pass


def _overtime(signum, frame):
    raise _Overtime


@contextlib.contextmanager
def _deadline(seconds: float):
    """Interrupt the code inside after `seconds`, by a timer signal. Main thread only (the
    CLI renders there); elsewhere the render runs without a clock. A render inside a
    render keeps the outer deadline, and a timer someone else had set is set again after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGALRM) is _overtime:  # nested: the outer clock runs on
        yield
        return
    remaining, interval = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _overtime)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            left = remaining - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), interval)


def _sandbox(**options):
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "**" and isinstance(right, int) and abs(right) > 1000:
                raise SecurityError(f"exponent {right} is too large for a template")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if (
                        isinstance(seq, str | list | tuple)
                        and isinstance(n, int)
                        and len(seq) * n > MAX_SIZE
                    ):
                        raise SecurityError(
                            f"repeating a {type(seq).__name__} {n} times makes more than "
                            f"{MAX_SIZE:,} items"
                        )
            return super().call_binop(context, operator, left, right)

    return Sandbox(**options)


def default_prompts_dir() -> Path:
    """The shipped templates: inside the wheel, or the source tree for an editable install."""
    for candidate in (_HERE / "prompts", _HERE.parent / "prompts"):
        if candidate.is_dir():
            return candidate
    raise TemplateError("the shipped prompts/ folder is missing; reinstall hedgerow")


class Prompts:
    """Loads, renders and fingerprints the templates of one run."""

    def __init__(self, overlay: Path | str | None = None):
        self.default_dir = default_prompts_dir()
        self.overlay = Path(overlay) if overlay else None
        if self.overlay is not None and not self.overlay.is_dir():
            raise TemplateError(
                f"{param('prompts')} {self.overlay}: not a folder; make one with "
                "'hedgerow templates init DIR'"
            )
        self._banks: dict[str, dict[str, Any]] = {}
        self._compiled: dict[str, Any] = {}
        self._hashes: dict[str, str] = {}

    @cached_property
    def dirs(self) -> list[Path]:
        """Where a name is looked up: the user's overlay, the shipped set, then the
        folders plugins bring (`Generator.prompts_dir`)."""
        from generator.generators import template_dirs

        return [d for d in (self.overlay, self.default_dir, *template_dirs()) if d is not None]

    def has(self, name: str) -> bool:
        """Whether `name` resolves to a file after the overlay."""
        return any((d / name).is_file() for d in self.dirs)

    @cached_property
    def env(self):
        # Imported here: `hedgerow --help` should not pay for Jinja2.
        from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined

        return _sandbox(
            loader=ChoiceLoader([FileSystemLoader(str(d)) for d in self.dirs]),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def path(self, name: str) -> Path:
        """The file that `name` resolves to after the overlay."""
        for d in self.dirs:
            p = d / name
            if p.is_file():
                return p
        raise TemplateError(f"template {name!r} not found in {', '.join(map(str, self.dirs))}")

    def source(self, name: str) -> str:
        return self.path(name).read_text(encoding="utf-8")

    def sha256(self, name: str) -> str:
        """The file's hash, read once (every example's provenance names it; a template
        edited mid-run is still rendered from the file read first, see `render`)."""
        if (known := self._hashes.get(name)) is None:
            known = self._hashes[name] = hashlib.sha256(self.path(name).read_bytes()).hexdigest()
        return known

    def names(self) -> list[str]:
        """Every template and bank file, as relative names, overlay included."""
        found: set[str] = set()
        for d in self.dirs:
            for p in d.rglob("*"):
                if p.is_file() and p.suffix in {".j2", ".toml"}:
                    found.add(p.relative_to(d).as_posix())
        return sorted(found)

    def render(self, name: str, **variables: Any) -> str:
        """Render template file `name` with `variables`; errors name the file and line."""
        try:
            template = self._compiled.get(name)
            if template is None:
                template = self._compiled[name] = self.env.get_template(name)
            with _deadline(RENDER_SECONDS):
                return _bounded(template.render(**variables).strip())
        except _Overtime:
            raise TemplateError(_overtime_message(name)) from None
        except Exception as e:  # Jinja2 errors, and a template's own 1 // 0
            raise TemplateError(_describe(name, e)) from None

    def phrase(self, bank_name: str, text: str, **variables: Any) -> str:
        """Render one phrase-bank string (it may use variables like `{{ entity }}`)."""
        key = f"{bank_name}\x00{text}"
        try:
            template = self._compiled.get(key)
            if template is None:
                template = self._compiled[key] = self.env.from_string(text)
            with _deadline(RENDER_SECONDS):
                return _bounded(template.render(**variables).strip())
        except _Overtime:
            raise TemplateError(_overtime_message(bank_name, text)) from None
        except Exception as e:  # Jinja2 errors, and a template's own 1 // 0
            raise TemplateError(_describe(bank_name, e, phrase=text)) from None

    def bank(self, name: str) -> dict[str, Any]:
        """A phrase bank (TOML), parsed and checked against its schema (banks.py) once per
        run, with the schema's defaults filled in."""
        if name not in self._banks:
            from generator import banks  # pydantic: not for `hedgerow --help`

            path = self.path(name)
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise TemplateError(f"{path}: {e}; fix the TOML syntax") from None
            self._banks[name] = banks.check(name, data, path)
        return self._banks[name]

    def check_banks(self, names: list[str]) -> None:
        """Load every bank among `names` now, so a bad one fails before any work."""
        for name in names:
            if name.endswith(".toml"):
                self.bank(name)

    def bank_int(self, name: str, key: str, default: int) -> int:
        """A whole number from a bank (default when absent)."""
        value = self.bank(name).get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TemplateError(f"{self.path(name)}: '{key}' must be a whole number >= 0")
        return value

    def bank_list(self, name: str, key: str) -> list[Any]:
        """A non-empty list from a bank; a missing or empty key is the user's to fix."""
        value = self.bank(name).get(key)
        if not isinstance(value, list) or not value:
            raise TemplateError(f"{self.path(name)}: '{key}' must be a non-empty list")
        return value

    def bank_patterns(self, name: str, key: str) -> tuple[Any, ...]:
        """A bank's list of regular expressions, compiled (ignoring case, `^`/`$` at line
        ends); a bad one is the user's to fix, named with its file."""
        import re

        patterns = []
        for pattern in self.bank_list(name, key):
            try:
                patterns.append(re.compile(pattern, re.IGNORECASE | re.MULTILINE))
            except (re.error, TypeError) as e:
                raise TemplateError(
                    f"{self.path(name)}: {key} pattern {pattern!r}: {e}; fix the regular expression"
                ) from None
        return tuple(patterns)


def _bounded(text: str) -> str:
    if len(text) > MAX_SIZE:
        raise ValueError(f"it rendered {len(text):,} characters, more than {MAX_SIZE:,}")
    return text


def _overtime_message(name: str, phrase: str | None = None) -> str:
    where = name + (f", phrase {phrase[:40]!r}" if phrase is not None else "")
    return (
        f"template {where}: still rendering after {RENDER_SECONDS:g} s (a loop that "
        "does not end?); cut it off: fix the template"
    )


def _describe(name: str, error: Exception, phrase: str | None = None) -> str:
    line = getattr(error, "lineno", None)
    if line is None:
        # Runtime errors (an undefined variable) carry no line, but Jinja2 rewrites the
        # traceback so the template's own frame holds it.
        frames = [
            f
            for f in traceback.extract_tb(error.__traceback__)
            if f.filename and f.filename.replace("\\", "/").endswith(name)
        ]
        line = frames[-1].lineno if frames else None
    where = f"{name}, line {line}" if line else name
    if phrase is not None:
        where += f", phrase {phrase[:40]!r}"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"template {where}: {message}"


def init_templates(target: Path, force: bool = False) -> list[Path]:
    """Copy the shipped templates into `target` for editing; never overwrite unless asked."""
    source = default_prompts_dir()
    written = []
    try:
        for src in sorted(source.rglob("*")):
            if not src.is_file() or src.suffix not in {".j2", ".toml"}:
                continue
            dst = target / src.relative_to(source)
            if dst.exists() and not force:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(dst)
    except OSError as e:
        raise TemplateError(
            f"{target}: cannot write templates there " + describe(e, "choose another folder")
        ) from None
    return written
