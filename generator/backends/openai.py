"""The openai backend: any OpenAI-compatible chat endpoint, asked through prompt templates.

For each seed a generator says what to ask (`requests`), this backend asks it `k` times
(sample index 0..k-1, each its own cache key), and the generator turns each JSON reply
into examples (`parse`). Three budgets are kept apart:

- transport: rate limits, connection errors, timeouts, 5xx and garbled bodies are retried
  with jittered exponential backoff that honours Retry-After, paced by a
  per-endpoint `Throttle` (the circuit breaker); the requests themselves go out through
  `wire` (one aiohttp session), not the openai SDK, whose per-request work was the
  client's ceiling;
- format: a server that rejects `response_format` is asked again with the next weaker
  form (json_schema, json_object with schema, json_object, none), remembered per endpoint;
- content: a reply that is not valid JSON for the schema goes back to the model with the
  error (`reask.j2`), at most `reasks` times.

A request that exhausts its budget becomes a `failed` row (seed, behavior, and why, in a
few stable words: "connection refused", "HTTP 500: ...") and the run goes on. Every answer
is cached before it is used, so nothing is asked twice; a failure is not an answer, so a
re-run asks it again (see `RunFolder`'s unsettled seeds).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from generator.backends.cache import ResponseCache, request_key
from generator.backends.protocol import (
    FORMATS,
    BadResponse,
    RequestFailed,
    about_format,
    bad_body,
    cause,
    one_line,
    reply_value,
    request,
)
from generator.backends.throttle import Throttle
from generator.backends.wire import (
    Client,
    StatusError,
    Timeout,
    Unreachable,
    check_url,
    retry_after,
    transient,
)
from generator.errors import ConfigError, param
from generator.generators import Ask, Generator, ReplyError
from generator.templates import Prompts
from generator.values import REQUEST_FAILED, Example, Seed, Skip, short_hash

LLM_BANK = "llm.toml"
DEFAULT_URL = "https://api.openai.com/v1"  # the OpenAI API's own
REASK = "reask.j2"

# USD per million tokens (input, output), for --dry-run estimates; others print no cost.
PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


def estimate_cost(model: str | None, prompt_tokens: int) -> float | None:
    """USD for `prompt_tokens` input tokens of a model with a known price, else None."""
    price = PRICES.get(model or "")
    return None if price is None else round(prompt_tokens * price[0] / 1e6, 4)


@dataclass
class Settings:
    """How to reach the endpoint; none of it decides the content of a reply."""

    model: str
    base_urls: tuple[str, ...] = ()
    api_key: str | None = None
    concurrency: int = 16
    timeout: float = 120.0
    retries: int = 6  # transport retries per request (rate limits wait longer, see below)
    rate_limit_patience: float = 900.0  # seconds a request keeps retrying 429s
    reasks: int = 2


@dataclass
class Stats:
    """What the backend did, for the progress line and the manifest."""

    requests: int = 0  # rendered and needed (sent or served from the cache)
    sent: int = 0
    cached: int = 0
    retries: int = 0
    reasks: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_prompt_tokens: int = 0  # --dry-run: characters / 4
    circuit_openings: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass
class _Replica:
    url: str  # the endpoint's base URL, ending in /v1 (or wherever its routes start)
    throttle: Throttle
    format: int = 0  # index into FORMATS: the strongest response_format it accepts


def loads_reply(text: str) -> Any:
    """The JSON value in a model's reply, tolerating a code fence or words around it."""
    text = text.strip()
    fenced = re.match(r"^```[a-zA-Z]*\s*\n(.*)\n```$", text, re.S)
    if fenced:
        text = fenced.group(1)
    # strict=False: models often put raw newlines inside JSON strings
    try:
        return json.loads(text, strict=False)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            return json.loads(text[start : end + 1], strict=False)
        raise


