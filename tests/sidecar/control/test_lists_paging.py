"""ListJobs, ListTxIntents and ListConflicts over a real grpc.aio server on loopback and a real SQLite store:
keyset pages that stay exact while rows are added, tokens bound to their list, every filter, every refusal."""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from sidecar.store.db import Store
from sidecar.store.inbound import record_conflict_txn
from sidecar.store.intents import dead_letter_txn, queue_intent_txn
from sidecar.store.jobs import dead_job_txn, finish_job_txn, queue_update_job_txn
from tests.sidecar.control.kit import control_stub, desk_deps, opened_store

A = "virtengine1customer0000000000000000000000000000"
T1, T2 = f"{A}/support/1", f"{A}/support/2"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "sidecar.db") as s:
        yield s


@pytest.fixture
async def control(store: Store) -> AsyncIterator[control_pb2_grpc.ControlStub]:
    async with control_stub(desk_deps(store, ["jira", "waldur"])) as stub:
        yield stub


def add_jobs(
    count: int, start: int, desk: str = "jira", ticket_id: str = T1
) -> Callable[[sqlite3.Connection], list[int]]:
    """A txn adding `count` update jobs; returns their ids, oldest first."""

    def txn(conn: sqlite3.Connection) -> list[int]:
        now = time.time()
        for n in range(start, start + count):
            queue_update_job_txn(conn, f"test:{n}", desk, ticket_id, "test", now)
        rows = conn.execute("SELECT id FROM jobs WHERE dedupe_key LIKE 'test:%' ORDER BY id").fetchall()
        return [int(r[0]) for r in rows][-count:]

    return txn


async def refused(call: Callable[[Any], Awaitable[Any]], request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request)
    return caught.value


