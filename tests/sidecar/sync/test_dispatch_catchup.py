"""Events read while outbound is off or no desk is configured reach the desks configured later, once.

First on a real store fed with the vector ticket's life, then end to end: the app on the devnet runs
without a desk (or with outbound off), stops, and runs again with the Jira simulator configured.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from sidecar.chain.events import decode_block
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn
from sidecar.store.jobs import JOB_KINDS
from sidecar.sync.outbound import Dispatcher
from tests.sidecar.chain.test_events import all_heights, block_results
from tests.sidecar.harness import running_app
from tests.sidecar.store.test_jobs import own_reply_from
from tests.sidecar.stores import store_at
from tests.sidecar.sync.test_outbound_e2e import (
    RECIPIENTS,
    assert_jira_exactly_once,
    dead_jobs,
    desk_env,
    desk_flags,
    drive_tickets,
    settled,
)

AGENT = "virtengine1agent00000000000000000000000000000000"
# The jobs the vector life makes for one desk, in event order (the linked event makes none).
VECTOR_KINDS = ["create", "update", "status", "comment", "status", "update", "status", "close", "close"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with store_at(tmp_path / "db", "c", 99) as s:
        yield s


async def commit(store: Store, first: int, last: int) -> None:
    batches = [BlockBatch(h, decode_block(block_results(h)), {}) for h in range(first, last + 1)]
    await store.write("commit", commit_blocks_txn, "c", batches)


async def run(dispatcher: Dispatcher) -> int:
    """Step until the dispatcher is idle (a step that asks for a pause); return the steps taken."""
    for steps in range(1, 100):
        if await dispatcher.step() > 0:
            return steps
    raise AssertionError("the dispatcher never became idle")


def kinds(conn: sqlite3.Connection, desk: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT kind FROM jobs WHERE desk = ? ORDER BY id", (desk,))]


def inbox_left(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0])


async def test_events_dispatched_to_no_desk_reach_a_desk_configured_later(store: Store) -> None:
    await commit(store, 100, max(all_heights()))
    await run(Dispatcher(store, [], own_addresses=[]))
    assert await store.read("left", inbox_left) == 0  # every event was taken...
    assert await store.read("k", kinds, "jira") == []  # ...and reached no desk
    await run(Dispatcher(store, ["jira"], own_addresses=[]))
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS
    await run(Dispatcher(store, ["jira"], own_addresses=[]))  # the next start queues nothing again
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS
    await run(Dispatcher(store, ["jira", "waldur"], own_addresses=[]))  # a desk added later catches up too
    assert await store.read("k", kinds, "waldur") == VECTOR_KINDS
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS


async def test_a_ticket_already_at_the_desk_gets_what_happened_while_outbound_was_off(store: Store) -> None:
    await commit(store, 100, 104)  # created, updated, status changed: dispatched to Jira
    await run(Dispatcher(store, ["jira"], own_addresses=[]))
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS[:3]
    await commit(store, 105, max(all_heights()))  # the reply and the rest arrive while outbound is off
    await run(Dispatcher(store, [], own_addresses=[]))
    assert await store.read("left", inbox_left) == 0
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS[:3]
    await run(Dispatcher(store, ["jira"], own_addresses=[]))
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS  # only the missing jobs, in event order


async def test_catch_up_skips_a_reply_at_its_origin_desk_like_dispatch_does(store: Store) -> None:
    await commit(store, 100, max(all_heights()))
    await store.write("origin", own_reply_from, "jira")
    await run(Dispatcher(store, [], own_addresses=[]))
    await run(Dispatcher(store, ["jira", "waldur"], own_addresses=[AGENT]))
    assert await store.read("k", kinds, "jira") == [k for k in VECTOR_KINDS if k != "comment"]
    assert await store.read("k", kinds, "waldur") == VECTOR_KINDS


async def test_catch_up_runs_in_chunks_in_event_order(store: Store) -> None:
    await commit(store, 100, max(all_heights()))
    await run(Dispatcher(store, [], own_addresses=[]))
    dispatcher = Dispatcher(store, ["jira"], own_addresses=[])
    dispatcher.CATCH_UP_CHUNK = 2
    steps = await run(dispatcher)
    assert steps >= 5  # ten inbox ids, two per catch-up step, then one dispatch step
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS


async def test_new_events_after_catch_up_are_dispatched_once(store: Store) -> None:
    await commit(store, 100, 110)
    await run(Dispatcher(store, [], own_addresses=[]))
    dispatcher = Dispatcher(store, ["jira"], own_addresses=[])
    await run(dispatcher)
    await commit(store, 111, max(all_heights()))
    await run(dispatcher)  # the same run dispatches the rest as they come
    await run(Dispatcher(store, ["jira"], own_addresses=[]))  # and a restart finds nothing missing
    assert await store.read("k", kinds, "jira") == VECTOR_KINDS


# --- end to end on the devnet -------------------------------------------------------------------------------


def _followed(db: Path, height: int) -> bool:
    """The follower has read up to `height` and the dispatcher has taken every event."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        cursor = conn.execute("SELECT height FROM cursor").fetchone()
        return cursor is not None and cursor[0] >= height and inbox_left(conn) == 0
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def followed(db: Path, node: DevnetNode) -> None:
    height = await asyncio.to_thread(node.height)

    async def done() -> bool:
        return await asyncio.to_thread(_followed, db, height)

    await async_wait_until(done, timeout=120, what="the follower and dispatcher to take every block so far")


