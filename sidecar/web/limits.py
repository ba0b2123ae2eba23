"""Request budgets of the webhook port: per source address, per failing source, and overall.

Checked before anything that reads a body or writes, so a flood costs a dict lookup per request.
A source is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so keying by
address would hand it billions of fresh budgets). The map of sources is bounded and forgets the
least recently seen one first: a spray of addresses cannot grow memory, and a sender that keeps
sending stays at the recent end, so it cannot shed its own exhausted budget that way.

Each source has two budgets: its requests, and its requests that fail authentication (source
allow-list, size, signature), which is smaller, so a sender that cannot sign is held to a trickle
while the desks' signed deliveries from other addresses go through. The overall bucket
(`webhook.rate_limit_per_second`) is taken last, only by requests their source's budgets let
through, so one address cannot spend it for everybody.

The per-source state is two floats and a stamp in a slotted object rather than two
`sidecar.ratelimit.TokenBucket`s (an asyncio lock each): thousands of them are kept, and a failing
budget must be looked at without being spent.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from sidecar.ratelimit import TokenBucket

MAX_SOURCES = 4096


@functools.lru_cache(maxsize=MAX_SOURCES)
def source_key(host: str) -> str:
    """The budget a peer address is charged to: the address itself for IPv4 (an IPv4-mapped IPv6 peer
    included), its /64 for IPv6; the text as given when it is not an address. Cached (as many hosts as
    budgets are kept): parsing an address costs more than the rest of `admit`, and desks send from few."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Budgets:
    __slots__ = ("failures", "requests", "stamp")

    def __init__(self, requests: float, failures: float, stamp: float) -> None:
        self.requests = requests
        self.failures = failures
        self.stamp = stamp


class SourceLimits:
    """`admit(host)` before a request is worked on; `failed(host)` when it fails authentication."""

    def __init__(
        self,
        overall_per_second: float,
        per_source: float,
        failures_per_source: float,
        *,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overall = TokenBucket(overall_per_second, burst=max(1, int(overall_per_second)))
        self._per_source = float(per_source)
        self._failures = float(failures_per_source)
        self._max = max_sources
        self._clock = clock
        self._sources: OrderedDict[str, _Budgets] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def admit(self, host: str) -> float:
        """0.0 when the request may proceed (a token is spent), else the seconds to wait before retrying."""
        budgets = self._refilled(source_key(host))
        if budgets.failures < 1:
            return (1 - budgets.failures) / self._failures
        if budgets.requests < 1:
            return (1 - budgets.requests) / self._per_source
        wait = self._overall.try_take()
        if wait:
            return wait
        budgets.requests -= 1
        return 0.0

    def failed(self, host: str) -> None:
        """Charge one failed authentication to the source's smaller budget."""
        budgets = self._refilled(source_key(host))
        budgets.failures = max(0.0, budgets.failures - 1)

    def _refilled(self, key: str) -> _Budgets:
        now = self._clock()
        budgets = self._sources.get(key)
        if budgets is None:
            budgets = _Budgets(self._per_source, self._failures, now)
            self._sources[key] = budgets
            if len(self._sources) > self._max:
                self._sources.popitem(last=False)
            return budgets
        self._sources.move_to_end(key)
        elapsed = max(0.0, now - budgets.stamp)
        budgets.requests = min(self._per_source, budgets.requests + elapsed * self._per_source)
        budgets.failures = min(self._failures, budgets.failures + elapsed * self._failures)
        budgets.stamp = now
        return budgets


def retry_after(wait: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
