"""Inbound sync's tables: the issues to re-read, field bases, decided comments, origins, conflicts, sweep marks.

Every write here runs inside the caller's transaction, so a decision, its intents and its audit rows
land together or not at all (a SIGKILL between two of them cannot happen).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sidecar import boundedjson
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.jobs import queue_update_job_txn
from sidecar.store.listing import newest_first
from sidecar.store.refs import RefRow, ref_row
from sidecar.store.tickets import field_value, get_ticket

# An issue claimed by one engine step; a hint arriving meanwhile bumps `hints` past the claimed count,
# so finishing the step keeps the row pending instead of deleting it (no hint is lost while running).
ISSUE_STATES = ("pending", "running", "dead")


@dataclass(frozen=True)
class QueuedIssue:
    desk: str
    external_id: str
    reason: str
    attempts: int
    hints: int  # the row's hint count when claimed


@dataclass(frozen=True)
class FieldState:
    """The base of one (ticket, desk, field): the last value both sides agreed on (chain vocabulary)."""

    base: str | None
    desk_value: str | None
    chain_value: str | None
    synced_from: str | None
    desk_change_id: str | None


@dataclass(frozen=True)
class ConflictRow:
    id: int
    ticket_id: str
    desk: str
    field: str
    base_value: str | None
    chain_value: str | None
    desk_value: str | None
    strategy: str
    state: str
    resolution: str | None
    rule: str | None
    winner: str | None
    detected_at: float
    resolved_at: float | None
    resolved_by: str | None


def normal_external_id(desk: str, external_id: str) -> str:
    """The form refs store: Waldur uuids as 32 lowercase hex digits (hooks may send them dashed)."""
    if desk == "waldur":
        try:
            return UUID(external_id).hex
        except ValueError:
            return external_id
    return external_id


# the queue of issues to re-read -------------------------------------------------------------------
def enqueue_issue_txn(conn: sqlite3.Connection, desk: str, external_id: str, reason: str, now: float) -> None:
    """Ask for one re-read of the issue: a dead row comes back to life, a running one runs again after."""
    conn.execute(
        "INSERT INTO inbound_queue (desk, external_id, reason, next_run_at, queued_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (desk, external_id) DO UPDATE SET"
        " queued_at = excluded.queued_at, updated_at = excluded.updated_at, reason = excluded.reason,"
        " hints = inbound_queue.hints + 1,"
        " next_run_at = CASE WHEN inbound_queue.state = 'dead' THEN excluded.next_run_at"
        "   ELSE MIN(inbound_queue.next_run_at, excluded.next_run_at) END,"
        " attempts = CASE WHEN inbound_queue.state = 'dead' THEN 0 ELSE inbound_queue.attempts END,"
        " state = CASE WHEN inbound_queue.state = 'dead' THEN 'pending' ELSE inbound_queue.state END",
        (desk, external_id, reason, now, now, now),
    )


def queue_rereads_txn(conn: sqlite3.Connection, ticket_id: str, desks: Sequence[str], now: float) -> int:
    """A manual inbound sync (request_rereads_txn); returns the re-reads queued now."""
    return request_rereads_txn(conn, ticket_id, desks, now).queued


def take_deliveries_txn(conn: sqlite3.Connection, desks: Sequence[str], now: float, limit: int) -> tuple[int, int]:
    """Accepted webhook deliveries become re-reads of their issue (processed), or are ignored with the reason
    when they name no issue linked to a chain ticket (an unverified chain ref does not count). Returns
    (deliveries queued, deliveries ignored)."""
    rows = conn.execute(
        "SELECT id, desk, external_id FROM webhook_deliveries WHERE state = 'accepted' ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    queued = ignored = 0
    for row in rows:
        desk, raw = row["desk"], row["external_id"]
        external_id = normal_external_id(desk, raw) if raw else None
        reason = None
        if desk not in desks:
            reason = "desk not served by this sidecar"
        elif external_id is None:
            reason = "names no issue"
        elif linked_ref(conn, desk, external_id) is None:
            reason = "issue not linked to a chain ticket"
        if reason is None:
            assert external_id is not None
            enqueue_issue_txn(conn, desk, external_id, "webhook", now)
            queued += 1
        else:
            ignored += 1
        conn.execute(
            "UPDATE webhook_deliveries SET state = ?, reason = COALESCE(?, reason), processed_at = ? WHERE id = ?",
            ("processed" if reason is None else "ignored", reason, now, row["id"]),
        )
    return queued, ignored


def claim_issues_txn(conn: sqlite3.Connection, desk: str, now: float, limit: int) -> list[QueuedIssue]:
    rows = conn.execute(
        "SELECT * FROM inbound_queue WHERE desk = ? AND state = 'pending' AND next_run_at <= ?"
        " ORDER BY next_run_at, queued_at LIMIT ?",
        (desk, now, limit),
    ).fetchall()
    for row in rows:
        conn.execute(
            "UPDATE inbound_queue SET state = 'running', updated_at = ? WHERE desk = ? AND external_id = ?",
            (now, desk, row["external_id"]),
        )
    return [QueuedIssue(r["desk"], r["external_id"], r["reason"], int(r["attempts"]), int(r["hints"])) for r in rows]


def finish_issue_txn(conn: sqlite3.Connection, issue: QueuedIssue, now: float) -> None:
    """Done: the row goes, unless a hint came while it ran (then it runs once more)."""
    conn.execute(
        "DELETE FROM inbound_queue WHERE desk = ? AND external_id = ? AND hints = ?",
        (issue.desk, issue.external_id, issue.hints),
    )
    conn.execute(
        "UPDATE inbound_queue SET state = 'pending', attempts = 0, last_error = NULL, updated_at = ?"
        " WHERE desk = ? AND external_id = ?",
        (now, issue.desk, issue.external_id),
    )


def retry_issue_txn(
    conn: sqlite3.Connection, issue: QueuedIssue, error: str, next_run_at: float, now: float, *, spend: bool
) -> None:
    conn.execute(
        "UPDATE inbound_queue SET state = 'pending', attempts = attempts + ?, last_error = ?, next_run_at = ?,"
        " updated_at = ? WHERE desk = ? AND external_id = ?",
        (1 if spend else 0, error, next_run_at, now, issue.desk, issue.external_id),
    )


def dead_issue_txn(conn: sqlite3.Connection, issue: QueuedIssue, error: str, now: float) -> None:
    conn.execute(
        "UPDATE inbound_queue SET state = 'dead', attempts = attempts + 1, last_error = ?, updated_at = ?"
        " WHERE desk = ? AND external_id = ?",
        (error, now, issue.desk, issue.external_id),
    )


def release_running_issues_txn(conn: sqlite3.Connection, now: float) -> int:
    """At start: re-reads a crash left running are pending again (a re-read is idempotent)."""
    return conn.execute(
        "UPDATE inbound_queue SET state = 'pending', updated_at = ? WHERE state = 'running'", (now,)
    ).rowcount


# refs ---------------------------------------------------------------------------------------------
def linked_ref(conn: sqlite3.Connection, desk: str, external_id: str) -> RefRow | None:
    """The verified, active ref of a desk issue: only those are synced inbound (a ref registered on chain by
    someone else stays unverified until the desk ticket shows the sidecar's claim)."""
    row = conn.execute(
        "SELECT * FROM external_refs WHERE desk = ? AND external_id = ? AND verified = 1 AND state = 'active'",
        (desk, external_id),
    ).fetchone()
    return ref_row(row) if row is not None else None


def earliest_ref_time(conn: sqlite3.Connection, desk: str) -> float | None:
    row = conn.execute("SELECT MIN(created_at) FROM external_refs WHERE desk = ? AND verified = 1", (desk,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


# field bases --------------------------------------------------------------------------------------
def field_states(conn: sqlite3.Connection, ticket_id: str, desk: str) -> dict[str, FieldState]:
    rows = conn.execute("SELECT * FROM field_state WHERE ticket_id = ? AND desk = ?", (ticket_id, desk)).fetchall()
    return {
        r["field"]: FieldState(
            r["base_value"], r["desk_value"], r["chain_value"], r["synced_from"], r["desk_change_id"]
        )
        for r in rows
    }


def bases_and_held(
    conn: sqlite3.Connection, ticket_id: str, desk: str
) -> tuple[dict[str, FieldState], set[str], set[str]]:
    """Outbound's view of a ticket at one desk: field bases, fields parked in a conflict, and fields whose
    change made at this desk is still on its way to the chain (open_inbound_items)."""
    return (
        field_states(conn, ticket_id, desk),
        held_fields(conn, ticket_id, desk),
        open_inbound_items(conn, ticket_id, desk),
    )


def set_field_state_txn(
    conn: sqlite3.Connection,
    ticket_id: str,
    desk: str,
    field: str,
    *,
    base: str | None,
    desk_value: str | None,
    chain_value: str | None,
    synced_from: str,
    now: float,
    desk_change_id: str | None = None,
    desk_changed_at: float | None = None,
) -> None:
    conn.execute(
        "INSERT INTO field_state (ticket_id, desk, field, base_value, chain_value, desk_value, desk_changed_at,"
        " synced_from, desk_change_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (ticket_id, desk, field) DO UPDATE SET base_value = excluded.base_value,"
        " chain_value = excluded.chain_value, desk_value = excluded.desk_value,"
        " desk_changed_at = COALESCE(excluded.desk_changed_at, field_state.desk_changed_at),"
        " synced_from = excluded.synced_from,"
        " desk_change_id = COALESCE(excluded.desk_change_id, field_state.desk_change_id),"
        " updated_at = excluded.updated_at",
        (ticket_id, desk, field, base, chain_value, desk_value, desk_changed_at, synced_from, desk_change_id, now),
    )


# comments and origins -----------------------------------------------------------------------------
def decided_comments(conn: sqlite3.Connection, desk: str, ticket_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT comment_id FROM inbound_comments WHERE desk = ? AND ticket_id = ?", (desk, ticket_id)
    ).fetchall()
    return {r[0] for r in rows}


def record_comment_txn(
    conn: sqlite3.Connection,
    desk: str,
    comment_id: str,
    ticket_id: str,
    external_id: str,
    outcome: str,
    parts: int,
    now: float,
) -> bool:
    """True when this is the first decision on the comment (the caller then queues its Msgs)."""
    cur = conn.execute(
        "INSERT INTO inbound_comments (desk, comment_id, ticket_id, external_id, outcome, parts, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (desk, comment_id) DO NOTHING",
        (desk, comment_id, ticket_id, external_id, outcome, parts, now),
    )
    return cur.rowcount == 1


def record_origin_txn(conn: sqlite3.Connection, payload_hash: str, desk: str, ticket_id: str) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO inbound_origins (payload_hash, desk, ticket_id) VALUES (?, ?, ?)",
        (payload_hash.lower(), desk, ticket_id),
    )


def record_inbound_intent_txn(
    conn: sqlite3.Connection, intent_id: int, desk: str, ticket_id: str, item: str, desk_changed_at: float | None
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO inbound_intents (intent_id, desk, ticket_id, item, desk_changed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (intent_id, desk, ticket_id, item, desk_changed_at),
    )


@dataclass(frozen=True)
class LandedIntent:
    """An inbound intent that reached a final state: included on chain, or dead."""

    intent_id: int
    desk: str
    ticket_id: str
    item: str
    state: str
    desk_changed_at: float | None
    included_at: float | None
    tx_hash: str | None
    height: int | None
    error: str | None


def unreported_intents(conn: sqlite3.Connection, limit: int) -> list[LandedIntent]:
    rows = conn.execute(
        "SELECT n.*, i.state AS intent_state, i.updated_at AS intent_updated, i.log AS intent_log,"
        " b.tx_hash AS tx_hash, b.height AS height FROM inbound_intents n"
        " JOIN tx_intents i ON i.id = n.intent_id LEFT JOIN tx_batches b ON b.id = i.batch_id"
        " WHERE n.reported = 0 AND i.state IN ('included', 'dead') ORDER BY n.intent_id LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        LandedIntent(
            int(r["intent_id"]),
            r["desk"],
            r["ticket_id"],
            r["item"],
            r["intent_state"],
            r["desk_changed_at"],
            float(r["intent_updated"]),
            r["tx_hash"],
            r["height"],
            r["intent_log"],
        )
        for r in rows
    ]


def mark_reported_txn(conn: sqlite3.Connection, intent_id: int) -> None:
    conn.execute("UPDATE inbound_intents SET reported = 1 WHERE intent_id = ?", (intent_id,))


def open_inbound_items(conn: sqlite3.Connection, ticket_id: str, desk: str | None = None) -> set[str]:
    """Items (`status`, `priority`, `assignee`, `comment:<id>`) with an inbound intent (of `desk`, or any) still
    on its way: not final, or included at a height the mirror has not folded yet. Until the mirror holds the
    value, the base (moved with the intent) is ahead of the chain, and deciding the field then would see a
    conflict that is only the change's own echo (a restarted follower lags the signer's inclusion checks)."""
    rows = conn.execute(
        "SELECT n.item FROM inbound_intents n JOIN tx_intents i ON i.id = n.intent_id"
        " LEFT JOIN tx_batches b ON b.id = i.batch_id"
        " WHERE n.ticket_id = ? AND (? IS NULL OR n.desk = ?) AND i.state != 'dead'"
        " AND NOT (i.state = 'included'"
        "  AND COALESCE(b.height, 0) <= COALESCE((SELECT height FROM cursor WHERE id = 1), 0))",
        (ticket_id, desk, desk),
    ).fetchall()
    return {r[0] for r in rows}


# envelopes of a ticket (to seal replies for all its recipients) ------------------------------------
MAX_ENVELOPE_EVENTS = 1000


def ticket_envelopes(conn: sqlite3.Connection, ticket_id: str) -> list[dict[str, Any]]:
    """The envelopes the chain holds for a ticket (created, updates with a payload, responses), oldest first."""
    rows = conn.execute(
        "SELECT payload_json FROM chain_inbox WHERE ticket_id = ? AND event_type IN"
        " ('support_request_created', 'support_request_updated', 'support_response_added') ORDER BY id LIMIT ?",
        (ticket_id, MAX_ENVELOPE_EVENTS),
    ).fetchall()
    found: list[dict[str, Any]] = []
    for row in rows:
        try:
            payload = boundedjson.loads(row[0], max_bytes=4 * 1024 * 1024)
        except ValueError:
            continue
        envelope = (payload if isinstance(payload, dict) else {}).get("payload") or {}
        envelope = envelope.get("envelope") if isinstance(envelope, dict) else None
        if isinstance(envelope, dict):
            found.append(envelope)
    return found


# conflicts ----------------------------------------------------------------------------------------
def conflict_row(r: sqlite3.Row) -> ConflictRow:
    return ConflictRow(
        int(r["id"]),
        r["ticket_id"],
        r["desk"],
        r["field"],
        r["base_value"],
        r["chain_value"],
        r["desk_value"],
        r["strategy"],
        r["state"],
        r["resolution"],
        r["rule"],
        r["winner"],
        float(r["detected_at"]),
        r["resolved_at"],
        r["resolved_by"],
    )


def open_conflict(conn: sqlite3.Connection, ticket_id: str, desk: str, field: str) -> ConflictRow | None:
    row = conn.execute(
        "SELECT * FROM conflicts WHERE ticket_id = ? AND desk = ? AND field = ? AND state = 'open'"
        " ORDER BY id DESC LIMIT 1",
        (ticket_id, desk, field),
    ).fetchone()
    return conflict_row(row) if row else None


def held_fields(conn: sqlite3.Connection, ticket_id: str, desk: str) -> set[str]:
    """Fields of a ticket parked in an open (manual) conflict at this desk: neither side writes them."""
    rows = conn.execute(
        "SELECT field FROM conflicts WHERE ticket_id = ? AND desk = ? AND state = 'open'", (ticket_id, desk)
    ).fetchall()
    return {r[0] for r in rows}


def record_conflict_txn(
    conn: sqlite3.Connection,
    ticket_id: str,
    desk: str,
    field: str,
    *,
    base: str | None,
    chain_value: str | None,
    desk_value: str | None,
    strategy: str,
    rule: str,
    winner: str | None,
    now: float,
) -> int:
    """One row per detection; decided at once (winner set, resolved) or parked open for an operator."""
    state = "open" if winner is None else "resolved"
    cur = conn.execute(
        "INSERT INTO conflicts (ticket_id, desk, field, base_value, chain_value, desk_value, strategy, state,"
        " resolution, rule, winner, detected_at, resolved_at, resolved_by) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ticket_id,
            desk,
            field,
            base,
            chain_value,
            desk_value,
            strategy,
            state,
            None if winner is None else f"{winner} kept",
            rule,
            winner,
            now,
            None if winner is None else now,
            None if winner is None else "sidecar",
        ),
    )
    return int(cur.lastrowid or 0)


def get_conflict(conn: sqlite3.Connection, conflict_id: int) -> ConflictRow | None:
    row = conn.execute("SELECT * FROM conflicts WHERE id = ?", (conflict_id,)).fetchone()
    return conflict_row(row) if row else None


def list_conflicts(
    conn: sqlite3.Connection,
    include_resolved: bool,
    limit: int,
    *,
    state: str | None = None,
    desk: str | None = None,
    ticket_id: str | None = None,
    before_id: int | None = None,
) -> list[ConflictRow]:
    """Newest first: open ones (all with include_resolved, or those of `state`); `before_id` continues a page."""
    if not state and not include_resolved:
        state = "open"
    filters = {"state": state, "desk": desk, "ticket_id": ticket_id}
    rows = newest_first(conn, "SELECT * FROM conflicts", filters, limit, before_id=before_id)
    return [conflict_row(r) for r in rows]


def count_open_conflicts(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM conflicts WHERE state = 'open'").fetchone()[0])


def close_conflict_txn(conn: sqlite3.Connection, conflict_id: int, winner: str, by: str, now: float) -> None:
    conn.execute(
        "UPDATE conflicts SET state = 'resolved', winner = ?, resolution = ?, resolved_at = ?, resolved_by = ?"
        " WHERE id = ?",
        (winner, f"{winner} kept", now, by, conflict_id),
    )


# sweep marks --------------------------------------------------------------------------------------
def sweep_mark(conn: sqlite3.Connection, desk: str) -> float | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"inbound_swept:{desk}",)).fetchone()
    try:
        return float(row[0]) if row else None
    except ValueError:
        return None