def job_count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()


def jobs_per_ticket(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {r[0]: int(r[1]) for r in conn.execute("SELECT ticket_id, COUNT(*) FROM jobs GROUP BY ticket_id")}
    finally:
        conn.close()


def job_events(db: Path, ticket_id: str) -> int:
    """The inbox events of one ticket that ask something of a desk."""
    conn = sqlite3.connect(db)
    try:
        types = [r[0] for r in conn.execute("SELECT event_type FROM chain_inbox WHERE ticket_id = ?", (ticket_id,))]
    finally:
        conn.close()
    return sum(1 for t in types if t in JOB_KINDS)


@pytest.mark.node
async def test_tickets_read_with_no_desk_reach_jira_once_it_is_configured(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    with_jira = desk_flags(tmp_path, devnet_node, jira_sim, None)
    no_desk = {k: v for k, v in with_jira.items() if not k.startswith("jira.")}
    async with running_app(no_desk, desk_env(jira_sim, None)):
        ids, answered = await drive_tickets(devnet_node, 12)
        await followed(db, devnet_node)
    assert jira_sim.list_issues() == [] and job_count(db) == 0
    async with running_app(with_jira, desk_env(jira_sim, None)):
        await settled(db, devnet_node, timeout=180)
    assert dead_jobs(db) == []
    assert_jira_exactly_once(jira_sim, db, ids, answered)
    before = jobs_per_ticket(db)
    assert sorted(before) == sorted(ids)
    async with running_app(with_jira, desk_env(jira_sim, None)):  # a further start queues nothing again
        more, more_answered = await drive_tickets(devnet_node, 1)
        await settled(db, devnet_node, timeout=120)
    after = jobs_per_ticket(db)
    assert {tid: after[tid] for tid in ids} == before
    assert after[more[0]] == job_events(db, more[0]) >= 1  # the new ticket's events, each once
    assert_jira_exactly_once(jira_sim, db, ids + more, answered | more_answered)


@pytest.mark.node
async def test_events_read_while_outbound_is_off_reach_jira_when_it_is_on(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None)
    async with running_app(flags, desk_env(jira_sim, None)):  # these reach Jira while outbound is on
        first = await asyncio.to_thread(_create, devnet_node, 4)
        await settled(db, devnet_node, timeout=120)
    assert len(jira_sim.list_issues()) == 4
    async with running_app({**flags, "sync.enable_outbound": "false"}, desk_env(jira_sim, None)):
        replied = await asyncio.to_thread(_reply_and_progress, devnet_node, first[::2])  # to tickets at Jira
        later, answered = await drive_tickets(devnet_node, 6)  # tickets Jira has never seen
        await followed(db, devnet_node)
    assert len(jira_sim.list_issues()) == 4, "outbound was off, yet something reached Jira"
    async with running_app(flags, desk_env(jira_sim, None)):
        await settled(db, devnet_node, timeout=180)
    assert dead_jobs(db) == []
    assert_jira_exactly_once(jira_sim, db, first + later, answered | replied)


def _create(node: DevnetNode, count: int) -> list[str]:
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as customer:
        return customer.create_tickets(count, RECIPIENTS)


def _reply_and_progress(node: DevnetNode, ids: list[str]) -> set[str]:
    with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as agent:
        for tid in ids:
            agent.reply(tid, f"Looking into {tid}", RECIPIENTS)
            agent.update(tid, status="in_progress")
    return set(ids)
