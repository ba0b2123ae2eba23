"""GET {prefix}/health: the operations guide's JSON, computed from real state; 503 when unhealthy.

The plain answer has exactly the guide's keys; `?verbose=1` adds the chain view and the problems,
whose texts pass the secret redactor (an RPC error may echo what a proxy was sent).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from sidecar.observe.health import HealthState
from sidecar.observe.logs import current_redactor
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.status import queue_figures


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC to the second, as the guide shows: 2024-01-15T10:30:00Z."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def health_report(store: Store, health: HealthState, metrics: Metrics) -> dict[str, Any]:
    figures = await store.read("health figures", queue_figures)
    healthy = health.healthy
    metrics.set_queue(figures.pending_events, figures.failed_events)
    metrics.set_health(healthy, health.chain.reachable)
    report: dict[str, Any] = {
        "healthy": healthy,
        "jira_status": health.desks.get("jira", "not_configured"),
        "waldur_status": health.desks.get("waldur", "not_configured"),
        "last_sync": iso(figures.last_sync),
        "pending_events": figures.pending_events,
        "failed_events": figures.failed_events,
    }
    return report


def health_endpoint(store: Store, health: HealthState, metrics: Metrics) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        report = await health_report(store, health, metrics)
        if request.query_params.get("verbose") in ("1", "true"):
            redact = current_redactor()
            report["chain"] = {
                "reachable": health.chain.reachable,
                "chain_id": health.chain.chain_id,
                "head_height": health.chain.head_height,
                "catching_up": health.chain.catching_up,
                "last_error": redact(health.chain.last_error) if health.chain.last_error else None,
            }
            report["problems"] = {name: redact(text) for name, text in health.problems.items()}
        return JSONResponse(report, status_code=200 if report["healthy"] else 503)

    return endpoint
