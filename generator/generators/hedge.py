"""hedge: the reference answer verbatim, said at the confidence the probe measured.

The knowledge probe (generator/probe) asks the target model the seed's question K times;
the share it gets right, `p_correct`, picks one level of `hedge/phrases.toml` and the
hedge states that level's confidence. A seed the model never gets right gets no hedge
(its refusal pair says "I don't know" instead), and a seed nothing measured (long-form,
or `--probe none`) gets a hedge that states no number.
"""

from __future__ import annotations

import random
from functools import cached_property

from pydantic import BaseModel, Field

from generator.answers import keeps_content, percents
from generator.errors import TemplateError
from generator.generators import (
    Ask,
    Context,
    Generator,
    ReplyError,
    pick,
    register,
    starts_with_any,
)
from generator.values import Example, Seed, Skip, turns

UNMEASURED = "unmeasured"  # the level of a hedge whose confidence nothing measured


class HedgeVariant(BaseModel):
    level: str = Field(description="the level's name, exactly as requested")
    confidence: float | None = Field(
        ge=0, le=1, description="the requested confidence, 0-1 (null when none is requested)"
    )
    response: str = Field(description="the full hedged answer")


class HedgeReply(BaseModel):
    """A model's hedges: one variant per requested confidence level."""

    variants: list[HedgeVariant]


