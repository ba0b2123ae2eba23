"""GetStatus and GetTicket over a real grpc.aio server on loopback, on a real store seeded through the
store's own write paths (chain events committed to the inbox, jobs, refs, bases, conflicts, intents,
re-reads, sweep marks, pauses); the signer's balance read from the real devnet node."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.cometbft import DevnetNode
from devnet.keys import DEFAULT_BALANCE
from sidecar.chain.envelope import EnvelopeKey
from sidecar.chain.rpc import CometRpc
from sidecar.chain.signer import Signer
from sidecar.control.deps import ControlDeps
from sidecar.control.queries import BALANCE_TIMEOUT, CONTENT_REFUSED
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.inbound import (
    claim_issues_txn,
    enqueue_issue_txn,
    retry_issue_txn,
    set_field_state_txn,
    set_sweep_mark_txn,
)
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn
from sidecar.store.intents import dead_letter_txn, queue_intent_txn
from sidecar.store.jobs import dead_job_txn, finish_job_txn, queue_update_job_txn, retry_job_txn
from sidecar.store.pauses import pause_txn
from sidecar.store.records import RequestCreated
from sidecar.store.refs import RefRow, record_ref_txn
from sidecar.sync.content import ContentOpener
from sidecar.timestamps import iso
from tests.sidecar.chain.signer_kit import devnet_key, open_rig, settings
from tests.sidecar.control.kit import control_stub, opened_store, park_priority_conflict
from tests.vectors import load

CHAIN = "virtengine-devnet-1"
CUSTOMER = "virtengine1customer000000000000000000000000000"
TICKET = f"{CUSTOMER}/support/1"
SEALED_ELSEWHERE = f"{CUSTOMER}/support/2"  # its envelope is for the auditor only: the support key cannot open it
T0 = 1_700_000_000.0
PLAIN = {"subject": "Lease 4471 cannot reach its ingress", "description": "The provider node answers 502."}
OLD_AGENT = "virtengine1formeragent00000000000000000000000"  # a base value no other row or field holds
LEAKED_TOKEN = "c2VjcmV0LXRva2Vu"  # an error that echoed a request header
KEYS = load("envelopes.json")["keys"]


def key(name: str) -> EnvelopeKey:
    return EnvelopeKey.from_base64(KEYS[name]["private_key"])


def created(ticket_id: str, n: int, envelope: dict[str, Any]) -> RequestCreated:
    return RequestCreated(
        event_id=f"created-{n}",
        event_type="support_request_created",
        height=100,
        position=n,
        sequence=1,
        ticket_id=ticket_id,
        sender=CUSTOMER,
        timestamp=int(T0),
        payload={"payload": {"envelope": envelope}},
        ticket_number=f"SUP-{n:06d}",
        submitter=CUSTOMER,
        category="technical",
        priority="high",
        status="open",
    )


@dataclass(frozen=True)
class Seeded:
    job_ids: list[int]  # the ticket's jobs, oldest first: done, dead, retrying (jira), pending (waldur)
    intent_ids: list[int]  # dead, queued


def seed(conn: sqlite3.Connection) -> Seeded:
    """Rows as the engines leave them, written through the store's own functions, at fixed times."""
    pub = base64.b64decode(KEYS["support"]["public_key"])
    auditor = base64.b64decode(KEYS["auditor"]["public_key"])
    sender = key("customer")
    events = [
        created(TICKET, 1, sender.seal(PLAIN, [pub])),
        created(SEALED_ELSEWHERE, 2, sender.seal(PLAIN, [auditor])),
    ]
    commit_blocks_txn(conn, CHAIN, [BlockBatch(100, events, {})])
    for i, desk in enumerate(("jira", "jira", "jira", "waldur")):
        queue_update_job_txn(conn, f"seed-{i}", desk, TICKET, "seed", T0 + i)
    ids = [int(r[0]) for r in conn.execute("SELECT id FROM jobs ORDER BY id")]
    finish_job_txn(conn, ids[0], T0 + 10)
    dead_job_txn(conn, ids[1], "jira answered 400: transition 'Resolve' not found", T0 + 20)
    retry_job_txn(conn, ids[2], "jira answered 503", T0 + 100, T0 + 30)
    queue_update_job_txn(conn, "other-ticket", "jira", SEALED_ELSEWHERE, "seed", T0)
    finish_job_txn(conn, int(conn.execute("SELECT MAX(id) FROM jobs").fetchone()[0]), T0 + 5)  # earlier success

    record_ref_txn(conn, RefRow(TICKET, "jira", "10001", "SD-1", "https://jira.example/browse/SD-1", False), T0 + 1)
    set_field_state_txn(
        conn,
        TICKET,
        "jira",
        "assignee",
        base=OLD_AGENT,
        desk_value=OLD_AGENT,
        chain_value=OLD_AGENT,
        synced_from="desk",
        now=T0 + 2,
        desk_change_id="changelog-7",
    )
    park_priority_conflict(conn, TICKET, T0 + 3)
    dead = queue_intent_txn(conn, "seed-intent-1", "MsgUpdateSupportRequest", TICKET, b"\x01", T0)
    dead_letter_txn(conn, [dead], 5, "insufficient funds", [], now=T0 + 40)
    queued = queue_intent_txn(conn, "seed-intent-2", "MsgRegisterExternalTicket", TICKET, b"\x02", T0 + 41)
    enqueue_issue_txn(conn, "jira", "10001", "webhook", T0 + 45)
    [issue] = claim_issues_txn(conn, "jira", T0 + 46, 1)
    retry_issue_txn(
        conn, issue, f"jira answered 429 to Authorization: Bearer {LEAKED_TOKEN}", T0 + 200, T0 + 50, spend=True
    )
    set_sweep_mark_txn(conn, "jira", T0 + 60)
    pause_txn(conn, ("inbound",), "waldur", "ops@example", "maintenance window", T0 + 70)
    return Seeded(ids, [dead, queued])


