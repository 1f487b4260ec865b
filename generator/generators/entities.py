"""Named entities for the offline refusal generator: finding one in a prompt, saying what
kind of thing it names, and fabricating a look-alike of the same kind.

The word lists live in prompts/refusal/entities.toml. A span is a run of capitalised
words; it names something only when it is more than a capitalised common phrase ("Board
Games", "Deep Learning"), a unit ("degrees Fahrenheit") or a capitalised first word. Its
kind comes from the words in it (organization, event, place, a document is a work, a
concept), the words just before it, and only then its shape: two or three name-like words
are a person.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property

from generator.corpus import CorpusWords
from generator.generators import starts_with_any
from generator.templates import Prompts

_CAP = r"[A-Z][\w'’&.\-]*"
_CONNECTORS = ("of", "the", "de", "la", "von", "van", "du", "del", "da", "le", "upon")
_SPAN = re.compile(rf"{_CAP}(?:[ \t]+(?:(?:{'|'.join(_CONNECTORS)})[ \t]+)*{_CAP})*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|[\"“(]\s*)$")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
# What a unit follows: a number ("25 Celsius", "40°").
_UNIT_BEFORE = re.compile(r"[\d°]\s*$")
_THE_BEFORE = re.compile(r"\bthe\s+$", re.IGNORECASE)
_LOWER_WORD = re.compile(r"\b[a-z][\w'’-]*")


def _fold(token: str) -> str:
    return re.sub(r"['’]s$", "", token.lower().strip('.,;:!?"“”()'))


def _forms(word: str) -> set[str]:
    """A word and its plain singular or plural ("chips" and "chip", "cookies" and "cookie")."""
    forms = {word, word + "s"}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    elif word.endswith("s") and len(word) > 3:
        forms.add(word[:-1])
    return forms


# Items of a list: "Apple, Orange, Pear", "Hypertension and Hypothyroidism".
_ITEM_SEP = re.compile(r",[ \t]*(?:and[ \t]+)?|[ \t]+and[ \t]+")


def _heads(folded: list[str]) -> set[str]:
    """The words that can say what a span names: its last word (before a numeral: "World
    War II"), and one before "of" ("US Constitution", "Bill of Rights"; not "Bill Gates")."""
    last = len(folded) - 1
    while last > 0 and re.fullmatch(r"[ivxlc]+|\d+", folded[last]):
        last -= 1
    return {t for i, t in enumerate(folded) if i == last or (i < last and folded[i + 1] == "of")}


def _edges(folded: list[str]) -> set[str]:
    """Its heads and its first word: "Lake Tahoe", "Black Sea" (not "Deep Sea Fish")."""
    return _heads(folded) | set(folded[:1])


def _list_item_starts(prompt: str) -> set[int]:
    """Where each item starts of a line that is a list of capitalised items."""
    starts = set()
    for line in re.finditer(r"[^\n]+", prompt):
        text = line.group()
        bounds = [0, *(m.end() for m in _ITEM_SEP.finditer(text))]
        items = [b + len(text[b:]) - len(text[b:].lstrip()) for b in bounds]
        if len(items) >= 2 and all(text[i : i + 1].isupper() for i in items):
            starts.update(line.start() + i for i in items)
    return starts


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
    KEYS = (
        "not_names",
        "adjectives_of_origin",
        "organization_words",
        "event_words",
        "document_words",
        "concept_words",
        "concepts",
        "units",
        "place_words",
        "place_starts",
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

    def __init__(self, prompts: Prompts):
        self.prompts = prompts

    @cached_property
    def words(self) -> dict[str, frozenset[str]]:
        """Every word list of the bank, lower-cased; all of them must be there."""
        return {
            key: frozenset(str(w).lower() for w in self.prompts.bank_list(self.BANK, key))
            for key in self.KEYS
        }

    @cached_property
    def kind_words(self) -> frozenset[str]:
        """Words that give a span its kind: organization, event, document, concept and
        place words."""
        w = self.words
        return (
            w["organization_words"]
            | w["event_words"]
            | w["document_words"]
            | w["concept_words"]
            | w["place_words"]
        )

    def _cue_before(self, prompt: str, start: int, cues: str) -> bool:
        before = " ".join(prompt[:start].rstrip("\"“'‘ ").lower().split()[-3:])
        return any(re.search(rf"\b{re.escape(c)}(?:\s+the)?\s*$", before) for c in self.words[cues])

    def find(self, prompt: str, corpus: CorpusWords | None = None) -> list[Entity]:
        """Named spans of a prompt, best candidate first. `corpus` says which words the
        seeds write in lower case: a span of only such words is a common phrase."""
        words = self.words
        lower = {_fold(w) for w in _LOWER_WORD.findall(prompt)}
        item_starts = _list_item_starts(prompt)

        def common(token: str) -> bool:
            folded = _fold(token)
            if len(folded) >= 2 and token.strip(".,;:!?'’").isupper():
                return False  # an acronym ("US", "NASA")
            if len(folded) < 2 or folded in words["not_names"]:
                return True  # a label ("Side B", "Option C") or a function word
            return any(
                form in lower or (corpus is not None and corpus.common(form))
                for form in _forms(folded)
            )

        found = []
        for m in _SPAN.finditer(prompt):
            tokens = m.group().split()
            start = m.start()
            # A sentence ends inside the span ("... Apple Watches. In ..."): cut it there.
            for i, t in enumerate(tokens[:-1]):
                if t.endswith(".") and len(t) > 2 and _fold(t) not in words["person_titles"]:
                    tokens = tokens[: i + 1]
                    break
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
            if self._is_unit(prompt, start, tokens):
                continue
            quoted = start > 0 and prompt[start - 1] in "\"“'‘"
            folded = [_fold(t) for t in tokens]
            the = bool(_THE_BEFORE.search(prompt[:start]))
            # An item of a list of capitalised items ("Fish, Spider, Snake") is capitalised
            # by its place, as a sentence's first word is.
            at_start = bool(_SENTENCE_START.search(prompt[:start])) or start in item_starts
            if (
                len(folded) == 1
                and folded[0] in self.kind_words
                and not the
                and (at_start or common(tokens[0]))
            ):
                continue  # "Forest", "University" alone are common nouns ("Olympics" is not)
            if (
                not quoted
                and not _edges(folded) & (self.kind_words | words["person_titles"])
                and " ".join(folded) not in words["concepts"]
                and all(common(t) for t in tokens if _fold(t) not in _CONNECTORS)
                and not the
                and not self._cue_before(prompt, start, "work_cues")  # "the novel In the Woods"
            ):
                continue  # capitalised common words ("Board Games"), not a name
            kind = self.kind(prompt, start, tokens, common)
            if (
                at_start
                and len(tokens) == 1
                and kind in ("name", "concept")
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

    def _is_unit(self, prompt: str, start: int, tokens: list[str]) -> bool:
        """A unit of measure: after "degrees" ("in degrees Fahrenheit"), a lone word after
        a number ("25 Kelvin"; not "the 2020 Olympics"), or a known unit name on its own."""
        if re.search(r"\bdegrees?\s*$", prompt[:start], re.IGNORECASE):
            return True
        if len(tokens) != 1:
            return False
        word = _fold(tokens[0])
        if word in self.words["units"]:
            return True
        return bool(_UNIT_BEFORE.search(prompt[:start])) and word not in self.kind_words

    def kind(self, prompt: str, start: int, tokens: list[str], common=lambda t: False) -> str:
        folded = [_fold(t) for t in tokens]
        # A document or a concept is named by its head noun; a place or an organization
        # word may also lead ("Lake Tahoe", "Bank of Japan").
        heads, edges = _heads(folded), _edges(folded)
        w = self.words
        # The noun just before says what it is: the restaurant "Mom's Kitchen".
        noun = re.search(r"(\w+)\s*[\"“'‘]?$", prompt[:start])
        noun = noun.group(1).lower() if noun else ""
        if noun in w["organization_words"]:
            return "organization"
        if start > 0 and prompt[start - 1] in "\"“'‘":
            return "work"
        if heads & w["document_words"]:
            return "work"  # a constitution, an act, a treaty: a text one can look up
        if edges & w["organization_words"]:
            return "organization"
        if edges & w["event_words"]:
            return "event"
        if (
            " ".join(folded) in w["concepts"]
            or (len(folded) > 1 and heads & w["concept_words"])
            or (len(folded) == 1 and folded[0].endswith(("ism", "ology")))
        ):
            return "concept"
        if edges & w["place_words"] or folded[0] in w["place_starts"]:
            return "place"
        if folded[0] in w["person_titles"] or self._cue_before(prompt, start, "person_cues"):
            return "person"
        if self._cue_before(prompt, start, "work_cues"):
            return "work"
        if self._cue_before(prompt, start, "place_cues"):
            return "place"
        names = [t for t in folded if t not in _CONNECTORS]
        if (
            2 <= len(names) <= 3
            and len(names) == len(folded)
            and folded[0] not in w["adjectives_of_origin"]  # "Chinese Opera" names no one
            and not any(common(t) for t in tokens)  # "Rotten Tomatoes", "Apple Watch"
        ):
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
        # The words that say what it is stay: "X River", "Treaty of X", "X Theory".
        kind_words = {
            "work": words["document_words"],
            "concept": words["concept_words"],
        }.get(
            entity.kind, words["place_words"] | words["organization_words"] | words["event_words"]
        )
        keep = kind_words | set(_CONNECTORS)
        if entity.kind == "work" and not any(_fold(t) in kind_words for t in entity.tokens):
            pattern = rng.choice(self.prompts.bank_list(self.bank, "work_patterns"))
            return self.prompts.phrase(
                self.bank,
                pattern,
                core=core,
                noun=rng.choice(self.prompts.bank_list(self.bank, "work_nouns")),
                adjective=rng.choice(self.prompts.bank_list(self.bank, "work_adjectives")),
            )
        if entity.kind in ("place", "organization", "event", "work", "concept"):
            out: list[str] = []
            for token in entity.tokens:
                if _fold(token) in keep or re.fullmatch(r"[IVXLC]+|\d+", token):
                    out.append(token)
                elif not out or out[-1] != core:
                    out.append(core)
            if core not in out:  # "Amendment" alone becomes "X Amendment"
                out.insert(0, core)
            return " ".join(out)
        return core
