"""The audit hash chain on a real SQLite file: what verify accepts, and each kind of tampering it catches."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.errors import StoreError
from sidecar.store.audit import (
    GENESIS_HASH,
    AuditEntry,
    append_audit_txn,
    audit_anchor,
    iter_audit_rows,
    open_audit_reader,
    purge_audit_txn,
    row_hash,
    verify_audit,
)
from sidecar.store.db import Store

DAY = 86400.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[str]:
    """A database with rows 1..6, one a day starting at day 1."""
    path = str(tmp_path / "sidecar.db")
    store = await Store.open(path)
    for day in range(1, 7):
        entry = AuditEntry("ticket_created", ticket_id=f"t-{day}", desk="jira", status="ok", details={"n": day})
        await store.write("audit", append_audit_txn, entry, day * DAY)
    await store.close()
    return path


def tamper(path: str, sql: str, *params: object) -> None:
    """What an intruder with the file would do: plain SQL on a separate connection."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def verdict(path: str) -> tuple[int | None, str | None, int]:
    conn = open_audit_reader(path)
    try:
        result = verify_audit(conn)
    finally:
        conn.close()
    return result.bad_id, result.reason, result.checked


def test_intact_chain_verifies_and_links_from_genesis(db: str) -> None:
    assert verdict(db) == (None, None, 6)
    conn = open_audit_reader(db)
    rows = list(iter_audit_rows(conn))
    conn.close()
    assert len(rows) == 6 and rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert all(r.computed_hash() == r.hash for r in rows)


def test_each_hash_is_the_sha256_of_the_documented_canonical_json(tmp_path: Path) -> None:
    """Recomputed here from the stored columns with json.dumps itself: a row's details are stored, and its hash
    taken, as compact JSON with sorted keys, so rows written by any version keep verifying. Non-ASCII text, a float
    time, nested lists and None are in the row."""
    path = str(tmp_path / "sidecar.db")

    async def write() -> None:
        store = await Store.open(path)
        details = {"z_count": 2, "a_ids": ["é", "b"], "m_flag": True, "n": None, "ratio": 0.1}
        entry = AuditEntry("external_ref_conflict", ticket_id="t-ü", desk="waldur", status="ok", details=details)
        await store.write("audit", append_audit_txn, entry, 1733034000.123456)
        await store.close()

    asyncio.run(write())
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM audit").fetchone())
    conn.close()
    assert row["details_json"] == json.dumps(json.loads(row["details_json"]), separators=(",", ":"), sort_keys=True)
    assert row["details_json"].startswith('{"a_ids":["\\u00e9","b"],"m_flag":true')
    names = ("ts", "event_type", "ticket_id", "desk", "direction", "actor", "status", "error", "block_height")
    fields = [row[n] for n in (*names, "tx_hash", "details_json", "prev_hash")]
    canonical = json.dumps(fields, separators=(",", ":"), sort_keys=True)
    assert row["hash"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_changed_field_is_reported_at_its_row(db: str) -> None:
    tamper(db, "UPDATE audit SET status = 'failed' WHERE id = 3")
    bad_id, reason, checked = verdict(db)
    assert (bad_id, checked) == (3, 2)
    assert reason == "row 3 was changed after it was written"


def test_a_changed_row_with_a_recomputed_hash_breaks_the_next_link(db: str) -> None:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM audit WHERE id = 4").fetchone())
    conn.close()
    row["details_json"] = '{"n":400}'
    tamper(db, "UPDATE audit SET details_json = ?, hash = ? WHERE id = 4", row["details_json"], row_hash(row))
    assert verdict(db)[:2] == (5, "row 5 does not link to row 4 (changed or removed)")


def test_a_deleted_middle_row_is_reported_missing(db: str) -> None:
    tamper(db, "DELETE FROM audit WHERE id = 2")
    assert verdict(db)[:2] == (2, "row 2 is missing (next stored row is 3)")


def test_deleted_first_and_last_rows_are_caught(db: str, tmp_path: Path) -> None:
    tamper(db, "DELETE FROM audit WHERE id = 6")
    assert verdict(db)[:2] == (6, "rows 6..6 were removed from the end")
    tamper(db, "DELETE FROM audit WHERE id = 1")
    assert verdict(db)[0] == 1


def test_a_forged_row_appended_outside_the_sidecar_is_caught(db: str) -> None:
    tamper(db, "INSERT INTO audit (ts, event_type, details_json, prev_hash, hash) VALUES (9, 'x', '{}', 'a', 'b')")
    assert verdict(db)[0] == 7


async def test_purge_removes_a_prefix_and_the_rest_verifies_from_the_anchor(db: str) -> None:
    store = await Store.open(db)
    purge = await store.write("purge", purge_audit_txn, 3.5 * DAY, 100)
    anchor = await store.read("anchor", audit_anchor)
    await store.write("audit", append_audit_txn, AuditEntry("sync_succeeded"), 7 * DAY)
    await store.close()
    assert purge.count == 3
    assert anchor.id == 3 and purge.anchor == anchor
    assert verdict(db) == (None, None, 4)  # rows 4, 5, 6 and the new 7
    tamper(db, "DELETE FROM audit WHERE id = 4")
    assert verdict(db)[:2] == (4, "row 4 is missing (next stored row is 5)")


async def test_purge_keeps_a_newer_row_and_everything_after_it(tmp_path: Path) -> None:
    """A clock that stepped back must not let retention cut a hole in the chain."""
    store = await Store.open(str(tmp_path / "db"))
    for ts in (1 * DAY, 2 * DAY, 9 * DAY, 3 * DAY, 4 * DAY):
        await store.write("audit", append_audit_txn, AuditEntry("x"), ts)
    purge = await store.write("purge", purge_audit_txn, 5 * DAY, 100)
    await store.close()
    assert purge.count == 2 and purge.anchor.id == 2
    assert verdict(str(tmp_path / "db")) == (None, None, 3)


async def test_purge_works_in_batches(db: str) -> None:
    store = await Store.open(db)
    first = await store.write("purge", purge_audit_txn, 100 * DAY, 4)
    second = await store.write("purge", purge_audit_txn, 100 * DAY, 4)
    third = await store.write("purge", purge_audit_txn, 100 * DAY, 4)
    await store.close()
    assert (first.count, second.count, third.count) == (4, 2, 0)
    assert third.anchor.id == 6
    assert verdict(db) == (None, None, 0)


def test_reader_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"):
        open_audit_reader(str(tmp_path / "absent.db"))
