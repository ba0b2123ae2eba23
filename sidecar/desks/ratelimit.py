"""A client-side token bucket per desk: stay under the desk's limit instead of bouncing off its 429s."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """`rate` requests per second on average, bursts up to `burst`; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def try_take(self) -> float:
        """Take a token without waiting: 0.0 when taken, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:  # callers queue in order: no starvation under load
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
