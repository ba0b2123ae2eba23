"""Build what a desk is told about a ticket: the mirror's current fields plus the opened payload.

Desks always get the ticket's CURRENT chain state, so a replayed or late event cannot push older
values over newer ones. Plaintext lives only in the returned objects, never in the store or logs.
"""

from __future__ import annotations

from typing import Any

from sidecar.chain.envelope import EnvelopeError, EnvelopeKey
from sidecar.desks.base import DeskComment, TicketSnapshot
from sidecar.store.db import Store
from sidecar.store.jobs import created_payload, inbox_payload
from sidecar.store.tickets import get_ticket

PLACEHOLDER_SUBJECT = "(encrypted content not available to the desk)"


class ContentOpener:
    def __init__(self, store: Store, key: EnvelopeKey | None) -> None:
        self._store = store
        self._key = key

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

    async def snapshot(self, ticket_id: str) -> TicketSnapshot | None:
        ticket = await self._store.read("ticket", get_ticket, ticket_id)
        if ticket is None:
            return None
        created = await self._store.read("created event", created_payload, ticket_id)
        plain, reason = self._open(created)
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
