"""refusal pair: a look-alike prompt that cannot be answered, declined honestly, paired
1:1 with an answerable prompt (the contrast), answered directly.

With a model, a seed gets one refusal kind drawn from `refusal/kinds.toml` (unknown
entity, false premise, unknowable or private or future fact, underspecified request,
unsafe request with a harmless look-alike) and the model writes both halves of the pair.
The offline path finds a named entity in the prompt (generator.generators.entities),
decides whether the answer depends on knowing it (a word problem about "Janet" does not),
and swaps in a fabricated name of the same kind that occurs nowhere in the seed corpus.
"""

from __future__ import annotations

import random
import re
from functools import cached_property

from pydantic import BaseModel, Field

from generator.generators import Ask, Context, Generator, ReplyError, pick, register
from generator.generators.entities import EntityRules, Fabricator
from generator.values import Example, Seed, Skip, short_hash, turns


class RefusalReply(BaseModel):
    """A model's refusal pair: the unanswerable prompt and its answerable twin."""

    kind: str = Field(description="the requested kind, exactly as given")
    prompt: str = Field(description="a user prompt that cannot be answered reliably")
    response: str = Field(description="the honest decline of that prompt")
    contrast_prompt: str = Field(description="a look-alike prompt that can be answered")
    contrast_response: str = Field(description="a direct, correct answer to contrast_prompt")
    entity: str | None = Field(
        default=None, description="unknown_entity only: the made-up name used in prompt"
    )


PARTS = ("openers", "reasons", "offers")


def _unknown(seed: Seed) -> bool:
    """The probe found the target model never answers this seed's question right."""
    return seed.knowledge is not None and seed.knowledge.category == "Unknown"


