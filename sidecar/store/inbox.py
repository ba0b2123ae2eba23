"""The chain cursor and inbox: every support event of committed blocks, exactly once.

A block's events and the cursor advance are written in one transaction, so after any crash the
cursor says precisely which heights are fully in the inbox. Each event is stored and folded into
the mirror inside its own savepoint: an event the mirror cannot take (a value SQLite cannot bind,
a number out of range) is rolled back alone and kept as poison, while a database failure (locked,
full, I/O, corrupt) still fails the whole transaction so the follower retries the step.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.store.audit import AuditEntry, append_audit_many_txn, append_audit_txn
from sidecar.store.records import ContentCheck, PoisonEvent, SupportEvent
from sidecar.store.tickets import apply_event_txn

POISON_RAW_CHARS = 10_000  # as much of an unusable event as is kept for the operator (public chain data)


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


_FIRST_BLOCK = "chain.first_block"


def load_first_block(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """(height, block hash) of the earliest block of the node the cursor follows, as last seen: it
    names the chain instance, so a node re-genesised under the same chain id is known after a restart."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_FIRST_BLOCK,)).fetchone()
    if row is None:
        return None
    height, _, block_hash = str(row[0]).partition(":")
    return int(height), block_hash


def save_first_block_txn(conn: sqlite3.Connection, height: int, block_hash: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_FIRST_BLOCK, f"{height}:{block_hash}"),
    )


def pending_count(conn: sqlite3.Connection, desks: Sequence[str]) -> int:
    """Events not yet synced: still in the inbox, or waiting as jobs of a configured desk (the follower's
    backpressure). Jobs of a desk no longer configured never drain, so they must not hold the follower."""
    inbox = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
    marks = ", ".join("?" * len(desks))
    jobs = conn.execute(
        f"SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running') AND desk IN ({marks})", list(desks)
    ).fetchone()[0]
    return int(inbox) + int(jobs)


def commit_blocks_txn(conn: sqlite3.Connection, chain_id: str, batches: Sequence[BlockBatch]) -> CommitResult:
    """Insert the events of consecutive heights and advance the cursor to the last one.

    Refuses a gap or a replay of the cursor's own height: the follower must commit in order. All events
    are first tried under one savepoint; only when one of them fails is the set rolled back and stored
    again with a savepoint per event, so the one that fails becomes poison alone (the common case pays
    two statements per commit instead of two per event).
    """
    cursor = load_cursor(conn)
    if cursor is None or cursor.chain_id != chain_id:
        raise RuntimeError(f"cursor missing or on another chain (expected {chain_id})")
    expected = cursor.height + 1
    for offset, batch in enumerate(batches):
        if batch.height != expected + offset:
            raise RuntimeError(f"out-of-order commit: height {batch.height}, expected {expected + offset}")
    now = time.time()
    conn.execute("SAVEPOINT inbox_blocks")
    try:
        result = _store_events(conn, batches, now, isolated=False)
    except Exception as exc:
        conn.execute("ROLLBACK TO inbox_blocks")
        conn.execute("RELEASE inbox_blocks")
        if _is_infrastructure(exc):
            raise
        result = _store_events(conn, batches, now, isolated=True)
    else:
        conn.execute("RELEASE inbox_blocks")
    if batches:
        conn.execute("UPDATE cursor SET height = ?, updated_at = ? WHERE id = 1", (batches[-1].height, now))
    return result


