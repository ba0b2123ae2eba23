"""A health flood costs the database one read per second: the figures are cached, the health state is not.

Real HTTP to a real uvicorn server on a real SQLite file; reads are counted by wrapping the real
health query, and the cache's clock is a manual one, so the test needs no timing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devnet.sim_faults import ManualClock
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.status import QueueFigures, queue_figures
from sidecar.web.health import CachedFigures
from sidecar.web.server import WebServer, build_web_app
from tests.sidecar.observe.test_health import add_jobs_txn, make_healthy

FLOOD = 60


@dataclass
class Counted:
    url: str
    store: Store
    health: HealthState
    clock: ManualClock
    reads: list[int]


@pytest.fixture
async def counted(tmp_path: Path) -> AsyncIterator[Counted]:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    reads: list[int] = []

    def counting_query(conn: sqlite3.Connection) -> QueueFigures:
        reads.append(1)
        return queue_figures(conn)

    clock = ManualClock()
    health = HealthState()
    figures = CachedFigures(store, query=counting_query, clock=clock)
    web = WebServer(build_web_app("/webhooks", store, health, Metrics(), figures=figures), "127.0.0.1:0")
    task = asyncio.create_task(web.serve())
    await asyncio.wait_for(web.wait_started(), 10)
    try:
        yield Counted(f"http://127.0.0.1:{web.port}/webhooks/health", store, health, clock, reads)
    finally:
        web.stop()
        await asyncio.wait_for(task, 10)
        await store.close()


async def flood(url: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(url) for _ in range(FLOOD))))


async def test_a_flood_of_health_requests_reads_the_database_once_per_second(counted: Counted) -> None:
    make_healthy(counted.health)
    first = await flood(counted.url)
    assert [a.status_code for a in first] == [200] * FLOOD
    assert len(counted.reads) == 1  # sixty concurrent requests, one read

    await counted.store.write("jobs", add_jobs_txn)
    counted.clock.advance(0.5)
    within = await flood(counted.url)
    assert len(counted.reads) == 1
    assert {a.json()["pending_events"] for a in within} == {0}  # still the figures of the read above

    counted.clock.advance(0.5)  # a second after the read
    after = await flood(counted.url)
    assert len(counted.reads) == 2
    assert {a.json()["pending_events"] for a in after} == {2}


async def test_the_health_state_itself_is_never_stale(counted: Counted) -> None:
    make_healthy(counted.health)
    async with httpx.AsyncClient(timeout=5) as client:
        healthy = await client.get(counted.url)
        counted.health.desks["jira"] = "unhealthy"
        unhealthy = await client.get(counted.url)
    assert (healthy.status_code, unhealthy.status_code) == (200, 503)
    assert unhealthy.json()["jira_status"] == "unhealthy"
    assert len(counted.reads) == 1