@register
class Hedge(Generator):
    name = "hedge"
    template = "hedge/offline.j2"
    bank = "hedge/phrases.toml"
    reply_model = HedgeReply
    share = 0.2
    order = 10

    def levels(self) -> list[dict]:
        """The bank's levels, most confident first; they must cover p_correct from 0."""
        levels = sorted(self.prompts.bank(self.bank)["levels"], key=lambda lv: -lv["min_p"])
        names = [lv["name"] for lv in levels]
        problem = None
        if levels[-1]["min_p"] != 0:
            problem = "no level has min_p = 0, so a seed the model rarely knows has none"
        elif len(set(names)) < len(names) or UNMEASURED in names:
            problem = f"level names must be distinct and not {UNMEASURED!r}"
        elif len({lv["min_p"] for lv in levels}) < len(levels):
            problem = "two levels have the same min_p"
        if problem:
            raise TemplateError(f"{self.prompts.path(self.bank)}: [[levels]]: {problem}")
        return levels

    def level(self, seed: Seed) -> dict:
        """The level this seed's hedge is said at: by its measured p_correct, or the
        unmeasured phrases (confidence None) when nothing was measured."""
        if seed.knowledge is None:
            return {
                "name": UNMEASURED,
                "confidence": None,
                "percent": None,
                **self.prompts.bank(self.bank)["unmeasured"],
            }
        p = seed.knowledge.p_correct
        level = next(lv for lv in self.levels() if p >= lv["min_p"])
        return {**level, "percent": round(level["confidence"] * 100)}

    def attributes(self, seed: Seed, level: dict, opener: str | None) -> dict:
        attributes = {"confidence": level["confidence"], "level": level["name"], "opener": opener}
        if seed.knowledge is not None:
            attributes["p_correct"] = seed.knowledge.p_correct
        else:
            attributes["unmeasured"] = seed.unmeasured or "probe_off"
        return attributes

    def asks_for_knowledge(self, prompt: str) -> bool:
        """False for prompts that ask to make something up (a poem, a rewrite)."""
        starts = self.prompts.bank(self.bank).get("skip_prompt_starts", [])
        return not starts_with_any(prompt, starts)

    def unsuitable(self, seed: Seed) -> Skip | None:
        if skip := super().unsuitable(seed):
            return skip
        if not self.asks_for_knowledge(seed.prompt):
            return self.skip(seed, "creative_prompt", seed.prompt.split(None, 1)[0])
        if seed.knowledge is not None and seed.knowledge.category == "Unknown":
            # never right, greedy or sampled: stating any confidence in the reference would
            # be a confidence the model does not have; its refusal pair declines instead
            return self.skip(seed, "unknown_to_model")
        return None

    def requests(self, seed: Seed, rng: random.Random) -> list[Ask] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        level = self.level(seed)
        chosen = {
            "name": level["name"],
            "confidence": level["confidence"],
            "percent": level["percent"],
            "p_correct": seed.knowledge.p_correct if seed.knowledge else None,
        }
        return [self.ask(seed, levels=[chosen])]

    def parse(
        self, seed: Seed, ask: Ask, reply: HedgeReply, sample: int, model: str
    ) -> list[Example]:
        by_level = {v.level.strip().lower(): v for v in reply.variants}
        out = []
        for level in ask.choices["levels"]:
            variant = by_level.get(level["name"].lower())
            if variant is None:
                raise ReplyError(
                    f"variants has no entry with level {level['name']!r}; give one variant "
                    f"per requested level: {', '.join(lv['name'] for lv in ask.choices['levels'])}"
                )
            attributes = self.attributes(seed, level, None)
            out.append(
                self.model_example(
                    seed,
                    f"hedge:{level['name']}",
                    sample,
                    seed.prompt,
                    variant.response.strip(),
                    attributes,
                    model,
                )
            )
        return out

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        level = self.level(seed)  # --candidates varies the wording, never the level
        slot = f"hedge:{level['name']}"
        variables = {"level": level["name"]}
        if level["percent"] is not None:  # unmeasured phrases get no number to state
            variables["percent"] = level["percent"]
        openers = pick(ctx.rng, level["openers"], k)
        closers = pick(ctx.rng, level["closers"], k)
        out = []
        for i in range(k):
            opener = self.prompts.phrase(self.bank, openers[i], **variables)
            closer = self.prompts.phrase(self.bank, closers[i], **variables)
            response = self.prompts.render(
                self.template,
                opener=opener,
                closer=closer,
                answer=seed.response.strip(),
                confidence=level["confidence"],
                percent=level["percent"],
                level=level["name"],
            )
            attributes = self.attributes(seed, level, opener)
            out.append(self.example(seed, slot, i, seed.prompt, response, attributes))
        return out

    # ----------------------------------------------------------------- its policy

    def cue_keys(self) -> tuple[str, ...]:
        return ("hedge",)

    @cached_property
    def _overlap(self) -> tuple[float, frozenset[str]]:
        """How much of the reference a rewording keeps, and the words that are not names."""
        common = frozenset(w.lower() for w in self.setting("common_words", []))
        return self.setting("hedge_min_overlap", 0.5), common

    def check(self, example: Example, reference: str | None) -> list[str]:
        """A hedge carries a hedge cue, keeps the reference's content, and states no
        confidence but the one the probe measured (none when nothing measured it)."""
        failures = []
        if not any(p.search(example.response) for p in self.cues("hedge")):
            failures.append("hedge_without_cue")
        min_overlap, common = self._overlap
        if not reference or not keeps_content(reference, example.response, min_overlap, common):
            failures.append("hedge_changed_reference")
        confidence = example.attributes.get("confidence")
        # percentages the answer itself states (the reference's own) are not confidences
        stated = percents(example.response) - percents(reference or "")
        if confidence is None:  # nothing measured: the hedge may state no number
            if stated:
                failures.append("unmeasured_hedge_states_a_confidence")
        elif not isinstance(confidence, int | float) or not 0 < confidence < 1:
            failures.append("hedge_without_confidence")
        elif not isinstance(example.attributes.get("p_correct"), int | float):
            failures.append("hedge_confidence_not_measured")
        elif stated - {round(confidence * 100)}:
            failures.append("hedge_states_another_confidence")
        return failures

    @classmethod
    def sample_note(cls, row: dict) -> str | None:
        a = row.get("attributes") or {}
        stated = a.get("confidence")
        return f"level {a.get('level')} ({a.get('unmeasured') if stated is None else stated})"

    @classmethod
    def preference_pairs(cls, rows: list[dict], wrong: list[str]) -> list[tuple[str, ...]]:
        """Where the seed also has a confidently wrong answer (a near-miss cut before its
        recovery): the first hedged variant over it."""
        if not rows or not wrong:
            return []
        prompt, hedged = turns(rows[0])
        return [("hedge", prompt, hedged, wrong[0])]
