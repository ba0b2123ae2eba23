"""A token bucket: stay under a rate instead of bouncing off a limit, or refuse what is over it.

A leaf module: the desk clients pace their requests with it, the webhook port budgets its
senders, and the control API limits mutating calls, without any of them importing the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` requests per second on average, bursts up to `burst`; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: int | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self) -> float:
        """Take a token without waiting: 0.0 when taken, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:  # callers queue in order: no starvation under load
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
