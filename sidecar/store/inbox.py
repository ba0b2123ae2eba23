"""The chain cursor and inbox: every support event of committed blocks, exactly once.

A block's events and the cursor advance are written in one transaction, so after any crash the
cursor says precisely which heights are fully in the inbox.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.records import ContentCheck, PoisonEvent, SupportEvent
from sidecar.store.tickets import apply_event_txn


@dataclass(frozen=True)
class Cursor:
    chain_id: str
    height: int


@dataclass(frozen=True)
class BlockBatch:
    """One height's decoded events plus the content check of each event that carries a payload."""

    height: int
    events: Sequence[SupportEvent | PoisonEvent]
    content: dict[str, ContentCheck]


@dataclass(frozen=True)
class CommitResult:
    inserted: int
    duplicates: int
    poison: int


def load_cursor(conn: sqlite3.Connection) -> Cursor | None:
    row = conn.execute("SELECT chain_id, height FROM cursor WHERE id = 1").fetchone()
    return Cursor(row["chain_id"], int(row["height"])) if row else None


def init_cursor_txn(conn: sqlite3.Connection, chain_id: str, height: int) -> Cursor:
    """Create the cursor once; an existing cursor wins (two starts racing cannot move it)."""
    conn.execute(
        "INSERT OR IGNORE INTO cursor (id, chain_id, height, updated_at) VALUES (1, ?, ?, ?)",
        (chain_id, height, time.time()),
    )
    cursor = load_cursor(conn)
    assert cursor is not None
    return cursor


def pending_count(conn: sqlite3.Connection) -> int:
    """Events not yet synced: still in the inbox, or waiting as desk jobs (the follower's backpressure)."""
    inbox = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
    jobs = conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
    return int(inbox) + int(jobs)


def commit_blocks_txn(conn: sqlite3.Connection, chain_id: str, batches: Sequence[BlockBatch]) -> CommitResult:
    """Insert the events of consecutive heights and advance the cursor to the last one.

    Refuses a gap or a replay of the cursor's own height: the follower must commit in order.
    """
    cursor = load_cursor(conn)
    if cursor is None or cursor.chain_id != chain_id:
        raise RuntimeError(f"cursor missing or on another chain (expected {chain_id})")
    expected = cursor.height + 1
    inserted = duplicates = poison = 0
    now = time.time()
    for batch in batches:
        if batch.height != expected:
            raise RuntimeError(f"out-of-order commit: height {batch.height}, expected {expected}")
        for event in batch.events:
            if isinstance(event, PoisonEvent):
                added = _insert_poison(conn, event, now)
                poison += added
            else:
                added = _insert_event(conn, event, now)
                if added:
                    apply_event_txn(conn, event, batch.content.get(event.event_id), now)
            inserted += added
            duplicates += 1 - added
        expected += 1
    if batches:
        conn.execute("UPDATE cursor SET height = ?, updated_at = ? WHERE id = 1", (batches[-1].height, now))
    return CommitResult(inserted, duplicates, poison)


def _insert_event(conn: sqlite3.Connection, event: SupportEvent, now: float) -> int:
    cur = conn.execute(
        "INSERT OR IGNORE INTO chain_inbox (event_id, height, position, event_type, ticket_id, sequence, sender,"
        " payload_json, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.event_id,
            event.height,
            event.position,
            event.event_type,
            event.ticket_id,
            event.sequence,
            event.sender,
            json.dumps(event.payload, separators=(",", ":")),
            now,
        ),
    )
    return cur.rowcount


def _insert_poison(conn: sqlite3.Connection, event: PoisonEvent, now: float) -> int:
    cur = conn.execute(
        "INSERT OR IGNORE INTO chain_inbox (event_id, height, position, event_type, payload_json, state, error,"
        " received_at) VALUES (?, ?, ?, 'unknown', ?, 'poison', ?, ?)",
        (event.event_id, event.height, event.position, json.dumps({"raw": event.raw}), event.reason, now),
    )
    if cur.rowcount:
        append_audit_txn(
            conn,
            AuditEntry(
                "chain_event_poison",
                direction="outbound",
                actor="chain",
                status="failed",
                error=event.reason,
                block_height=event.height,
                details={"event_id": event.event_id},
            ),
            now,
        )
    return cur.rowcount


def inbox_event_ids(conn: sqlite3.Connection) -> list[str]:
    """Every event id in chain order (for verification against an independent scan)."""
    return [r[0] for r in conn.execute("SELECT event_id FROM chain_inbox ORDER BY height, position")]
