"""External refs: the one desk ticket of each (chain ticket, desk) — the anchor of idempotent creates.

A ref the sidecar recorded from a desk answer is verified. A ref that came from the chain (anyone
with the agent role can register one) is not, until the desk ticket shows the sidecar's claim; an
unverified ref yields to one the desk proved. Create marks say a create was sent and when, so a
retry does not create twice while the desk's search lags.
"""

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
    verified: bool = True


def get_ref(conn: sqlite3.Connection, ticket_id: str, desk: str) -> RefRow | None:
    row = conn.execute("SELECT * FROM external_refs WHERE ticket_id = ? AND desk = ?", (ticket_id, desk)).fetchone()
    return ref_row(row) if row is not None else None


def ref_row(row: sqlite3.Row) -> RefRow:
    """An `external_refs` row as a RefRow."""
    return RefRow(
        row["ticket_id"],
        row["desk"],
        row["external_id"],
        row["external_key"],
        row["external_url"],
        bool(row["registered_on_chain"]),
        bool(row["verified"]),
    )


def record_ref_txn(conn: sqlite3.Connection, ref: RefRow, now: float) -> RefRow:
    """Record the desk's answer; a ref already present (e.g. linked on chain meanwhile) wins and is returned.

    The caller proved this desk ticket is the chain ticket's, so it is verified; call `evict_unverified_txn`
    first so an unchecked chain ref of another ticket cannot hold the desk ticket's id.
    """
    conn.execute(
        "INSERT INTO external_refs (ticket_id, desk, external_id, external_key, external_url, verified, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (ticket_id, desk) DO UPDATE SET"
        " external_key = COALESCE(external_refs.external_key, excluded.external_key),"
        " external_url = COALESCE(external_refs.external_url, excluded.external_url), updated_at = excluded.updated_at",
        (ref.ticket_id, ref.desk, ref.external_id, ref.external_key, ref.external_url, now, now),
    )
    stored = get_ref(conn, ref.ticket_id, ref.desk)
    assert stored is not None
    return stored


def evict_unverified_txn(conn: sqlite3.Connection, desk: str, external_id: str, ticket_id: str) -> list[str]:
    """Drop unchecked chain refs of other tickets naming this desk ticket; return their ticket ids."""
    rows = conn.execute(
        "SELECT ticket_id FROM external_refs WHERE desk = ? AND external_id = ? AND ticket_id != ? AND verified = 0",
        (desk, external_id, ticket_id),
    ).fetchall()
    evicted = [str(r[0]) for r in rows]
    for other in evicted:
        conn.execute("DELETE FROM external_refs WHERE ticket_id = ? AND desk = ?", (other, desk))
    return evicted


def verify_ref_txn(conn: sqlite3.Connection, ref: RefRow, now: float) -> None:
    """A chain ref whose desk ticket carries the sidecar's claim: adopted, with the desk's key and URL."""
    conn.execute(
        "UPDATE external_refs SET verified = 1, external_key = ?, external_url = COALESCE(?, external_url),"
        " updated_at = ? WHERE ticket_id = ? AND desk = ? AND external_id = ?",
        (ref.external_key, ref.external_url, now, ref.ticket_id, ref.desk, ref.external_id),
    )


def drop_ref_txn(conn: sqlite3.Connection, ticket_id: str, desk: str, external_id: str) -> None:
    """Forget a chain ref that was refused (the audit log keeps why); the ticket then gets its own desk ticket."""
    conn.execute(
        "DELETE FROM external_refs WHERE ticket_id = ? AND desk = ? AND external_id = ? AND verified = 0",
        (ticket_id, desk, external_id),
    )


def count_refs(conn: sqlite3.Connection, desk: str) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM external_refs WHERE desk = ?", (desk,)).fetchone()[0])


@dataclass(frozen=True)
class CreateMark:
    ticket_id: str
    desk: str
    sent_at: float  # when the latest create was about to be sent
    sends: int  # creates sent in all


def get_create_mark(conn: sqlite3.Connection, ticket_id: str, desk: str) -> CreateMark | None:
    row = conn.execute(
        "SELECT ticket_id, desk, sent_at, sends FROM create_marks WHERE ticket_id = ? AND desk = ?", (ticket_id, desk)
    ).fetchone()
    return CreateMark(row[0], row[1], float(row[2]), int(row[3])) if row else None


def mark_create_txn(conn: sqlite3.Connection, ticket_id: str, desk: str, now: float) -> None:
    """Committed before the create is sent: from here on a create may exist that no answer told us of."""
    conn.execute(
        "INSERT INTO create_marks (ticket_id, desk, sent_at) VALUES (?, ?, ?) ON CONFLICT (ticket_id, desk)"
        " DO UPDATE SET sent_at = excluded.sent_at, sends = create_marks.sends + 1",
        (ticket_id, desk, now),
    )


def clear_create_mark_txn(conn: sqlite3.Connection, ticket_id: str, desk: str) -> None:
    conn.execute("DELETE FROM create_marks WHERE ticket_id = ? AND desk = ?", (ticket_id, desk))