class OpenAIBackend:
    """Asks an OpenAI-compatible endpoint; one connection pool, bounded concurrency."""

    name = "openai"

    def __init__(
        self,
        prompts: Prompts,
        settings: Settings,
        seed: int = 0,
        cache: ResponseCache | None = None,
        dry_run: bool = False,
        corpus: Any = None,
    ):
        self.prompts = prompts
        self.settings = resolve(settings, dry_run)
        self.seed = seed
        self.cache = cache
        self.dry_run = dry_run
        self.corpus = corpus  # the input's vocabulary (generator.corpus), for refusals
        self.stats = Stats()
        self.params = self._params()
        self._replicas: list[_Replica] | None = None
        self._client: Client | None = None
        self._slots: asyncio.Semaphore | None = None
        self._turn = 0

    def _params(self) -> dict[str, Any]:
        bank = self.prompts.bank(LLM_BANK)
        params = {}
        for key, value in bank.get("params", {}).items():
            if not isinstance(value, int | float | str | bool):
                raise ConfigError(
                    f"{self.prompts.path(LLM_BANK)}: params.{key} must be a number, "
                    "string or boolean"
                )
            params[key] = value
        return params

    @staticmethod
    def templates() -> list[str]:
        return [LLM_BANK, REASK]

    @property
    def endpoint(self) -> str:
        """Where the requests go, for messages."""
        return ", ".join(self.settings.base_urls) or DEFAULT_URL

    def failed_message(self, failed: int, causes: dict[str, int], unusable: int = 0) -> str:
        """The one line for a run that made no row because requests failed: what failed,
        why, and the fix."""
        why = ", ".join(c if len(causes) == 1 else f"{c} ({n})" for c, n in causes.items())
        if any(c.startswith(("connection refused", "host not found")) for c in causes):
            fix = f"check {param('base_urls')}"
        elif any(c.startswith("no reply within") for c in causes):
            fix = f"check that the server answers, or raise {param('timeout')}"
        else:
            fix = f"check the server (and {param('base_urls')}, {param('model')})"
        what = f"all {failed} requests to {self.endpoint} failed ({why})"
        if unusable:
            what = (
                f"no row was made: {failed} requests to {self.endpoint} failed ({why}) and "
                f"{unusable} replies were unusable"
            )
        return f"{what}; {fix} and run the same command again (finished work is kept)"

    # -- the generator side ------------------------------------------------------------

    async def produce(
        self, generator: Generator, seed: Seed, k: int
    ) -> list[Example | Skip] | Skip:
        rng = random.Random(f"{self.seed}\x1f{seed.id}\x1f{generator.name}")
        asks = generator.requests(seed, rng)
        if isinstance(asks, Skip):
            return asks
        jobs = [self._sample(generator, seed, ask, i) for ask in asks for i in range(k)]
        out: list[Example | Skip] = []
        for result in await asyncio.gather(*jobs):
            out.extend(result)
        return out

    async def _sample(self, generator: Generator, seed: Seed, ask: Ask, sample: int):
        messages = [dict(m) for m in ask.messages]
        error = ""
        for attempt in range(self.settings.reasks + 1):
            if attempt:
                self.stats.reasks += 1
            try:
                content = await self.complete(messages, ask, sample)
            except RequestFailed as e:
                self.stats.failed += 1
                return [Skip(seed.id, generator.name, REQUEST_FAILED, str(e), status="failed")]
            if content is None:  # --dry-run: rendered and counted, nothing sent
                return []
            try:
                reply = generator.reply_model.model_validate(loads_reply(content))
                return generator.parse(seed, ask, reply, sample, self.settings.model)
            except (ValueError, ReplyError) as e:  # pydantic's ValidationError is a ValueError
                error = one_line(e)
                messages += [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": self.prompts.render(REASK, error=error)},
                ]
        self.stats.failed += 1
        return [Skip(seed.id, generator.name, "invalid_reply", error, status="failed")]

    # -- the transport side ------------------------------------------------------------

    async def complete(
        self,
        messages: list[dict] | str,
        ask: Ask | None,
        sample: int,
        params: dict[str, Any] | None = None,
    ) -> str | None:
        """The reply text to `messages` (from the cache when it was asked before); see
        `plain` for a request without an `ask`."""
        params = dict(self.params if params is None else params)
        # A per-sample seed: servers that honour it give reproducible samples.
        params["seed"] = int(short_hash(str(self.seed), str(sample)), 16) % (2**31)
        keyed = params if ask is None else {**params, "schema": ask.schema}
        key = request_key(self.settings.model, messages, keyed, sample)
        self.stats.requests += 1
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            self.stats.cached += 1
            return hit["content"]
        if self.dry_run:
            text = [messages] if isinstance(messages, str) else [m["content"] for m in messages]
            self.stats.estimated_prompt_tokens += sum(map(len, text)) // 4
            return None
        value = await self._send(messages, params, ask)
        self.stats.prompt_tokens += value["prompt_tokens"]
        self.stats.completion_tokens += value["completion_tokens"]
        if self.cache is not None:
            self.cache.put(key, value)
        return value["content"]

    async def plain(
        self, request: list[dict] | str, params: dict[str, Any], sample: int = 0
    ) -> str | None:
        """The reply to a request that is not a generator's `Ask` (`hedgerow eval`): chat
        messages, or a prompt string for `/completions` (a base model). No response format,
        and `params` (temperature, max_tokens, stop) instead of llm.toml's; the same cache,
        concurrency, throttle and retries, and `RequestFailed` when it gets no answer."""
        return await self.complete(request, None, sample, params)

    def _setup(self) -> None:
        s = self.settings
        headers = {  # as the SDK sends them, for keys that belong to an organization
            name: value
            for name, env in (
                ("OpenAI-Organization", "OPENAI_ORG_ID"),
                ("OpenAI-Project", "OPENAI_PROJECT_ID"),
            )
            if (value := os.environ.get(env, "").strip())
        }
        self._client = Client(s.api_key, s.timeout, headers)
        self._replicas = [
            _Replica(url.rstrip("/"), Throttle(s.concurrency))
            for url in (s.base_urls or (DEFAULT_URL,))
        ]
        self._slots = asyncio.Semaphore(s.concurrency)

    def _pick(self) -> _Replica:
        """The replica to ask next: not paused, fewest in flight, taking turns on ties."""
        now = time.monotonic()
        self._turn += 1
        n = len(self._replicas)
        order = [self._replicas[(self._turn + i) % n] for i in range(n)]
        return min(
            order,
            key=lambda r: (r.throttle.paused_until > now, r.throttle.in_flight / r.throttle.limit),
        )

    async def _send(
        self, messages: list[dict] | str, params: dict, ask: Ask | None
    ) -> dict[str, Any]:
        """The reply value, asked again after a retryable failure until the budget is
        spent. A plain loop rather than tenacity's: its per-request objects hold
        reference cycles (about 37 per request), and the garbage collector's passes
        over them paused the event loop for 4-6 ms each second at 160 requests/s."""
        if self._replicas is None:
            self._setup()
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    return await self._attempt(messages, params, ask)
            except (Timeout, Unreachable, BadResponse, StatusError) as e:
                error = e
            if isinstance(error, StatusError) and not _retryable(error):
                raise self._refused(error) from None
            if self._spent(error, attempt, time.monotonic() - started):
                raise RequestFailed(self._describe(error)) from None
            self.stats.retries += 1
            await asyncio.sleep(self._wait(error, attempt))

    def _refused(self, error: StatusError) -> Exception:
        """The error for a reply that asking again cannot change."""
        if error.status_code in (401, 403):
            return ConfigError(
                f"the endpoint refused the API key ({self._describe(error)}); check OPENAI_API_KEY"
            )
        if error.status_code == 404:
            return ConfigError(
                f"the endpoint has no model {self.settings.model!r} or no chat "
                f"completions route ({self._describe(error)}); check {param('model')} and "
                f"{param('base_urls')}"
            )
        return RequestFailed(self._describe(error))

    async def _attempt(
        self, messages: list[dict] | str, params: dict, ask: Ask | None
    ) -> dict[str, Any]:
        replica = self._pick()
        await replica.throttle.acquire()
        outcome, wait = "error", None
        try:
            while True:
                form = replica.format
                route, body = request(self.settings.model, messages, params, FORMATS[form], ask)
                try:
                    response = await self._client.post(replica.url + route, body)
                    break
                except StatusError as e:
                    # A server without (this form of) structured output: step down for
                    # this endpoint and ask again. (llama.cpp's server says so with a
                    # 500, others with 400 or 422.) Requests in flight meanwhile saw the
                    # same refusal: only the first steps down.
                    if ask is None or not about_format(e) or form + 1 >= len(FORMATS):
                        raise
                    replica.format = max(replica.format, form + 1)
            self.stats.sent += 1
            value = reply_value(response)
            outcome = "ok"
            return value
        except Timeout:
            self.stats.error("timeout")
            raise
        except Unreachable:
            self.stats.error("connection")
            raise
        except StatusError as e:
            self.stats.sent += 1
            if e.status_code == 429:
                self.stats.error("rate_limited")
                outcome, wait = "rate_limited", retry_after(e)
            else:
                self.stats.error(f"http_{e.status_code}")
            raise
        except (BadResponse, ValueError) as e:
            self.stats.sent += 1
            self.stats.error("bad_response")
            raise BadResponse(bad_body(e)) from None
        finally:
            await replica.throttle.release(outcome, wait)
            self.stats.circuit_openings = sum(r.throttle.openings for r in self._replicas)

    def _wait(self, error: BaseException, attempt: int) -> float:
        """Seconds before asking again: what Retry-After asks (jittered), else jittered
        exponential backoff from 0.5 s, at most 30 s."""
        backoff = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        asked = retry_after(error)
        return backoff if asked is None else asked + random.uniform(0, 0.1 + asked / 10)

    def _spent(self, error: BaseException, attempt: int, elapsed: float) -> bool:
        """Whether the request's budget is spent: `retries` more attempts, or for rate
        limits `rate_limit_patience` seconds."""
        if _rate_limited(error):
            return elapsed >= self.settings.rate_limit_patience
        return attempt > self.settings.retries

    def _describe(self, error: BaseException) -> str:
        text = cause(error, self.settings.timeout)
        key = self.settings.api_key
        if key:
            text = text.replace(key, "***")
        return text

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._replicas = None


def _rate_limited(error: BaseException | None) -> bool:
    return isinstance(error, StatusError) and error.status_code == 429


def _retryable(error: BaseException) -> bool:
    """Worth asking again: what the wire calls transient, or a garbled reply."""
    return isinstance(error, BadResponse) or transient(error)


def resolve(settings: Settings, dry_run: bool = False) -> Settings:
    """The settings with their endpoints checked, or a one-line error: OPENAI_BASE_URL is
    read here, for this backend only (exported for other tools, it must not make an
    offline run fail as a --base-url would), and a run that sends needs a key or a URL."""
    urls = settings.base_urls
    if not urls and (env := os.environ.get("OPENAI_BASE_URL", "").strip()):
        urls = (env,)
        check_url(env, "OPENAI_BASE_URL")
    for url in settings.base_urls:
        check_url(url, param("base_urls"))
    if not (settings.api_key or urls or dry_run):
        raise ConfigError(
            f"{param('backend')} openai needs an API key: set OPENAI_API_KEY, or pass "
            f"{param('base_urls')} for a local server that needs none"
        )
    return replace(settings, base_urls=urls)