def set_sweep_mark_txn(conn: sqlite3.Connection, desk: str, at: float) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"inbound_swept:{desk}", json.dumps(at)),
    )


def sweep_marks(conn: sqlite3.Connection) -> dict[str, float]:
    rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'inbound_swept:%'").fetchall()
    marks: dict[str, float] = {}
    for key, value in rows:
        try:
            marks[key.split(":", 1)[1]] = float(value)
        except ValueError:
            continue
    return marks


class ConflictNotOpen(Exception):
    """The conflict was decided already (by the strategy or an operator)."""


def resolve_conflict_txn(
    conn: sqlite3.Connection, conflict_id: int, winner: str, by: str, now: float, audit: AuditEntry | None
) -> ConflictRow | None:
    """An operator decides a parked conflict: the loser's value becomes the base, so the normal flow carries
    the winner over (chain kept: an outbound repair job sets the desk back; desk kept: a re-read sends the
    desk's value to the chain). None when no such conflict; ConflictNotOpen when it is decided already."""
    conflict = get_conflict(conn, conflict_id)
    if conflict is None:
        return None
    if conflict.state != "open":
        raise ConflictNotOpen(f"conflict {conflict_id} is already {conflict.state}")
    ticket = get_ticket(conn, conflict.ticket_id)
    chain_now = field_value(ticket, conflict.field) if ticket is not None else conflict.chain_value
    loser = conflict.desk_value if winner == "chain" else chain_now
    set_field_state_txn(
        conn,
        conflict.ticket_id,
        conflict.desk,
        conflict.field,
        base=loser,
        desk_value=conflict.desk_value,
        chain_value=chain_now,
        synced_from="operator",
        now=now,
    )
    close_conflict_txn(conn, conflict_id, winner, by, now)
    ref = conn.execute(
        "SELECT external_id FROM external_refs WHERE ticket_id = ? AND desk = ?", (conflict.ticket_id, conflict.desk)
    ).fetchone()
    if winner == "desk" and ref is not None:
        enqueue_issue_txn(conn, conflict.desk, ref[0], "operator", now)
    if winner == "chain":
        sequence = ticket.last_sequence if ticket is not None else 0
        key = f"conflict:{conflict_id}#{conflict.desk}@{sequence}"
        queue_update_job_txn(conn, key, conflict.desk, conflict.ticket_id, "conflict", now)
    if audit is not None:
        append_audit_txn(conn, audit, now)
    return get_conflict(conn, conflict_id)


# The states of the conflicts table (its CHECK constraint).
CONFLICT_STATES = ("open", "resolved")


@dataclass(frozen=True)
class Rereads:
    queued: int  # issues whose re-read this call queued
    pending: int  # issues whose re-read was already pending or running (nothing new queued)


def request_rereads_txn(conn: sqlite3.Connection, ticket_id: str, desks: Sequence[str], now: float) -> Rereads:
    """A re-read of each linked, verified desk issue of the ticket, unless one is pending or running already
    (a re-read reads the issue as it is when it runs; asking again adds nothing)."""
    queued = pending = 0
    for desk in desks:
        row = conn.execute(
            "SELECT r.external_id, q.state FROM external_refs r LEFT JOIN inbound_queue q"
            " ON q.desk = r.desk AND q.external_id = r.external_id"
            " WHERE r.ticket_id = ? AND r.desk = ? AND r.verified = 1 AND r.state = 'active'",
            (ticket_id, desk),
        ).fetchone()
        if row is None:
            continue
        if row["state"] in ("pending", "running"):
            pending += 1
            continue
        enqueue_issue_txn(conn, desk, row["external_id"], "operator", now)  # new, or a dead one brought back
        queued += 1
    return Rereads(queued, pending)
