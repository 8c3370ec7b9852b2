"""A client-side rate limit for one gateway, shared by every concurrent send in the process, so
that the notifier slows down instead of hammering the gateway into 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`rate_per_s` sends per second on average, at most `burst` at once.

    Each `acquire()` takes a token at once and, when the bucket is in debt, waits until its token
    has been earned. Taking first and waiting afterwards reserves the callers' turns in the order
    they came, with no lock held across the wait (the arithmetic between two awaits is atomic
    under asyncio). A caller cancelled while it waits does not return its token: the bucket errs
    on the slow side.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now

    async def acquire(self) -> None:
        """Wait for this caller's turn to send."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate_per_s)

    def hold(self, seconds: float) -> None:
        """The receiver asked for a pause (429 Retry-After): no send starts in the next `seconds`,
        whichever caller it belongs to. A pause shorter than the debt already owed changes nothing."""
        if seconds <= 0:
            return
        self._refill()
        # The next acquire() owes exactly `seconds` once its own token is taken.
        self._tokens = min(self._tokens, 1.0 - seconds * self.rate_per_s)
