"""Reconcile over real gRPC against the real devnet node, the Jira and Waldur simulators and a running sidecar.

One node for the module, with 20 ms blocks, so "the sidecar was down for 500 blocks" takes seconds. What
the sidecar lacks is made honestly: a sidecar whose cursor starts after a ticket's creation, and a sidecar
stopped while the chain and the desks' agents change tickets. The chain is read back over abci_query, the
desks through their simulators, never through the sidecar's mirror alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from devnet.waldur_sim import WaldurSim
from sidecar.app import App
from sidecar.store.db import Store
from sidecar.store.pauses import DIRECTIONS, EVERY_DESK, pause_txn, resume_txn
from tests.sidecar.harness import running_app
from tests.sidecar.sync.inbound_kit import (
    AGENT,
    CUSTOMER,
    JIRA_PRIORITY,
    RECIPIENTS,
    SIGNING_KEY,
    chain_ticket,
    count,
    linked_keys,
    rows,
    settle,
    waldur_issue_of,
)
from tests.sidecar.sync.test_outbound_e2e import desk_env, desk_flags

pytestmark = pytest.mark.node
DOWN_FOR = 500  # blocks the sidecar misses
QUEUES = {
    "jobs": "SELECT COUNT(*) FROM jobs",
    "re-reads": "SELECT COUNT(*) FROM inbound_queue",
    "intents": "SELECT COUNT(*) FROM tx_intents",
    "inbox": "SELECT COUNT(*) FROM chain_inbox",
}
JIRA_STATUS = {"open": "Open", "in_progress": "In Progress", "resolved": "Resolved"}
WALDUR_STATUS = {"open": "Open", "in_progress": "Open", "resolved": "Resolved"}


@pytest.fixture(scope="module")
def node(module_fast_node: DevnetNode) -> DevnetNode:
    return module_fast_node


@dataclass
class Running:
    """What inbound_kit.settle reads of a sidecar: its node, database and desks."""

    node: DevnetNode
    db: Path
    desks: list[str]

    def tail(self, lines: int = 40) -> str:
        return ""


def cursor(db: Path) -> int:
    found = rows(db, "SELECT height FROM cursor")
    return int(found[0][0]) if found else 0


def queue_sizes(db: Path) -> dict[str, int]:
    return {name: count(db, sql) for name, sql in QUEUES.items()}


async def on_chain(node: DevnetNode, call: Callable[[ChainDriver], Any], account: Any = CUSTOMER) -> Any:
    """A tx through the devnet driver, in a thread: the sidecar under test runs on this event loop."""

    def send() -> Any:
        with ChainDriver(node.rpc_url, account) as driver:
            return call(driver)

    return await asyncio.to_thread(send)


async def pausing(db: Path, paused: bool) -> None:
    """Pause (or resume) both directions for every desk in a stopped sidecar's database."""
    store = await Store.open(str(db))
    try:
        if paused:
            await store.write("pause", pause_txn, DIRECTIONS, EVERY_DESK, "test", "reconcile first", time.time())
        else:
            await store.write("resume", resume_txn, DIRECTIONS, None)
    finally:
        await store.close()


async def wait_cursor(db: Path, height: int) -> None:
    await async_wait_until(lambda: cursor(db) >= height, timeout=60, what=f"the follower at height {height}")


