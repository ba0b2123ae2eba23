"""GET {prefix}/health: the operations guide's JSON, computed from real state; 503 when unhealthy."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.status import queue_figures


def iso(ts: float | None) -> str | None:
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
            report["chain"] = {
                "reachable": health.chain.reachable,
                "chain_id": health.chain.chain_id,
                "head_height": health.chain.head_height,
                "catching_up": health.chain.catching_up,
                "last_error": health.chain.last_error,
            }
            report["problems"] = dict(health.problems)
        return JSONResponse(report, status_code=200 if report["healthy"] else 503)

    return endpoint
