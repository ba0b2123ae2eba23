"""The in-process activity feed: what the sidecar just did, fanned out to watchers (gRPC WatchEvents).

Publishers (follower, desk workers, signer, inbound engine, control calls) call `publish` from the event
loop; it never blocks and never fails them. Each subscriber has a bounded queue: a slow one loses its
oldest events and is told how many, by one event of kind "watch", action "dropped", where they were.
Entries carry ids, kinds and states only; never ticket content, error texts or secrets.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

KINDS = ("event", "job", "intent", "conflict", "inbound", "pause")
WATCH = "watch"  # the feed's own notices (dropped events); delivered whatever the kinds filter
DEFAULT_CAPACITY = 1_000
DETAIL_MAX = 200


@dataclass(frozen=True)
class Activity:
    seq: int  # monotonic within one process
    at: float
    kind: str
    action: str
    ticket_id: str = ""
    desk: str = ""
    direction: str = ""
    height: int = 0
    id: int = 0
    detail: str = ""


@dataclass(frozen=True)
class WatchFilter:
    """Empty fields match everything."""

    kinds: frozenset[str] = frozenset()
    ticket_id: str = ""
    desk: str = ""

    def matches(self, item: Activity) -> bool:
        if self.kinds and item.kind not in self.kinds:
            return False
        if self.ticket_id and item.ticket_id != self.ticket_id:
            return False
        return not self.desk or item.desk == self.desk


class Subscription:
    """One watcher's queue. `next` returns None once the feed is closed and the queue is drained."""

    def __init__(self, wanted: WatchFilter, capacity: int, clock: Callable[[], float]) -> None:
        self.wanted = wanted
        self._capacity = capacity
        self._clock = clock
        self._items: deque[Activity] = deque()
        self._wake = asyncio.Event()
        self._dropped = 0
        self._dropped_seq = 0  # seq of the newest dropped event: where the notice stands in the stream
        self.closed = False

    def offer(self, item: Activity) -> None:
        if len(self._items) >= self._capacity:
            lost = self._items.popleft()
            self._dropped += 1
            self._dropped_seq = lost.seq
        self._items.append(item)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> Activity | None:
        while True:
            if self._dropped:
                notice = Activity(
                    self._dropped_seq, self._clock(), WATCH, "dropped", detail=f"{self._dropped} events dropped"
                )
                self._dropped = 0
                return notice
            if self._items:
                return self._items.popleft()
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()


class ActivityFeed:
    """Created once by app.py and handed to each component that publishes."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self._capacity = capacity
        self._clock = clock
        self._seq = itertools.count(1)
        self._subscribers: list[Subscription] = []
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(
        self,
        kind: str,
        action: str,
        *,
        ticket_id: str = "",
        desk: str = "",
        direction: str = "",
        height: int = 0,
        id: int = 0,  # the ControlEvent field's name
        detail: str = "",
    ) -> None:
        """Record one thing done; O(subscribers), never blocks. A seq is spent only when someone watches;
        nothing is recorded once the feed is closed."""
        if self._closed or not self._subscribers:
            return
        item = Activity(
            next(self._seq), self._clock(), kind, action, ticket_id, desk, direction, height, id, detail[:DETAIL_MAX]
        )
        for sub in self._subscribers:
            if sub.wanted.matches(item):
                sub.offer(item)

    @contextmanager
    def subscribe(self, wanted: WatchFilter = WatchFilter()) -> Iterator[Subscription]:
        """A subscription for the length of the `with` block; removed however the block ends."""
        sub = Subscription(wanted, self._capacity, self._clock)
        if self._closed:
            sub.close()
        self._subscribers.append(sub)
        try:
            yield sub
        finally:
            self._subscribers.remove(sub)

    def close(self) -> None:
        """At shutdown: every watcher's stream ends once it has read what is queued."""
        self._closed = True
        for sub in self._subscribers:
            sub.close()


def unknown_kinds(kinds: Iterable[str]) -> list[str]:
    return sorted(set(kinds) - set(KINDS))