@dataclass
class Served:
    store: Store
    deps: ControlDeps
    control: control_pb2_grpc.ControlStub
    seeded: Seeded


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with opened_store(tmp_path / "s.db") as store:
        await store.write("cursor", init_cursor_txn, CHAIN, 99)
        seeded = await store.write("seed", seed)
        health = HealthState()
        health.chain.reachable, health.chain.chain_id, health.chain.head_height = True, CHAIN, 130
        health.desks.update(jira="healthy", waldur="healthy")
        deps = ControlDeps(
            store,
            health,
            Auditor(store),
            outbound_desks=["jira", "waldur"],
            inbound_desks=["jira"],
            opener=ContentOpener(store, key("support")),
        )
        async with control_stub(deps) as control:
            yield Served(store, deps, control, seeded)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_status_reports_desks_pauses_lag_and_intents_from_the_store(served: Served) -> None:
    status = await served.control.GetStatus(control_pb2.GetStatusRequest())
    desks = {d.name: d for d in status.desks}
    assert list(desks) == ["jira", "waldur"]
    jira, waldur = desks["jira"], desks["waldur"]
    assert (jira.last_success, jira.pending_jobs, jira.dead_jobs) == (iso(T0 + 10), 1, 1)
    assert (jira.swept_to, jira.inbound_queued, jira.inbound, jira.outbound) == (iso(T0 + 60), 1, True, True)
    assert (waldur.last_success, waldur.pending_jobs, waldur.dead_jobs) == ("", 1, 0)
    assert (waldur.swept_to, waldur.inbound_queued, waldur.inbound, waldur.outbound) == ("", 0, False, True)
    assert all(d.configured and d.status == "healthy" for d in status.desks)
    assert [(p.direction, p.desk, p.since, p.by, p.reason) for p in status.pauses] == [
        ("inbound", "waldur", iso(T0 + 70), "ops@example", "maintenance window")
    ]
    assert (status.cursor_height, status.head_height, status.lag_blocks) == (100, 130, 30)
    assert status.open_conflicts == 1
    assert (status.signer.enabled, status.signer.address, status.signer.balance) == (False, "", "")
    assert (status.signer.pending_intents, status.signer.dead_intents) == (1, 1)
    assert status.last_sync == iso(T0 + 10)

    served.deps.health.chain.head_height = None  # the follower has not seen the head yet: no lag figure
    assert (await served.control.GetStatus(control_pb2.GetStatusRequest())).lag_blocks == 0


async def test_status_answers_without_the_balance_when_the_node_does_not(served: Served) -> None:
    """A node that accepts the connection and never answers costs GetStatus the balance, not the answer."""
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    node = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = node.sockets[0].getsockname()[1]
    rpc = CometRpc(f"http://127.0.0.1:{port}", 30.0)
    signer = Signer(rpc, served.store, devnet_key("sidecar"), settings(), Metrics(), Auditor(served.store))
    served.deps.signer, served.deps.rpc = signer, rpc
    try:
        started = time.monotonic()
        status = await served.control.GetStatus(control_pb2.GetStatusRequest(), timeout=BALANCE_TIMEOUT + 5)
        assert time.monotonic() - started < BALANCE_TIMEOUT + 2
        assert status.signer.enabled and status.signer.address == devnet_key("sidecar").address
        assert (status.signer.balance, status.signer.sequence, status.signer.in_flight) == ("", 0, 0)
        assert (status.signer.pending_intents, status.signer.dead_intents) == (1, 1)
    finally:
        await rpc.aclose()
        for writer in hung:
            writer.close()
        node.close()
        await node.wait_closed()


