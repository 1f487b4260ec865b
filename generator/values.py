"""The values that flow between stages, frozen so no stage edits another's output."""

from __future__ import annotations

import hashlib
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
            "fit": self.fit.to_dict() if self.fit else None,
            "provenance": self.provenance,
        }


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
