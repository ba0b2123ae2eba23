"""Rate limiting and fault injection shared by the desk simulators.

Both are deterministic given a seed so that a failing test can be replayed exactly, and both
read an injectable clock, so a test moves time on purpose instead of racing the wall clock.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

Clock = Callable[[], float]  # monotonic seconds

# Faults that answer before the desk handles the request: nothing was applied.
BEFORE_KINDS = ("500", "503", "429", "timeout", "drop")
# Faults after the desk applied and committed the request: its answer is lost on the way back.
# `apply-drop` resets the connection instead of answering; `apply-delay` holds the answer past the
# client's timeout. RFC 9110 section 9.2.2: when a connection closes before the response arrives the
# client cannot tell whether a non-idempotent request (a create) was processed, which is exactly the
# case a retried create must survive without a duplicate.
APPLIED_KINDS = ("apply-drop", "apply-delay")
FAULT_KINDS = BEFORE_KINDS + APPLIED_KINDS


class ManualClock:
    """A monotonic clock that moves only when a test calls `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        with self._lock:
            self._now += seconds


class Fired(NamedTuple):
    """One fault that fired: on which request."""

    kind: str
    method: str
    path: str


class LostAnswer(NamedTuple):
    """A request the desk applied (answering `status`) whose answer the client never got."""

    kind: str
    method: str
    path: str
    status: int


class TokenBucket:
    """A requests/s limiter: `rate` tokens per second, at most `burst` stored."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> tuple[bool, float, int]:
        """Take one token: (allowed, seconds until one is available, tokens left)."""
        with self._lock:
            now = self.clock()
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
            self._stamp = self.clock()


class EndpointBuckets:
    """One TokenBucket per endpoint key, made on first use (Jira's burst limit: per endpoint and method).

    The keys are route templates, so their number is bounded by the simulator's route table.
    """

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, key: str) -> TokenBucket:
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
            return found

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._buckets)


class PerKeyWindow:
    """At most `limit` events per key within a sliding `window` seconds (per-issue writes)."""

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, float]:
        """Record one event: (allowed, seconds until the next one would be allowed)."""
        with self._lock:
            now = self.clock()
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
    """One injected failure; `method`, `path_contains` and `path` (exact) restrict which request it hits."""

    kind: str
    method: str | None = None
    path_contains: str | None = None
    retry_after: int | None = None
    path: str | None = None
    queued: bool = False  # scripted by inject(), not drawn at random or an outage's

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path is not None and self.path != path:
            return False
        return not (self.path_contains and self.path_contains not in path)


class FaultPlan:
    """A scripted queue of faults (consumed first) plus a seeded random fault probability.

    `timeout` hangs the request for `hang_seconds` (beyond any sane client timeout) and then drops
    the connection; `drop` closes the socket without answering; `500`/`503` answer with that status;
    `429` answers like the desk's rate limiter (Retry-After 1 s unless given). `apply-drop` and
    `apply-delay` let the desk handle and commit the request first, then reset the connection or
    hold the answer for `hang_seconds`. `outage()` fails every request for a span of `clock` time.
    `fired` records every fault with its request; `lost_answers` every applied request whose answer
    was withheld, with the status the desk had answered.
    """

    def __init__(
        self,
        probability: float = 0.0,
        kinds: tuple[str, ...] = BEFORE_KINDS,
        seed: int = 0,
        hang_seconds: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        for kind in kinds:
            _check_kind(kind)
        self.probability = probability
        self.kinds = kinds
        self.hang_seconds = hang_seconds
        self.clock = clock
        self._rng = random.Random(seed)
        self._queue: list[Fault] = []
        self._outage: tuple[Fault, float] | None = None
        self._lock = threading.Lock()
        self.fired: list[Fired] = []
        self.lost_answers: list[LostAnswer] = []

    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Queue `count` faults of `kind` for the next matching requests."""
        _check_kind(kind)
        with self._lock:
            self._queue.extend(Fault(kind, method, path_contains, retry_after, path, queued=True) for _ in range(count))

    def outage(self, kind: str, seconds: float, *, retry_after: int | None = None) -> None:
        """Fail every request with `kind` for the next `seconds`."""
        _check_kind(kind)
        with self._lock:
            self._outage = (Fault(kind, retry_after=retry_after), self.clock() + seconds)

    def in_outage(self) -> bool:
        with self._lock:
            return self._outage_fault() is not None

    def _outage_fault(self) -> Fault | None:
        """The outage's fault while it lasts (the caller holds the lock)."""
        if self._outage is not None and self.clock() < self._outage[1]:
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
                self.fired.append(Fired(fault.kind, method, path))
            return fault

    def put_back(self, fault: Fault, method: str, path: str) -> None:
        """An applied fault (`apply-drop`, `apply-delay`) met a request the desk refused before handling it
        (authentication, its rate limiter, validation): nothing was applied, so nothing was lost. It is
        withdrawn from `fired`, and a scripted one goes back to the front of the queue for the next matching
        request (a test that scripts lost creates gets them even when its first creates meet a 429)."""
        with self._lock:
            self.fired.remove(Fired(fault.kind, method, path))
            if fault.queued:
                self._queue.insert(0, fault)

    def record_lost_answer(self, kind: str, method: str, path: str, status: int) -> None:
        """The simulator withheld the answer `status` of a request it had applied."""
        with self._lock:
            self.lost_answers.append(LostAnswer(kind, method, path, status))

    def fired_on(self, method: str, path: str, kind: str | None = None) -> list[Fired]:
        """Faults that fired on exactly this method and path (and kind, if given)."""
        with self._lock:
            return [f for f in self.fired if f.method == method.upper() and f.path == path and kind in (None, f.kind)]

    def lost_on(self, method: str, path: str, status: int | None = None) -> list[LostAnswer]:
        """Applied requests on exactly this method and path whose answer (of `status`, if given) was lost."""
        with self._lock:
            return [
                a
                for a in self.lost_answers
                if a.method == method.upper() and a.path == path and status in (None, a.status)
            ]


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}")
