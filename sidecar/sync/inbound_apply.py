"""One re-read desk issue, decided against the chain mirror in ONE transaction: the intents it makes, the
bases it moves, the conflicts it records and their audit rows land together or not at all.

Deciding inside the writer's transaction (not before it) means two re-reads of the same ticket at two
desks, a sweep and a webhook, or a restart half-way can never decide on stale state: exactly one
intent per change (its dedupe key names the desk, issue, field or comment, and the desk's change id).
Ticket content (comment text) exists here in memory only: it is sealed into an envelope and dropped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.chain.envelope import EnvelopeKey
from sidecar.chain.transitions import path
from sidecar.chain.txbuild import encode_msg
from sidecar.config_schema import ConflictStrategy
from sidecar.desks.base import INBOUND_FIELDS, DeskCommentView, DeskIssueView, FieldChange
from sidecar.desks.files import DeskAttachment
from sidecar.desks.mapping import DeskMapping
from sidecar.store.attachments import known_desk_attachment, record_inbound_txn
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.inbound import (
    FieldState,
    decided_comments,
    field_states,
    held_fields,
    open_inbound_items,
    record_comment_txn,
    record_conflict_txn,
    record_inbound_intent_txn,
    record_origin_txn,
    set_field_state_txn,
    ticket_envelopes,
)
from sidecar.store.intents import queue_intent_txn
from sidecar.store.jobs import queue_update_job_txn
from sidecar.store.refs import RefRow
from sidecar.store.tickets import Ticket, field_value, get_ticket
from sidecar.sync.fields import NO_BASE, Outcome, Side, chain_value, decide, update_msg, value_hash
from sidecar.sync.replies import (
    MissingKeys,
    gather_recipients,
    payload_hash_of,
    reply_messages,
    response_msg,
    seal_reply,
)

MAX_RESPONSES = 200  # the chain's cap per ticket (CHAIN_CONTRACT.md)

Audit = Callable[[sqlite3.Connection, AuditEntry, float], None]


@dataclass
class Applied:
    """What one re-read did, for metrics and the log (ids and counts only)."""

    intents: int = 0
    comments: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (field, rule)
    skipped: int = 0
    ignored: str | None = None  # why the whole issue was left alone
    attachments: int = 0  # new desk attachments recorded for the intake (sidecar/sync/attach_in.py)
    deferred: bool = False  # a field moved again while its last change is on its way: read the issue again later


@dataclass(frozen=True)
class Context:
    """What the transaction needs besides the connection: who signs, how to map, which rule decides."""

    desk: str
    sender: str
    mapping: DeskMapping
    strategy: ConflictStrategy
    own_account: str | None
    key: EnvelopeKey | None
    audit: Audit
    outbound: bool  # this desk is served outbound: a desk behind the chain gets a repair job
    attachments: bool = False  # the attachment intake runs: new desk attachments are recorded for it


def apply_issue_txn(conn: sqlite3.Connection, ctx: Context, ref: RefRow, view: DeskIssueView, now: float) -> Applied:
    done = Applied()
    ticket = get_ticket(conn, ref.ticket_id)
    if ticket is None or ticket.ticket_number is None:
        done.ignored = "the chain ticket is not in the local mirror"
        return done
    if ticket.archived or ticket.purged:
        done.ignored = "the chain ticket is archived"
        return done
    states = field_states(conn, ticket.ticket_id, ctx.desk)
    held = held_fields(conn, ticket.ticket_id, ctx.desk)
    in_flight = open_inbound_items(conn, ticket.ticket_id)
    for name in INBOUND_FIELDS:
        change = view.fields.get(name)
        if change is None or name in held:
            continue
        if name in in_flight:
            done.deferred = done.deferred or _moved_again(ctx, ticket, name, change, states.get(name))
            continue
        _field(conn, ctx, ref, ticket, name, change, states.get(name), done, now)
    decided = decided_comments(conn, ctx.desk, ticket.ticket_id)
    pending = [c for c in view.comments if c.comment_id not in decided]
    if pending:
        _comments(conn, ctx, ref, ticket, pending, done, now)
    if ctx.attachments:
        _attachments(conn, ctx, ticket, view.attachments, done, now)
    return done


# fields -------------------------------------------------------------------------------------------
def _field(
    conn: sqlite3.Connection,
    ctx: Context,
    ref: RefRow,
    ticket: Ticket,
    name: str,
    change: FieldChange,
    state: FieldState | None,
    done: Applied,
    now: float,
) -> None:
    chain = field_value(ticket, name)
    mapped = chain_value(name, change.value, chain, ctx.mapping, base=state.base if state is not None else None)
    if mapped.value is None:
        if state is None or state.desk_change_id != change.change_id:
            details = {"field": name, "change_id": change.change_id[:80], "reason": mapped.reason}
            ctx.audit(conn, _entry("field_unmapped", ref, "skipped", details), now)
            _remember_change(conn, ctx, ticket, name, state, chain, change, now)
        done.skipped += 1
        return
    desk = mapped.value
    base = state.base if state is not None else None
    if desk != chain and change.actor is not None and change.actor == ctx.own_account:
        # The sidecar's own write (a hop of a transition path, or one whose answer was lost): an echo, not
        # news. The desk is behind or on its way: outbound's job.
        return
    if state is None and desk != chain:
        # First sight of a field with no base (a ticket synced before inbound ran, or while it was off): what
        # the two sides last agreed on is unknown, so nothing is sent; the desk's value becomes the base, and
        # from here on the desk's changes go to the chain and the chain's to the desk (outbound).
        _remember_change(conn, ctx, ticket, name, None, chain, change, now, desk_value=desk, base=desk)
        adopted = {"field": name, "desk_sha256": value_hash(desk), "chain_sha256": value_hash(chain)}
        ctx.audit(conn, _entry("field_base_adopted", ref, "skipped", adopted), now)
        _repair_desk(conn, ctx, ticket, name, now)
        return
    decision = decide(
        base if state is not None else NO_BASE, chain, desk, ctx.strategy, ticket_time(ticket), change.changed_at
    )
    if decision.outcome is Outcome.IN_SYNC:
        if state is None or state.base != desk or state.desk_value != desk:
            _agree(
                conn,
                ctx,
                ticket,
                name,
                desk,
                chain,
                change,
                state.synced_from if state and state.synced_from else "both",
                now,
            )
        return
    if decision.outcome is Outcome.TO_DESK:  # the chain moved, the desk did not: outbound's job
        if state is None or state.desk_value != desk:
            _remember_change(conn, ctx, ticket, name, state, chain, change, now, desk_value=desk, base=base or chain)
        _repair_desk(conn, ctx, ticket, name, now)
        return
    if decision.outcome is Outcome.CONFLICT:
        details = {
            "field": name,
            "base_sha256": value_hash(base),
            "chain_sha256": value_hash(chain),
            "desk_sha256": value_hash(desk),
            "strategy": ctx.strategy,
        }
        _conflict(conn, ctx, ref, ticket, name, (base, chain, desk), decision.rule, decision.winner, details, done, now)
        if decision.winner is None:
            return
        if decision.winner == "chain":
            # The desk is set back: its value becomes the base, so outbound sees only the chain moved.
            _agree(conn, ctx, ticket, name, desk, chain, change, "chain", now)
            _repair_desk(conn, ctx, ticket, name, now)
            return
    _to_chain(conn, ctx, ref, ticket, name, chain, desk, change, done, now)


def _moved_again(ctx: Context, ticket: Ticket, name: str, change: FieldChange, state: FieldState | None) -> bool:
    """Whether the desk shows a value other than the one on its way to the chain (the base moved with it):
    the agent changed the field again, which can be decided only once the mirror holds the first change."""
    base = state.base if state is not None else None
    return chain_value(name, change.value, field_value(ticket, name), ctx.mapping, base=base).value != base


def _to_chain(
    conn: sqlite3.Connection,
    ctx: Context,
    ref: RefRow,
    ticket: Ticket,
    name: str,
    chain: str | None,
    desk: str,
    change: FieldChange,
    done: Applied,
    now: float,
) -> None:
    """Queue the Msgs that bring the chain to the desk's value; the base moves with them (optimistically:
    a re-read while they are in flight sees nothing new, and the desk's own later change is not mistaken
    for a conflict)."""
    if name == "status":
        steps = path(chain or "open", desk)
        if steps is None:
            refused = {"field": name, "from": chain, "to": desk, "change_id": change.change_id[:80]}
            rule = f"transition_not_allowed: from {chain} to {desk}"
            _conflict(conn, ctx, ref, ticket, name, (chain, chain, desk), rule, None, refused, done, now)
            return
        msgs = [update_msg(ctx.sender, ticket.ticket_id, status=step) for step in steps]
    elif name == "priority":
        msgs = [update_msg(ctx.sender, ticket.ticket_id, priority=desk)]
    else:
        msgs = [update_msg(ctx.sender, ticket.ticket_id, assigned_agent=desk)]
    for index, msg in enumerate(msgs):
        key = f"inbound:{ctx.desk}:{ref.external_id}:{name}:{change.change_id}:{index}"
        msg_type, data = encode_msg(msg)
        intent = queue_intent_txn(conn, key[:400], msg_type, ticket.ticket_id, data, now)
        record_inbound_intent_txn(conn, intent, ctx.desk, ticket.ticket_id, name, change.changed_at)
        done.intents += 1
    _agree(conn, ctx, ticket, name, desk, chain, change, "desk", now)
    details: dict[str, object] = {
        "field": name,
        "change_id": change.change_id[:80],
        "msgs": len(msgs),
        "value_sha256": value_hash(desk),
    }
    ctx.audit(conn, _entry("inbound_change_queued", ref, "queued", details), now)


def _agree(
    conn: sqlite3.Connection,
    ctx: Context,
    ticket: Ticket,
    name: str,
    value: str,
    chain: str | None,
    change: FieldChange,
    synced_from: str,
    now: float,
) -> None:
    """`value` becomes the field's base and the desk's known value (the two sides agree, or will)."""
    _store_field(conn, ctx, ticket, name, value, value, chain, synced_from, change, now)


def _conflict(
    conn: sqlite3.Connection,
    ctx: Context,
    ref: RefRow,
    ticket: Ticket,
    name: str,
    values: tuple[str | None, str | None, str | None],
    rule: str,
    winner: Side | None,
    details: Mapping[str, Any],
    done: Applied,
    now: float,
) -> None:
    """Record a conflict (base, chain, desk `values`) decided for `winner` (None: parked), count and audit it."""
    base, chain, desk = values
    record_conflict_txn(
        conn,
        ticket.ticket_id,
        ctx.desk,
        name,
        base=base,
        chain_value=chain,
        desk_value=desk,
        strategy=ctx.strategy,
        rule=rule,
        winner=winner,
        now=now,
    )
    done.conflicts.append((name, rule))
    event = "conflict_parked" if winner is None else "conflict_resolved"
    ctx.audit(conn, _entry(event, ref, winner or "parked", {**details, "rule": rule}), now)


def _remember_change(
    conn: sqlite3.Connection,
    ctx: Context,
    ticket: Ticket,
    name: str,
    state: FieldState | None,
    chain: str | None,
    change: FieldChange,
    now: float,
    *,
    desk_value: str | None = None,
    base: str | None = None,
) -> None:
    """Note what the desk shows (and its change id) without moving the base."""
    _store_field(
        conn,
        ctx,
        ticket,
        name,
        base if base is not None else (state.base if state is not None else chain),
        desk_value if desk_value is not None else (state.desk_value if state is not None else None),
        chain,
        state.synced_from if state and state.synced_from else "chain",
        change,
        now,
    )


def _store_field(
    conn: sqlite3.Connection,
    ctx: Context,
    ticket: Ticket,
    name: str,
    base: str | None,
    desk_value: str | None,
    chain: str | None,
    synced_from: str,
    change: FieldChange,
    now: float,
) -> None:
    set_field_state_txn(
        conn,
        ticket.ticket_id,
        ctx.desk,
        name,
        base=base,
        desk_value=desk_value,
        chain_value=chain,
        synced_from=synced_from,
        now=now,
        desk_change_id=change.change_id,
        desk_changed_at=change.changed_at,
    )


def _repair_desk(conn: sqlite3.Connection, ctx: Context, ticket: Ticket, name: str, now: float) -> None:
    """A desk behind the chain gets an outbound update job (once per chain value), so it is set back even
    when no chain event is on its way (the chain's value was written while the desk refused it)."""
    if not ctx.outbound:
        return
    key = f"inbound-repair:{ticket.ticket_id}#{ctx.desk}:{name}={field_value(ticket, name)}@{ticket.last_sequence}"
    queue_update_job_txn(conn, key, ctx.desk, ticket.ticket_id, "inbound_repair", now)


def ticket_time(ticket: Ticket) -> float | None:
    """When the chain last changed the ticket (block time of its newest event): newest_wins' chain side."""
    return ticket.chain_updated_at


# comments -----------------------------------------------------------------------------------------
def _comments(
    conn: sqlite3.Connection,
    ctx: Context,
    ref: RefRow,
    ticket: Ticket,
    comments: list[DeskCommentView],
    done: Applied,
    now: float,
) -> None:
    recipients = None
    queued_parts = 0
    for comment in comments:
        outcome, parts = _comment_outcome(ctx, comment)
        if outcome == "send":
            if ctx.key is None:
                outcome = "no_support_key"
            else:
                if recipients is None:
                    recipients = gather_recipients(ticket.recipients, ticket_envelopes(conn, ticket.ticket_id), ctx.key)
                if isinstance(recipients, MissingKeys):
                    outcome = "recipient_key_unknown"
                elif ticket.response_count + queued_parts + len(parts) > MAX_RESPONSES:
                    outcome = "response_cap_reached"
        if outcome != "send":
            first = record_comment_txn(
                conn, ctx.desk, comment.comment_id, ticket.ticket_id, ref.external_id, outcome, 0, now
            )
            if first and outcome != "echo":  # the sidecar's own comments are not news
                skipped = {"comment_id": comment.comment_id[:80], "reason": outcome}
                ctx.audit(conn, _entry("comment_not_synced", ref, "skipped", skipped), now)
                done.skipped += 1
            continue
        assert ctx.key is not None and recipients is not None and not isinstance(recipients, MissingKeys)
        if not record_comment_txn(
            conn, ctx.desk, comment.comment_id, ticket.ticket_id, ref.external_id, "sent", len(parts), now
        ):
            continue
        for index, message in enumerate(parts):
            payload = seal_reply(ctx.key, recipients, message)
            msg_type, data = encode_msg(response_msg(ctx.sender, ticket.ticket_id, payload))
            key = f"inbound:{ctx.desk}:{ref.external_id}:comment:{comment.comment_id}:{index}"
            intent = queue_intent_txn(conn, key[:400], msg_type, ticket.ticket_id, data, now)
            record_inbound_intent_txn(
                conn, intent, ctx.desk, ticket.ticket_id, f"comment:{comment.comment_id}"[:200], comment.created_at
            )
            record_origin_txn(conn, payload_hash_of(payload), ctx.desk, ticket.ticket_id)
            done.intents += 1
        queued_parts += len(parts)
        done.comments += 1
        queued: dict[str, object] = {"comment_id": comment.comment_id[:80], "parts": len(parts)}
        ctx.audit(conn, _entry("inbound_comment_queued", ref, "queued", queued), now)


# attachments --------------------------------------------------------------------------------------
def _attachments(
    conn: sqlite3.Connection,
    ctx: Context,
    ticket: Ticket,
    attachments: Sequence[DeskAttachment],
    done: Applied,
    now: float,
) -> None:
    """Each public desk attachment the sidecar has no row for becomes a pending inbound row, once (its desk id
    is unique): the intake downloads, checks, seals and sends it outside this transaction. Internal-only files
    stay at the desk; the sidecar's own uploads (its account, or an outbound row holding the id) are echoes."""
    for att in attachments:
        if not att.public or (ctx.own_account and att.author == ctx.own_account):
            continue
        if known_desk_attachment(conn, ctx.desk, att.id) is not None:
            continue
        if record_inbound_txn(conn, ctx.desk, ticket.ticket_id, att.id, now):
            done.attachments += 1


def _comment_outcome(ctx: Context, comment: DeskCommentView) -> tuple[str, list[str]]:
    """`send` with the message parts, or why the comment stays at the desk."""
    if comment.marker is not None or (ctx.own_account and comment.author_id == ctx.own_account):
        return "echo", []
    if not comment.public:
        return "internal", []
    if not comment.text.strip():
        return "empty", []
    return "send", reply_messages(comment.author_name, ctx.desk, comment.text)


def _entry(event: str, ref: RefRow, status: str, details: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        event,
        ticket_id=ref.ticket_id,
        desk=ref.desk,
        direction="inbound",
        actor=ref.desk,
        status=status,
        details={"external_id": ref.external_id, **details},
    )


def audit_with(enabled: bool, clean: Callable[[AuditEntry], AuditEntry]) -> Audit:
    def audit(conn: sqlite3.Connection, entry: AuditEntry, now: float) -> None:
        if enabled:
            append_audit_txn(conn, clean(entry), now)

    return audit
