"""Build what a desk is told about a ticket: the mirror's current fields plus the opened payload.

Desks always get the ticket's CURRENT chain state, so a replayed or late event cannot push older
values over newer ones. Plaintext lives only in the returned objects, never in the store or logs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from sidecar.chain.envelope import EnvelopeError, EnvelopeKey
from sidecar.desks.base import DeskComment, TicketSnapshot
from sidecar.recent import Recent
from sidecar.store.db import Store
from sidecar.store.jobs import created_payload, inbox_payload
from sidecar.store.tickets import Ticket, get_ticket

PLACEHOLDER_SUBJECT = "(encrypted content not available to the desk)"
# Opened creation payloads kept in memory: every job of a ticket, at each desk, builds its snapshot from the
# same creation envelope (a create, then each update), so the recently busy tickets' plaintext is kept
# rather than decrypted again per job. Memory only, like every snapshot; bounded, oldest use dropped first.
OPENED_CACHE = 256


class ContentOpener:
    def __init__(self, store: Store, key: EnvelopeKey | None) -> None:
        self._store = store
        self._key = key
        self._opened: Recent[tuple[str, bytes], dict[str, Any]] = Recent(OPENED_CACHE)

    def _open(self, event_payload: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
        envelope = ((event_payload or {}).get("payload") or {}).get("envelope")
        if not envelope:
            return None, "payload held off-chain (envelope_ref); no artifact store configured"
        if self._key is None:
            return None, "no support key configured"
        try:
            return self._key.open(envelope), None
        except EnvelopeError as exc:
            return None, str(exc)

    def _open_created(self, ticket_id: str, created: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
        """`_open` of a ticket's creation event, through the cache of opened ones (keyed by the ticket and
        the envelope's exact content: a different envelope is never answered from the cache)."""
        envelope = ((created or {}).get("payload") or {}).get("envelope")
        if not envelope or self._key is None:
            return self._open(created)
        try:
            digest = hashlib.sha256(json.dumps(envelope, sort_keys=True).encode()).digest()
        except (TypeError, ValueError):  # not JSON-shaped: opening refuses it, as it should
            return self._open(created)
        slot = (ticket_id, digest)
        plain = self._opened.get(slot)
        if plain is not None:
            self._opened.put(slot, plain)  # the newest used
            return plain, None
        plain, reason = self._open(created)
        if plain is not None:
            self._opened.put(slot, plain)
        return plain, reason

    async def snapshot(self, ticket_id: str) -> TicketSnapshot | None:
        ticket, created = await self._store.read("ticket", _ticket_and_created, ticket_id)
        if ticket is None:
            return None
        plain, reason = self._open_created(ticket_id, created)
        related = (created or {}).get("related_entity")
        return TicketSnapshot(
            ticket_id=ticket.ticket_id,
            ticket_number=ticket.ticket_number or "",
            submitter=ticket.submitter or "",
            category=ticket.category or "other",
            priority=ticket.priority or "normal",
            status=ticket.status or "open",
            assigned_agent=ticket.assigned_agent,
            related_entity=related if isinstance(related, dict) else None,
            subject=str(plain.get("subject", "")) if plain else PLACEHOLDER_SUBJECT,
            description=str(plain.get("description", "")) if plain else "",
            content_available=plain is not None,
            content_reason=reason,
            last_sequence=ticket.last_sequence,
        )

    async def comment(self, event_id: str) -> DeskComment | None:
        event = await self._store.read("response event", inbox_payload, event_id)
        if event is None:
            return None
        plain, reason = self._open(event)
        body = str(plain.get("message", "")) if plain else f"(encrypted reply not available to the desk: {reason})"
        is_agent = bool(event.get("is_agent"))
        return DeskComment(
            marker=str(event["response_id"]),
            author=str(event.get("author", "")),
            is_agent=is_agent,
            body=body,
            # An agent's reply whose plaintext says {"internal": true} is a note for agents only; a
            # customer cannot hide a reply from the desk's customer view.
            internal=is_agent and bool(plain and plain.get("internal") is True),
        )


def _ticket_and_created(conn: sqlite3.Connection, ticket_id: str) -> tuple[Ticket | None, dict[str, Any] | None]:
    """The mirror's row and the creation event, read together: one store hop per snapshot, not two."""
    ticket = get_ticket(conn, ticket_id)
    return ticket, created_payload(conn, ticket_id) if ticket is not None else None
