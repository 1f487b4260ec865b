"""Self-distillation: the reference answer, rewritten by the model that will be trained.

SDFT (Yang et al., "Self-Distillation Bridges Distribution Gap in Language Model
Fine-Tuning", ACL 2024) has the model to be fine-tuned rewrite each reference answer in
its own words, given the instruction and the reference as a guide; training on the
rewrites instead of the originals kept most of what plain fine-tuning destroyed. Here:

- the rewrites come from `--backend openai` (the user's chat model, `--candidates K` of
  them per seed); the base model's fit ranks the ones that pass the checks (GRAPE's
  step, among correct candidates only). Offline there is no model to rewrite with, so
  the seed is skipped (`needs_a_model`).
- the checks are the paper's: a rewrite that talks about the reference ("the reference
  answer", "your turn", `reference_talk` in prompts/self_distill/checks.toml) is dropped;
  a math reference (GSM8K's "#### N") must end at the same number, and any other must
  keep its names and numbers.
- when every candidate fails, the row is the reference itself, with why in its
  attributes (`fallback`): SDFT's fallback, so every seed keeps a row.
- its rows stand in for the seed's own answer (`replaces`): `hedgerow augment --mix
  self_distill=1.0` writes each rewrite over the row it rewrote.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from random import Random
from typing import Any

from pydantic import BaseModel, Field

from generator import banks
from generator.answers import final_answer, names
from generator.generators import Ask, Context, Generator, register
from generator.values import Example, Seed, Skip

_MARKED = re.compile(r"####\s*\S")  # GSM8K's final-answer line: a math reference
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


class SelfDistillChecks(banks.Bank):  # self_distill/checks.toml
    reference_talk: banks.Words


class SelfDistillReply(BaseModel):
    """The model's own answer to the question."""

    response: str = Field(description="your whole answer to the question, in your own words")


def _value(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").rstrip("."))
    except InvalidOperation:
        return None


def numbers(text: str) -> set[Decimal]:
    """The numbers a text states, by value (1,000 and 1000.0 are one number)."""
    found = (_value(n) for n in _NUMBER.findall(text))
    return {n.normalize() for n in found if n is not None}


@register
class SelfDistill(Generator):
    name = "self_distill"
    template = "self_distill/user.j2"
    bank = "self_distill/checks.toml"
    reply_model = SelfDistillReply
    schemas = {"self_distill/checks.toml": SelfDistillChecks}
    replaces = True  # the rewrite stands in for the reference
    default = False  # it rewrites the dataset: asked for by name
    share = 1.0  # `--mix self_distill=1.0`: every row
    order = 40

    def templates(self) -> list[str]:
        return [self.bank]  # offline it renders nothing: only its checks decide

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        return self.skip(
            seed,
            "needs_a_model",
            "self-distillation rewrites each answer with the model to be fine-tuned: "
            "run it with --backend openai --model NAME",
        )

    def requests(self, seed: Seed, rng: Random) -> list[Ask] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        return [self.ask(seed)]

    def parse(
        self, seed: Seed, ask: Ask, reply: SelfDistillReply, sample: int, model: str
    ) -> list[Example]:
        text = reply.response.strip()
        return [self.model_example(seed, self.name, sample, seed.prompt, text, {}, model)]

    # ----------------------------------------------------------------- its policy

    def cue_keys(self) -> tuple[str, ...]:
        return ("reference_talk",)

    def check(self, example: Example, reference: str | None) -> list[str]:
        """SDFT's filter: no talk about the reference; a math reference's final number,
        or a factual one's names and numbers, kept."""
        text, reference = example.response, reference or ""
        failures = []
        if any(p.search(text) for p in self.cues("reference_talk")):
            failures.append("talks_about_reference")
        if _MARKED.search(reference):
            want, got = final_answer(reference), final_answer(text)
            wanted = _value(want) if want else None
            if wanted is None or got is None or _value(got) != wanted:
                failures.append("changed_final_answer")
        else:
            common = frozenset(w.lower() for w in self.setting("common_words", []))
            said = text.lower()  # a name's case is style ("Blue." answered "blue")
            if any(name.lower() not in said for name in names(reference, common)):
                failures.append("dropped_a_name")
            if not numbers(reference) <= numbers(text):
                failures.append("changed_a_number")
        return failures

    def fallback(self, seed: Seed, reference: str | None, verdicts: list) -> Example | None:
        """Every rewrite failed: the reference stays, and the row says why."""
        why = set()
        for verdict in verdicts:  # a Decision (failures, why dropped) or a Skip (reason)
            failures = getattr(verdict, "failures", ())
            why.add(failures[0] if failures else verdict.reason)
        why.discard(None)
        return self.example(
            seed,
            self.name,
            len(verdicts),
            seed.prompt,
            reference or seed.response or "",
            {"fallback": sorted(why)},
            template="",
            backend="reference",  # no model wrote it: the seed's own answer
        )

    @classmethod
    def sample_note(cls, row: dict[str, Any]) -> str | None:
        why = (row.get("attributes") or {}).get("fallback")
        if why:
            return f"the reference kept: every rewrite failed ({', '.join(why)})"
        return "the target model's own rewrite of the reference"