@contextlib.asynccontextmanager
async def control_of(app: App) -> AsyncIterator[control_pb2_grpc.ControlStub]:
    """The running sidecar's own Control service, over its gRPC port."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        yield control_pb2_grpc.ControlStub(channel)


async def all_pages(control: control_pb2_grpc.ControlStub, **fields: Any) -> tuple[list[Any], int, int]:
    """Every difference of a ticket-mode reconcile, page by page: (differences, tickets checked, queued)."""
    found: list[Any] = []
    checked = queued = 0
    token = ""
    while True:
        page = await control.Reconcile(control_pb2.ReconcileRequest(page_token=token, **fields))
        found += page.differences
        checked += page.checked
        queued += page.queued
        token = page.next_page_token
        if not token:
            return found, checked, queued


def shown(differences: list[Any]) -> set[tuple[str, ...]]:
    return {
        (d.kind, d.ticket_id, d.desk, d.field, d.chain_value, d.mirror_value, d.desk_value, d.action)
        for d in differences
    }


async def test_reconcile_after_500_blocks_down_finds_exactly_what_changed_and_the_sidecar_converges(
    node: DevnetNode,
    tmp_path: Path,
    make_jira_sim: Callable[..., JiraSim],
    make_waldur_sim: Callable[..., WaldurSim],
) -> None:
    jira, waldur = make_jira_sim(), make_waldur_sim()  # a stock Waldur: no priorities, so none are synced there
    desks = ["jira", "waldur"]
    env = {**desk_env(jira, waldur), "VIRTENGINE_SERVICEDESK_SIGNING_KEY": SIGNING_KEY}
    flags = desk_flags(
        tmp_path, node, jira, waldur, **{"chain.start_height": str(node.height()), "sync.sync_interval": "1s"}
    )
    db = tmp_path / "sidecar.db"
    sidecar = Running(node, db, desks)

    async with running_app(flags, env):
        tids = await on_chain(node, lambda c: c.create_tickets(5, RECIPIENTS, per_tx=5))

        def all_linked() -> bool:
            keys = linked_keys(db)
            return all(t in keys and waldur_issue_of(waldur, t) for t in tids)

        await async_wait_until(all_linked, timeout=60, what="every ticket at both desks")
        await settle(sidecar)  # refs registered on chain, bases recorded, sweeps done
    keys = linked_keys(db)
    uuids = {t: waldur_issue_of(waldur, t) for t in tids}
    down_at = node.height()

    # While the sidecar is down: the chain moves two tickets, an agent at each desk moves one, one stays.
    moved_status, moved_priority, jira_moved, waldur_moved, untouched = tids
    await on_chain(node, lambda c: c.update(moved_status, status="in_progress"), AGENT)
    await on_chain(node, lambda c: c.update(moved_status, status="resolved"), AGENT)
    await on_chain(node, lambda c: c.update(moved_priority, priority="high"), AGENT)
    jira.agent_update(keys[jira_moved], priority=JIRA_PRIORITY["urgent"])
    waldur.agent_set_status(str(uuids[waldur_moved]), "Resolved")
    await async_wait_until(lambda: node.height() >= down_at + DOWN_FOR, timeout=60, what="500 blocks", interval=0.2)
    changed_at = node.height()

    # Back, with both directions paused (persisted pauses, written while it is down): intake goes on (the
    # dispatcher queues the jobs of the missed events) but nothing syncs by itself. The dry run lists what changed.
    await pausing(db, True)
    async with running_app(flags, env) as app, control_of(app) as control:
        await wait_cursor(db, changed_at)
        await async_wait_until(
            lambda: count(db, "SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'") == 0,
            timeout=30,
            what="the missed events dispatched",
        )
        before = queue_sizes(db)
        found, checked, queued = await all_pages(control, dry_run=True, limit=2)
        assert (checked, queued) == (5, 0)
        assert shown(found) == {
            ("field", moved_status, "jira", "status", "resolved", "resolved", "open", ""),
            ("field", moved_status, "waldur", "status", "resolved", "resolved", "open", ""),
            ("field", moved_priority, "jira", "priority", "high", "high", "normal", ""),
            ("field", jira_moved, "jira", "priority", "normal", "normal", "urgent", ""),
            ("field", waldur_moved, "waldur", "status", "open", "open", "resolved", ""),
        }, found
        assert len(found) == 5
        assert queue_sizes(db) == before, "a dry run queued something"

        rereads = [("jira", jira.issue(keys[jira_moved]).id), ("waldur", uuids[waldur_moved])]
        # a re-read the first run's last sweep queued (of the sidecar's own write) still waits, inbound being
        # paused: the repair is that same row, not a new one
        waiting = [r for r in rereads if r in rows(db, "SELECT desk, external_id FROM inbound_queue")]
        found, checked, queued = await all_pages(control, limit=100)
        assert shown(found) == {
            ("field", moved_status, "jira", "status", "resolved", "resolved", "open", "outbound_job"),
            ("field", moved_status, "waldur", "status", "resolved", "resolved", "open", "outbound_job"),
            ("field", moved_priority, "jira", "priority", "high", "high", "normal", "outbound_job"),
            ("field", jira_moved, "jira", "priority", "normal", "normal", "urgent", "reread"),
            ("field", waldur_moved, "waldur", "status", "open", "open", "resolved", "reread"),
        }, found
        assert (checked, queued) == (5, 5 - len(waiting)), waiting
        assert count(db, "SELECT COUNT(*) FROM jobs WHERE dedupe_key LIKE 'reconcile:update:%'") == 3
        assert rows(db, "SELECT desk, external_id FROM inbound_queue WHERE state = 'pending' ORDER BY desk") == rereads
        again, _, queued = await all_pages(control)
        assert queued == 0 and shown(again) == shown(found), "a second run queued the same repairs again"
        audit = rows(db, "SELECT status, details_json FROM audit WHERE event_type = 'reconciled' ORDER BY id")
        assert [status for status, _ in audit] == ["dry_run"] * 3 + ["ok", "ok"]

    # Resumed: the queued repairs (and the jobs of the missed events) run; every ticket converges.
    await pausing(db, False)
    async with running_app(flags, env) as app, control_of(app) as control:
        await settle(sidecar, timeout=90)
        await settle(sidecar, timeout=60)  # the chain's answers to inbound come back as events: once more
        wanted = {
            moved_status: ("resolved", "normal"),
            moved_priority: ("open", "high"),
            jira_moved: ("open", "urgent"),
            waldur_moved: ("resolved", "normal"),
            untouched: ("open", "normal"),
        }
        for tid, (status, priority) in wanted.items():
            chain = await asyncio.to_thread(chain_ticket, node, tid)
            assert (chain.status, chain.priority) == (status, priority), tid
            mirror = rows(db, "SELECT status, priority FROM tickets WHERE ticket_id = ?", tid)
            assert mirror == [(status, priority)], tid
            issue = jira.issue(keys[tid])
            assert (issue.status, issue.priority) == (JIRA_STATUS[status], JIRA_PRIORITY[priority]), tid
            assert waldur.get_issue(str(uuids[tid])).status == WALDUR_STATUS[status], tid
        final, checked, _ = await all_pages(control, dry_run=True)
        assert (list(final), checked) == ([], 5)

        # A desk that cannot be read stops the call, naming the desk: it is never reported as in sync. Enough
        # faults that neither the client's own retries nor the running sidecar's other reads use them all up.
        jira.faults.inject("503", 50, method="GET", path=f"/rest/api/3/issue/{jira.issue(keys[untouched]).id}")
        with pytest.raises(grpc.aio.AioRpcError) as unreachable:
            await control.Reconcile(control_pb2.ReconcileRequest(ticket_id=untouched, dry_run=True))
        assert unreachable.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (unreachable.value.details() or "").startswith("desk jira:"), unreachable.value.details()


async def test_reconcile_of_heights_takes_in_the_events_the_store_lacks_once(
    node: DevnetNode, tmp_path: Path, make_jira_sim: Callable[..., JiraSim]
) -> None:
    """A sidecar whose cursor starts after two tickets were created: one changes afterwards (the mirror holds
    it partly), the other never (the mirror lacks it). Reconcile of the heights takes both creations in."""
    jira = make_jira_sim()
    before = node.height()
    made_at_start = await on_chain(node, lambda c: c.create_tickets(2, RECIPIENTS, per_tx=2))
    partly, missing = made_at_start
    created = node.height()
    env = desk_env(jira, None)
    flags = desk_flags(tmp_path, node, jira, None, **{"chain.start_height": str(created + 1)})
    db = tmp_path / "sidecar.db"
    async with running_app(flags, env) as app:
        changed = await on_chain(node, lambda c: c.update(partly, priority="high"), AGENT)
        await wait_cursor(db, changed.height)
        assert rows(db, "SELECT ticket_number, priority FROM tickets WHERE ticket_id = ?", partly) == [(None, "high")]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            control = control_pb2_grpc.ControlStub(channel)
            await refusals(control)
            with pytest.raises(grpc.aio.AioRpcError) as lacking:
                await control.Reconcile(control_pb2.ReconcileRequest(ticket_id="ve1nobody/support/1"))
            assert lacking.value.code() == grpc.StatusCode.NOT_FOUND
            page = await control.Reconcile(control_pb2.ReconcileRequest(ticket_id=missing, dry_run=True))
            assert [(d.kind, d.ticket_id, d.chain_value) for d in page.differences] == [
                ("missing_ticket", missing, "open")
            ]

            await wait_cursor(db, created + 100)  # heights enough after the creations for a second page
            first, last = before + 1, node.height() + 1_000  # past the head: heights the follower has not read
            dry, pages = [], 0
            token = ""
            while not pages or token:  # small pages: a page ends after the batch that reached the limit
                page = await control.Reconcile(
                    control_pb2.ReconcileRequest(
                        from_height=first, to_height=last, dry_run=True, limit=1, page_token=token
                    )
                )
                dry += page.differences
                pages, token = pages + 1, page.next_page_token
            low = cursor(db)
            taken = await control.Reconcile(control_pb2.ReconcileRequest(from_height=first, to_height=last))
            high = cursor(db)
        wanted = {("missing_event", t, "support_request_created") for t in made_at_start}
        assert pages > 1 and {(d.kind, d.ticket_id, d.event_type) for d in dry} == wanted and len(dry) == 2
        [height] = {d.height for d in taken.differences}
        assert first <= height <= created
        assert {d.action for d in dry} == {""} and {d.action for d in taken.differences} == {"event"}
        assert {(d.kind, d.ticket_id, d.event_type) for d in taken.differences} == wanted
        assert taken.queued == 2 and not taken.next_page_token
        assert low - first + 1 <= taken.checked <= high - first + 1 < last - first + 1  # only the cursor's heights
        # Taken in as the follower would: the creation fills the mirror without setting the newer priority back.
        assert rows(db, "SELECT ticket_number IS NOT NULL, priority FROM tickets WHERE ticket_id = ?", partly) == [
            (1, "high")
        ]
        assert rows(db, "SELECT status, priority FROM tickets WHERE ticket_id = ?", missing) == [("open", "normal")]

        # ... and the dispatcher queues their desk jobs as usual.
        def creates_queued() -> bool:
            found = rows(
                db,
                "SELECT j.ticket_id FROM jobs j JOIN chain_inbox i ON i.id = j.inbox_id"
                " WHERE j.kind = 'create' AND i.event_type = 'support_request_created'",
            )
            return {r[0] for r in found} == set(made_at_start)

        await async_wait_until(creates_queued, timeout=30, what="create jobs of the taken events")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            control = control_pb2_grpc.ControlStub(channel)
            again = await control.Reconcile(control_pb2.ReconcileRequest(from_height=first, to_height=last))
            assert (list(again.differences), again.queued) == ([], 0)
        await async_wait_until(
            lambda: count(db, "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')") == 0,
            timeout=60,
            what="the desk jobs done",
        )
        assert {k for t, k in linked_keys(db).items() if t in made_at_start} == {i.key for i in jira.list_issues()}, (
            "a ticket was created twice at the desk"
        )
        # Without a signing key the sidecar cannot register its refs on chain: each is a missing_ref, with
        # nothing to queue for it.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            tickets = await control_pb2_grpc.ControlStub(channel).Reconcile(control_pb2.ReconcileRequest())
        assert {(d.kind, d.ticket_id, d.desk, d.action) for d in tickets.differences} == {
            ("missing_ref", t, "jira", "") for t in made_at_start
        }
        assert (tickets.checked, tickets.queued) == (2, 0)


async def refusals(control: control_pb2_grpc.ControlStub) -> None:
    """Each bad request is refused with INVALID_ARGUMENT naming its field."""
    cases = {
        "from_height": control_pb2.ReconcileRequest(to_height=5),
        "to_height": control_pb2.ReconcileRequest(from_height=5),
        "to_height:": control_pb2.ReconcileRequest(from_height=9, to_height=5),
        "to_height: at most": control_pb2.ReconcileRequest(from_height=1, to_height=10_001),
        "ticket_id": control_pb2.ReconcileRequest(ticket_id="nope"),
        "limit": control_pb2.ReconcileRequest(limit=1_001),
        "page_token": control_pb2.ReconcileRequest(page_token="garbage"),
        "page_token: not": control_pb2.ReconcileRequest(from_height=1, to_height=2, page_token="e30"),
    }
    for prefix, request in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await control.Reconcile(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, prefix
        assert (refused.value.details() or "").startswith(prefix), (prefix, refused.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await control.Reconcile(control_pb2.ReconcileRequest(desk="zendesk"))
    assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION
