"""GET {prefix}/health: the operations guide's JSON, computed from real state; 503 when unhealthy.

The plain answer has exactly the guide's keys; `?verbose=1` adds the chain view and the problems,
whose texts pass the secret redactor and lose the credentials of any URL in them (an RPC error may
echo what a proxy was sent). Verbose is answered only where `verbose` is allowed: on the observe
listener, or on the public port when there is no observe listener.

The database figures are read at most once per second, however many requests arrive: a health
flood on the public port costs one read a second, not one per request.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from sidecar.observe.health import HealthState
from sidecar.observe.logs import current_redactor
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.pauses import PauseBook
from sidecar.store.status import QueueFigures, queue_figures
from sidecar.timestamps import iso
from sidecar.urls import scrub_urls

FIGURES_TTL = 1.0


class CachedFigures:
    """The queue figures, read from the store at most once per `ttl` seconds; concurrent callers
    share one read. `query` is the read transaction (tests pass a counting wrapper). `pauses`: the
    operators' pauses in force (held in memory, no read), which verbose health lists."""

    def __init__(
        self,
        store: Store,
        ttl: float = FIGURES_TTL,
        *,
        query: Callable[[sqlite3.Connection], QueueFigures] = queue_figures,
        clock: Callable[[], float] = time.monotonic,
        pauses: PauseBook | None = None,
    ) -> None:
        self._store = store
        self.pauses = pauses
        self._ttl = ttl
        self._query = query
        self._clock = clock
        self._lock = asyncio.Lock()
        self._value: QueueFigures | None = None
        self._read_at = 0.0

    def _fresh(self) -> QueueFigures | None:
        if self._value is not None and self._clock() - self._read_at < self._ttl:
            return self._value
        return None

    async def get(self) -> QueueFigures:
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._fresh()  # another request read them while this one waited
            if cached is not None:
                return cached
            value = await self._store.read("health figures", self._query)
            self._value, self._read_at = value, self._clock()
            return value


async def health_report(figures: CachedFigures, health: HealthState, metrics: Metrics) -> dict[str, Any]:
    return report_of(await figures.get(), health, metrics)


def report_of(queue: QueueFigures, health: HealthState, metrics: Metrics) -> dict[str, Any]:
    """The guide's health answer from one read of the figures (the verbose parts use the same read)."""
    healthy = health.healthy
    metrics.set_queue(queue.pending_events, queue.failed_events)
    metrics.set_health(healthy, health.chain.reachable)
    report: dict[str, Any] = {
        "healthy": healthy,
        "jira_status": health.desks.get("jira", "not_configured"),
        "waldur_status": health.desks.get("waldur", "not_configured"),
        "last_sync": iso(queue.last_sync),
        "pending_events": queue.pending_events,
        "failed_events": queue.failed_events,
    }
    return report


def shown(text: str) -> str:
    """A problem or error text as health shows it: secrets masked, URLs without credentials."""
    return scrub_urls(current_redactor()(text))


def paused_report(book: PauseBook) -> list[dict[str, Any]]:
    """The pauses in force, as verbose health lists them (desk "" is every desk)."""
    return [
        {"direction": p.direction, "desk": p.desk, "since": iso(p.since), "by": shown(p.by), "reason": shown(p.reason)}
        for p in book.pauses
    ]


def health_endpoint(figures: CachedFigures, health: HealthState, metrics: Metrics, *, verbose: bool) -> Any:
    """`verbose`: whether `?verbose=1` is honoured here (elsewhere it is ignored: the plain answer)."""

    async def endpoint(request: Request) -> JSONResponse:
        queue = await figures.get()
        report = report_of(queue, health, metrics)
        if verbose and request.query_params.get("verbose") in ("1", "true"):
            report["chain"] = {
                "reachable": health.chain.reachable,
                "chain_id": health.chain.chain_id,
                "head_height": health.chain.head_height,
                "catching_up": health.chain.catching_up,
                "last_error": shown(health.chain.last_error) if health.chain.last_error else None,
            }
            report["problems"] = {name: shown(text) for name, text in health.problems.items()}
            report["inbound"] = {
                "pending_rereads": queue.inbound_pending,
                "dead_rereads": queue.inbound_dead,
                "conflicts_open": queue.conflicts_open,
            }
            if figures.pauses is not None:  # wired by app.py; absent where nothing can be paused
                report["paused"] = paused_report(figures.pauses)
        return JSONResponse(report, status_code=200 if report["healthy"] else 503)

    return endpoint
