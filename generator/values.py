"""The values that flow between stages, frozen so no stage edits another's output."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def short_hash(*parts: str) -> str:
    """A stable 16-hex-digit id from text parts (unit separator between them)."""
    blob = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Seed:
    """One seed task: a prompt and, usually, its reference answer."""

    id: str
    prompt: str
    response: str | None
    source: str = ""  # "file:line" for messages; not part of the id
    index: int = 0  # position in the input stream: example ids stay unique if seed ids repeat
    # Set by the knowledge probe (never by a loader): what the target model knows of the
    # question, or why nothing was measured ("probe_off", "long_form", ...); for a seed it
    # does not know, the known seed its "I don't know" is paired with.
    knowledge: Knowledge | None = None
    unmeasured: str = ""
    partner: Seed | None = None
    model_answer: str | None = None  # the target model's greedy answer to the question

    @classmethod
    def make(
        cls,
        prompt: str,
        response: str | None,
        id: str | None = None,
        source: str = "",
        index: int = 0,
    ):
        """A seed with the given id, or a content hash when there is none."""
        return cls(
            id=id if id else short_hash(prompt, response or ""),
            prompt=prompt,
            response=response,
            source=source,
            index=index,
        )


CATEGORIES = ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")  # SliCK's


@dataclass(frozen=True)
class Knowledge:
    """What the knowledge probe measured of the target model on one seed's question."""

    p_correct: float
    correct: int
    samples: int
    greedy_correct: bool
    category: str

    @classmethod
    def measure(cls, greedy_correct: bool, right: Sequence[bool]) -> Knowledge:
        correct = sum(right)
        if greedy_correct:
            category = "HighlyKnown" if correct == len(right) else "MaybeKnown"
        else:
            category = "WeaklyKnown" if correct else "Unknown"
        p = round(correct / len(right), 4) if right else (1.0 if greedy_correct else 0.0)
        return cls(p, correct, len(right), greedy_correct, category)

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_correct": self.p_correct,
            "correct": self.correct,
            "samples": self.samples,
            "greedy_correct": self.greedy_correct,
            "category": self.category,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Knowledge:
        return cls(d["p_correct"], d["correct"], d["samples"], d["greedy_correct"], d["category"])


@dataclass(frozen=True)
class Fit:
    """How natural a response is to a base model: mean negative log-likelihood per token.

    A failed score (the scorer gave no finite number) has `nll` None and `error` saying
    why; it is never ranked."""

    nll: float | None
    tokens: int
    percentile: float | None = None  # share of the seeds' own responses at least as natural
    truncated: bool = False  # the text was longer than the scorer's context
    error: str | None = None  # why the score failed

    def to_dict(self) -> dict[str, Any]:
        out = {
            "nll": self.nll,
            "tokens": self.tokens,
            "percentile": self.percentile,
            "truncated": self.truncated,
        }
        if self.error:  # only on a failed score: a good row's bytes do not change
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Example:
    """One training example, the row schema of `dataset.jsonl`."""

    id: str
    seed_id: str
    behavior: str
    prompt: str
    response: str
    attributes: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    pair_id: str | None = None
    slot: str = ""  # which output slot of the seed this candidate competes for
    fit: Fit | None = None
    knowledge: Knowledge | None = None  # what the probe measured on the question it answers

    @property
    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": self.prompt},
            {"role": "assistant", "content": self.response},
        ]

    def to_row(self) -> dict[str, Any]:
        """The JSON object written to `dataset.jsonl`."""
        return {
            "id": self.id,
            "seed_id": self.seed_id,
            "behavior": self.behavior,
            "pair_id": self.pair_id,
            "messages": self.messages,
            "attributes": self.attributes,
            "knowledge": self.knowledge.to_dict() if self.knowledge else None,
            "fit": self.fit.to_dict() if self.fit else None,
            "provenance": self.provenance,
        }


# A request that got no answer (the transport gave up): unlike every other skip or
# failure it is not the last word on its seed, so a re-run asks it again.
REQUEST_FAILED = "request_failed"


@dataclass(frozen=True)
class Skip:
    """Why a seed gave a behavior nothing: skipped (unsuitable) or failed (a request)."""

    seed_id: str
    behavior: str
    reason: str
    detail: str = ""
    status: str = "skipped"

    def to_row(self) -> dict[str, Any]:
        return {
            "seed_id": self.seed_id,
            "behavior": self.behavior,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
        }


def turns(row: dict[str, Any]) -> tuple[str, str]:
    """A written row's prompt and response (its first and last messages)."""
    messages = row["messages"]
    return messages[0]["content"], messages[-1]["content"]
