"""Validation: cheap checks, each failure a named reason.

Every row gets the checks here (a response and a prompt, no meta-talk); the rest belong
to the behavior that made the row: its generator's `check`, with its cues in
`prompts/<behavior>/checks.toml` or the shared `prompts/checks.toml` (the vocabulary of
hedges, declines and recoveries that `hedgerow eval` reads as well). A check never edits
an example; it returns the reasons it fails (empty when it passes). The cues are data, so
a user can check another language or style.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from generator.answers import (  # noqa: F401  (the comparisons checks are made of)
    final_answer,
    keeps_content,
    names,
    normalize,
    same_final_answer,
)
from generator.templates import Prompts
from generator.values import Example

BANK = "checks.toml"
ORIGINAL = "original"  # an augmented dataset's own rows: nothing to check


@dataclass(frozen=True)
class Cues:
    """The shared cue patterns (what `hedgerow eval` reads a reply with)."""

    meta_talk: tuple[re.Pattern, ...]
    hedge: tuple[re.Pattern, ...]
    decline: tuple[re.Pattern, ...]
    recovery: tuple[re.Pattern, ...]

    @classmethod
    def load(cls, prompts: Prompts) -> Cues:
        keys = ("meta_talk", "hedge", "decline", "recovery")
        return cls(**{key: prompts.bank_patterns(BANK, key) for key in keys})


def any_match(patterns: tuple[re.Pattern, ...], text: str) -> bool:
    return any(p.search(text) for p in patterns)


def spans(patterns: tuple[re.Pattern, ...], text: str) -> list[tuple[int, int]]:
    return [m.span() for p in patterns for m in p.finditer(text)]


class Checker:
    """Runs every row's checks, then its behavior's (the generators of the run; without
    them, every registered behavior's)."""

    def __init__(self, prompts: Prompts, generators: Sequence | None = None):
        self.prompts = prompts
        self._generators = generators

    @cached_property
    def cues(self) -> Cues:
        return Cues.load(self.prompts)

    @cached_property
    def by_behavior(self) -> dict:
        from generator import generators as registry

        made = self._generators
        if made is None:
            made = [cls(self.prompts) for cls in registry.registry().values()]
        return {behavior: g for g in made for behavior in g.behaviors()}

    def compile(self) -> None:
        """Compile every cue the run will use now: a bad pattern fails before any work."""
        self.cues  # noqa: B018
        for generator in self.by_behavior.values():
            for key in generator.cue_keys():
                generator.cues(key)

    def check(self, example: Example, reference: str | None) -> list[str]:
        """All failure reasons of `example` (empty list: it passes)."""
        failures = []
        if not example.response.strip():
            failures.append("empty_response")
        if not example.prompt.strip():
            failures.append("empty_prompt")
        if any_match(self.cues.meta_talk, example.response):
            failures.append("meta_talk")
        if example.behavior == ORIGINAL:
            return failures
        generator = self.by_behavior.get(example.behavior)
        if generator is None:
            failures.append(f"unknown_behavior:{example.behavior}")
        else:
            failures.extend(generator.check(example, reference))
        return failures
