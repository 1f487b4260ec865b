"""Pacing for one endpoint: a bound on requests in flight that backs off under 429s.

Additive increase, multiplicative decrease (TCP's rule): each success lets one more
request fly, up to `--concurrency`; a rate limit halves the bound (at most once a
second, so one burst of 429s is one signal, a strike). A Retry-After pauses every request
to the endpoint, not only the one that got it. After `threshold` strikes with no success
between them the circuit opens: nobody sends until the pause is over (Retry-After, or a
doubling pause up to `max_pause`), and the run resumes with one request at a time.
A run under sustained 429s therefore slows to a trickle instead of hammering, and
recovers by itself when the server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class Throttle:
    """A shared bound on requests in flight, with a circuit breaker for rate limits."""

    def __init__(
        self,
        limit: int,
        threshold: int = 3,
        base_pause: float = 1.0,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_limit = max(1, limit)
        self.limit = self.max_limit
        self.threshold = threshold
        self.base_pause = base_pause
        self.max_pause = max_pause
        self.clock = clock
        self.in_flight = 0
        self.strikes = 0  # rate limits since the last success
        self.paused_until = 0.0
        self.openings = 0  # how often the circuit opened (reported in the manifest)
        self._last_cut = -1e9
        self._cond: asyncio.Condition | None = None

    @property
    def cond(self) -> asyncio.Condition:
        if self._cond is None:  # made lazily: it binds to the running loop
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        async with self.cond:
            while True:
                pause = self.paused_until - self.clock()
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.cond.wait(), pause)
                    continue
                if self.in_flight < self.limit:
                    self.in_flight += 1
                    return
                await self.cond.wait()

    async def release(self, outcome: str, retry_after: float | None = None) -> None:
        """Give a slot back. outcome: 'ok', 'rate_limited' or 'error' (no signal)."""
        async with self.cond:
            self.in_flight -= 1
            now = self.clock()
            if outcome == "ok":
                self.strikes = 0
                self.limit = min(self.max_limit, self.limit + 1)
            elif outcome == "rate_limited":
                if retry_after:  # the server asked the client, not one request, to wait
                    self.paused_until = max(self.paused_until, now + retry_after)
                if now - self._last_cut >= 1.0:  # a burst of 429s is one signal
                    self.strikes += 1
                    self.limit = max(1, self.limit // 2)
                    self._last_cut = now
                    if self.strikes == self.threshold:
                        self.openings += 1
                if self.strikes >= self.threshold:
                    doubling = self.base_pause * 2 ** (self.strikes - self.threshold)
                    pause = min(self.max_pause, max(retry_after or 0.0, doubling))
                    self.paused_until = max(self.paused_until, now + pause)
                    self.limit = 1
            self.cond.notify_all()
