"""hedge: the reference answer verbatim, said at a stated, named confidence level."""

from __future__ import annotations

import random

from pydantic import BaseModel, Field

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
from generator.values import Example, Seed, Skip


class HedgeVariant(BaseModel):
    level: str = Field(description="the level's name, exactly as requested")
    confidence: float = Field(gt=0, lt=1, description="the requested confidence, 0-1")
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

    def levels(self) -> list[dict]:
        levels = self.prompts.bank_list(self.bank, "levels")
        for level in levels:
            ok = (
                isinstance(level, dict)
                and isinstance(level.get("name"), str)
                and isinstance(level.get("confidence"), int | float)
                and 0 < level["confidence"] < 1
                and level.get("openers")
                and level.get("closers")
            )
            if not ok:
                raise TemplateError(
                    f"{self.prompts.path(self.bank)}: each [[levels]] needs "
                    "name, confidence (between 0 and 1), openers and closers"
                )
        return levels

    def asks_for_knowledge(self, prompt: str) -> bool:
        """False for prompts that ask to make something up (a poem, a rewrite)."""
        starts = self.prompts.bank(self.bank).get("skip_prompt_starts", [])
        return not starts_with_any(prompt, starts)

    def unsuitable(self, seed: Seed) -> Skip | None:
        if not seed.response or not seed.response.strip():
            return self.skip(seed, "no_reference_answer")
        if not self.asks_for_knowledge(seed.prompt):
            return self.skip(seed, "creative_prompt", seed.prompt.split(None, 1)[0])
        return None

    def rows_per_seed(self) -> int:
        return min(self.prompts.bank_int(self.bank, "per_seed", 2), len(self.levels()))

    def choose_levels(self, rng: random.Random) -> list[dict]:
        """`per_seed` distinct levels, most confident first."""
        return sorted(
            rng.sample(self.levels(), self.rows_per_seed()), key=lambda lv: -lv["confidence"]
        )

    def requests(self, seed: Seed, rng: random.Random) -> list[Ask] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        levels = [
            {
                "name": lv["name"],
                "confidence": lv["confidence"],
                "percent": round(lv["confidence"] * 100),
            }
            for lv in self.choose_levels(rng)
        ]
        return [self.ask(seed, levels=levels)]

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
            attributes = {"confidence": level["confidence"], "level": level["name"], "opener": None}
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
        chosen = self.choose_levels(ctx.rng)
        out = []
        for level in chosen:
            slot = f"hedge:{level['name']}"
            percent = round(level["confidence"] * 100)
            variables = {"percent": percent, "level": level["name"]}
            openers = pick(ctx.rng, level["openers"], k)
            closers = pick(ctx.rng, level["closers"], k)
            for i in range(k):
                opener = self.prompts.phrase(self.bank, openers[i], **variables)
                closer = self.prompts.phrase(self.bank, closers[i], **variables)
                response = self.prompts.render(
                    self.template,
                    opener=opener,
                    closer=closer,
                    answer=seed.response.strip(),
                    confidence=level["confidence"],
                    **variables,
                )
                attributes = {
                    "confidence": level["confidence"],
                    "level": level["name"],
                    "opener": opener,
                }
                out.append(self.example(seed, slot, i, seed.prompt, response, attributes))
        return out