async def test_get_ticket_shows_the_whole_story_without_content(served: Served) -> None:
    answer = await served.control.GetTicket(control_pb2.GetTicketRequest(ticket_id=TICKET))
    t = answer.ticket
    assert (t.ticket_id, t.customer, t.status, t.priority, t.category, t.assignee) == (
        TICKET,
        CUSTOMER,
        "open",
        "high",
        "technical",
        "",
    )
    assert (t.sequence, t.created_height, t.updated_height, t.chain_updated_at) == (1, 100, 100, iso(T0))
    assert [(r.desk, r.external_id, r.url, r.verified, r.state, r.created_at) for r in answer.refs] == [
        ("jira", "10001", "https://jira.example/browse/SD-1", True, "pending", iso(T0 + 1))
    ]
    assert [(f.desk, f.field, f.base_sha256, f.synced_at, f.synced_from, f.desk_change_id) for f in answer.fields] == [
        ("jira", "assignee", hashlib.sha256(OLD_AGENT.encode()).hexdigest(), iso(T0 + 2), "desk", "changelog-7")
    ]
    assert [(c.field, c.chain_value, c.desk_value, c.state) for c in answer.conflicts] == [
        ("priority", "urgent", "low", "open")
    ]
    assert [j.id for j in answer.jobs] == list(reversed(served.seeded.job_ids))  # newest first, only this ticket
    assert [(j.desk, j.state) for j in answer.jobs] == [
        ("waldur", "pending"),
        ("jira", "pending"),
        ("jira", "dead"),
        ("jira", "done"),
    ]
    assert [(i.id, i.state) for i in answer.intents] == [
        (served.seeded.intent_ids[1], "queued"),
        (served.seeded.intent_ids[0], "dead"),
    ]
    job_ids, dead_intent = served.seeded.job_ids, served.seeded.intent_ids[0]
    assert list(answer.last_errors) == [  # newest first: the re-read, the intent, the jobs
        f"{iso(T0 + 50)} re-read jira 10001: jira answered 429 to Authorization: <redacted>",  # redacted
        f"{iso(T0 + 40)} intent {dead_intent}: insufficient funds",
        f"{iso(T0 + 30)} job {job_ids[2]} jira: jira answered 503",
        f"{iso(T0 + 20)} job {job_ids[1]} jira: jira answered 400: transition 'Resolve' not found",
    ]
    assert not answer.HasField("content")
    wire = answer.SerializeToString()
    assert OLD_AGENT.encode() not in wire  # the base travels as its hash only
    assert LEAKED_TOKEN.encode() not in wire
    assert PLAIN["subject"].encode() not in wire and PLAIN["description"].encode() not in wire


async def test_get_ticket_refuses_bad_ids_unknown_tickets_and_content_unless_allowed(served: Served) -> None:
    bad = await refused(served.control.GetTicket(control_pb2.GetTicketRequest(ticket_id="ticket-0001")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and bad.details().startswith("ticket_id:")
    missing = await refused(served.control.GetTicket(control_pb2.GetTicketRequest(ticket_id=f"{CUSTOMER}/support/9")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and f"{CUSTOMER}/support/9" in missing.details()
    denied = await refused(
        served.control.GetTicket(control_pb2.GetTicketRequest(ticket_id=TICKET, include_content=True))
    )
    assert (denied.code(), denied.details()) == (grpc.StatusCode.PERMISSION_DENIED, CONTENT_REFUSED)


async def test_get_ticket_opens_content_only_when_the_server_allows_it(served: Served) -> None:
    served.deps.allow_content = True
    answer = await served.control.GetTicket(control_pb2.GetTicketRequest(ticket_id=TICKET, include_content=True))
    assert (answer.content.subject, answer.content.description) == (PLAIN["subject"], PLAIN["description"])
    assert OLD_AGENT.encode() not in answer.SerializeToString()
    plain = await served.control.GetTicket(control_pb2.GetTicketRequest(ticket_id=TICKET))
    assert not plain.HasField("content")  # allowed, not asked
    sealed = await served.control.GetTicket(
        control_pb2.GetTicketRequest(ticket_id=SEALED_ELSEWHERE, include_content=True)
    )
    assert sealed.ticket.ticket_id == SEALED_ELSEWHERE
    assert sealed.HasField("content")  # asked and allowed: an empty content, not an error
    assert (sealed.content.subject, sealed.content.description) == ("", "")  # the support key cannot open it


@pytest.mark.node
async def test_status_reports_the_signers_balance_from_the_devnet_node(devnet_node: DevnetNode, tmp_path: Path) -> None:
    rig = await open_rig(tmp_path / "signer.db", devnet_node.rpc_url, ws_url=None)
    try:
        async with control_stub(ControlDeps(rig.store, HealthState(), signer=rig.signer, rpc=rig.rpc)) as control:
            status = await control.GetStatus(control_pb2.GetStatusRequest())
            assert status.signer.enabled and status.signer.address == devnet_key("sidecar").address
            assert status.signer.balance == f"{DEFAULT_BALANCE}uve"
    finally:
        await rig.close()
