"""The local mirror of on-chain tickets, updated from each support event as it enters the inbox.

The mirror holds metadata only (status, priority, category, recipients, agent, counters); ticket
content stays encrypted on chain and is opened in memory when a desk needs it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from sidecar import boundedjson
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.records import (
    ContentCheck,
    ExternalTicketLinked,
    RequestArchived,
    RequestCreated,
    RequestPurged,
    RequestUpdated,
    ResponseAdded,
    StatusChanged,
    SupportEvent,
)

# The recipients of one ticket: key ids (40 hex chars) from the chain's payload_json, itself capped.
RECIPIENTS_JSON_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    ticket_number: str | None
    submitter: str | None
    category: str | None
    priority: str | None
    status: str | None
    assigned_agent: str | None
    recipients: tuple[str, ...]
    content_state: str
    response_count: int
    last_sequence: int
    last_height: int
    archived: bool
    purged: bool
    chain_updated_at: float | None = None  # unix seconds of the newest event's block


# The mirror's column of each field inbound and outbound sync compare (sidecar.desks.base.INBOUND_FIELDS).
FIELD_COLUMNS = {"status": "status", "priority": "priority", "assignee": "assigned_agent"}


def field_value(ticket: Ticket, name: str) -> str | None:
    """The chain's current value of a synced field (`status`, `priority`, `assignee`)."""
    value = getattr(ticket, FIELD_COLUMNS[name])
    return value if isinstance(value, str) else None


def apply_event_txn(
    conn: sqlite3.Connection,
    event: SupportEvent,
    content: ContentCheck | None,
    now: float,
    *,
    audits: list[AuditEntry] | None = None,
) -> None:
    """Fold one newly inserted event into the mirror (never called twice for one event id). Its audit rows
    are appended now, or collected in `audits` for the caller to append in order in the same transaction
    (the inbox's commit of many events writes them with one statement)."""
    p = event.payload
    tid = event.ticket_id
    changes: dict[str, Any] = {}
    responses = 0
    match event:
        case RequestCreated():
            changes.update(
                ticket_number=event.ticket_number,
                submitter=event.submitter,
                category=event.category,
                priority=event.priority,
                status=event.status,
                recipients_json=json.dumps(list(event.recipients)),
                related_entity_json=json.dumps(event.related_entity) if event.related_entity else None,
            )
        case RequestUpdated():
            fields = {
                "category": event.category,
                "priority": event.priority,
                "status": event.status,
                "assigned_agent": event.assigned_agent,
            }
            changes.update({name: value for name, value in fields.items() if value is not None})
        case StatusChanged():
            changes["status"] = event.new_status
        case ResponseAdded():
            responses = 1
        case RequestArchived():
            changes.update(archived=1, status="archived")
        case RequestPurged():
            changes["purged"] = 1
        case ExternalTicketLinked():
            _record_chain_link(conn, event, now, audits)
        case _:  # a bare SupportEvent: only sidecar.chain.events makes events, and it types them
            raise TypeError(f"{event.event_type} event of untyped class {type(event).__name__}")
    if p.get("payload_hash"):
        changes["payload_hash"] = p["payload_hash"]
    if content is not None and isinstance(event, (RequestCreated, RequestUpdated)):
        changes.update(content_state=content.state, content_reason=content.reason)
    if content is not None and content.state == "placeholder":
        _audit(
            conn,
            audits,
            AuditEntry(
                "content_unavailable",
                ticket_id=tid,
                direction="outbound",
                actor="sidecar",
                status="placeholder",
                error=content.reason,
                block_height=event.height,
                details={"event_id": event.event_id, "payload_hash": p.get("payload_hash")},
            ),
            now,
        )
    changes.update(
        last_sequence=event.sequence,
        last_height=event.height,
        chain_updated_at=event.timestamp or None,
        updated_at=now,
        response_count=responses,
    )
    _upsert_ticket(conn, tid, changes)


# Columns an upsert adds to the stored value instead of replacing it (or, for the sequence, keeps the highest).
_MERGED = {
    "last_sequence": "MAX(tickets.last_sequence, excluded.last_sequence)",
    "response_count": "tickets.response_count + excluded.response_count",
}


def _upsert_ticket(conn: sqlite3.Connection, ticket_id: str, changes: dict[str, Any]) -> None:
    """One statement per event: a ticket whose creation came before the cursor start still gets a
    (partial) row; an existing row takes the event's columns. Column names come from this module only."""
    columns = tuple(changes)
    sql = _UPSERTS.get(columns)
    if sql is None:
        sql = _UPSERTS[columns] = _upsert_sql(columns)
    conn.execute(sql, [ticket_id, *changes.values()])


