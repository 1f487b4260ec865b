"""`--probe openai:URL`: the target model behind an OpenAI-compatible `/v1/completions`.

The greedy answer is one request at temperature 0; the K samples are one request with
`n=K` where the server honours `n` (vLLM does), else K requests, each with its own
`seed`. Either way an answer stops at the first newline. `openai:URL1,URL2` (replicas of
one model) takes the seeds in turn: all of one seed's requests go to one URL.
"""

from __future__ import annotations

import asyncio
from typing import Any

from generator.errors import ScorerError, param
from generator.probe import Sampler
from generator.probe.sampling import Sampled
from generator.scoring.server import replicas


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
        self.urls = replicas(url)
        self.api_key = api_key
        self.timeout = timeout
        self._clients: list = []  # one per URL
        self._model: str | None = None  # the first server's model: the replicas serve it too
        self._turn = 0
        self._n: bool | None = None  # does the server return n choices for n?
        self._slots = asyncio.Semaphore(concurrency * len(self.urls))

    def describe(self) -> dict[str, Any]:
        return {"probe": self.spec, "model": self._model, "n_per_request": self._n}

    def _fail(self, what: str) -> ScorerError:
        return ScorerError(f"{param('probe')} {self.spec}: {what}")

    async def _setup(self) -> None:
        import openai

        if not self._clients:
            self._clients = [
                openai.AsyncOpenAI(
                    base_url=url,
                    api_key=self.api_key or "none",
                    timeout=self.timeout,
                    max_retries=4,
                )
                for url in self.urls
            ]
        if self._model is None:
            model = None  # the first server's: the replicas serve it too
            for url, client in zip(self.urls, self._clients, strict=True):
                try:  # each URL once now: one that cannot be reached is said at once
                    listed = await client.models.list()
                    ids = [m.id for m in listed.data]
                except (openai.APIConnectionError, openai.APITimeoutError) as e:
                    raise self._fail(
                        f"cannot reach {url} ({e.__class__.__name__}); start the server "
                        "or fix the URL (it ends in /v1)"
                    ) from None
                except (openai.APIStatusError, AttributeError, TypeError, ValueError):
                    ids = []  # no usable /models: the server takes any name
                model = model or (ids[0] if ids else "default")
            self._model = model

    async def _ask(
        self, to: int, frame: str, n: int, temperature: float, max_tokens: int, seed: int
    ):
        import openai

        try:
            async with self._slots:
                reply = await self._clients[to].completions.create(
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
                f"lost {self.urls[to]} ({e.__class__.__name__}); probed seeds are saved, run the "
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
        self._turn += 1
        to = self._turn % len(self.urls)  # this seed's replica
        seed %= 2**31
        greedy = (await self._ask(to, frame, 1, 0.0, max_tokens, seed))[0]
        samples: list[str] = []
        if k and self._n is not False:
            samples = await self._ask(to, frame, k, temperature, max_tokens, seed)
            if self._n is None:
                self._n = len(samples) == k
            if len(samples) != k:
                samples = []
        if len(samples) != k:  # the server gives one choice whatever n says: K requests
            asked = await asyncio.gather(
                *(self._ask(to, frame, 1, temperature, max_tokens, seed + 1 + i) for i in range(k))
            )
            samples = [texts[0] for texts in asked]
        return Sampled(greedy, tuple(samples))

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()
        self._clients = []
