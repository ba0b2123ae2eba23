"""Outbound webhook delivery for the simulators: retries, duplicates and late deliveries.

Real desks deliver at least once, sometimes twice, sometimes very late; the sidecar's receiver
must cope, so the simulator can do all of that on purpose, reproducibly (seeded).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

HeadersFor = Callable[[int], dict[str, str]]  # retry number -> headers for that attempt


def waldur_hook_body(payload: Mapping[str, Any], content_type: str) -> tuple[bytes, str]:
    """The body Waldur posts for one event (waldur_core/logging/models.py WebHook.process).

    "json": `requests.post(json=payload)`. "form": `requests.post(data=payload)`, which form-encodes a
    dict value by iterating it, so `context` arrives as its KEY NAMES only (one `context=` pair per key)
    and the values are lost: only a hook registered as JSON tells the receiver which issue changed.
    """
    if content_type == "json":
        return json.dumps(payload).encode(), "application/json"
    pairs: list[tuple[str, str]] = []
    for key, value in payload.items():
        items = list(value) if isinstance(value, (Mapping, list, tuple)) else [value]
        pairs.extend((key, str(item)) for item in items)
    return urlencode(pairs).encode(), "application/x-www-form-urlencoded"


def default_retry_statuses() -> frozenset[int]:
    """Jira retries on 408, 409, 425, 429 and every 5xx."""
    return frozenset({408, 409, 425, 429, *range(500, 600)})


@dataclass
class DeliveryAttempt:
    """One POST to the receiver, as the tests inspect it."""

    identifier: str
    retry: int
    url: str
    event: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)


# Connections a simulator's webhook dispatcher keeps to the receiver: deliveries beyond them wait for one.
DISPATCH_CONNECTIONS = 8


@dataclass
class _Options:
    duplicate: bool = False
    delay: float | None = None
    hold: bool = False  # wait for release_held(): a late delivery whose order a test controls


class WebhookSender:
    """Delivers bodies on the simulator's loop; `submit` may be called from any thread."""

    def __init__(
        self,
        *,
        max_retries: int = 3,
        backoff: float = 0.05,
        timeout: float = 5.0,
        retry_statuses: frozenset[int] | None = None,
        duplicate_probability: float = 0.0,
        late_probability: float = 0.0,
        late_delay: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.retry_statuses = default_retry_statuses() if retry_statuses is None else retry_statuses
        self.duplicate_probability = duplicate_probability
        self.late_probability = late_probability
        self.late_delay = late_delay
        self._rng = random.Random(seed)
        self._scripted: list[_Options] = []
        self._lock = threading.Lock()
        self.attempts: list[DeliveryAttempt] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._released: asyncio.Event | None = None
        self._sending: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._released = asyncio.Event()
        # Deliveries beyond the connections wait here, not in httpcore's queue, whose every hand-over scans all
        # the requests waiting in it (a backlog of deliveries made each one cost more, so the backlog grew).
        self._sending = asyncio.Semaphore(DISPATCH_CONNECTIONS)
        # No pool timeout: a delivery waits for a connection, it does not fail for it. A few connections also keep
        # httpcore's pool, whose upkeep grows with the square of its connections, from costing the simulator more
        # CPU than the deliveries themselves (a soak sends dozens a second).
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, pool=None),
            limits=httpx.Limits(max_connections=DISPATCH_CONNECTIONS, max_keepalive_connections=DISPATCH_CONNECTIONS),
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        self._loop = None

    def next_options(self, *, duplicate: bool = False, delay: float | None = None, hold: bool = False) -> None:
        """Script the next submitted event: deliver it twice and/or `delay` seconds late, or (`hold`)
        only once `release_held()` is called."""
        with self._lock:
            self._scripted.append(_Options(duplicate, delay, hold))

    def release_held(self) -> None:
        """Let every held delivery go (thread-safe)."""
        loop, released = self._loop, self._released
        if loop is not None and released is not None:
            loop.call_soon_threadsafe(released.set)

    @property
    def idle(self) -> bool:
        """No delivery is queued, waiting, or in flight."""
        with self._lock:
            return self._pending == 0

    def attempts_for(self, event: str | None = None) -> list[DeliveryAttempt]:
        with self._lock:
            return [a for a in self.attempts if event is None or a.event == event]

    def forget_attempts(self) -> None:
        """Drop the attempts recorded so far (a long run's log would grow for as long as it runs)."""
        with self._lock:
            self.attempts.clear()  # in place: a simulator may hold the same list (WaldurSim.hook_deliveries)

    def submit(self, url: str, identifier: str, event: str, body: bytes, headers_for: HeadersFor) -> None:
        """Queue one event (thread-safe); duplicates and lateness follow the script or the dice."""
        with self._lock:
            options = self._scripted.pop(0) if self._scripted else None
            if options is None:
                late = self.late_probability > 0 and self._rng.random() < self.late_probability
                options = _Options(
                    duplicate=self.duplicate_probability > 0 and self._rng.random() < self.duplicate_probability,
                    delay=self.late_delay if late else None,
                )
            copies = 2 if options.duplicate else 1
            self._pending += copies
        loop = self._loop
        if loop is None:
            with self._lock:
                self._pending -= copies
            return
        for _ in range(copies):
            loop.call_soon_threadsafe(self._spawn, url, identifier, event, body, headers_for, options)

    def _spawn(
        self, url: str, identifier: str, event: str, body: bytes, headers_for: HeadersFor, options: _Options
    ) -> None:
        delivery = self._deliver(url, identifier, event, body, headers_for, options)
        task = asyncio.get_running_loop().create_task(delivery)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, url: str, identifier: str, event: str, body: bytes, headers_for: HeadersFor, options: _Options
    ) -> None:
        try:
            if options.hold and self._released is not None:
                await self._released.wait()  # late until the test says so
            if options.delay:
                await asyncio.sleep(options.delay)  # a deliberately late delivery
            assert self._client is not None and self._sending is not None
            for retry in range(self.max_retries + 1):
                headers = headers_for(retry)
                attempt = DeliveryAttempt(identifier, retry, url, event, body, headers)
                with self._lock:
                    self.attempts.append(attempt)
                try:
                    async with self._sending:
                        resp = await self._client.post(url, content=body, headers=headers)
                    attempt.status = resp.status_code
                    if resp.status_code not in self.retry_statuses:
                        return
                except httpx.HTTPError as exc:
                    attempt.error = repr(exc)
                if retry < self.max_retries:
                    await asyncio.sleep(self.backoff * (2**retry))
        finally:
            with self._lock:
                self._pending -= 1
