"""Reconcile: what the chain holds that the sidecar or a desk lacks, found and (unless a dry run) queued.

Two modes. Heights: the support events of a height range are read again from the node and compared
with the inbox; those it lacks are taken in as the follower takes them (sidecar.store.reconcile), and
the dispatcher queues their desk jobs. Heights past the follower's cursor are left to the follower.
Tickets: the chain's committed ticket (abci_query) is compared with the mirror and with each desk's
issue, field by field in chain vocabulary (the desk maps of sidecar/sync/fields.py), and repairs are
queued for the sidecar's own loops: nothing here writes to a desk or to the chain.

Repairs of a field the desk holds differently from the chain:
| the desk since the field's base | inbound runs for the desk | repair |
|---|---|---|
| changed, or no base | yes | a re-read: inbound's three-way decision and conflict rule decide |
| unchanged (only the chain moved) | any | an outbound update job (a re-read would see the sidecar's own last write) |
| changed, or no base | no | an outbound update job |
A mirror behind the chain is reported with the first height to read again (height mode repairs it).
Work already on its way (a desk job or a ref registration in flight, heights past the cursor) is not
a difference. Values shown are field values only, never ticket content.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sidecar.chain.envelope import EnvelopeKey
from sidecar.chain.events import decode_block
from sidecar.chain.follower import check_content
from sidecar.chain.queries import ChainTicket, query_refs, query_ticket
from sidecar.chain.rpc import CometRpc
from sidecar.desks.base import INBOUND_FIELDS, DeskIssueView, ExternalTicket, ReadsChanges
from sidecar.desks.mapping import DeskMapping
from sidecar.errors import DeskError
from sidecar.store.db import Store
from sidecar.store.inbound import queue_rereads_txn
from sidecar.store.inbox import load_cursor
from sidecar.store.intents import redrive_intents_txn
from sidecar.store.jobs import queue_update_job_txn
from sidecar.store.reconcile import (
    TicketView,
    inbox_event_ids,
    queue_create_job_txn,
    read_ticket_view,
    take_events_txn,
)
from sidecar.store.records import PoisonEvent, SupportEvent
from sidecar.store.tickets import Ticket
from sidecar.sync.fields import NO_BASE, chain_value
from sidecar.sync.outbound import RegisterRef

CHUNK = 10  # heights per batch request, as the follower asks
WINDOW = 4  # batch requests in flight


@dataclass(frozen=True)
class Difference:
    """One thing that differs (the fields of control.proto's Difference); `action` is the repair queued."""

    kind: str
    ticket_id: str = ""
    desk: str = ""
    field: str = ""
    chain_value: str = ""
    mirror_value: str = ""
    desk_value: str = ""
    height: int = 0
    event_type: str = ""
    action: str = ""


@dataclass
class Found:
    differences: list[Difference] = field(default_factory=list)
    checked: int = 0
    queued: int = 0
    next_height: int = 0  # heights mode: where the next page starts (0: done)


class NoCursor(Exception):
    """The follower has not started: there is no cursor to compare heights with."""


class DeskUnreachable(Exception):
    """A desk read failed: the reconcile stops rather than report a desk it could not see as in sync."""

    def __init__(self, desk: str, error: DeskError) -> None:
        super().__init__(f"desk {desk}: {error}")
        self.desk = desk


# heights ------------------------------------------------------------------------------------------
async def missing_events(
    rpc: CometRpc,
    store: Store,
    first: int,
    last: int,
    *,
    limit: int,
    dry_run: bool,
    key: EnvelopeKey | None = None,
) -> Found:
    """Heights first..last (those the follower has passed), read in windows of batches until `limit`
    differences are found; `next_height` says where the next page starts."""
    cursor = await store.read("load cursor", load_cursor)
    if cursor is None:
        raise NoCursor("the follower has not started (no cursor yet)")
    status = await rpc.status()
    base64_attributes = status.version.startswith("0.34")
    top = min(last, cursor.height)
    found = Found()
    height = first
    while height <= top and len(found.differences) < limit:
        upto = min(top, height + CHUNK * WINDOW - 1)
        starts = range(height, upto + 1, CHUNK)
        answers = await asyncio.gather(*(rpc.block_results_range(s, min(upto, s + CHUNK - 1)) for s in starts))
        events = [e for batch in answers for r in batch for e in decode_block(r, base64_encoded=base64_attributes)]
        known = await store.read("inbox event ids", inbox_event_ids, height, upto)
        missing = [e for e in events if e.event_id not in known]
        taken: set[str] = set()
        if missing and not dry_run:
            content = {
                e.event_id: c
                for e in missing
                if isinstance(e, SupportEvent) and (c := check_content(key, e)) is not None
            }
            taken = set(await store.write("take missing events", take_events_txn, missing, content, time.time()))
        found.differences += [_missing(e, "event" if e.event_id in taken else "") for e in missing]
        found.queued += len(taken)
        found.checked += upto - height + 1
        height = upto + 1
    found.next_height = height if height <= top else 0
    return found


def _missing(event: SupportEvent | PoisonEvent, action: str) -> Difference:
    if isinstance(event, PoisonEvent):
        return Difference("missing_event", height=event.height, event_type="poison", action=action)
    return Difference("missing_event", event.ticket_id, height=event.height, event_type=event.event_type, action=action)


# tickets ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """What a ticket is compared with: the desks to look at, who serves them, and how to register refs."""

    desks: Sequence[str]
    outbound: Sequence[str]
    inbound: Sequence[str]
    readers: Mapping[str, ReadsChanges]
    register: RegisterRef | None = None


async def reconcile_ticket(rpc: CometRpc, store: Store, ticket_id: str, scope: Scope, *, dry_run: bool) -> Found:
    """One ticket: chain vs mirror vs each desk. Raises LookupError when neither the chain nor the mirror
    knows the ticket, DeskUnreachable when a desk cannot be read, ChainRpcError when the node cannot."""
    view = await store.read("reconcile view", read_ticket_view, ticket_id, tuple(scope.desks))
    chain = await query_ticket(rpc, ticket_id)
    found = Found(checked=1)
    if chain is None:
        if view.ticket is None:
            raise LookupError(f"ticket {ticket_id} is neither on chain nor in the local mirror")
        return found  # purged on chain: nothing left to sync
    if view.ticket is None:
        found.differences.append(Difference("missing_ticket", ticket_id, chain_value=chain.status))
        return found
    if view.ticket.purged:
        return found
    found.differences += _mirror_differences(view.ticket, chain, view.cursor_height)
    refs = await query_refs(rpc, ticket_id)
    repairs: list[tuple[Difference, Repair | None]] = []
    for desk in scope.desks:
        repairs += await _desk_differences(desk, view, chain, refs, scope)
    if not dry_run and any(repair is not None for _, repair in repairs):
        wanted = [repair for _, repair in repairs if repair is not None]
        found.queued = await store.write(
            "reconcile repairs", apply_repairs_txn, view, wanted, scope.register, time.time()
        )
    for difference, repair in repairs:
        action = repair.action if repair is not None and not dry_run else ""
        found.differences.append(_with_action(difference, action))
    return found


def _with_action(difference: Difference, action: str) -> Difference:
    return Difference(**{**difference.__dict__, "action": action})


def chain_field(chain: ChainTicket, name: str) -> str | None:
    return {"status": chain.status, "priority": chain.priority, "assignee": chain.assigned_agent}[name]


def mirror_field(ticket: Ticket, name: str) -> str | None:
    return {"status": ticket.status, "priority": ticket.priority, "assignee": ticket.assigned_agent}[name]


def _mirror_differences(ticket: Ticket, chain: ChainTicket, cursor_height: int) -> list[Difference]:
    """Fields the mirror holds differently from the chain. A mirror that has not seen the ticket's newest
    event while the follower has not reached the height the chain answered for is only behind: skipped."""
    if ticket.last_sequence < chain.last_sequence and cursor_height < chain.height:
        return []
    found = []
    for name in INBOUND_FIELDS:
        on_chain, mirrored = chain_field(chain, name), mirror_field(ticket, name)
        if on_chain != mirrored:
            found.append(
                Difference(
                    "field",
                    ticket.ticket_id,
                    field=name,
                    chain_value=on_chain or "",
                    mirror_value=mirrored or "",
                    height=ticket.last_height + 1,
                )
            )
    return found


async def _desk_differences(
    desk: str, view: TicketView, chain: ChainTicket, refs: Mapping[str, str], scope: Scope
) -> list[tuple[Difference, Repair | None]]:
    ticket = view.ticket
    assert ticket is not None
    tid = ticket.ticket_id
    ref = view.refs.get(desk)
    if ref is None:
        if desk in scope.outbound and desk not in view.open_jobs:
            key = f"reconcile:create:{tid}#{desk}@{ticket.last_sequence}"
            return [(Difference("missing_issue", tid, desk), Repair("create_job", desk, key))]
        return []
    if not ref.verified:
        return []  # a chain ref the desk worker has not checked yet: nothing of ours to compare
    found: list[tuple[Difference, Repair | None]] = []
    if desk not in refs:
        intent = view.intents.get(desk)
        if intent is None or intent.state == "dead":
            repair = Repair("register_intent", desk, "") if scope.register is not None else None
            found.append((Difference("missing_ref", tid, desk), repair))
        elif intent.state not in ("queued", "signed", "broadcast"):
            found.append((Difference("missing_ref", tid, desk), None))
    reader = scope.readers.get(desk)
    mapping = getattr(reader, "mapping", None)
    if reader is None or not isinstance(mapping, DeskMapping):
        return found
    external = ExternalTicket(reader.name, ref.external_id, ref.external_key or ref.external_id, ref.external_url or "")
    try:
        issue = await reader.read_issue(external)
    except DeskError as exc:
        if exc.status == 404:  # the issue was deleted at the desk: the ref names nothing (an operator's call)
            return [*found, (Difference("missing_issue", tid, desk), None)]
        raise DeskUnreachable(desk, exc) from None
    return found + _field_differences(desk, view, chain, issue, mapping, scope)


def _field_differences(
    desk: str, view: TicketView, chain: ChainTicket, issue: DeskIssueView, mapping: DeskMapping, scope: Scope
) -> list[tuple[Difference, Repair | None]]:
    ticket = view.ticket
    assert ticket is not None
    states = view.states.get(desk, {})
    found: list[tuple[Difference, Repair | None]] = []
    for name in INBOUND_FIELDS:
        change = issue.fields.get(name)
        if change is None:
            continue
        on_chain = chain_field(chain, name)
        state = states.get(name)
        base = state.base if state is not None else NO_BASE
        shown = chain_value(name, change.value, on_chain, mapping, base=base).value
        if shown is None and not _assignment_lost(name, change.value, on_chain, mapping, base):
            continue  # a value no map covers, or an unassignment the chain cannot take: inbound reports those
        if shown == on_chain:
            continue
        difference = Difference(
            "field",
            ticket.ticket_id,
            desk,
            name,
            chain_value=on_chain or "",
            mirror_value=mirror_field(ticket, name) or "",
            desk_value=shown or "",
        )
        desk_moved = state is None or shown != state.base
        if desk in scope.inbound and desk_moved:
            repair = Repair("reread", desk, "")
        elif desk in scope.outbound:
            repair = Repair("outbound_job", desk, f"reconcile:update:{ticket.ticket_id}#{desk}@{ticket.last_sequence}")
        elif desk in scope.inbound:
            repair = Repair("reread", desk, "")
        else:
            repair = None
        found.append((difference, repair))
    return found


def _assignment_lost(
    name: str, desk_value: str | None, on_chain: str | None, mapping: DeskMapping, base: object
) -> bool:
    """An unassigned desk issue whose chain agent (one the desk can hold) was never synced to it."""
    if name != "assignee" or desk_value is not None or not on_chain:
        return False
    return mapping.assignee.to_desk(on_chain).unmapped is None and base != on_chain


# repairs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Repair:
    """What to queue for one difference: `action` is Difference.action; `key` the job's dedupe key."""

    action: str  # "create_job", "outbound_job", "reread", "register_intent"
    desk: str
    key: str


def apply_repairs_txn(
    conn: sqlite3.Connection, view: TicketView, repairs: Sequence[Repair], register: RegisterRef | None, now: float
) -> int:
    """Queue the repairs of one ticket in one transaction; returns the jobs, re-reads and intents newly queued.
    Each is idempotent: a job by its dedupe key, a re-read by its issue row, an intent by its key."""
    assert view.ticket is not None
    tid = view.ticket.ticket_id
    queued = 0
    for repair in dict.fromkeys(repairs):  # several fields of one desk share one job or re-read
        if repair.action == "create_job":
            queued += queue_create_job_txn(conn, repair.key, repair.desk, tid, now)
        elif repair.action == "outbound_job":
            queued += queue_update_job_txn(conn, repair.key, repair.desk, tid, "reconcile", now)
        elif repair.action == "reread":
            queued += queue_rereads_txn(conn, tid, [repair.desk], now)
        elif repair.action == "register_intent" and register is not None:
            intent = view.intents.get(repair.desk)
            if intent is not None:
                queued += redrive_intents_txn(conn, intent.id, now)
            else:
                register(conn, view.refs[repair.desk], now)
                queued += 1
    return queued
