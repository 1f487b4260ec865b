"""Scoring through an OpenAI-compatible `/v1/completions` that returns prompt logprobs.

vLLM and llama.cpp's server (`python -m llama_cpp.server ... --logits_all true`) return,
with `echo=True, logprobs=1`, the log-probability of every token of the text sent. The
response's tokens are the ones whose `text_offset` falls after the frame's prefix. A
server whose echo has no logprobs is asked again with vLLM's `prompt_logprobs: 0`, whose
decoded tokens are laid back from the end of the text to find their offsets. This is the
way to big base models and many machines (`openai:URL1,URL2`: replicas in turn).

Requests go through the backend's HTTP client (`generator.backends.wire`), and every
answer is checked here, so a server that answers an HTML page, a body that is not JSON or
offsets that miss the text gets a one-line error saying what it did wrong.
A request that gets no answer within `timeout` seconds (or loses its connection, or
gets a 408, a 429 or a 5xx) is sent again, at most ATTEMPTS times in all, and then is an
error for the whole run: a stalled server is not a property of one text, and a run that went on
without fits would rank some candidates and not others. Finished work is kept, so the
same command resumes once the server answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from generator import jsontext
from generator.errors import ScorerError, param
from generator.scoring import TIMEOUT, Scorer, framed
from generator.templates import Prompts
from generator.values import Fit

_TOO_LONG = ("context", "too long", "exceed", "maximum", "max_tokens")
ATTEMPTS = 3  # sends of one request that times out or fails on the server's side
WATCH = 0.5  # seconds between looks at how long requests have waited (for on_wait)
NOTE_AFTER = 5.0  # a request waiting this long (or half the timeout) is shown as waiting


def snippet(text: str, size: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text[:size] + ("…" if len(text) > size else ""))


def replicas(url: str, where: str) -> list[str]:
    """The URLs of `openai:URL1,URL2` (replicas of one model), without trailing slashes; a
    one-line error (naming `where`, the option) for one that is not an http(s) URL."""
    from generator.backends.wire import check_url

    urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
    for one in urls:
        check_url(one, where)
    return urls


def first_model(listing: Any) -> str | None:
    """The first model a GET /models answer lists, or None when it lists none usable (the
    server then takes any name)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    model = first.get("id") if isinstance(first, dict) else None
    return model if isinstance(model, str) else None


def cannot_reach(url: str, error: Exception) -> str:
    return f"cannot reach {url} ({error}); start the server or fix the URL (it ends in /v1)"


