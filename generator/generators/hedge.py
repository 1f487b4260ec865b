"""hedge: the reference answer verbatim, said at a stated, named confidence level."""

from __future__ import annotations

from generator.errors import TemplateError
from generator.generators import Context, Generator, pick, register, starts_with_any
from generator.values import Example, Seed, Skip


@register
class Hedge(Generator):
    name = "hedge"
    template = "hedge/offline.j2"
    bank = "hedge/phrases.toml"

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

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if not seed.response or not seed.response.strip():
            return self.skip(seed, "no_reference_answer")
        if not self.asks_for_knowledge(seed.prompt):
            return self.skip(seed, "creative_prompt", seed.prompt.split(None, 1)[0])
        levels = self.levels()
        per_seed = min(self.prompts.bank_int(self.bank, "per_seed", 2), len(levels))
        chosen = sorted(ctx.rng.sample(levels, per_seed), key=lambda lv: -lv["confidence"])
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