# The statement of each set of columns an event type writes (a handful): built once, not per event.
_UPSERTS: dict[tuple[str, ...], str] = {}


def _upsert_sql(columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" * (len(columns) + 1))
    assignments = ", ".join(f"{name} = {_MERGED.get(name, f'excluded.{name}')}" for name in columns)
    upsert = f"INSERT INTO tickets (ticket_id, {names}) VALUES ({marks}) ON CONFLICT (ticket_id) DO UPDATE SET"
    return f"{upsert} {assignments}"


def _audit(conn: sqlite3.Connection, audits: list[AuditEntry] | None, entry: AuditEntry, now: float) -> None:
    """Append `entry` now, or collect it for the caller's batched append."""
    if audits is None:
        append_audit_txn(conn, entry, now)
    else:
        audits.append(entry)


def _record_chain_link(
    conn: sqlite3.Connection, event: ExternalTicketLinked, now: float, audits: list[AuditEntry] | None
) -> None:
    """A ref registered on chain (by us or another sidecar) anchors the desk ticket once the desk worker
    has seen the sidecar's claim on it; a ref that contradicts one already held is kept out, and audited."""
    details = {"event_id": event.event_id, "external_ticket_id": event.external_ticket_id[:80]}
    held = conn.execute(
        "SELECT external_id FROM external_refs WHERE ticket_id = ? AND desk = ?",
        (event.ticket_id, event.external_system),
    ).fetchone()
    if held is not None and held[0] != event.external_ticket_id:
        _audit(
            conn,
            audits,
            AuditEntry(
                "external_ref_refused",
                ticket_id=event.ticket_id,
                desk=event.external_system,
                actor="chain",
                status="ignored",
                error="the ticket already has another desk ticket recorded for this desk",
                block_height=event.height,
                details={**details, "recorded_id": held[0]},
            ),
            now,
        )
    try:
        _upsert_ref(conn, event, now)
    except sqlite3.IntegrityError:
        # The same desk ticket is linked to two chain tickets: keep the first, say so, never stall.
        _audit(
            conn,
            audits,
            AuditEntry(
                "external_ref_conflict",
                ticket_id=event.ticket_id,
                desk=event.external_system,
                actor="chain",
                status="ignored",
                block_height=event.height,
                details=details,
            ),
            now,
        )


def _upsert_ref(conn: sqlite3.Connection, event: ExternalTicketLinked, now: float) -> None:
    """Anyone with the agent role can register a ref: a new one is stored unverified (the desk worker
    checks the desk ticket's claim before any use); a ref already held is only marked registered, and
    only when the chain names the same desk ticket."""
    conn.execute(
        "INSERT INTO external_refs (ticket_id, desk, external_id, external_url, registered_on_chain, verified,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, 1, 0, ?, ?) ON CONFLICT (ticket_id, desk) DO UPDATE SET"
        " registered_on_chain = MAX(external_refs.registered_on_chain,"
        " external_refs.external_id = excluded.external_id), updated_at = excluded.updated_at",
        (event.ticket_id, event.external_system, event.external_ticket_id, event.external_url, now, now),
    )


def get_ticket(conn: sqlite3.Connection, ticket_id: str) -> Ticket | None:
    row = conn.execute("SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
    if row is None:
        return None
    return Ticket(
        ticket_id=row["ticket_id"],
        ticket_number=row["ticket_number"],
        submitter=row["submitter"],
        category=row["category"],
        priority=row["priority"],
        status=row["status"],
        assigned_agent=row["assigned_agent"],
        recipients=_recipients(row["recipients_json"]),
        content_state=row["content_state"],
        response_count=int(row["response_count"]),
        last_sequence=int(row["last_sequence"]),
        last_height=int(row["last_height"]),
        archived=bool(row["archived"]),
        purged=bool(row["purged"]),
        chain_updated_at=float(row["chain_updated_at"]) if row["chain_updated_at"] is not None else None,
    )


def _recipients(text: str | None) -> tuple[str, ...]:
    """Recipient key ids the chain named, as stored at fold time; re-read with limits, and an
    unreadable value reads as none rather than failing every reader of the ticket."""
    try:
        value = boundedjson.loads(text or "[]", max_bytes=RECIPIENTS_JSON_MAX_BYTES)
    except boundedjson.JsonLimitError:
        return ()
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
