"""SyncTicket and RedriveJob over a real grpc.aio server on loopback and a real SQLite store: a manual sync
is queued once while it waits, every refusal has its code and queues nothing, and each request is audited."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from sidecar.store.db import Store
from sidecar.store.inbound import claim_issues_txn, finish_issue_txn
from sidecar.store.jobs import dead_job_txn, finish_job_txn, queue_update_job_txn
from sidecar.store.pauses import EVERY_DESK, pause_txn, resume_txn
from tests.sidecar.control.kit import (
    CUSTOMER,
    TICKET,
    UNKNOWN,
    control_stub,
    desk_deps,
    mirror_ticket,
    opened_store,
    rows,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "sidecar.db", mirror_ticket) as s:
        yield s


@pytest.fixture
async def control(store: Store) -> AsyncIterator[control_pb2_grpc.ControlStub]:
    async with control_stub(desk_deps(store)) as stub:  # Waldur is not configured
        yield stub


def sync(direction: str = "outbound", desk: str = "", ticket_id: str = TICKET) -> control_pb2.SyncTicketRequest:
    return control_pb2.SyncTicketRequest(ticket_id=ticket_id, direction=direction, desk=desk)


async def test_a_repeated_outbound_sync_is_queued_once_until_its_job_is_done(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    first = await control.SyncTicket(sync())
    assert first.jobs_queued == 1 and first.rereads_queued == 0
    [job] = first.jobs
    assert (job.kind, job.desk, job.ticket_id, job.state) == ("update", "jira", TICKET, "pending")

    second = await control.SyncTicket(sync(desk="jira"))
    assert second.jobs_queued == 0
    assert [(j.id, j.state) for j in second.jobs] == [(job.id, "pending")]  # the waiting job is shown
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(1,)]

    await store.write("done", finish_job_txn, job.id, time.time())
    third = await control.SyncTicket(sync())
    assert third.jobs_queued == 1
    [again] = third.jobs
    assert again.id != job.id and again.state == "pending"

    audits = rows(
        store, "SELECT direction, status, ticket_id, details_json FROM audit WHERE event_type = 'manual_sync'"
    )
    assert [(d, s, t) for d, s, t, _ in audits] == [
        ("outbound", "queued", TICKET),
        ("outbound", "already_pending", TICKET),
        ("outbound", "queued", TICKET),
    ]
    assert json.loads(audits[1][3]) == {"jobs": 0, "waiting": 1}


async def test_any_waiting_update_job_of_the_ticket_counts_and_other_jobs_are_shown(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    def seed(conn: sqlite3.Connection) -> None:
        now = time.time()
        queue_update_job_txn(conn, "conflict:1#jira@1", "jira", TICKET, "conflict", now)  # a repair, pending
        conn.execute("UPDATE jobs SET state = 'running'")  # claimed by the desk worker
        queue_update_job_txn(conn, "other:1", "jira", f"{CUSTOMER}/support/2", "test", now)  # another ticket's

    await store.write("seed", seed)
    answer = await control.SyncTicket(sync())
    assert answer.jobs_queued == 0
    assert [(j.kind, j.state) for j in answer.jobs] == [("update", "running")]  # only this ticket's jobs
    assert rows(store, f"SELECT COUNT(*) FROM jobs WHERE ticket_id = '{TICKET}'") == [(1,)]


async def test_a_repeated_inbound_sync_rereads_once_while_the_reread_waits(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    first = await control.SyncTicket(sync("both"))
    assert (first.jobs_queued, first.rereads_queued, first.rereads_pending) == (2, 1, 0)
    assert len(first.jobs) == 1
    second = await control.SyncTicket(sync("inbound"))
    assert (second.jobs_queued, second.rereads_queued, second.rereads_pending) == (0, 0, 1)
    assert list(second.jobs) == []
    assert rows(store, "SELECT desk, external_id, state, hints FROM inbound_queue") == [("jira", "10001", "pending", 1)]

    def reread(conn: sqlite3.Connection) -> None:  # the engine takes the re-read and finishes it
        [issue] = claim_issues_txn(conn, "jira", time.time() + 1, 10)
        finish_issue_txn(conn, issue, time.time())

    await store.write("re-read", reread)
    third = await control.SyncTicket(sync("inbound", "jira"))
    assert (third.jobs_queued, third.rereads_queued, third.rereads_pending) == (1, 1, 0)
    audits = rows(store, "SELECT direction, status FROM audit WHERE event_type = 'manual_sync' ORDER BY id")
    assert audits == [
        ("outbound", "queued"),
        ("inbound", "queued"),
        ("inbound", "already_pending"),
        ("inbound", "queued"),
    ]


async def test_an_inbound_sync_of_a_ticket_without_a_linked_issue_reads_nothing(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    unlinked = f"{CUSTOMER}/support/3"
    await store.write("unlinked", mirror_ticket, unlinked, False)
    answer = await control.SyncTicket(sync("inbound", ticket_id=unlinked))
    assert (answer.jobs_queued, answer.rereads_queued, answer.rereads_pending) == (0, 0, 0)
    assert rows(store, "SELECT COUNT(*) FROM inbound_queue") == [(0,)]
    assert rows(store, "SELECT status FROM audit WHERE event_type = 'manual_sync'") == [("no_linked_issue",)]


async def test_sync_refusals_name_the_field_and_queue_nothing(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    invalid, missing, precondition = (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    cases = [
        (sync("sideways"), invalid, "direction: "),
        (sync(ticket_id=""), invalid, "ticket_id: "),
        (sync(ticket_id="SD-1"), invalid, "ticket_id: "),
        (sync(desk="github"), invalid, "desk: "),
        (sync(desk="waldur"), precondition, "outbound sync is not configured for waldur"),
        (sync("both", "waldur"), precondition, "outbound sync is not configured for waldur"),
        (sync(ticket_id=UNKNOWN), missing, f"ticket {UNKNOWN} is not in the local mirror"),
        (sync("inbound", ticket_id=UNKNOWN), missing, f"ticket {UNKNOWN} is not in the local mirror"),
    ]
    for request, code, detail in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await control.SyncTicket(request)
        assert refused.value.code() == code, request
        assert (refused.value.details() or "").startswith(detail), refused.value.details()
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(0,)]
    assert rows(store, "SELECT COUNT(*) FROM inbound_queue") == [(0,)]
    assert rows(store, "SELECT COUNT(*) FROM audit WHERE event_type = 'manual_sync'") == [(0,)]


async def test_a_paused_direction_refuses_its_sync(store: Store, control: control_pb2_grpc.ControlStub) -> None:
    await store.write("pause", pause_txn, ("outbound",), "jira", "ops@example", "desk migration", time.time())
    for request in (sync(), sync("both"), sync("outbound", "jira")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await control.SyncTicket(request)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        detail = refused.value.details() or ""
        assert detail.startswith("outbound is paused for jira (since ") and detail.endswith(", by ops@example)")
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(0,)]
    assert rows(store, "SELECT COUNT(*) FROM inbound_queue") == [(0,)]  # `both` queued no half of itself

    inbound = await control.SyncTicket(sync("inbound"))  # the other direction still runs
    assert inbound.rereads_queued == 1

    await store.write("pause all", pause_txn, ("inbound",), EVERY_DESK, "ops@example", "", time.time())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await control.SyncTicket(sync("inbound", "jira"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (refused.value.details() or "").startswith("inbound is paused for jira (since ")

    await store.write("resume", resume_txn, ("outbound", "inbound"), None)
    answer = await control.SyncTicket(sync())
    assert answer.jobs_queued == 1


async def test_redrive_job_codes(store: Store, control: control_pb2_grpc.ControlStub) -> None:
    def seed(conn: sqlite3.Connection) -> tuple[int, int, int]:
        now = time.time()
        for key, desk in (("a", "jira"), ("b", "jira"), ("c", "waldur")):
            queue_update_job_txn(conn, key, desk, TICKET, "test", now)
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM jobs ORDER BY id")]
        dead_job_txn(conn, ids[0], "desk said no", now)
        dead_job_txn(conn, ids[2], "desk said no", now)  # a dead job of a desk no longer configured
        return ids[0], ids[1], ids[2]

    dead, pending, unconfigured = await store.write("seed", seed)
    cases = [
        (control_pb2.RedriveJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, "give a job id, or all_dead=true"),
        (control_pb2.RedriveJobRequest(id=dead, all_dead=True), grpc.StatusCode.INVALID_ARGUMENT, "give a job id"),
        (control_pb2.RedriveJobRequest(id=-1), grpc.StatusCode.INVALID_ARGUMENT, "give a job id"),
        (control_pb2.RedriveJobRequest(all_dead=True, desk="github"), grpc.StatusCode.INVALID_ARGUMENT, "desk: "),
        (control_pb2.RedriveJobRequest(id=999), grpc.StatusCode.NOT_FOUND, "job 999 does not exist"),
        (
            control_pb2.RedriveJobRequest(id=pending),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"job {pending} is pending, not dead",
        ),
        (
            control_pb2.RedriveJobRequest(all_dead=True, desk="waldur"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "desk waldur is not configured",
        ),
        (
            control_pb2.RedriveJobRequest(id=unconfigured),
            grpc.StatusCode.FAILED_PRECONDITION,
            "desk waldur is not configured",
        ),
    ]
    for request, code, detail in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await control.RedriveJob(request)
        assert refused.value.code() == code, request
        assert (refused.value.details() or "").startswith(detail), refused.value.details()
    assert rows(store, "SELECT id FROM jobs WHERE state = 'dead' ORDER BY id") == [(dead,), (unconfigured,)]

    answer = await control.RedriveJob(control_pb2.RedriveJobRequest(id=dead))
    assert answer.redriven == 1
    assert rows(store, f"SELECT state, attempts FROM jobs WHERE id = {dead}") == [("pending", 0)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await control.RedriveJob(control_pb2.RedriveJobRequest(id=dead))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    answer = await control.RedriveJob(control_pb2.RedriveJobRequest(all_dead=True, desk="jira"))
    assert answer.redriven == 0
    audits = rows(store, "SELECT desk, details_json FROM audit WHERE event_type = 'jobs_redriven' ORDER BY id")
    assert [(d, json.loads(j)) for d, j in audits] == [
        ("jira", {"job_id": dead, "count": 1}),
        ("jira", {"job_id": 0, "count": 0}),
    ]
