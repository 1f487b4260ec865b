"""near_miss: a worked answer that slips once, notices, corrects itself and finishes at the
reference final answer.

With a model, any domain works (reasoning, code, facts): the model writes the trace and
quotes its mistake and its recovery, which are located in the text and checked.

The offline path needs a checkable calculation: GSM8K `<<a*b=c>>` annotations or plain
`a * b = c` steps whose arithmetic it verifies. It changes one result to a wrong number a
person could write (a slip of that kind of number: a miscount or a forgotten carry with
whole numbers, a misplaced decimal point with money), everywhere its sentence states it,
recovers right after that sentence, and keeps the rest verbatim. Annotations stay in the
trace; the run's policy on them applies to every behavior alike (generator.annotations).
"""

from __future__ import annotations

from random import Random

from pydantic import BaseModel, Field

from generator.answers import final_answer, same_final_answer
from generator.generators import Ask, Context, Generator, ReplyError, pick, register
from generator.generators.slips import (  # noqa: F401  (evaluate: the module's own API too)
    Step,
    _sentence_bounds,
    annotated_steps,
    evaluate,
    plain_steps,
    slip_value,
    slipped_sentence,
)
from generator.values import Example, Seed, Skip, turns


class NearMissReply(BaseModel):
    """A model's near-miss trace and the quotes that locate its one slip and recovery."""

    domain: str = Field(description="reasoning, code, facts, or another one-word domain")
    response: str = Field(description="the whole answer: slip, recovery, correct finish")
    mistake: str = Field(description="the wrong part, copied exactly from response")
    correct: str = Field(description="what the wrong part should have said")
    recovery: str = Field(
        description="the sentence(s) that notice and fix the mistake, copied exactly "
        "from response; they must contain `correct`"
    )
    final_answer: str = Field(description="the final answer, as in the reference")


