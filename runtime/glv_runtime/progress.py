"""Is the consumer keeping up? Readiness turns false when it has lag and has made
no progress for `stall_timeout_s` (a stuck record, a partition that never moves),
even though the database and the broker both answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from glv_runtime import metrics


class ConsumerProgress:
    def __init__(self, last_commit: Callable[[], float], consumer: Callable[[], Any], stall_timeout_s: float) -> None:
        self._last_commit = last_commit
        self._consumer = consumer
        self._stall_timeout_s = stall_timeout_s
        self._caught_up_at = time.monotonic()
        self.lag = 0
        self.stalled = False
        self._task: asyncio.Task[None] | None = None

    def start(self, interval_s: float = 1.0) -> None:
        self._task = asyncio.create_task(self._watch(interval_s), name="consumer-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self, interval_s: float) -> None:
        # Evaluated on a timer, not only when /readyz is asked: "caught up" must be
        # noticed when it happens, or an idle hour would look like a stall.
        while True:
            with contextlib.suppress(Exception):
                await self.check()
            await asyncio.sleep(interval_s)

    async def check(self) -> bool:
        """Update and return `stalled`."""
        consumer = self._consumer()
        now = time.monotonic()
        if consumer is None:
            return self.stalled
        lag = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            # Against the committed offset, not the fetch position: a batch stuck in
            # its handler has been fetched (position at the end) but not committed.
            committed = await asyncio.wait_for(consumer.committed(tp), timeout=2)
            lag += max(0, highwater - (committed or 0))
        self.lag = lag
        if lag == 0:
            self._caught_up_at = now
        progress = max(self._last_commit(), self._caught_up_at)
        self.stalled = lag > 0 and now - progress > self._stall_timeout_s
        metrics.CONSUMER_STALLED.set(1 if self.stalled else 0)
        return self.stalled
