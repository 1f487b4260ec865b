"""Scoring through an OpenAI-compatible `/v1/completions` that echoes prompt logprobs.

vLLM and llama.cpp's server (`python -m llama_cpp.server ... --logits_all true`) return,
with `echo=True, logprobs=1`, the log-probability of every token of the text sent. The
response's tokens are the ones whose `text_offset` falls after the frame's prefix. This
is the way to big base models and many machines: the server batches and caches prompts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from generator.errors import ScorerError
from generator.scoring import Scorer, framed
from generator.templates import Prompts
from generator.values import Fit

_TOO_LONG = ("context", "too long", "exceed", "maximum", "max_tokens")


class ServerScorer(Scorer):
    """`--scorer openai:URL`: prompt logprobs from a completions endpoint."""

    def __init__(
        self,
        spec: str,
        prompts: Prompts,
        url: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
    ):
        super().__init__(spec, prompts)
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self._client = None
        self._model: str | None = None
        self._slots: asyncio.Semaphore | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self._model}

    def _fail(self, what: str) -> ScorerError:
        return ScorerError(f"--scorer {self.spec}: {what}")

    async def _setup(self) -> None:
        import openai

        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.url,
                api_key=self.api_key or "none",  # a local server wants no key
                timeout=self.timeout,
                max_retries=4,
            )
            self._slots = asyncio.Semaphore(self.concurrency)
        if self._model is None:
            try:
                listed = await self._client.models.list()
                ids = [m.id for m in listed.data]
            except (openai.APIConnectionError, openai.APITimeoutError) as e:
                raise self._fail(
                    f"cannot reach {self.url} ({e.__class__.__name__}); start the server "
                    "or fix the URL (it ends in /v1)"
                ) from None
            except openai.APIStatusError:
                ids = []  # no /models: the server takes any name
            self._model = ids[0] if ids else "default"

    async def score(self, pairs: Sequence[tuple[str, str]]) -> list[Fit | None]:
        await self._setup()
        texts = [framed(self.prompts, p, r) for p, r in pairs]
        return list(await asyncio.gather(*(self._one(prefix, whole) for prefix, whole in texts)))

    async def _one(self, prefix: str, whole: str) -> Fit | None:
        import openai

        left, right = 0, len(whole)  # the slice sent; shrunk while the server says too long
        for _ in range(40):
            try:
                async with self._slots:
                    reply = await self._client.completions.create(
                        model=self._model,
                        prompt=whole[left:right],
                        max_tokens=1,
                        echo=True,
                        logprobs=1,
                        temperature=0,
                    )
            except openai.BadRequestError as e:
                said = str(e.message)
                if not any(word in said.lower() for word in _TOO_LONG):
                    raise self._fail(f"the server refused a scoring request ({said})") from None
                if len(prefix) - left > 1:  # drop half of what is left of the prompt
                    left += (len(prefix) - left) // 2
                elif right - len(prefix) > 1:  # then the response's tail
                    right -= (right - len(prefix)) // 2
                else:
                    raise self._fail(f"the server refuses even a short text ({said})") from None
                continue
            except (openai.APIConnectionError, openai.APITimeoutError) as e:
                raise self._fail(
                    f"lost {self.url} ({e.__class__.__name__}); finished seeds are saved, "
                    "run the same command again to resume"
                ) from None
            except openai.APIStatusError as e:
                raise self._fail(
                    f"the server answered HTTP {e.status_code} ({e.message})"
                ) from None
            return self._parse(
                reply, len(prefix) - left, right - left, left > 0 or right < len(whole)
            )
        raise self._fail("the server kept saying the text is too long")

    def _parse(self, reply, start: int, end: int, truncated: bool) -> Fit | None:
        logprobs = reply.choices[0].logprobs if reply.choices else None
        offsets = getattr(logprobs, "text_offset", None)
        values = getattr(logprobs, "token_logprobs", None)
        if not offsets or values is None:
            raise self._fail(
                "the server returned no prompt logprobs for echo=True; it must support echo "
                "with logprobs (vLLM does; start llama.cpp's llama_cpp.server with "
                "--logits_all true)"
            )
        ours = [v for offset, v in zip(offsets, values, strict=False) if start <= offset < end]
        if any(v is None for v in ours):
            raise self._fail("the server left some prompt tokens without a logprob")
        if not ours:
            return None
        return Fit(-sum(ours) / len(ours), len(ours), truncated=truncated)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