def _offsets(body: Any) -> tuple[list, list] | None:
    """(character offsets, logprobs) of the echoed prompt, when the answer has them."""
    choices = body.get("choices") if isinstance(body, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    offsets = logprobs.get("text_offset") if isinstance(logprobs, dict) else None
    values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    if not offsets or not isinstance(offsets, list) or not isinstance(values, list):
        return None
    return offsets, values


class ServerScorer(Scorer):
    """`--scorer openai:URL`: prompt logprobs from a completions endpoint, or from several
    (`openai:URL1,URL2`, replicas of one model): each text goes to the next in turn."""

    def __init__(
        self,
        spec: str,
        prompts: Prompts,
        url: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = TIMEOUT,
    ):
        super().__init__(spec, prompts)
        self.urls = replicas(url, param("scorer"))
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self._client = None  # generator.backends.wire.Client, one session for every URL
        self._model: str | None = None  # the first server's model: the replicas serve it too
        self._turn = 0
        # vLLM's own form: prompt logprobs asked as `prompt_logprobs` in the body, once an
        # echo answer came back without them
        self._prompt_logprobs = False
        self._slots: asyncio.Semaphore | None = None
        # request -> (sent at, attempt, URL)
        self._waiting: dict[object, tuple[float, int, str]] = {}
        self._said = False  # on_wait was told something that still shows

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self._model}

    def _fail(self, what: str) -> ScorerError:
        return ScorerError(f"{param('scorer')} {self.spec}: {what}")

    async def _send(
        self, what: str, url: str, route: str, body: dict | None = None, connect: bool = False
    ) -> Any:
        """POST `body` to `url` + `route` (GET without one), sent again after a failure
        `wire.transient` names, at most ATTEMPTS times; `connect`: the first contact,
        where a server that cannot be reached is a wrong URL or one not started, said at
        once."""
        from generator.backends.wire import StatusError, Timeout, Unreachable, persist, transient

        async def once(attempt: int):
            key = object()
            self._waiting[key] = (time.monotonic(), attempt, url)
            try:
                if body is None:
                    return await self._client.get(url + route)
                return await self._client.post(url + route, body)
            finally:
                del self._waiting[key]

        try:
            return await persist(once, ATTEMPTS, retry_unreachable=not connect)
        except Unreachable as e:
            if connect:
                raise self._fail(cannot_reach(url, e)) from None
            failed = f"dropped the connection during {what}"
        except Timeout:
            failed = f"gave no answer to {what} within --timeout {self.timeout:g} s"
        except StatusError as e:
            if not transient(e):
                raise
            failed = f"answered {what} with HTTP {e.status_code} ({e.message})"
        raise self._fail(
            f"the server {failed}, {ATTEMPTS} times; check that the server is up and not "
            f"overloaded, or raise {param('timeout')} (work done so far is kept: run the same "
            "command again to resume)"
        )

    async def _watch(self) -> None:
        """Tell on_wait while a request has been waiting long (and when none is)."""
        patience = min(NOTE_AFTER, self.timeout / 2)
        try:
            while True:
                await asyncio.sleep(WATCH)
                now = time.monotonic()
                oldest = min(self._waiting.values(), default=None)
                if oldest is not None and now - oldest[0] >= patience:
                    self.on_wait(
                        f"waiting for {oldest[2]}: {now - oldest[0]:.0f} s (attempt "
                        f"{oldest[1]} of {ATTEMPTS}, --timeout {self.timeout:g} s)"
                    )
                    self._said = True
                elif self._said:
                    self.on_wait("")
                    self._said = False
        finally:
            if self._said and not self._waiting:
                self.on_wait("")
                self._said = False

    def _not_json(self, text: str, what: str) -> ScorerError:
        """The error for a 200 answer whose body is not JSON: an HTML page, or else."""
        if text.lstrip().startswith("<"):
            return self._fail(
                f"{what} answered with an HTML page, not JSON ({snippet(text)}); "
                "give the URL of the server's OpenAI API, which ends in /v1"
            )
        return self._fail(
            f"{what} answered with a body that is not JSON ({snippet(text)}); "
            "give the URL of an OpenAI-compatible server's API, which ends in /v1"
        )

    async def _setup(self) -> None:
        from generator.backends.wire import Client, StatusError

        if self._client is None:
            self._client = Client(self.api_key, self.timeout)  # a local server wants no key
            # every replica takes a share of the requests in flight
            self._slots = asyncio.Semaphore(self.concurrency * len(self.urls))
        if self._model is None:
            model = None  # the first server's: the replicas serve it too
            for url in self.urls:  # each URL once now: one that cannot be reached is said at once
                try:
                    listed = await self._send("GET /models", url, "/models", connect=True)
                except (StatusError, json.JSONDecodeError):
                    listed = None  # no /models: the server takes any name
                model = model or first_model(listed) or "default"
            self._model = model

    async def _score(self, pairs: Sequence[tuple[str, str]]) -> list[Fit | None]:
        watch = asyncio.ensure_future(self._watch()) if self.on_wait else None
        try:
            await self._setup()
            texts = [framed(self.prompts, p, r) for p, r in pairs]
            return list(await asyncio.gather(*(self._one(pre, whole) for pre, whole in texts)))
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)

    async def _one(self, prefix: str, whole: str) -> Fit | None:
        from generator.backends.wire import StatusError

        left, right = 0, len(whole)  # the slice sent; shrunk while the server says too long
        self._turn += 1
        url = self.urls[self._turn % len(self.urls)]  # this text's replica
        for _ in range(40):
            sent = whole[left:right]
            vllm = self._prompt_logprobs  # what this request asks for
            body = {
                "model": self._model,
                "prompt": sent,
                "max_tokens": 1,
                "echo": True,
                "logprobs": 1,
                "temperature": 0,
                **({"prompt_logprobs": 0} if vllm else {}),
            }
            try:
                async with self._slots:
                    answer = await self._send("a scoring request", url, "/completions", body)
            except StatusError as e:
                said = str(e.message)
                if e.status_code != 400:
                    raise self._fail(f"the server answered HTTP {e.status_code} ({said})") from None
                if not any(word in said.lower() for word in _TOO_LONG):
                    raise self._fail(f"the server refused a scoring request ({said})") from None
                if len(prefix) - left > 1:  # drop half of what is left of the prompt
                    left += (len(prefix) - left) // 2
                elif right - len(prefix) > 1:  # then the response's tail
                    right -= (right - len(prefix)) // 2
                else:
                    raise self._fail(f"the server refuses even a short text ({said})") from None
                continue
            except json.JSONDecodeError as e:  # said to be JSON, and not
                raise self._not_json(e.doc, "POST /completions") from None
            if isinstance(answer, str):
                raise self._not_json(answer, "POST /completions")
            truncated = left > 0 or right < len(whole)
            if not vllm and _offsets(answer) is None:
                self._prompt_logprobs = True  # no echoed logprobs: ask as vLLM does
                continue
            return self._parse(answer, sent, len(prefix) - left, truncated)
        raise self._fail("the server kept saying the text is too long")

    def _parse(self, body: Any, sent: str, start: int, truncated: bool) -> Fit | None:
        """The fit of `sent[start:]` from a completion's echoed prompt logprobs."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise self._fail(
                "POST /completions answered JSON without choices "
                f"({snippet(jsontext.dumps(body))}); it must be an OpenAI-compatible completions "
                "endpoint"
            )
        found = _offsets(body) or self._aligned(choices[0].get("prompt_logprobs"), sent)
        if found is None:
            raise self._fail(
                "the server returned no prompt logprobs for echo=True or prompt_logprobs; it "
                "must support echo with logprobs (vLLM does; start llama.cpp's "
                "llama_cpp.server with --logits_all true)"
            )
        offsets, values = found
        ours = [
            v
            for offset, v in zip(offsets, values, strict=False)
            if isinstance(offset, int) and start <= offset < len(sent)
        ]
        if any(not isinstance(v, int | float) or isinstance(v, bool) for v in ours):
            raise self._fail("the server left some prompt tokens without a logprob")
        if not ours:
            if sent[start:].strip():  # a response with text must have tokens
                raise self._fail(
                    "the server's token offsets do not cover the response; it "
                    "must return prompt logprobs with text_offset (character offsets into "
                    "the text sent) for echo=True"
                )
            return None
        # Non-finite values (NaN, -Infinity: JSON from Python servers can carry them) pass
        # through here; Scorer.score turns them into a failed fit with a reason.
        return Fit(-sum(ours) / len(ours), len(ours), truncated=truncated)

    def _aligned(self, entries: Any, sent: str) -> tuple[list, list] | None:
        """vLLM's `prompt_logprobs` (one dict {token id: {logprob, decoded_token}} per
        prompt token, None first) as (character offsets, logprobs): the decoded tokens are
        laid back from the end of the text sent, so the first token's text is not needed."""
        if not isinstance(entries, list) or len(entries) < 2:
            return None
        offsets, values, end = [], [], len(sent)
        for entry in reversed(entries[1:]):
            infos = list(entry.values()) if isinstance(entry, dict) else []
            if len(infos) != 1 or not isinstance(infos[0], dict):
                raise self._fail(
                    "the server's prompt_logprobs do not give one token per position; it "
                    "must honour prompt_logprobs=0 (the prompt's own tokens only)"
                )
            piece = infos[0].get("decoded_token")
            if not isinstance(piece, str) or not sent[:end].endswith(piece):
                raise self._fail(
                    "the server's decoded prompt tokens do not spell the text sent; use a "
                    "server whose echo returns logprobs with text_offset"
                )
            end -= len(piece)
            offsets.append(end)
            values.append(infos[0].get("logprob"))
        return offsets[::-1], values[::-1]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None
