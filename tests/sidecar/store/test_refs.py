"""Refs on a real SQLite file: chain refs arrive unverified, never displace a recorded ref, and yield to
one the desk proved; create marks are durable; migration 3 marks old chain-only refs unverified."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn
from sidecar.store.migrations import MIGRATIONS, _statements
from sidecar.store.records import SupportEvent
from sidecar.store.refs import (
    RefRow,
    clear_create_mark_txn,
    evict_unverified_txn,
    get_create_mark,
    get_ref,
    mark_create_txn,
    record_ref_txn,
)
from tests.sidecar.stores import store_at
from tests.sidecar.sync.rig import CHAIN, created, linked, ticket_id


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with store_at(tmp_path / "db", CHAIN, 0) as s:
        yield s


async def commit(store: Store, height: int, *events: SupportEvent) -> None:
    placed = [replace(e, height=height, position=i, event_id=f"{e.event_id}@{height}") for i, e in enumerate(events)]
    await store.write("commit", commit_blocks_txn, CHAIN, [BlockBatch(height, placed, {})])


def audit(conn: sqlite3.Connection, event_type: str) -> list[tuple[str, str, dict[str, object]]]:
    rows = conn.execute("SELECT ticket_id, error, details_json FROM audit WHERE event_type = ?", (event_type,))
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


async def test_a_chain_ref_is_stored_unverified_and_a_recorded_ref_is_never_displaced(store: Store) -> None:
    await commit(store, 1, created(1), linked(1, "jira", "../../2/issue/OTHER-9"))
    ref = await store.read("ref", get_ref, ticket_id(1), "jira")
    assert ref is not None and (ref.external_id, ref.verified, ref.registered_on_chain) == (
        "../../2/issue/OTHER-9",
        False,
        True,
    )
    ours = RefRow(ticket_id(2), "jira", "10001", "VESUPPORT-1", "https://j/browse/VESUPPORT-1", False)
    await commit(store, 2, created(2))
    await store.write("record", record_ref_txn, ours, 1.0)
    await commit(store, 3, linked(2, "jira", "10999"))  # someone links another issue to our ticket
    kept = await store.read("ref", get_ref, ticket_id(2), "jira")
    assert kept is not None and (kept.external_id, kept.verified, kept.registered_on_chain) == ("10001", True, False)
    [(tid, error, details)] = await store.read("audit", audit, "external_ref_refused")
    assert tid == ticket_id(2) and "already has another desk ticket" in (error or "")
    assert details["recorded_id"] == "10001"
    await commit(store, 4, linked(3, "jira", "10001"), created(3))  # our issue linked to another ticket
    assert await store.read("ref", get_ref, ticket_id(3), "jira") is None
    assert len(await store.read("audit", audit, "external_ref_conflict")) == 1


async def test_a_ref_the_desk_proved_evicts_an_unverified_chain_ref_of_another_ticket(store: Store) -> None:
    await commit(store, 1, created(1), created(2), linked(2, "jira", "10005"))
    evicted = await store.write("evict", evict_unverified_txn, "jira", "10005", ticket_id(1))
    assert evicted == [ticket_id(2)]
    row = RefRow(ticket_id(1), "jira", "10005", "VESUPPORT-5", None, False)
    stored = await store.write("record", record_ref_txn, row, 1.0)
    assert stored.verified and stored.external_id == "10005"
    assert await store.read("ref", get_ref, ticket_id(2), "jira") is None


async def test_create_marks_count_sends_and_clear(store: Store) -> None:
    assert await store.read("mark", get_create_mark, "t", "jira") is None
    await store.write("mark", mark_create_txn, "t", "jira", 10.0)
    await store.write("mark", mark_create_txn, "t", "jira", 90.0)
    mark = await store.read("mark", get_create_mark, "t", "jira")
    assert mark is not None and (mark.sent_at, mark.sends) == (90.0, 2)
    await store.write("clear", clear_create_mark_txn, "t", "jira")
    assert await store.read("mark", get_create_mark, "t", "jira") is None


async def test_migration_three_marks_chain_only_refs_unverified(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)")
    for migration in MIGRATIONS[:2]:
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, migration.name))
    insert = (
        "INSERT INTO external_refs (ticket_id, desk, external_id, external_key, registered_on_chain, created_at,"
        " updated_at) VALUES (?, 'jira', ?, ?, 1, 0, 0)"
    )
    conn.execute(insert, ("ours", "10001", "VESUPPORT-1"))
    conn.execute(insert, ("from-chain", "10002", None))
    conn.commit()
    conn.close()
    store = await Store.open(str(path))
    try:
        ours = await store.read("ref", get_ref, "ours", "jira")
        chain = await store.read("ref", get_ref, "from-chain", "jira")
    finally:
        await store.close()
    assert ours is not None and ours.verified
    assert chain is not None and not chain.verified