def _store_events(
    conn: sqlite3.Connection, batches: Sequence[BlockBatch], now: float, *, isolated: bool
) -> CommitResult:
    """Insert and fold every event; `isolated`: each in its own savepoint, a failing one kept as poison.
    Together (not isolated), the events' audit rows are collected in chain order and appended at the end
    with one statement, inside the caller's savepoint: if that fails, the isolated pass appends them one
    by one, each with its event."""
    inserted = duplicates = poison = 0
    audits: list[AuditEntry] | None = None if isolated else []
    for batch in batches:
        for event in batch.events:
            if isinstance(event, SupportEvent):
                content = batch.content.get(event.event_id)
                folded = (
                    insert_and_fold_txn(conn, event, content, now)
                    if audits is None
                    else _fold(conn, event, content, now, audits)
                )
                if isinstance(folded, PoisonEvent):
                    event = folded
                else:
                    inserted += folded
                    duplicates += 1 - folded
                    continue
            added = insert_poison_txn(conn, event, now, audits=audits)
            poison += added
            inserted += added
            duplicates += 1 - added
    if audits:
        append_audit_many_txn(conn, [(entry, now) for entry in audits])
    return CommitResult(inserted, duplicates, poison)


def _fold(
    conn: sqlite3.Connection, event: SupportEvent, content: ContentCheck | None, now: float, audits: list[AuditEntry]
) -> int:
    """Store one event and fold it into the mirror, inside the caller's savepoint; 1 if new, 0 if there."""
    added = _insert_event(conn, event, now)
    if added:
        apply_event_txn(conn, event, content, now, audits=audits)
    return added


# Failures that say the database itself is unwell, not that one event's values do not fit.
_INFRASTRUCTURE = (sqlite3.OperationalError, sqlite3.InternalError, sqlite3.NotSupportedError)


def _is_infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, _INFRASTRUCTURE) or type(exc) is sqlite3.DatabaseError  # e.g. "disk image is malformed"


def insert_and_fold_txn(
    conn: sqlite3.Connection, event: SupportEvent, content: ContentCheck | None, now: float
) -> int | PoisonEvent:
    """Store one event and fold it into the mirror; 1 if new, 0 if already there, or its poison record."""
    conn.execute("SAVEPOINT inbox_event")
    try:
        added = _insert_event(conn, event, now)
        if added:
            apply_event_txn(conn, event, content, now)
    except Exception as exc:  # the per-event boundary: one event's values never stop the follower
        conn.execute("ROLLBACK TO inbox_event")
        conn.execute("RELEASE inbox_event")
        if _is_infrastructure(exc):
            raise
        if type(event) is SupportEvent:  # an untyped event is a caller's bug, not chain input: refuse the commit
            raise
        reason = f"{event.event_type} event cannot be stored in the mirror ({type(exc).__name__})"
        return PoisonEvent(event.event_id, event.height, event.position, reason, _raw_payload(event))
    conn.execute("RELEASE inbox_event")
    return added


def _raw_payload(event: SupportEvent) -> str:
    try:
        return _payload_text(event)[:POISON_RAW_CHARS]
    except (TypeError, ValueError, RecursionError):
        return ""


def _payload_text(event: SupportEvent) -> str:
    """The chain's payload_json text, or the payload encoded where an event was made without it."""
    return event.payload_json or json.dumps(event.payload, separators=(",", ":"))


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
            _payload_text(event),
            now,
        ),
    )
    return cur.rowcount


def insert_poison_txn(
    conn: sqlite3.Connection, event: PoisonEvent, now: float, *, audits: list[AuditEntry] | None = None
) -> int:
    """Keep an unusable event as poison, audited (now, or collected in `audits`); 1 if new, 0 if there."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO chain_inbox (event_id, height, position, event_type, payload_json, state, error,"
        " received_at) VALUES (?, ?, ?, 'unknown', ?, 'poison', ?, ?)",
        (event.event_id, event.height, event.position, json.dumps({"raw": event.raw}), event.reason, now),
    )
    if cur.rowcount:
        entry = AuditEntry(
            "chain_event_poison",
            direction="outbound",
            actor="chain",
            status="failed",
            error=event.reason,
            block_height=event.height,
            details={"event_id": event.event_id},
        )
        if audits is None:
            append_audit_txn(conn, entry, now)
        else:
            audits.append(entry)
    return cur.rowcount


def inbox_event_ids(conn: sqlite3.Connection) -> list[str]:
    """Every event id in chain order (for verification against an independent scan)."""
    return [r[0] for r in conn.execute("SELECT event_id FROM chain_inbox ORDER BY height, position")]
