"""`--probe openai:URL`: the target model behind an OpenAI-compatible `/v1/completions`.

The greedy answer is one request at temperature 0; the K samples are one request with
`n=K` where the server honours `n` (vLLM does), else K requests, each with its own
`seed`. Either way an answer stops at the first newline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from generator.errors import ScorerError, param
from generator.probe import Sampler
from generator.probe.sampling import Sampled


class ServerSampler(Sampler):
    def __init__(
        self,
        spec: str,
        url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        concurrency: int = 8,
    ):
        self.spec = spec
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._client = None
        self._model: str | None = None
        self._n: bool | None = None  # does the server return n choices for n?
        self._slots = asyncio.Semaphore(concurrency)

    def describe(self) -> dict[str, Any]:
        return {"probe": self.spec, "model": self._model, "n_per_request": self._n}

    def _fail(self, what: str) -> ScorerError:
        return ScorerError(f"{param('probe')} {self.spec}: {what}")

    async def _setup(self) -> None:
        import openai

        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.url,
                api_key=self.api_key or "none",
                timeout=self.timeout,
                max_retries=4,
            )
        if self._model is None:
            try:
                listed = await self._client.models.list()
                ids = [m.id for m in listed.data]
            except (openai.APIConnectionError, openai.APITimeoutError) as e:
                raise self._fail(
                    f"cannot reach {self.url} ({e.__class__.__name__}); start the server "
                    "or fix the URL (it ends in /v1)"
                ) from None
            except (openai.APIStatusError, AttributeError, TypeError, ValueError):
                ids = []  # no usable /models: the server takes any name
            self._model = ids[0] if ids else "default"

    async def _ask(self, frame: str, n: int, temperature: float, max_tokens: int, seed: int):
        import openai

        try:
            async with self._slots:
                reply = await self._client.completions.create(
                    model=self._model,
                    prompt=frame,
                    n=n,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                    stop=["\n"],
                )
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise self._fail(
                f"lost {self.url} ({e.__class__.__name__}); probed seeds are saved, run the "
                "same command again to resume"
            ) from None
        except openai.APIStatusError as e:
            raise self._fail(f"the server answered HTTP {e.status_code} ({e.message})") from None
        except (AttributeError, TypeError, ValueError) as e:  # a body that is not the API's
            raise self._fail(f"the server's answer is not a completion ({e})") from None
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise self._fail("the server answered a completion with no choices")
        texts = []
        for choice in choices:
            text = getattr(choice, "text", None)
            if not isinstance(text, str):
                raise self._fail("the server answered a choice with no text")
            texts.append(text.split("\n", 1)[0].strip())
        return texts

    async def sample(self, frame: str, k: int, temperature: float, max_tokens: int, seed: int):
        await self._setup()
        seed %= 2**31
        greedy = (await self._ask(frame, 1, 0.0, max_tokens, seed))[0]
        samples: list[str] = []
        if k and self._n is not False:
            samples = await self._ask(frame, k, temperature, max_tokens, seed)
            if self._n is None:
                self._n = len(samples) == k
            if len(samples) != k:
                samples = []
        if len(samples) != k:  # the server gives one choice whatever n says: K requests
            asked = await asyncio.gather(
                *(self._ask(frame, 1, temperature, max_tokens, seed + 1 + i) for i in range(k))
            )
            samples = [texts[0] for texts in asked]
        return Sampled(greedy, tuple(samples))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
