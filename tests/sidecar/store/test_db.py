"""The SQLite store on real files: migrations, refusal of newer schemas, the writer path."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from sidecar.errors import StoreError
from sidecar.store.audit import GENESIS_HASH, AuditEntry, append_audit_txn, row_hash
from sidecar.store.db import Store
from sidecar.store.migrations import LATEST_VERSION
from sidecar.store.status import queue_figures

TABLES = {
    "meta",
    "cursor",
    "chain_inbox",
    "tickets",
    "external_refs",
    "field_state",
    "jobs",
    "tx_intents",
    "tx_batches",
    "conflicts",
    "webhook_deliveries",
    "audit",
    "schema_migrations",
}


async def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "sidecar.db"
    store = await Store.open(str(path))
    await store.close()
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= TABLES
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, LATEST_VERSION + 1))
    conn.close()


async def test_reopen_applies_nothing_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    for _ in range(2):
        store = await Store.open(path)
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == LATEST_VERSION
    conn.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = await Store.open(path)
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (LATEST_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=rf"schema version {LATEST_VERSION + 1}, newer than this sidecar knows"):
        await Store.open(path)


async def test_write_rolls_back_on_error(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db"))

    def failing_txn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.write("failing", failing_txn)
    count = await store.read("count", lambda c: c.execute("SELECT COUNT(*) FROM meta").fetchone()[0])
    assert count == 0
    await store.close()


async def test_writes_run_on_one_thread_off_the_event_loop(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db"))
    loop_thread = threading.get_ident()
    seen: set[int] = set()

    def insert_txn(conn: sqlite3.Connection, n: int) -> None:
        seen.add(threading.get_ident())
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{n}", str(n)))

    await asyncio.gather(*(store.write("insert", insert_txn, n) for n in range(50)))
    assert len(seen) == 1 and loop_thread not in seen
    count = await store.read("count", lambda c: c.execute("SELECT COUNT(*) FROM meta").fetchone()[0])
    assert count == 50
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.read("after close", lambda c: None)


async def test_queue_figures_on_an_empty_store(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db"))
    figures = await store.read("figures", queue_figures)
    assert (figures.pending_events, figures.failed_events, figures.last_sync, figures.cursor_height) == (
        0,
        0,
        None,
        None,
    )
    await store.close()


async def test_audit_rows_chain_by_hash(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db"))
    await store.write("a1", append_audit_txn, AuditEntry("config_loaded", details={"k": 1}), 1.0)
    await store.write("a2", append_audit_txn, AuditEntry("ticket_created", ticket_id="t/support/1", desk="jira"), 2.0)
    rows = await store.read("rows", lambda c: [dict(r) for r in c.execute("SELECT * FROM audit ORDER BY id")])
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    for row in rows:
        assert row_hash(row) == row["hash"]
    await store.close()


async def test_upgrades_a_version_one_database_keeping_its_rows(tmp_path: Path) -> None:
    from sidecar.store.migrations import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)")
    for statement in _statements(MIGRATIONS[0].sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', 0)")
    conn.execute("INSERT INTO tx_intents (dedupe_key, msg_type, ticket_id, msg_bytes, created_at, updated_at) "
                 "VALUES ('k', 'm', 't', x'00', 0, 0)")
    conn.commit()
    conn.close()
    store = await Store.open(str(path))
    await store.close()
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == list(
        range(1, LATEST_VERSION + 1)
    )
    assert conn.execute("SELECT dedupe_key FROM tx_intents").fetchall() == [("k",)]
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'tx_intents_ticket'").fetchone() == (1,)
    conn.close()
