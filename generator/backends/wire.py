"""hedgerow's HTTP: JSON to and from OpenAI-compatible endpoints, for the backend, the
scorer and the probe (`openai:URL`), each with one aiohttp session (one pool of
kept-alive connections) for every replica it asks.

The openai SDK carried these requests before. Its per-request work (building a request
object, walking the connection pool, typing the reply) was most of the client's CPU
(about 70% in a profile of the whole pipeline). Sending alone, 32 at a time to an
endpoint answering in 0.2 s, it reached 0.91-0.93 of concurrency / latency where this
client reaches 0.95-0.97 (benchmarks/openai_concurrency.py). What hedgerow needs of
HTTP is small: a POST (a GET for /models), the status, the body, a Retry-After.

Failures come out as three kinds, each with the words the run's summary counts it by:
`Timeout` (no reply within the timeout), `Unreachable` (refused, no such host, or the
connection closed mid-reply) and `StatusError` (the server answered 4xx/5xx; its error
object and headers kept). A 200 is the parsed JSON, or the text when the body is not JSON
and the server did not say it was (a `json.JSONDecodeError` when it did).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from generator import __version__, jsontext
from generator.errors import ConfigError


class WireError(Exception):
    """A request that got no usable HTTP answer."""


class Timeout(WireError):
    """No complete reply within the timeout."""


class Unreachable(WireError):
    """No reply: the connection was refused, the host not found, or the connection closed
    before the reply was complete."""


class StatusError(WireError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, body: Any, headers: Any):
        self.status_code = status
        self.body = body  # the server's error object (its "error" member), or its text
        self.headers = headers
        # what it said, on one line and short: an HTML error page must not fill a message
        said = body.get("message", jsontext.dumps(body)) if isinstance(body, dict) else body
        self.message = " ".join(said.split())[:100] if isinstance(said, str) else ""
        super().__init__(f"HTTP {status}" + (f": {self.message}" if self.message else ""))


def _error_body(text: str) -> Any:
    """An error reply's body as the server meant it: its error object when it is JSON
    (`{"error": {...}}` unwrapped, as the SDK does), else its text."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    return body.get("error", body) if isinstance(body, dict) else body


def unreachable(error: BaseException) -> str:
    """Why no reply came, from an exception and whatever it wraps (aiohttp wraps OSError)."""
    chain, seen = [], error
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    for link in reversed(chain):
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return f"host not found: {(link.strerror or str(link)).lower()}"
        if isinstance(link, OSError) and link.strerror:
            return link.strerror[:1].lower() + link.strerror[1:]
    closed = ("ServerDisconnectedError", "ClientPayloadError", "ContentLengthError")
    if any(type(link).__name__ in closed for link in chain):
        return "the connection closed before the reply was complete"
    return one_line(chain[-1])


def one_line(error: BaseException) -> str:
    """An exception's text on one line, at most 300 characters (its type when it has none)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def retry_after(error: BaseException) -> float | None:
    """Seconds a server asked us to wait (Retry-After / retry-after-ms), if it said."""
    headers = getattr(error, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def transient(error: BaseException) -> bool:
    """A failure worth asking again: no reply, a lost connection, a 408, a 429 or a 5xx."""
    if isinstance(error, StatusError):
        return error.status_code in (408, 429) or error.status_code >= 500
    return isinstance(error, Timeout | Unreachable)


def check_url(url: str, where: str) -> None:
    """A one-line error, before anything is sent, for an endpoint that is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        good = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        good = False
    if not good:
        raise ConfigError(
            f"{where} {url!r} is not an http(s) URL; give the endpoint's address, "
            "e.g. http://localhost:8000/v1"
        )


class Client:
    """POSTs JSON (or GETs) and returns the reply; made lazily inside the running event loop (an
    aiohttp session belongs to the loop it was made in), closed by `close`."""

    def __init__(self, api_key: str | None, timeout: float, headers: dict | None = None):
        self.timeout = timeout
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"hedgerow/{__version__}",
            **(headers or {}),
        }
        if api_key:  # local servers need none, and are not sent a made-up one
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._session = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _open(self):
        import aiohttp

        self._session = aiohttp.ClientSession(
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            # no pool bound of its own: the backend's throttle and semaphore are the bound
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            # Not aiohttp's trust_env: it looks the proxy and ~/.netrc up again for every
            # request, each in a thread; those two hops took the pipeline from 6-9 ms to
            # 18 ms between a reply and the next request. The proxy is looked up once per
            # endpoint instead (`_proxy`).
            trust_env=False,
        )
        return self._session

    def _proxy(self, url: str) -> str | None:
        """The proxy HTTP(S)_PROXY and NO_PROXY give for `url`'s host, as the SDK honoured
        them (looked up once per scheme and host:port, as NO_PROXY may name either)."""
        parts = urlsplit(url)
        where = (parts.scheme, parts.netloc)
        if where not in self._proxies:
            proxy = urllib.request.getproxies_environment().get(parts.scheme)
            if proxy and urllib.request.proxy_bypass_environment(parts.netloc):
                proxy = None
            self._proxies[where] = proxy or None
        return self._proxies[where]

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", url, jsontext.dumps(body, ensure_ascii=False).encode())

    async def get(self, url: str) -> Any:
        return await self._call("GET", url, None)

    async def _call(self, method: str, url: str, data: bytes | None) -> Any:
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.request(method, url, data=data, proxy=self._proxy(url)) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
                declared = "json" in response.content_type
        except TimeoutError:  # aiohttp's ServerTimeoutError is one too
            raise Timeout(f"no reply within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise Unreachable(unreachable(e)) from None
        text = raw.decode("utf-8", errors="replace")
        if status >= 400:
            raise StatusError(status, _error_body(text), headers)
        try:
            return json.loads(text)
        except ValueError:
            if declared:  # a JSONDecodeError says the body is cut or garbled
                raise
            return text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def persist(
    send: Callable[[int], Awaitable[Any]], attempts: int, retry_unreachable: bool = True
) -> Any:
    """`send(attempt)` (1, 2, …) again after a `transient` failure, 0.5 s, 1 s, 2 s… apart
    (or as long as a Retry-After asks, at most 60 s), at most `attempts` times in all;
    then its last error. With `retry_unreachable` False, a server that cannot be reached
    is raised at once (a first contact: a wrong URL, or a server not started). The
    scorer's and the probe's servers are asked this way; the backend keeps a fuller
    budget of its own (rate-limit patience, a circuit breaker, garbled replies)."""
    for attempt in range(1, attempts + 1):
        try:
            return await send(attempt)
        except WireError as e:
            if not transient(e) or attempt == attempts:
                raise
            if not retry_unreachable and isinstance(e, Unreachable):
                raise
            asked = retry_after(e)  # a 429's Retry-After, as the server asked (at most 60 s)
            await asyncio.sleep(min(60.0, asked) if asked is not None else 0.5 * 2 ** (attempt - 1))
