"""What Reconcile reads from and writes to the store: inbox event ids by height, mirror pages, repairs.

Missing events are taken in exactly as the follower takes them (sidecar.store.inbox: stored, folded
into the mirror in a savepoint, an unusable one kept as poison), and left pending, so the dispatcher
queues their desk jobs as usual. One difference to the follower: a missing event can be older than
what the mirror already folded for its ticket, and must not set the ticket's fields back to what they
were then; its other effects (a reply counted, a ref linked, a flag set) still apply.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.store.inbound import FieldState, field_states
from sidecar.store.inbox import insert_and_fold_txn, insert_poison_txn, load_cursor
from sidecar.store.intents import register_intent_key
from sidecar.store.records import ContentCheck, PoisonEvent, SupportEvent
from sidecar.store.refs import RefRow, get_ref
from sidecar.store.tickets import Ticket, get_ticket

# The mirror's columns that always hold the ticket's newest state: an older event never overwrites them.
_NEWEST_STATE = ("status", "priority", "category", "assigned_agent", "payload_hash", "chain_updated_at")


def inbox_event_ids(conn: sqlite3.Connection, first: int, last: int) -> set[str]:
    """Event ids the inbox holds for heights first..last (poison records included)."""
    rows = conn.execute("SELECT event_id FROM chain_inbox WHERE height BETWEEN ? AND ?", (first, last))
    return {str(r[0]) for r in rows}


def take_events_txn(
    conn: sqlite3.Connection,
    events: Sequence[SupportEvent | PoisonEvent],
    content: Mapping[str, ContentCheck],
    now: float,
) -> list[str]:
    """Insert the events the inbox lacks (pending, for the dispatcher) and fold them into the mirror; returns
    the ids inserted by this call (an id already there, e.g. taken by a concurrent call, is left alone)."""
    taken: list[str] = []
    for event in events:
        if isinstance(event, SupportEvent):
            newer = _newest_state(conn, event)
            folded = insert_and_fold_txn(conn, event, content.get(event.event_id), now)
            if not isinstance(folded, PoisonEvent):
                if folded:
                    taken.append(event.event_id)
                    if newer is not None:
                        _restore(conn, event.ticket_id, newer)
                continue
            event = folded
        if insert_poison_txn(conn, event, now):
            taken.append(event.event_id)
    return taken


def _newest_state(conn: sqlite3.Connection, event: SupportEvent) -> dict[str, Any] | None:
    """The mirror's newest-state columns when the mirror already folded a later height of this ticket."""
    row = conn.execute(
        f"SELECT last_height, last_sequence, {', '.join(_NEWEST_STATE)} FROM tickets WHERE ticket_id = ?",
        (event.ticket_id,),
    ).fetchone()
    if row is None or int(row["last_height"]) <= event.height:
        return None
    return {"last_height": row["last_height"], **{name: row[name] for name in _NEWEST_STATE}}


def _restore(conn: sqlite3.Connection, ticket_id: str, newer: Mapping[str, Any]) -> None:
    """Put back what a later event set; columns the later events left empty keep the older event's value."""
    kept = {name: value for name, value in newer.items() if value is not None}
    assignments = ", ".join(f"{name} = ?" for name in kept)
    conn.execute(f"UPDATE tickets SET {assignments} WHERE ticket_id = ?", [*kept.values(), ticket_id])


def mirror_ticket_ids(conn: sqlite3.Connection, after: str, limit: int) -> list[str]:
    """Up to `limit` mirror ticket ids after `after`, in id order (a stable order for paging)."""
    rows = conn.execute(
        "SELECT ticket_id FROM tickets WHERE ticket_id > ? ORDER BY ticket_id LIMIT ?", (after, limit)
    ).fetchall()
    return [str(r[0]) for r in rows]


def desks_with_open_jobs(conn: sqlite3.Connection, ticket_id: str) -> set[str]:
    """Desks that still have a pending or running job for the ticket (work on its way)."""
    rows = conn.execute(
        "SELECT DISTINCT desk FROM jobs WHERE ticket_id = ? AND state IN ('pending', 'running')", (ticket_id,)
    )
    return {str(r[0]) for r in rows}


def queue_create_job_txn(conn: sqlite3.Connection, dedupe_key: str, desk: str, ticket_id: str, now: float) -> int:
    """A `create` job for a ticket that has no issue at the desk (the worker looks it up before creating)."""
    return conn.execute(
        "INSERT OR IGNORE INTO jobs (dedupe_key, kind, desk, ticket_id, payload_json, next_run_at, created_at,"
        " updated_at) VALUES (?, 'create', ?, ?, ?, ?, ?, ?)",
        (dedupe_key, desk, ticket_id, json.dumps({"reconcile": True}), now, now, now),
    ).rowcount


@dataclass(frozen=True)
class IntentState:
    id: int
    state: str


def intent_by_key(conn: sqlite3.Connection, dedupe_key: str) -> IntentState | None:
    row = conn.execute("SELECT id, state FROM tx_intents WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
    return IntentState(int(row["id"]), str(row["state"])) if row is not None else None


@dataclass(frozen=True)
class TicketView:
    """What the store knows of one ticket for reconcile, read in one snapshot."""

    ticket: Ticket | None
    refs: dict[str, RefRow]
    states: dict[str, dict[str, FieldState]]
    open_jobs: set[str]
    intents: dict[str, IntentState]
    cursor_height: int


def read_ticket_view(conn: sqlite3.Connection, ticket_id: str, desks: Sequence[str]) -> TicketView:
    refs = {desk: ref for desk in desks if (ref := get_ref(conn, ticket_id, desk)) is not None}
    intents = {desk: intent for desk in desks if (intent := intent_by_key(conn, register_intent_key(ticket_id, desk)))}
    cursor = load_cursor(conn)
    return TicketView(
        ticket=get_ticket(conn, ticket_id),
        refs=refs,
        states={desk: field_states(conn, ticket_id, desk) for desk in desks},
        open_jobs=desks_with_open_jobs(conn, ticket_id),
        intents=intents,
        cursor_height=cursor.height if cursor is not None else 0,
    )
