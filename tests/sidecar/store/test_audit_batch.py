"""The batched audit append writes the very rows, ids and hash chain that one append per entry writes
(real SQLite files; well under a second)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar.store.audit import (
    AuditEntry,
    AuditRow,
    append_audit_many_txn,
    append_audit_txn,
    iter_audit_rows,
    purge_audit_txn,
    verify_audit,
)
from sidecar.store.db import Store

ENTRIES = [
    AuditEntry("ticket_created", ticket_id="t-1", desk="jira", status="ok", details={"n": 1}),
    AuditEntry("content_unavailable", ticket_id="t-2", status="placeholder", error="no key", block_height=7),
    # Cleaned like a single append: the content key is dropped and listed under `dropped`.
    AuditEntry("chain_event_poison", actor="chain", details={"event_id": "e-3", "body": "secret text"}),
    AuditEntry("external_ref_conflict", ticket_id="t-4", desk="waldur", details={"ids": ["a", "b"]}),
]


def chain(conn: sqlite3.Connection) -> tuple[list[AuditRow], bool, list[tuple[str, str]]]:
    meta = [(r[0], r[1]) for r in conn.execute("SELECT key, value FROM meta WHERE key LIKE 'audit_%' ORDER BY key")]
    return list(iter_audit_rows(conn)), verify_audit(conn).ok, meta


async def written(path: Path, batched: bool) -> tuple[list[AuditRow], bool, list[tuple[str, str]]]:
    """Two rows one by one, then ENTRIES (batched or one by one), then one more row one by one."""
    store = await Store.open(str(path))
    try:
        for n in range(2):
            await store.write("a", append_audit_txn, AuditEntry("before", details={"n": n}), 10.0 + n)

        def append(conn: sqlite3.Connection) -> int:
            if batched:
                return append_audit_many_txn(conn, [(entry, 20.0) for entry in ENTRIES])
            return [append_audit_txn(conn, entry, 20.0) for entry in ENTRIES][-1]

        last_id = await store.write("many", append)
        assert last_id == 2 + len(ENTRIES)
        await store.write("a", append_audit_txn, AuditEntry("after"), 30.0)
        return await store.read("chain", chain)
    finally:
        await store.close()


async def test_a_batched_append_writes_the_chain_of_single_appends_and_verifies(tmp_path: Path) -> None:
    single = await written(tmp_path / "single.db", batched=False)
    batched = await written(tmp_path / "batched.db", batched=True)
    assert batched == single
    rows, ok, meta = batched
    assert ok and len(rows) == 2 + len(ENTRIES) + 1
    assert '"dropped":["body"]' in rows[4].details_json and "secret text" not in rows[4].details_json
    assert ("audit_head_id", str(rows[-1].id)) in meta and ("audit_head_hash", rows[-1].hash) in meta


async def test_a_batched_append_links_to_the_purge_anchor_and_nothing_appends_nothing(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db"))
    try:
        await store.write("a", append_audit_many_txn, [(entry, 5.0) for entry in ENTRIES[:2]])
        await store.write("purge", purge_audit_txn, 100.0, 10)  # the table is empty: the anchor is row 2
        assert await store.write("none", append_audit_many_txn, []) == 0
        assert await store.write("b", append_audit_many_txn, [(entry, 200.0) for entry in ENTRIES[2:]]) == 4
        rows, ok, _ = await store.read("chain", chain)
    finally:
        await store.close()
    assert ok and [r.id for r in rows] == [3, 4]
