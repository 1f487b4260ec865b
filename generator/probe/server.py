"""`--probe openai:URL`: the target model behind an OpenAI-compatible `/v1/completions`.

The greedy answer is one request at temperature 0; the K samples are one request with
`n=K` where the server honours `n` (vLLM does), else K requests, each with its own
`seed`. Either way an answer stops at the first newline. `openai:URL1,URL2` (replicas of
one model) takes the seeds in turn: all of one seed's requests go to one URL.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from generator.errors import ScorerError, param
from generator.probe import Sampler
from generator.probe.sampling import Sampled
from generator.scoring.server import cannot_reach, first_model, replicas, snippet

ATTEMPTS = 5  # sends of one request that fails as wire.transient says (no reply, 429, 5xx…)


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
        self.urls = replicas(url, param("probe"))
        self.api_key = api_key
        self.timeout = timeout
        self._client = None  # generator.backends.wire.Client, one session for every URL
        self._model: str | None = None  # the first server's model: the replicas serve it too
        self._turn = 0
        self._n: bool | None = None  # does the server return n choices for n?
        self._slots = asyncio.Semaphore(concurrency * len(self.urls))

    def describe(self) -> dict[str, Any]:
        return {"probe": self.spec, "model": self._model, "n_per_request": self._n}

    def _fail(self, what: str) -> ScorerError:
        return ScorerError(f"{param('probe')} {self.spec}: {what}")

    async def _setup(self) -> None:
        from generator.backends.wire import Client, StatusError, Timeout, Unreachable, persist

        if self._client is None:
            self._client = Client(self.api_key, self.timeout)
        if self._model is None:
            model = None  # the first server's: the replicas serve it too
            for url in self.urls:  # each URL once now: one that cannot be reached is said at once
                try:
                    listed = await persist(
                        lambda _, url=url: self._client.get(url + "/models"),
                        ATTEMPTS,
                        retry_unreachable=False,
                    )
                except (Unreachable, Timeout) as e:
                    raise self._fail(cannot_reach(url, e)) from None
                except (StatusError, json.JSONDecodeError):
                    listed = None  # no /models: the server takes any name
                model = model or first_model(listed) or "default"
            self._model = model

    async def _ask(
        self, to: int, frame: str, n: int, temperature: float, max_tokens: int, seed: int
    ):
        from generator.backends.wire import StatusError, Timeout, Unreachable, persist

        url = self.urls[to]
        body = {
            "model": self._model,
            "prompt": frame,
            "n": n,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "stop": ["\n"],
        }
        try:
            async with self._slots:
                reply = await persist(
                    lambda _: self._client.post(url + "/completions", body), ATTEMPTS
                )
        except (Timeout, Unreachable) as e:
            raise self._fail(
                f"lost {url} ({e}); probed seeds are saved, run the same command again to resume"
            ) from None
        except StatusError as e:
            raise self._fail(f"the server answered HTTP {e.status_code} ({e.message})") from None
        except json.JSONDecodeError as e:  # said to be JSON, and not
            raise self._fail(f"the server's answer is not a completion ({e})") from None
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or not choices:
            if not isinstance(reply, dict):
                raise self._fail(
                    f"the server's answer is not a completion ({snippet(str(reply))}); give "
                    "the URL of its OpenAI API, which ends in /v1"
                )
            raise self._fail("the server answered a completion with no choices")
        texts = []
        for choice in choices:
            text = choice.get("text") if isinstance(choice, dict) else None
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
        if self._client is not None:
            await self._client.close()
        self._client = None