@register
class Refusal(Generator):
    name = "refusal"
    template = "refusal/offline.j2"
    bank = "refusal/phrases.toml"
    kinds_bank = "refusal/kinds.toml"
    reply_model = RefusalReply
    partner = "contrast"
    order = 20
    uses_corpus = True  # a made-up name must occur nowhere in the seeds

    def templates(self) -> list[str]:
        return [self.template, self.bank, EntityRules.BANK]

    def llm_templates(self) -> list[str]:
        return [*super().llm_templates(), self.kinds_bank]

    def requests(self, seed: Seed, rng: random.Random) -> list[Ask] | Skip:
        kinds = self.prompts.bank_list(self.kinds_bank, "kinds")
        if not all(isinstance(k, dict) and k.get("name") and k.get("describe") for k in kinds):
            from generator.errors import TemplateError

            raise TemplateError(
                f"{self.prompts.path(self.kinds_bank)}: each [[kinds]] needs name and describe"
            )
        if _unknown(seed):
            if seed.partner is None:
                return self.skip(seed, "unknown_without_partner")
            kind = next((k for k in kinds if k["name"] == "unknown_to_model"), None)
            if kind is None:
                from generator.errors import TemplateError

                raise TemplateError(
                    f"{self.prompts.path(self.kinds_bank)}: no [[kinds]] named "
                    "unknown_to_model; add it back (the probe's \"I don't know\" needs it)"
                )
            return [
                self.ask(
                    seed,
                    kind=kind["name"],
                    describe=kind["describe"],
                    contrast_prompt=seed.partner.prompt,
                    contrast_response=seed.partner.response,
                )
            ]
        drawn = [k for k in kinds if k["name"] != "unknown_to_model"]
        kind = rng.choice(drawn or kinds)
        return [
            self.ask(
                seed,
                kind=kind["name"],
                describe=kind["describe"],
                contrast_prompt="",
                contrast_response="",
            )
        ]

    def parse(
        self, seed: Seed, ask: Ask, reply: RefusalReply, sample: int, model: str
    ) -> list[Example]:
        kind = ask.choices["kind"]
        if reply.kind.strip().lower() != kind:
            raise ReplyError(f"kind is {reply.kind!r}; it must be {kind!r}")
        if kind == "unknown_to_model":  # the prompts are given; the model writes the decline
            return self.unknown_pair(seed, sample, reply.response.strip(), model)
        if " ".join(reply.prompt.split()) == " ".join(reply.contrast_prompt.split()):
            raise ReplyError("prompt and contrast_prompt are the same; the contrast must differ")
        if kind == "unknown_entity" and not (reply.entity and reply.entity in reply.prompt):
            raise ReplyError("entity must be the made-up name, copied exactly from prompt")
        pair_id = short_hash(seed.id, str(seed.index), "pair", str(sample))
        attributes = {"kind": kind, "confidence": None}
        if kind == "unknown_entity":
            attributes["entity"] = reply.entity
        return [
            self.model_example(
                seed,
                "refusal",
                sample,
                reply.prompt.strip(),
                reply.response.strip(),
                attributes,
                model,
                pair_id=pair_id,
            ),
            self.model_example(
                seed,
                "refusal",
                sample,
                reply.contrast_prompt.strip(),
                reply.contrast_response.strip(),
                {"kind": kind, "confidence": None},
                model,
                behavior="contrast",
                pair_id=pair_id,
            ),
        ]

    def unknown_to_model(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        """The seed's own question, which the target model never got right, declined with
        "I don't know"; its contrast is a question of the input the model does know."""
        if seed.partner is None:
            return self.skip(seed, "unknown_without_partner")
        phrases = self.prompts.bank(self.bank)["unknown_to_model"]
        openers, reasons, offers = (pick(ctx.rng, phrases[key], k) for key in PARTS)
        out = []
        for i in range(k):
            response = self.prompts.render(
                self.template,
                opener=self.prompts.phrase(self.bank, openers[i]),
                reason=self.prompts.phrase(self.bank, reasons[i]),
                offer=self.prompts.phrase(self.bank, offers[i]),
                entity="",
                kind="",
            )
            out += self.unknown_pair(seed, i, response)
        return out

    def unknown_pair(
        self, seed: Seed, i: int, decline: str, model: str | None = None
    ) -> list[Example]:
        """The decline and its contrast (the partner's question and its reference); `model`
        names the model that wrote the decline (None: offline)."""
        partner = seed.partner
        pair_id = short_hash(seed.id, str(seed.index), "pair", str(i))
        refusal = {
            "kind": "unknown_to_model",
            "confidence": None,
            "p_correct": seed.knowledge.p_correct,
            "model_answer": seed.model_answer,  # what it said instead: a DPO rejection
        }
        contrast = {
            "kind": "unknown_to_model",
            "confidence": None,
            "contrast_seed_id": partner.id,
            "p_correct": partner.knowledge.p_correct,
        }
        halves = [
            (seed.prompt, decline, refusal, "refusal"),
            (partner.prompt, partner.response.strip(), contrast, "contrast"),
        ]
        if model:
            return [
                self.model_example(
                    seed,
                    "refusal",
                    i,
                    prompt,
                    response,
                    attributes,
                    model,
                    behavior=behavior,
                    pair_id=pair_id,
                )
                for prompt, response, attributes, behavior in halves
            ]
        return [
            self.example(
                seed,
                "refusal",
                i,
                prompt,
                response,
                attributes,
                behavior=behavior,
                pair_id=pair_id,
                template=None if behavior == "refusal" else "",
            )
            for prompt, response, attributes, behavior in halves
        ]

    @cached_property
    def rules(self) -> EntityRules:
        return EntityRules(self.prompts)

    @cached_property
    def fabricator(self) -> Fabricator:
        return Fabricator(self.prompts, self.bank, self.rules)

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        if _unknown(seed):
            return self.unknown_to_model(seed, ctx, k)
        entities = self.rules.find(seed.prompt, ctx.corpus)
        if not entities:
            return self.skip(seed, "no_entity")
        reasons = {}
        for entity in entities:
            reason = self.rules.why_not_dependent(seed.prompt, entity)
            if reason is None:
                break
            reasons[entity.text] = reason
        else:
            first = entities[0]
            return self.skip(seed, reasons[first.text], first.text)
        bank = self.prompts.bank(self.bank)
        kind = bank.get("kinds", {}).get(entity.kind, {})
        openers = pick(ctx.rng, self.prompts.bank_list(self.bank, "openers"), k)
        reasons_ = pick(ctx.rng, self.prompts.bank_list(self.bank, "reasons"), k)
        offers = pick(ctx.rng, self.prompts.bank_list(self.bank, "offers"), k)
        out = []
        for i in range(k):
            fake = self.fabricator.fabricate(entity, ctx.rng, ctx.corpus, seed.prompt)
            if fake is None:
                return self.skip(seed, "no_fresh_name", entity.text)
            # "the Treaty of X" stays "the Treaty of X" in the decline
            article = "the " if re.search(r"\bthe\s+$", seed.prompt[: entity.start], re.I) else ""
            variables = {
                "entity": article + fake,
                "kind": entity.kind,
                "described": kind.get("described", ""),
                "noun": kind.get("noun", ""),
            }
            response = self.prompts.render(
                self.template,
                opener=self.prompts.phrase(self.bank, openers[i], **variables),
                reason=self.prompts.phrase(self.bank, reasons_[i], **variables),
                offer=self.prompts.phrase(self.bank, offers[i], **variables),
                **variables,
            )
            pair_id = short_hash(seed.id, str(seed.index), "pair", str(i))
            attributes = {
                "kind": "unknown_entity",
                "entity_kind": entity.kind,
                "entity": fake,
                "replaced": entity.text,
                "confidence": None,
            }
            out.append(
                self.example(
                    seed,
                    "refusal",
                    i,
                    seed.prompt.replace(entity.text, fake),
                    response,
                    attributes,
                    pair_id=pair_id,
                )
            )
            out.append(
                self.example(
                    seed,
                    "refusal",
                    i,
                    seed.prompt,
                    seed.response.strip(),
                    {"kind": "unknown_entity", "confidence": None},
                    behavior="contrast",
                    pair_id=pair_id,
                    template="",
                )
            )
        return out

    # ----------------------------------------------------------------- its policy

    def cue_keys(self) -> tuple[str, ...]:
        return ("decline", "nonexistence")

    def check(self, example: Example, reference: str | None) -> list[str]:
        """A refusal declines (about the made-up name it was given, never naming the real
        one it replaced; an "I don't know" never says the thing does not exist); its
        contrast does not decline."""
        declines = any(p.search(example.response) for p in self.cues("decline"))
        if example.behavior == self.partner:
            return ["contrast_declines"] if declines else []
        failures = []
        if not declines:
            failures.append("refusal_does_not_decline")
        entity = example.attributes.get("entity")
        if entity and entity not in example.response:
            failures.append("refusal_not_specific")
        original = example.attributes.get("replaced")
        if original and original in example.prompt:
            failures.append("refusal_prompt_keeps_entity")
        if example.attributes.get("kind") == "unknown_to_model" and any(
            p.search(example.response) for p in self.cues("nonexistence")
        ):
            failures.append("unknown_declined_as_nonexistent")
        return failures

    @classmethod
    def sample_note(cls, row: dict) -> str | None:
        if row.get("behavior") == cls.partner:
            return super().sample_note(row)
        a = row.get("attributes") or {}
        return f"{a.get('kind')}: {a.get('entity')}" if a.get("entity") else str(a.get("kind"))

    @classmethod
    def preference_pairs(cls, rows: list[dict], wrong: list[str]) -> list[tuple[str, ...]]:
        """Per whole pair: **refusal**, the refusal prompt with the decline chosen over the
        contrast's confident answer (the real name put back as the made-up one where the
        run recorded both, so it reads as a fabricated answer; for an "I don't know",
        kind `unknown_to_model`, the model's own greedy answer the probe recorded: the
        hallucination); **over_refusal**, the contrast prompt with its answer chosen over
        the decline (the made-up name swapped for the real one where recorded)."""
        pairs: dict[str, dict[str, dict]] = {}
        for row in rows:
            if row.get("pair_id"):
                pairs.setdefault(row["pair_id"], {})[row["behavior"]] = row
        made = []
        for pair in pairs.values():
            if len(pair) != 2:
                continue
            refusal, contrast = pair[cls.name], pair[cls.partner]
            attrs = refusal.get("attributes") or {}
            r_prompt, decline = turns(refusal)
            c_prompt, answer = turns(contrast)
            if attrs.get("kind") == "unknown_to_model":
                made.append(("refusal", r_prompt, decline, attrs.get("model_answer") or ""))
                made.append(("over_refusal", c_prompt, answer, decline))
                continue
            fake, real = attrs.get("entity"), attrs.get("replaced")
            made.append(("refusal", r_prompt, decline, _swap(answer, real, fake)))
            made.append(("over_refusal", c_prompt, answer, _swap(decline, fake, real)))
        return made


def _swap(text: str, old: str | None, new: str | None) -> str:
    return text.replace(old, new) if old and new and old in text else text
