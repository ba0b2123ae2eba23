"""Rate limiting and fault injection shared by the desk simulators.

Both are deterministic given a seed so that a failing test can be replayed exactly.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

FAULT_KINDS = ("500", "503", "429", "timeout", "drop")


class TokenBucket:
    """Global requests/s limiter: `rate` tokens per second, at most `burst` stored."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> tuple[bool, float, int]:
        """Take one token: (allowed, seconds until one is available, tokens left)."""
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True, 0.0, int(self._tokens)
            return False, (1.0 - self._tokens) / self.rate, 0

    def near_limit(self) -> bool:
        """Fewer than a fifth of the burst left: Jira then adds X-RateLimit-NearLimit."""
        with self._lock:
            return self._tokens < self.burst * 0.2

    def drain(self) -> None:
        """Empty the bucket (tests use it to force a 429 on the next request)."""
        with self._lock:
            self._tokens = 0.0
            self._stamp = time.monotonic()


class PerKeyWindow:
    """At most `limit` events per key within a sliding `window` seconds (per-issue writes)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, float]:
        """Record one event: (allowed, seconds until the next one would be allowed)."""
        with self._lock:
            now = time.monotonic()
            events = self._events.setdefault(key, deque())
            while events and now - events[0] >= self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False, self.window - (now - events[0])
            events.append(now)
            return True, 0.0


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1, as Jira and Waldur send them."""
    return str(max(1, math.ceil(seconds)))


@dataclass
class Fault:
    """One injected failure; `method`/`path_contains` restrict which request it hits."""

    kind: str
    method: str | None = None
    path_contains: str | None = None
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path_contains and self.path_contains not in path)


class FaultPlan:
    """A scripted queue of faults (consumed first) plus a seeded random fault probability.

    `timeout` hangs the request for `hang_seconds` (beyond any sane client timeout) and then drops
    the connection; `drop` closes the socket without answering; `500`/`503` answer with that status;
    `429` answers like the desk's rate limiter (Retry-After 1 s unless given). `outage()` fails every
    request for a span of time, like a desk that is down.
    """

    def __init__(
        self,
        probability: float = 0.0,
        kinds: tuple[str, ...] = FAULT_KINDS,
        seed: int = 0,
        hang_seconds: float = 30.0,
    ) -> None:
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        self.probability = probability
        self.kinds = kinds
        self.hang_seconds = hang_seconds
        self._rng = random.Random(seed)
        self._queue: list[Fault] = []
        self._outage: tuple[Fault, float] | None = None
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str, str]] = []

    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Queue `count` faults of `kind` for the next matching requests."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queue.extend(Fault(kind, method, path_contains, retry_after) for _ in range(count))

    def outage(self, kind: str, seconds: float, *, retry_after: int | None = None) -> None:
        """Fail every request with `kind` for the next `seconds`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._outage = (Fault(kind, retry_after=retry_after), time.monotonic() + seconds)

    def in_outage(self) -> bool:
        with self._lock:
            return self._outage_fault() is not None

    def _outage_fault(self) -> Fault | None:
        """The outage's fault while it lasts (the caller holds the lock)."""
        if self._outage is not None and time.monotonic() < self._outage[1]:
            return self._outage[0]
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._outage = None
            self.probability = 0.0

    def pick(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any (scripted first, then random)."""
        with self._lock:
            fault = self._outage_fault()
            for i, queued in enumerate(self._queue):
                if fault is None and queued.matches(method, path):
                    fault = self._queue.pop(i)
                    break
            if fault is None and self.probability > 0 and self._rng.random() < self.probability:
                fault = Fault(self._rng.choice(self.kinds))
            if fault is not None:
                self.fired.append((fault.kind, method, path))
            return fault
