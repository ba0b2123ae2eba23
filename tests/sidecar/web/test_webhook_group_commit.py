"""Group-committed webhook intake over loopback HTTP to the real receiver (real store, real uvicorn): many
concurrent deliveries are each stored once with their audit rows in one valid chain, repeats inside one
group are found like any repeat, a failed group transaction answers every delivery of the group 503 and
stores none of it, and intake beyond webhook.max_queued_writes is still refused with 503."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from devnet.waiting import async_wait_until
from sidecar.config_schema import WebhookConfig
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.audit import verify_audit
from sidecar.store.db import GroupCommit, Store
from sidecar.store.webhooks import Recording
from sidecar.web.server import WebServer, build_web_app
from sidecar.web.webhooks import WebhookReceiver
from tests.sidecar.harness import read_rows
from tests.sidecar.web.test_webhook_hostile import jira_body, signed
from tests.sidecar.web.test_webhooks import SECRET


@dataclass
class Served:
    url: str
    db: Path
    intake: GroupCommit[Recording, bool]


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, max_queued_writes: int) -> AsyncIterator[Served]:
    db = tmp_path / "sidecar.db"
    store = await Store.open(str(db))
    metrics = Metrics()
    settings = replace(
        WebhookConfig(),
        max_queued_writes=max_queued_writes,
        rate_limit_per_second=100_000,
        rate_limit_per_source=100_000,
    )
    receiver = WebhookReceiver(settings, {"jira": SECRET, "waldur": None}, store, Auditor(store), metrics)
    assert receiver.intake is not None  # group commit is the default
    web = WebServer(build_web_app("/webhooks", store, HealthState(), metrics, receiver), "127.0.0.1:0")
    task = asyncio.create_task(web.serve())
    await asyncio.wait_for(web.wait_started(), 10)
    try:
        yield Served(f"http://127.0.0.1:{web.port}/webhooks/jira", db, receiver.intake)
    finally:
        web.stop()
        await asyncio.wait_for(task, 15)
        await store.close()


@contextlib.contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """The database's write lock taken from outside: the group being committed waits on it, and what
    arrives meanwhile waits for the next group."""
    holder = sqlite3.connect(db, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def post(client: httpx.AsyncClient, served: Served, n: int, identifier: str) -> asyncio.Task[httpx.Response]:
    body = jira_body(n)
    return asyncio.create_task(client.post(served.url, content=body, headers=signed(body, identifier)))


async def first_group_committing(client: httpx.AsyncClient, served: Served) -> asyncio.Task[httpx.Response]:
    """One delivery whose group is committing (waiting for the held lock): the next ones form a group."""
    first = post(client, served, 0, "first")
    await async_wait_until(
        lambda: served.intake.groups == 1 and served.intake.waiting == 0, timeout=30, what="the first group"
    )
    return first


def audit_chain_ok(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return verify_audit(conn).ok
    finally:
        conn.close()


async def test_many_concurrent_deliveries_are_each_stored_once_with_a_valid_audit_chain(tmp_path: Path) -> None:
    count = 300
    limits = httpx.Limits(max_connections=64)
    async with serving(tmp_path, max_queued_writes=count) as served, httpx.AsyncClient(limits=limits, timeout=60) as c:
        answers = await asyncio.gather(*(post(c, served, n, f"delivery-{n}") for n in range(count)))
        groups, written = served.intake.groups, served.intake.written
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "accepted")] * count
    stored = [d for (d,) in read_rows(served.db, "SELECT delivery_id FROM webhook_deliveries ORDER BY id")]
    assert sorted(stored) == sorted(f"delivery-{n}" for n in range(count))
    audited = read_rows(served.db, "SELECT details_json FROM audit WHERE event_type = 'webhook_accepted' ORDER BY id")
    assert [json.loads(d)["delivery_id"] for (d,) in audited] == stored  # one audit row each, in the same order
    assert audit_chain_ok(served.db)
    assert written == count and groups < count  # deliveries did share transactions


async def test_repeats_inside_one_group_are_stored_once(tmp_path: Path) -> None:
    async with serving(tmp_path, max_queued_writes=16) as served, httpx.AsyncClient(timeout=60) as client:
        with write_lock_held(served.db):
            first = await first_group_committing(client, served)
            body = jira_body(1)
            same = [
                asyncio.create_task(client.post(served.url, content=body, headers=signed(body, identifier)))
                for identifier in ("delivery-1", "delivery-1", "replayed-under-a-new-id")
            ]
            other = post(client, served, 2, "delivery-2")
            await async_wait_until(lambda: served.intake.waiting == 4, timeout=30, what="four deliveries to wait")
        answers = [await first, *(await asyncio.gather(*same)), await other]
        groups = served.intake.groups
    assert [a.json()["status"] for a in answers] == ["accepted", "accepted", "duplicate", "duplicate", "accepted"]
    assert all(a.status_code == 200 for a in answers)
    assert groups == 2  # the four waited together
    stored = read_rows(served.db, "SELECT delivery_id FROM webhook_deliveries ORDER BY id")
    assert stored == [("first",), ("delivery-1",), ("delivery-2",)]
    assert read_rows(served.db, "SELECT COUNT(*) FROM audit WHERE event_type = 'webhook_accepted'") == [(3,)]
    assert audit_chain_ok(served.db)


async def test_a_failed_group_transaction_answers_each_of_its_deliveries_503_and_stores_none(tmp_path: Path) -> None:
    async with serving(tmp_path, max_queued_writes=16) as served, httpx.AsyncClient(timeout=60) as client:
        refuse = sqlite3.connect(served.db, isolation_level=None)  # fails the whole transaction it runs in
        refuse.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON webhook_deliveries WHEN NEW.delivery_id = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        refuse.close()
        with write_lock_held(served.db):
            first = await first_group_committing(client, served)
            group = [post(client, served, n, identifier) for n, identifier in enumerate(("ok-1", "poison", "ok-2"), 1)]
            await async_wait_until(lambda: served.intake.waiting == 3, timeout=30, what="three deliveries to wait")
        answers = [await first, *(await asyncio.gather(*group))]
        assert [a.status_code for a in answers] == [200, 503, 503, 503]
        assert all(a.json()["status"] == "overloaded" and a.headers["retry-after"] == "1" for a in answers[1:])
        assert read_rows(served.db, "SELECT delivery_id FROM webhook_deliveries") == [("first",)]
        assert read_rows(served.db, "SELECT COUNT(*) FROM audit WHERE event_type = 'webhook_accepted'") == [(1,)]
        retried = await asyncio.gather(post(client, served, 1, "ok-1"), post(client, served, 3, "ok-2"))
        assert [(a.status_code, a.json()["status"]) for a in retried] == [(200, "accepted")] * 2  # as Jira retries
    assert sorted(d for (d,) in read_rows(served.db, "SELECT delivery_id FROM webhook_deliveries")) == [
        "first",
        "ok-1",
        "ok-2",
    ]
    assert audit_chain_ok(served.db)


async def test_beyond_max_queued_writes_deliveries_are_refused_503_and_not_stored(tmp_path: Path) -> None:
    async with serving(tmp_path, max_queued_writes=3) as served, httpx.AsyncClient(timeout=60) as client:
        with write_lock_held(served.db):
            first = await first_group_committing(client, served)
            waiting = [post(client, served, n, f"waiting-{n}") for n in (1, 2)]
            await async_wait_until(lambda: served.intake.waiting == 2, timeout=30, what="two deliveries to wait")
            refused = await asyncio.gather(*(post(client, served, n, f"refused-{n}") for n in (3, 4, 5)))
        answers = [await first, *(await asyncio.gather(*waiting))]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [(a.status_code, a.json()["status"], a.headers["retry-after"]) for a in refused] == [
        (503, "overloaded", "1")
    ] * 3
    stored = read_rows(served.db, "SELECT delivery_id FROM webhook_deliveries ORDER BY id")
    assert stored == [("first",), ("waiting-1",), ("waiting-2",)]
