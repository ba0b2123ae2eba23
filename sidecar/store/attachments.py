"""Attachments copied between the artifact store and the desks: one row each, so nothing is copied twice.

Outbound rows are keyed by (desk, ticket, plaintext sha256); inbound rows by the desk's attachment id. A row
with a desk attachment id also recognises the sidecar's own uploads when a desk shows them back (echoes).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

DIRECTIONS = ("outbound", "inbound")
STATES = ("pending", "done", "withheld", "failed")


@dataclass(frozen=True)
class AttachmentRow:
    id: int
    direction: str
    desk: str
    ticket_id: str
    sha256: str | None
    size: int | None
    content_type: str | None
    ref: str | None
    desk_attachment_id: str | None
    state: str
    reason: str | None
    attempts: int
    created_at: float
    updated_at: float


def attachment_row(r: sqlite3.Row) -> AttachmentRow:
    return AttachmentRow(
        id=int(r["id"]),
        direction=r["direction"],
        desk=r["desk"],
        ticket_id=r["ticket_id"],
        sha256=r["sha256"],
        size=r["size"],
        content_type=r["content_type"],
        ref=r["ref"],
        desk_attachment_id=r["desk_attachment_id"],
        state=r["state"],
        reason=r["reason"],
        attempts=int(r["attempts"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


def known_desk_attachment(conn: sqlite3.Connection, desk: str, desk_attachment_id: str) -> AttachmentRow | None:
    """The row of a desk attachment the sidecar uploaded or already took in; None for one it never saw."""
    row = conn.execute(
        "SELECT * FROM attachments WHERE desk = ? AND desk_attachment_id = ?", (desk, desk_attachment_id)
    ).fetchone()
    return attachment_row(row) if row is not None else None


def ticket_attachments(conn: sqlite3.Connection, ticket_id: str) -> list[AttachmentRow]:
    rows = conn.execute("SELECT * FROM attachments WHERE ticket_id = ? ORDER BY id", (ticket_id,)).fetchall()
    return [attachment_row(r) for r in rows]


def referenced_refs(conn: sqlite3.Connection) -> set[str]:
    """Artifact refs some attachment row still names (garbage collection keeps these)."""
    return {r[0] for r in conn.execute("SELECT DISTINCT ref FROM attachments WHERE ref IS NOT NULL")}


@dataclass(frozen=True)
class CollectGuard:
    """What artifact garbage collection must respect, read in one snapshot.

    `pending_events`: chain events not yet processed (the objects they name are not known yet).
    `oldest_job`: when the oldest unfinished desk job was queued (its attachments may have no row yet).
    `watermark` changes whenever a row that could name an object is added.
    """

    referenced: frozenset[str]
    pending_events: int
    oldest_job: float | None
    watermark: tuple[int, int, int]


def collect_guard(conn: sqlite3.Connection) -> CollectGuard:
    referenced = frozenset(referenced_refs(conn))
    pending = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
    oldest = conn.execute("SELECT MIN(created_at) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
    marks = conn.execute(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM chain_inbox), (SELECT COALESCE(MAX(id), 0) FROM jobs),"
        " (SELECT COALESCE(MAX(id), 0) FROM attachments)"
    ).fetchone()
    return CollectGuard(
        referenced,
        int(pending),
        float(oldest) if oldest is not None else None,
        (int(marks[0]), int(marks[1]), int(marks[2])),
    )


# --- outbound attachment jobs (sidecar/sync/attach_out.py) ------------------------------------------------
def add_outbound_txn(
    conn: sqlite3.Connection,
    desk: str,
    ticket_id: str,
    sha256: str | None,
    size: int | None,
    content_type: str | None,
    ref: str | None,
    now: float,
) -> tuple[int, bool]:
    """(row id, created) of the outbound row for one file at one desk issue: created pending, or the one that
    exists for the same plaintext sha256. A listing too malformed to have a sha256 always gets a new row
    (its job's dedupe key is what keeps it single)."""
    if sha256 is not None:
        existing = conn.execute(
            "SELECT id FROM attachments WHERE direction = 'outbound' AND desk = ? AND ticket_id = ? AND sha256 = ?",
            (desk, ticket_id, sha256),
        ).fetchone()
        if existing is not None:
            return int(existing[0]), False
    cur = conn.execute(
        "INSERT INTO attachments (direction, desk, ticket_id, sha256, size, content_type, ref, state, created_at,"
        " updated_at) VALUES ('outbound', ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (desk, ticket_id, sha256, size, content_type, ref, now, now),
    )
    return int(cur.lastrowid or 0), True


def attachment_by_id(conn: sqlite3.Connection, row_id: int) -> AttachmentRow | None:
    row = conn.execute("SELECT * FROM attachments WHERE id = ?", (row_id,)).fetchone()
    return attachment_row(row) if row is not None else None


def count_attempt_txn(conn: sqlite3.Connection, row_id: int, now: float) -> None:
    conn.execute("UPDATE attachments SET attempts = attempts + 1, updated_at = ? WHERE id = ?", (now, row_id))


def mark_done_txn(conn: sqlite3.Connection, row_id: int, desk_attachment_id: str, now: float) -> bool:
    """Record the desk's attachment id: the file is at the desk. False (row done, id not kept) when another row
    already holds that desk id (inbound intake saw the upload first): the id stays with that row."""
    row = attachment_by_id(conn, row_id)
    holder = known_desk_attachment(conn, row.desk, desk_attachment_id) if row is not None else None
    kept = holder is None or holder.id == row_id
    conn.execute(
        "UPDATE attachments SET state = 'done', reason = NULL, desk_attachment_id = COALESCE(?, desk_attachment_id),"
        " updated_at = ? WHERE id = ?",
        (desk_attachment_id if kept else None, now, row_id),
    )
    return kept


def mark_withheld_txn(conn: sqlite3.Connection, row_id: int, reason: str, now: float) -> None:
    conn.execute(
        "UPDATE attachments SET state = 'withheld', reason = ?, updated_at = ? WHERE id = ?", (reason, now, row_id)
    )


# inbound (desk -> chain) ---------------------------------------------------------------------------
def record_inbound_txn(
    conn: sqlite3.Connection, desk: str, ticket_id: str, desk_attachment_id: str, now: float
) -> bool:
    """A new desk attachment to take in (state pending); False when the desk id already has a row."""
    cur = conn.execute(
        "INSERT INTO attachments (direction, desk, ticket_id, desk_attachment_id, state, created_at, updated_at)"
        " VALUES ('inbound', ?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
        (desk, ticket_id, desk_attachment_id, now, now),
    )
    return cur.rowcount == 1


def pending_inbound(conn: sqlite3.Connection, desks: list[str], limit: int) -> list[AttachmentRow]:
    """Inbound rows still to take in at these desks, oldest first (the caller applies its backoff)."""
    if not desks:
        return []
    marks = ",".join("?" * len(desks))
    rows = conn.execute(
        f"SELECT * FROM attachments WHERE direction = 'inbound' AND state = 'pending' AND desk IN ({marks})"
        " ORDER BY updated_at, id LIMIT ?",
        (*desks, limit),
    ).fetchall()
    return [attachment_row(r) for r in rows]


def outbound_by_hash(conn: sqlite3.Connection, desk: str, ticket_id: str, sha256: str) -> AttachmentRow | None:
    """The outbound row of a file the sidecar copied to this desk issue (echo recognition by hash)."""
    row = conn.execute(
        "SELECT * FROM attachments WHERE direction = 'outbound' AND desk = ? AND ticket_id = ? AND sha256 = ?",
        (desk, ticket_id, sha256.lower()),
    ).fetchone()
    return attachment_row(row) if row is not None else None


def finish_inbound_txn(
    conn: sqlite3.Connection,
    row_id: int,
    state: str,
    now: float,
    *,
    reason: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    content_type: str | None = None,
    ref: str | None = None,
) -> None:
    """A pending inbound row reaches `state` (done, withheld, failed) with what is known of the file."""
    conn.execute(
        "UPDATE attachments SET state = ?, reason = ?, sha256 = COALESCE(?, sha256), size = COALESCE(?, size),"
        " content_type = COALESCE(?, content_type), ref = COALESCE(?, ref), updated_at = ?"
        " WHERE id = ? AND direction = 'inbound' AND state = 'pending'",
        (state, reason, sha256, size, content_type, ref, now, row_id),
    )


def retry_inbound_txn(conn: sqlite3.Connection, row_id: int, reason: str | None, now: float) -> None:
    """One failed attempt: counted, and `reason` kept (a refusal whose desk note is still owed keeps its code)."""
    conn.execute(
        "UPDATE attachments SET attempts = attempts + 1, reason = ?, updated_at = ?"
        " WHERE id = ? AND direction = 'inbound' AND state = 'pending'",
        (reason, now, row_id),
    )


def adopt_echo_txn(conn: sqlite3.Connection, inbound_id: int, outbound_id: int, desk_attachment_id: str) -> None:
    """An inbound row that turned out to be the sidecar's own upload (same hash as an outbound row without a
    desk id: a crash between upload and record): the outbound row takes the desk id, the inbound row goes."""
    conn.execute("DELETE FROM attachments WHERE id = ? AND direction = 'inbound'", (inbound_id,))
    conn.execute(
        "UPDATE attachments SET desk_attachment_id = ? WHERE id = ? AND desk_attachment_id IS NULL",
        (desk_attachment_id, outbound_id),
    )
