"""The durable job queue on a real SQLite file: dispatch, per-ticket order, retry, dead letter, re-drive."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.chain.events import decode_block
from sidecar.store.db import Store
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


async def test_own_events_make_no_jobs(store: Store) -> None:
    await store.write("dispatch", dispatch_inbox_txn, ["jira"], [AGENT], 100, 1.0)
    assert await store.read("k", kinds, "jira") == ["create", "close", "close"]  # the agent's own changes echo


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
