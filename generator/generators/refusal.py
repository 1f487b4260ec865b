"""refusal pair: a look-alike prompt that cannot be answered, declined honestly, paired
1:1 with an answerable prompt (the contrast), answered directly.

With a model, a seed gets one refusal kind drawn from `refusal/kinds.toml` (unknown
entity, false premise, unknowable or private or future fact, underspecified request,
unsafe request with a harmless look-alike) and the model writes both halves of the pair.
The offline path finds a named entity in the prompt, decides whether the answer depends
on knowing it (a word problem about "Janet" does not), and swaps in a fabricated name of
the same kind that occurs nowhere in the seed corpus.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel, Field

from generator.corpus import CorpusWords
from generator.generators import (
    Ask,
    Context,
    Generator,
    ReplyError,
    pick,
    register,
    starts_with_any,
)
from generator.templates import Prompts
from generator.values import Example, Seed, Skip, short_hash

_CAP = r"[A-Z][\w'’&.\-]*"
_CONNECTORS = ("of", "the", "de", "la", "von", "van", "du", "del", "da", "le", "upon")
_SPAN = re.compile(rf"{_CAP}(?:[ \t]+(?:(?:{'|'.join(_CONNECTORS)})[ \t]+)*{_CAP})*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|[\"“(]\s*)$")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")


def _fold(token: str) -> str:
    return re.sub(r"['’]s$", "", token.lower().strip('.,;:!?"“”()'))


@dataclass(frozen=True)
class Entity:
    """A named span of a prompt and what kind of thing it names."""

    text: str
    start: int
    kind: str
    at_sentence_start: bool

    @property
    def tokens(self) -> list[str]:
        return self.text.split()


class EntityRules:
    """Finds entities and judges whether an answer depends on one (refusal/entities.toml)."""

    BANK = "refusal/entities.toml"

    def __init__(self, prompts: Prompts):
        self.prompts = prompts

    @cached_property
    def words(self) -> dict[str, frozenset[str]]:
        """Every word list of the bank, lower-cased; all of them must be there."""
        keys = (
            "not_names",
            "adjectives_of_origin",
            "organization_words",
            "event_words",
            "place_words",
            "person_titles",
            "place_cues",
            "work_cues",
            "person_cues",
            "knowledge_cues",
            "given_text_starts",
            "number_words",
            "character_verbs",
            "mention_cues",
        )
        return {
            key: frozenset(str(w).lower() for w in self.prompts.bank_list(self.BANK, key))
            for key in keys
        }

    def _cue_before(self, prompt: str, start: int, cues: str) -> bool:
        before = " ".join(prompt[:start].rstrip("\"“'‘ ").lower().split()[-3:])
        return any(re.search(rf"\b{re.escape(c)}(?:\s+the)?\s*$", before) for c in self.words[cues])

    def find(self, prompt: str) -> list[Entity]:
        """Named spans of a prompt, best candidate first."""
        words = self.words
        found = []
        for m in _SPAN.finditer(prompt):
            tokens = m.group().split()
            start = m.start()
            # A common word opens a name only mid-sentence ("in New Zealand"): at a
            # sentence start it is just capitalised ("What", "Describe").
            while tokens and (
                _fold(tokens[0]) in _CONNECTORS
                or (
                    _fold(tokens[0]) in words["not_names"]
                    and _SENTENCE_START.search(prompt[: prompt.index(tokens[0], start)])
                )
            ):
                start = prompt.index(tokens[0], start) + len(tokens[0])
                tokens.pop(0)
            if not tokens:
                continue
            start = prompt.index(tokens[0], start)
            possessive = bool(re.search(r"['’]s[.,;:!?]*$", tokens[-1]))
            last = re.sub(r"(['’]s?|[.,;:!?\-])+$", "", tokens[-1])
            if last != tokens[-1] and _fold(tokens[-1]) in words["person_titles"]:
                last = tokens[-1]  # "Dr." keeps its dot
            tokens[-1] = last
            if not last or (
                len(tokens) == 1
                and (
                    last.isupper()
                    or len(last) < 2
                    or _fold(last) in words["not_names"]
                    or _fold(last) in words["adjectives_of_origin"]
                )
            ):
                continue  # acronyms, initials and common words are not names to fabricate
            if any(re.search(r"-[a-z]", t) for t in tokens):
                continue  # "AI-enabled" is a description, not a name
            text = " ".join(tokens)
            if text not in prompt:  # the span crossed a line break or double space
                continue
            at_start = bool(_SENTENCE_START.search(prompt[:start]))
            kind = self.kind(prompt, start, tokens)
            if (
                at_start
                and len(tokens) == 1
                and kind == "name"
                and not possessive
                and not self._is_character(prompt, text)
            ):
                continue  # a capitalised first word, not a name
            if self._cue_before(prompt, start, "mention_cues"):
                continue  # "the word 'Serendipity'" is a word, not a thing to know about
            found.append(Entity(text, start, kind, at_start))
        return sorted(
            found,
            key=lambda e: (e.kind == "name", len(e.tokens) == 1, e.at_sentence_start, e.start),
        )

    def kind(self, prompt: str, start: int, tokens: list[str]) -> str:
        folded = [_fold(t) for t in tokens]
        w = self.words
        if start > 0 and prompt[start - 1] in "\"“'‘":
            return "work"
        if any(t in w["organization_words"] for t in folded):
            return "organization"
        if any(t in w["event_words"] for t in folded):
            return "event"
        if any(t in w["place_words"] for t in folded):
            return "place"
        if folded[0] in w["person_titles"] or self._cue_before(prompt, start, "person_cues"):
            return "person"
        if self._cue_before(prompt, start, "work_cues"):
            return "work"
        if self._cue_before(prompt, start, "place_cues"):
            return "place"
        names = [t for t in folded if t not in _CONNECTORS]
        if 2 <= len(names) <= 3 and len(names) == len(folded):
            return "person"
        return "name"

    def _is_character(self, prompt: str, text: str) -> bool:
        verbs = "|".join(re.escape(v) for v in self.words["character_verbs"])
        return bool(re.search(rf"\b{re.escape(text)}(?:['’]s)?\s+(?:{verbs})\b", prompt))

    def quantities(self, prompt: str) -> int:
        number_words = "|".join(re.escape(w) for w in self.words["number_words"])
        return len(_DIGITS.findall(prompt)) + len(
            re.findall(rf"\b(?:{number_words})\b", prompt, re.IGNORECASE)
        )

    def why_not_dependent(self, prompt: str, entity: Entity) -> str | None:
        """None when the answer depends on knowing the entity; else the reason it does not."""
        instruction, _, given = prompt.partition("\n\n")
        head = instruction.strip().lower()
        limit = self.prompts.bank_int(self.BANK, "self_contained_quantities", 2)
        if entity.text not in instruction:
            return "entity_in_given_text"
        if self.quantities(prompt) >= limit or self._is_character(prompt, entity.text):
            return "self_contained"
        if starts_with_any(head, self.words["given_text_starts"]):
            return "works_on_given_text"
        if not any(re.search(rf"\b{re.escape(c)}\b", head) for c in self.words["knowledge_cues"]):
            return "not_a_knowledge_question"
        return None


class Fabricator:
    """Fabricated names of a kind, drawn from prompts/refusal/phrases.toml."""

    def __init__(self, prompts: Prompts, bank: str, rules: EntityRules):
        self.prompts, self.bank, self.rules = prompts, bank, rules

    def core(self, rng: random.Random, corpus: CorpusWords | None, avoid: str) -> str | None:
        """One new word, in no seed of the corpus (up to 64 draws)."""
        parts = [
            self.prompts.bank_list(self.bank, f"syllable_{p}") for p in ("start", "middle", "end")
        ]
        avoid_words = {w.lower() for w in re.findall(r"\w+", avoid)}
        for _ in range(64):
            word = "".join(rng.choice(p) for p in parts)
            if word.lower() not in avoid_words and (corpus is None or word not in corpus):
                return word
        return None

    def fabricate(
        self, entity: Entity, rng: random.Random, corpus: CorpusWords | None, prompt: str
    ) -> str | None:
        core = self.core(rng, corpus, prompt)
        if core is None:
            return None
        words = self.rules.words
        if entity.kind == "person":
            titles = []
            for t in entity.tokens:  # titles lead a name; "King" later is a surname
                if _fold(t) not in words["person_titles"]:
                    break
                titles.append(t)
            names = len(entity.tokens) - len(titles)
            given = (
                [rng.choice(self.prompts.bank_list(self.bank, "given_names"))] if names >= 2 else []
            )
            return " ".join(titles + given + [core])
        if entity.kind == "work":
            pattern = rng.choice(self.prompts.bank_list(self.bank, "work_patterns"))
            return self.prompts.phrase(
                self.bank,
                pattern,
                core=core,
                noun=rng.choice(self.prompts.bank_list(self.bank, "work_nouns")),
                adjective=rng.choice(self.prompts.bank_list(self.bank, "work_adjectives")),
            )
        if entity.kind in ("place", "organization", "event"):
            keep = (
                words["place_words"]
                | words["organization_words"]
                | words["event_words"]
                | set(_CONNECTORS)
            )
            out: list[str] = []
            for token in entity.tokens:
                if _fold(token) in keep or re.fullmatch(r"[IVXLC]+|\d+", token):
                    out.append(token)
                elif not out or out[-1] != core:
                    out.append(core)
            return " ".join(out)
        return core


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


@register
class Refusal(Generator):
    name = "refusal"
    template = "refusal/offline.j2"
    bank = "refusal/phrases.toml"
    kinds_bank = "refusal/kinds.toml"
    reply_model = RefusalReply

    def rows_per_seed(self) -> int:
        return 2  # one refusal and its contrast

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
        kind = rng.choice(kinds)
        return [self.ask(seed, kind=kind["name"], describe=kind["describe"])]

    def parse(
        self, seed: Seed, ask: Ask, reply: RefusalReply, sample: int, model: str
    ) -> list[Example]:
        kind = ask.choices["kind"]
        if reply.kind.strip().lower() != kind:
            raise ReplyError(f"kind is {reply.kind!r}; it must be {kind!r}")
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

    @cached_property
    def rules(self) -> EntityRules:
        return EntityRules(self.prompts)

    @cached_property
    def fabricator(self) -> Fabricator:
        return Fabricator(self.prompts, self.bank, self.rules)

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if not seed.response or not seed.response.strip():
            return self.skip(seed, "no_reference_answer")
        entities = self.rules.find(seed.prompt)
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
