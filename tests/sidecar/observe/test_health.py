"""GET /webhooks/health over real HTTP (uvicorn on port 0) on a real SQLite file: the guide's JSON exactly."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sidecar.observe.health import HealthState
from sidecar.observe.logs import setup_logging
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.web.server import WebServer, build_web_app
from tests.sidecar.observe.support import metric_value

GUIDE_KEYS = ["healthy", "jira_status", "waldur_status", "last_sync", "pending_events", "failed_events"]
LAST_SYNC = 1705314600.25  # 2024-01-15T10:30:00.25Z, the guide's example time
SECRET = "KNOWN-health-secret-5e1a"


@dataclass
class Served:
    url: str
    store: Store
    health: HealthState
    metrics: Metrics


def add_jobs_txn(conn: sqlite3.Connection) -> None:
    rows = [("a", "pending", None), ("b", "running", None), ("c", "dead", None), ("d", "done", LAST_SYNC),
            ("e", "done", LAST_SYNC - 60)]
    for key, state, finished in rows:
        conn.execute(
            "INSERT INTO jobs (dedupe_key, kind, desk, state, next_run_at, created_at, updated_at, finished_at)"
            " VALUES (?, 'create', 'jira', ?, 0, 0, 0, ?)",
            (key, state, finished),
        )


@pytest.fixture
def redacting_logs() -> Iterator[None]:
    setup_logging("info", "json", [SECRET], stream=io.StringIO())
    yield
    setup_logging("warning", "text", [], stream=io.StringIO())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    health, metrics = HealthState(), Metrics()
    web = WebServer(build_web_app("/webhooks", store, health, metrics), "127.0.0.1:0")
    task = asyncio.create_task(web.serve())
    await asyncio.wait_for(web.wait_started(), 10)
    try:
        yield Served(f"http://127.0.0.1:{web.port}", store, health, metrics)
    finally:
        web.stop()
        await asyncio.wait_for(task, 10)
        await store.close()


def make_healthy(health: HealthState) -> None:
    health.chain.reachable = True
    health.desks.update(jira="healthy", waldur="not_configured")


async def test_healthy_answer_is_exactly_the_guides_json(served: Served) -> None:
    make_healthy(served.health)
    await served.store.write("jobs", add_jobs_txn)
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{served.url}/webhooks/health", timeout=5)
    assert answer.status_code == 200
    doc = answer.json()
    assert list(doc) == GUIDE_KEYS
    assert doc == {
        "healthy": True,
        "jira_status": "healthy",
        "waldur_status": "not_configured",
        "last_sync": "2024-01-15T10:30:00Z",
        "pending_events": 2,
        "failed_events": 1,
    }
    assert metric_value(served.metrics, "servicedesk_health_check") == 1
    assert metric_value(served.metrics, "servicedesk_queue_pending") == 2
    assert metric_value(served.metrics, "servicedesk_queue_failed") == 1


async def test_unhealthy_answers_503_with_the_same_keys_and_null_last_sync(served: Served) -> None:
    make_healthy(served.health)
    served.health.desks["jira"] = "unhealthy"
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{served.url}/webhooks/health", timeout=5)
        served.health.desks["jira"] = "healthy"
        served.health.set_problem("chain", "no new block for 60s")
        stalled = await client.get(f"{served.url}/webhooks/health", timeout=5)
    assert answer.status_code == 503
    assert answer.json() == {
        "healthy": False,
        "jira_status": "unhealthy",
        "waldur_status": "not_configured",
        "last_sync": None,
        "pending_events": 0,
        "failed_events": 0,
    }
    assert stalled.status_code == 503 and stalled.json()["healthy"] is False
    assert metric_value(served.metrics, "servicedesk_health_check") == 0


@pytest.mark.usefixtures("redacting_logs")
async def test_verbose_adds_chain_and_problems_with_secrets_masked(served: Served) -> None:
    served.health.chain.last_error = f"node RPC status failed: bad token {SECRET}; Authorization: Basic dXNlcjpwdw=="
    served.health.set_problem("chain", f"proxy said {SECRET}")
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{served.url}/webhooks/health?verbose=1", timeout=5)
    assert answer.status_code == 503
    doc = answer.json()
    assert list(doc) == [*GUIDE_KEYS, "chain", "problems", "inbound"]
    assert doc["chain"]["reachable"] is False
    assert SECRET not in answer.text and "dXNlcjpwdw" not in answer.text
    assert doc["problems"] == {"chain": "proxy said <redacted>"}
