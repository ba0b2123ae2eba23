"""One ticket as the sidecar holds it, for operators: mirror, refs, field sync state, conflicts, jobs,
intents and last errors, read in one snapshot.

Content-free by construction: field bases leave this module only as sha256 hashes, and errors are
the sidecar's own texts (they name tickets, desks and codes, never content).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

from sidecar.store.inbound import ConflictRow, list_conflicts
from sidecar.store.intents import IntentView, list_intents
from sidecar.store.jobs import Job, list_jobs
from sidecar.store.tickets import Ticket, get_ticket

MAX_ROWS = 100  # jobs and intents shown per ticket (newest first)
MAX_ERRORS = 10
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class RefView:
    desk: str
    external_id: str
    url: str | None
    verified: bool
    state: str  # "pending" (not yet registered on chain), "registered", or the row's closed / removed
    created_at: float


@dataclass(frozen=True)
class FieldView:
    desk: str
    field: str
    base_sha256: str  # "" when no base was agreed yet
    synced_at: float
    synced_from: str | None
    desk_change_id: str | None


@dataclass(frozen=True)
class ErrorView:
    at: float
    source: str  # "job 12 jira", "intent 3", "re-read jira 10001"
    error: str


@dataclass(frozen=True)
class TicketView:
    ticket: Ticket
    created_height: int | None  # the height of its creation event, when the inbox holds it
    updated_at: float  # when the mirror row last changed
    refs: list[RefView]
    fields: list[FieldView]
    conflicts: list[ConflictRow]
    jobs: list[Job]
    intents: list[IntentView]
    errors: list[ErrorView]  # newest first


def base_hash(value: str | None) -> str:
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else ""


def ticket_view(conn: sqlite3.Connection, ticket_id: str) -> TicketView | None:
    """The ticket's view, or None when the mirror does not hold it."""
    ticket = get_ticket(conn, ticket_id)
    if ticket is None:
        return None
    (updated_at,) = conn.execute("SELECT updated_at FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
    created = conn.execute(
        "SELECT MIN(height) FROM chain_inbox WHERE ticket_id = ? AND event_type = 'support_request_created'",
        (ticket_id,),
    ).fetchone()[0]
    refs = _refs(conn, ticket_id)
    jobs = list_jobs(conn, None, None, MAX_ROWS, ticket_id=ticket_id)
    intents = list_intents(conn, None, MAX_ROWS, ticket_id=ticket_id)
    conflicts = list_conflicts(conn, True, MAX_ROWS, ticket_id=ticket_id)
    return TicketView(
        ticket=ticket,
        created_height=int(created) if created is not None else None,
        updated_at=float(updated_at),
        refs=refs,
        fields=_fields(conn, ticket_id),
        conflicts=conflicts,
        jobs=jobs,
        intents=intents,
        errors=_errors(conn, ticket_id, refs),
    )


def _refs(conn: sqlite3.Connection, ticket_id: str) -> list[RefView]:
    rows = conn.execute("SELECT * FROM external_refs WHERE ticket_id = ? ORDER BY desk", (ticket_id,))
    out = []
    for r in rows:
        state = r["state"]
        if state == "active":
            state = "registered" if r["registered_on_chain"] else "pending"
        out.append(
            RefView(r["desk"], r["external_id"], r["external_url"], bool(r["verified"]), state, float(r["created_at"]))
        )
    return out


def _fields(conn: sqlite3.Connection, ticket_id: str) -> list[FieldView]:
    rows = conn.execute(
        "SELECT desk, field, base_value, updated_at, synced_from, desk_change_id FROM field_state"
        " WHERE ticket_id = ? ORDER BY desk, field",
        (ticket_id,),
    )
    return [
        FieldView(
            r["desk"],
            r["field"],
            base_hash(r["base_value"]),
            float(r["updated_at"]),
            r["synced_from"],
            r["desk_change_id"],
        )
        for r in rows
    ]


def _errors(conn: sqlite3.Connection, ticket_id: str, refs: list[RefView]) -> list[ErrorView]:
    """The most recent errors still standing (success clears them) on the ticket's jobs, intents and the
    re-reads of its desk issues."""
    found = [
        ErrorView(float(r["updated_at"]), f"job {r['id']} {r['desk']}", r["last_error"])
        for r in conn.execute(
            "SELECT id, desk, last_error, updated_at FROM jobs WHERE ticket_id = ? AND COALESCE(last_error, '') != ''"
            " ORDER BY updated_at DESC LIMIT ?",
            (ticket_id, MAX_ERRORS),
        )
    ]
    found += [
        ErrorView(float(r["updated_at"]), f"intent {r['id']}", r["log"])
        for r in conn.execute(
            "SELECT id, log, updated_at FROM tx_intents WHERE ticket_id = ? AND COALESCE(log, '') != ''"
            " ORDER BY updated_at DESC LIMIT ?",
            (ticket_id, MAX_ERRORS),
        )
    ]
    for ref in refs:
        row = conn.execute(
            "SELECT last_error, updated_at FROM inbound_queue WHERE desk = ? AND external_id = ?"
            " AND COALESCE(last_error, '') != ''",
            (ref.desk, ref.external_id),
        ).fetchone()
        if row is not None:
            found.append(
                ErrorView(float(row["updated_at"]), f"re-read {ref.desk} {ref.external_id}", row["last_error"])
            )
    found.sort(key=lambda e: e.at, reverse=True)
    return [ErrorView(e.at, e.source, e.error[:MAX_ERROR_CHARS]) for e in found[:MAX_ERRORS]]