@register
class NearMiss(Generator):
    name = "near_miss"
    template = "near_miss/offline.j2"
    bank = "near_miss/phrases.toml"
    reply_model = NearMissReply
    spans = ("slip", "recovery")
    order = 30

    def requests(self, seed: Seed, rng: Random) -> list[Ask] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        return [self.ask(seed, final_answer=final_answer(seed.response) or "")]

    def parse(
        self, seed: Seed, ask: Ask, reply: NearMissReply, sample: int, model: str
    ) -> list[Example]:
        text = reply.response.strip()
        mistake, recovery = reply.mistake.strip(), reply.recovery.strip()
        if not mistake or not recovery:
            raise ReplyError("mistake and recovery must both be quoted from response")
        s0 = text.find(mistake)
        if s0 < 0:
            raise ReplyError("mistake is not in response; copy it exactly, character for character")
        r0 = text.find(recovery, s0 + len(mistake))
        if r0 < 0:
            raise ReplyError(
                "recovery is not in response after the mistake; copy it exactly, "
                "and put it after the mistake"
            )
        attributes = {
            "domain": reply.domain.strip().lower(),
            "slip": {
                "kind": "model",
                "expression": None,
                "wrong": mistake,
                "right": reply.correct.strip(),
                "start": s0,
                "end": s0 + len(mistake),
            },
            "recovery": {"start": r0, "end": r0 + len(recovery)},
            "final_answer": reply.final_answer.strip(),
            "confidence": None,
        }
        return [self.model_example(seed, "near_miss", sample, seed.prompt, text, attributes, model)]

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        # The trace is built on the answer as it is, annotations included: the run's
        # policy on them (generator.annotations) applies to every behavior's output alike.
        text = seed.response.strip()
        steps = annotated_steps(text) or plain_steps(text)
        final = final_answer(seed.response)
        if not steps or final is None:
            return self.skip(seed, "no_worked_calculation")
        slips = [s for s in self.prompts.bank_list(self.bank, "slips")]
        options = []
        for step in steps:
            bounds = _sentence_bounds(text, step.start, step.end)
            for kind in slips:
                wrong = slip_value(step, kind)
                if wrong is not None and (slipped := slipped_sentence(text, *bounds, step, wrong)):
                    options.append((step, bounds, kind, wrong, slipped))
        if not options:
            return self.skip(seed, "no_plausible_slip")
        recoveries = pick(ctx.rng, self.prompts.bank_list(self.bank, "recoveries"), k)
        out = []
        for i, option in enumerate(pick(ctx.rng, options, k)):
            example = self._trace(seed, text, *option, recoveries[i], final, i)
            if example is not None:
                out.append(example)
        return out or self.skip(seed, "no_plausible_slip")

    def _trace(
        self,
        seed: Seed,
        text: str,
        step: Step,
        bounds: tuple[int, int],
        kind: str,
        wrong: str,
        slipped: tuple[str, int],
        recovery_phrase: str,
        final: str,
        index: int,
    ) -> Example | None:
        s0, s1 = bounds
        slipped_text, wrong_offset = slipped
        slipped_text = slipped_text.rstrip()
        if not slipped_text.endswith((".", "!", "?", ":")):
            slipped_text += "."  # the recovery starts a new sentence
        recovery = self.prompts.phrase(
            self.bank, recovery_phrase, expression=step.expression, wrong=wrong, right=step.result
        )
        response = self.prompts.render(
            self.template,
            before=text[:s0],
            slipped=slipped_text,
            recovery=recovery,
            corrected=text[s0:s1].strip(),
            after=text[s1:],
        )
        slip_at = response.find(slipped_text)
        recovery_at = response.find(recovery, slip_at + 1)
        if slip_at < 0 or recovery_at < 0:
            return None  # a user template that drops a piece: nothing to point at
        wrong_at = slip_at + wrong_offset
        attributes = {
            "slip": {
                "kind": kind,
                "expression": step.expression,
                "wrong": wrong,
                "right": step.result,
                "start": wrong_at,
                "end": wrong_at + len(wrong),
            },
            "recovery": {"start": recovery_at, "end": recovery_at + len(recovery)},
            "final_answer": final,
            "confidence": None,
        }
        return self.example(seed, "near_miss", index, seed.prompt, response, attributes)

    # ----------------------------------------------------------------- its policy

    def cue_keys(self) -> tuple[str, ...]:
        return ("recovery",)

    def check(self, example: Example, reference: str | None) -> list[str]:
        """One marked slip, a recovery (a cue and the right value) only after it, and the
        reference's final answer at the end."""
        text = example.response
        slip = example.attributes.get("slip") or {}
        recovery = example.attributes.get("recovery") or {}
        try:
            s0, s1 = int(slip["start"]), int(slip["end"])
            r0, r1 = int(recovery["start"]), int(recovery["end"])
        except (KeyError, TypeError, ValueError):
            return ["near_miss_unmarked"]
        cues = self.cues("recovery")
        failures = []
        if text[s0:s1] != str(slip.get("wrong")) or not s1 <= r0 < r1 <= len(text):
            failures.append("near_miss_unmarked")
        else:
            said = text[r0:r1]
            if str(slip.get("right")) not in said or not any(p.search(said) for p in cues):
                failures.append("near_miss_no_recovery")
        # Exactly one marked slip: recovery cues may appear inside the recovery only.
        found = [m.span() for p in cues for m in p.finditer(text)]
        if any(not (r0 <= a and b <= r1) for a, b in found):
            failures.append("near_miss_extra_slip")
        final = example.attributes.get("final_answer")
        if not same_final_answer(str(final or ""), reference or "", text, r1):
            failures.append("near_miss_wrong_final_answer")
        return failures

    @classmethod
    def sample_note(cls, row: dict) -> str | None:
        slip = (row.get("attributes") or {}).get("slip") or {}
        return f"slip {slip.get('kind')}: {slip.get('wrong')} → {slip.get('right')}"

    @classmethod
    def wrong_answers(cls, rows: list[dict]) -> list[str]:
        return [cut for row in rows if (cut := unrecovered(row))]

    @classmethod
    def preference_pairs(cls, rows: list[dict], wrong: list[str]) -> list[tuple[str, ...]]:
        """The recovered trace chosen over the same trace cut just before its recovery,
        so the slip stands and no answer follows."""
        made = []
        for row in rows:
            if cut := unrecovered(row):
                prompt, trace = turns(row)
                made.append(("near_miss", prompt, trace, cut))
        return made


def unrecovered(row: dict) -> str | None:
    """A near-miss trace cut just before its recovery: the slip is made and left standing,
    and the answer never arrives."""
    _, response = turns(row)
    start = ((row.get("attributes") or {}).get("recovery") or {}).get("start")
    if not isinstance(start, int) or start <= 0:
        return None
    return response[:start].rstrip() or None
