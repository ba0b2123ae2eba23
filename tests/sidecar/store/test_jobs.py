"""The durable job queue on a real SQLite file: dispatch, per-ticket order, retry, dead letter, re-drive."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.chain.events import decode_block
from sidecar.store.db import Store
from sidecar.store.inbound import record_origin_txn
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn
from sidecar.store.jobs import (
    claim_due_txn,
    dead_job_txn,
    dispatch_inbox_txn,
    finish_job_txn,
    list_jobs,
    redrive_txn,
    release_running_txn,
    retry_job_txn,
)
from tests.sidecar.chain.test_events import all_heights, block_results

AGENT = "virtengine1agent00000000000000000000000000000000"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(str(tmp_path / "db"))
    await s.write("cursor", init_cursor_txn, "c", 99)
    batches = [BlockBatch(h, decode_block(block_results(h)), {}) for h in range(100, max(all_heights()) + 1)]
    await s.write("commit", commit_blocks_txn, "c", batches)
    yield s
    await s.close()


def kinds(conn: sqlite3.Connection, desk: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT kind FROM jobs WHERE desk = ? ORDER BY id", (desk,))]


async def test_dispatch_makes_one_job_per_event_and_desk(store: Store) -> None:
    taken = await store.write("dispatch", dispatch_inbox_txn, ["jira", "waldur"], [], 100, 1.0)
    assert taken == 10  # every vector event leaves the inbox
    expected = ["create", "update", "status", "comment", "status", "update", "status", "close", "close"]
    assert await store.read("k", kinds, "jira") == expected  # the linked event makes no job
    assert await store.read("k", kinds, "waldur") == expected
    assert await store.write("again", dispatch_inbox_txn, ["jira"], [], 100, 2.0) == 0


def own_reply_from(conn: sqlite3.Connection, desk: str) -> None:
    """Record the vector's reply as one the sidecar sealed from a comment at `desk` (inbound sync)."""
    row = conn.execute(
        "SELECT json_extract(payload_json, '$.payload_hash') FROM chain_inbox"
        " WHERE event_type = 'support_response_added'"
    ).fetchone()
    assert row is not None and row[0]
    record_origin_txn(conn, row[0], desk, "t")


async def test_own_events_reach_every_desk_but_a_reply_skips_the_desk_it_came_from(store: Store) -> None:
    # The agent's (the sidecar's) own updates are desk changes it carried to the chain: every desk gets
    # them (the origin desk already holds the values); its reply goes only to the other desk.
    await store.write("origin", own_reply_from, "jira")
    await store.write("dispatch", dispatch_inbox_txn, ["jira", "waldur"], [AGENT], 100, 1.0)
    expected = ["create", "update", "status", "comment", "status", "update", "status", "close", "close"]
    assert await store.read("k", kinds, "waldur") == expected
    assert await store.read("k", kinds, "jira") == [k for k in expected if k != "comment"]


async def test_a_reply_from_a_desk_reaches_that_desk_when_another_account_sent_it(store: Store) -> None:
    await store.write("origin", own_reply_from, "jira")
    await store.write("dispatch", dispatch_inbox_txn, ["jira"], ["virtengine1someoneelse"], 100, 1.0)
    assert "comment" in await store.read("k", kinds, "jira")


async def test_one_job_per_ticket_at_a_time_in_order(store: Store) -> None:
    await store.write("dispatch", dispatch_inbox_txn, ["jira"], [], 100, 1.0)
    first = await store.write("claim", claim_due_txn, "jira", 10.0, 10)
    assert [j.kind for j in first] == ["create"]
    assert await store.write("claim", claim_due_txn, "jira", 10.0, 10) == []  # the ticket's next job waits
    await store.write("retry", retry_job_txn, first[0].id, "HTTP 503", 50.0, 10.0)
    assert await store.write("claim", claim_due_txn, "jira", 20.0, 10) == []  # not due yet, still blocks
    again = await store.write("claim", claim_due_txn, "jira", 60.0, 10)
    assert [(j.kind, j.attempts, j.last_error) for j in again] == [("create", 1, "HTTP 503")]
    await store.write("finish", finish_job_txn, again[0].id, 61.0)
    nxt = await store.write("claim", claim_due_txn, "jira", 62.0, 10)
    assert [j.kind for j in nxt] == ["update"]


async def test_dead_jobs_are_visible_and_can_be_redriven(store: Store) -> None:
    await store.write("dispatch", dispatch_inbox_txn, ["jira"], [], 100, 1.0)
    (job,) = await store.write("claim", claim_due_txn, "jira", 10.0, 10)
    await store.write("dead", dead_job_txn, job.id, "HTTP 400: priority is invalid", 11.0)
    dead = await store.read("list", list_jobs, "dead", "jira", 10)
    assert [(j.id, j.last_error) for j in dead] == [(job.id, "HTTP 400: priority is invalid")]
    assert await store.write("redrive", redrive_txn, job.id, None, 12.0) == 1
    (back,) = await store.write("claim", claim_due_txn, "jira", 13.0, 10)
    assert (back.id, back.attempts) == (job.id, 0)


async def test_jobs_left_running_by_a_crash_are_released(store: Store) -> None:
    await store.write("dispatch", dispatch_inbox_txn, ["jira"], [], 100, 1.0)
    (job,) = await store.write("claim", claim_due_txn, "jira", 10.0, 10)
    assert await store.write("release", release_running_txn, 20.0) == 1
    (again,) = await store.write("claim", claim_due_txn, "jira", 21.0, 10)
    assert again.id == job.id