async def test_paging_250_jobs_by_100_returns_each_once_in_order_while_rows_are_added(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    original = await store.write("jobs", add_jobs(250, 0))
    seen: list[int] = []
    pages: list[int] = []
    token = ""
    added = 0
    while True:
        answer = await control.ListJobs(control_pb2.ListJobsRequest(limit=100, page_token=token))
        seen.extend(j.id for j in answer.jobs)
        pages.append(len(answer.jobs))
        token = answer.next_page_token
        if not token:
            break
        await store.write("more jobs", add_jobs(7, 1000 + added))
        added += 7
    assert pages == [100, 100, 50]
    assert seen == sorted(original, reverse=True)  # each exactly once, newest first, none of the added ones
    first = await control.ListJobs(control_pb2.ListJobsRequest())  # default limit 100; the new rows lead
    assert len(first.jobs) == 100 and first.next_page_token
    assert first.jobs[0].id == max(original) + added
    whole = await control.ListJobs(control_pb2.ListJobsRequest(limit=1000))
    assert len(whole.jobs) == 250 + added and whole.next_page_token == ""
    exact = await control.ListJobs(control_pb2.ListJobsRequest(limit=250 + added))
    assert len(exact.jobs) == 250 + added and exact.next_page_token == ""  # a complete list says so


async def test_a_page_token_belongs_to_its_list_and_bad_limits_are_refused(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    await store.write("jobs", add_jobs(3, 0))
    token = (await control.ListJobs(control_pb2.ListJobsRequest(limit=1))).next_page_token
    assert token
    forged = base64.urlsafe_b64encode(b"v2:jobs:2").decode().rstrip("=")
    for call, request in (
        (control.ListConflicts, control_pb2.ListConflictsRequest(page_token=token)),
        (control.ListTxIntents, control_pb2.ListTxIntentsRequest(page_token=token)),
        (control.ListJobs, control_pb2.ListJobsRequest(page_token="not base64!")),
        (control.ListJobs, control_pb2.ListJobsRequest(page_token=forged)),
        (control.ListJobs, control_pb2.ListJobsRequest(page_token=token + "x" * 200)),
    ):
        error = await refused(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("page_token: ")
    for limit in (-1, 1001):
        for call, request in (
            (control.ListJobs, control_pb2.ListJobsRequest(limit=limit)),
            (control.ListConflicts, control_pb2.ListConflictsRequest(limit=limit)),
            (control.ListTxIntents, control_pb2.ListTxIntentsRequest(limit=limit)),
        ):
            error = await refused(call, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (error.details() or "").startswith("limit: ")
    nxt = await control.ListJobs(control_pb2.ListJobsRequest(limit=1, page_token=token))
    assert len(nxt.jobs) == 1  # the token still works in its own list


async def test_job_filters_by_state_desk_and_ticket_page_within_the_filter(
    store: Store, control: control_pb2_grpc.ControlStub
) -> None:
    jira1 = await store.write("jobs", add_jobs(4, 0, "jira", T1))
    waldur2 = await store.write("jobs", add_jobs(3, 10, "waldur", T2))
    jira2 = await store.write("jobs", add_jobs(2, 20, "jira", T2))

    def settle(conn: sqlite3.Connection) -> None:
        now = time.time()
        dead_job_txn(conn, jira1[0], "desk said no", now)
        dead_job_txn(conn, waldur2[1], "desk said no", now)
        finish_job_txn(conn, jira2[0], now)

    await store.write("settle", settle)

    async def ids(**fields: Any) -> list[int]:
        out: list[int] = []
        token = ""
        while True:  # pages of 2, so every filter is also paged
            answer = await control.ListJobs(control_pb2.ListJobsRequest(limit=2, page_token=token, **fields))
            out.extend(j.id for j in answer.jobs)
            token = answer.next_page_token
            if not token:
                return out

    assert await ids(state="dead") == [waldur2[1], jira1[0]]
    assert await ids(state="done") == [jira2[0]]
    assert await ids(desk="waldur") == sorted(waldur2, reverse=True)
    assert await ids(ticket_id=T2) == sorted(waldur2 + jira2, reverse=True)
    assert await ids(ticket_id=T2, desk="jira") == sorted(jira2, reverse=True)
    assert await ids(state="pending", desk="jira", ticket_id=T1) == sorted(jira1[1:], reverse=True)
    assert await ids(state="skipped") == []
    for fields, name in (
        ({"state": "stuck"}, "state"),
        ({"desk": "github"}, "desk"),
        ({"ticket_id": "not-a-ticket"}, "ticket_id"),
        ({"ticket_id": f"{A}/support/0"}, "ticket_id"),
    ):
        error = await refused(control.ListJobs, control_pb2.ListJobsRequest(**fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith(f"{name}: ")


async def test_intent_filters_by_state_and_ticket(store: Store, control: control_pb2_grpc.ControlStub) -> None:
    def seed(conn: sqlite3.Connection) -> list[int]:
        made = [
            queue_intent_txn(conn, f"intent:{n}", "MsgTest", ticket, b"\x01")
            for n, ticket in enumerate((T1, T2, T1, None, T2))
        ]
        dead_letter_txn(conn, [made[1], made[2]], 5, "refused by the chain", [])
        return made

    made = await store.write("intents", seed)

    async def ids(**fields: Any) -> list[int]:
        answer = await control.ListTxIntents(control_pb2.ListTxIntentsRequest(**fields))
        return [i.id for i in answer.intents]

    assert await ids() == sorted(made, reverse=True)
    assert await ids(state="dead") == [made[2], made[1]]
    assert await ids(ticket_id=T1) == [made[2], made[0]]
    assert await ids(ticket_id=T2, state="queued") == [made[4]]
    page = await control.ListTxIntents(control_pb2.ListTxIntentsRequest(limit=3))
    rest = await control.ListTxIntents(control_pb2.ListTxIntentsRequest(limit=3, page_token=page.next_page_token))
    assert [i.id for i in page.intents] + [i.id for i in rest.intents] == sorted(made, reverse=True)
    assert rest.next_page_token == ""
    for fields, name in (({"state": "lost"}, "state"), ({"ticket_id": "x/support/1/2"}, "ticket_id")):
        error = await refused(control.ListTxIntents, control_pb2.ListTxIntentsRequest(**fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith(f"{name}: ")


async def test_conflict_filters_by_state_desk_and_ticket(store: Store, control: control_pb2_grpc.ControlStub) -> None:
    def seed(conn: sqlite3.Connection) -> list[int]:
        return [
            record_conflict_txn(
                conn,
                ticket,
                desk,
                "priority",
                base="normal",
                chain_value="urgent",
                desk_value="low",
                strategy="manual",
                rule="manual" if winner is None else "chain_wins",
                winner=winner,
                now=time.time(),
            )
            for ticket, desk, winner in (
                (T1, "jira", None),
                (T1, "waldur", "chain"),
                (T2, "jira", None),
                (T2, "waldur", None),
                (T2, "jira", "desk"),
            )
        ]

    made = await store.write("conflicts", seed)

    async def ids(**fields: Any) -> list[int]:
        answer = await control.ListConflicts(control_pb2.ListConflictsRequest(**fields))
        return [c.id for c in answer.conflicts]

    assert await ids() == [made[3], made[2], made[0]]  # open ones by default
    assert await ids(include_resolved=True) == sorted(made, reverse=True)
    assert await ids(state="resolved") == [made[4], made[1]]
    assert await ids(state="open", include_resolved=True) == [made[3], made[2], made[0]]
    assert await ids(desk="waldur", include_resolved=True) == [made[3], made[1]]
    assert await ids(ticket_id=T2) == [made[3], made[2]]
    assert await ids(ticket_id=T2, desk="jira", state="resolved") == [made[4]]
    page = await control.ListConflicts(control_pb2.ListConflictsRequest(include_resolved=True, limit=4))
    assert len(page.conflicts) == 4 and page.next_page_token
    rest = await control.ListConflicts(
        control_pb2.ListConflictsRequest(include_resolved=True, limit=4, page_token=page.next_page_token)
    )
    assert [c.id for c in rest.conflicts] == [made[0]] and rest.next_page_token == ""
    for fields, name in (
        ({"state": "pending"}, "state"),
        ({"desk": "zendesk"}, "desk"),
        ({"ticket_id": "support/1"}, "ticket_id"),
    ):
        error = await refused(control.ListConflicts, control_pb2.ListConflictsRequest(**fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith(f"{name}: ")
