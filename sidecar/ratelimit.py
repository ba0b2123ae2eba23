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
        self._held_until = 0.0  # `hold`: nothing is taken before this moment, whatever the rate
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def hold(self, seconds: float) -> None:
        """Take nothing for `seconds` from now (a server's Retry-After for what this bucket paces)."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def try_take(self) -> float:
        """Take a token without waiting: 0.0 when taken, else the seconds until one is available."""
        held = self._held_until - self._clock()
        if held > 0:
            return held
        if self.rate <= 0:
            return 0.0
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> float:
        """Wait for a token; returns the seconds spent waiting out a `hold` (the rest was pacing)."""
        if self.rate <= 0 and self._held_until <= self._clock():
            return 0.0
        async with self._lock:  # callers queue in order: no starvation under load
            started, slept = self._clock(), False
            while (wait := self._held_until - self._clock()) > 0:
                slept = True
                await asyncio.sleep(wait)
            held = self._clock() - started if slept else 0.0  # as slept (timers overshoot), not as planned
            if self.rate <= 0:
                return held
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return held
                await asyncio.sleep((1 - self._tokens) / self.rate)
