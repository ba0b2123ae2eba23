"""External refs: the one desk ticket of each (chain ticket, desk) — the anchor of idempotent creates."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class RefRow:
    ticket_id: str
    desk: str
    external_id: str
    external_key: str | None
    external_url: str | None
    registered_on_chain: bool


def get_ref(conn: sqlite3.Connection, ticket_id: str, desk: str) -> RefRow | None:
    row = conn.execute("SELECT * FROM external_refs WHERE ticket_id = ? AND desk = ?", (ticket_id, desk)).fetchone()
    if row is None:
        return None
    return RefRow(
        row["ticket_id"],
        row["desk"],
        row["external_id"],
        row["external_key"],
        row["external_url"],
        bool(row["registered_on_chain"]),
    )


def record_ref_txn(conn: sqlite3.Connection, ref: RefRow, now: float) -> RefRow:
    """Record the desk's answer; a ref already present (e.g. linked on chain meanwhile) wins and is returned."""
    conn.execute(
        "INSERT INTO external_refs (ticket_id, desk, external_id, external_key, external_url, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ticket_id, desk) DO UPDATE SET"
        " external_key = COALESCE(external_refs.external_key, excluded.external_key),"
        " external_url = COALESCE(external_refs.external_url, excluded.external_url), updated_at = excluded.updated_at",
        (ref.ticket_id, ref.desk, ref.external_id, ref.external_key, ref.external_url, now, now),
    )
    stored = get_ref(conn, ref.ticket_id, ref.desk)
    assert stored is not None
    return stored


def count_refs(conn: sqlite3.Connection, desk: str) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM external_refs WHERE desk = ?", (desk,)).fetchone()[0])
