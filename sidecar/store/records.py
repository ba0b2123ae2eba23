"""Value types that cross the store boundary: decoded chain events and content checks.

They live here, at the bottom of the dependency order, so the chain package can produce them and
the store can persist them without the store importing the chain package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class SupportEvent:
    """What every decoded support event carries. `payload` is the parsed payload_json (ciphertext, never
    plaintext), `payload_json` the chain's text of it, which the inbox stores as it is (encoding the parsed
    value again cost a backfill a fifth of its writer's time). The seven event types add their own fields."""

    event_id: str
    event_type: str
    height: int
    position: int  # order within the block
    sequence: int
    ticket_id: str
    sender: str
    timestamp: int
    payload: dict[str, Any]
    payload_json: str = field(default="", kw_only=True, repr=False, compare=False)  # "": encode `payload`


@dataclass(frozen=True)
class RequestCreated(SupportEvent):
    ticket_number: str
    submitter: str
    category: str
    priority: str
    status: str
    recipients: tuple[str, ...] = ()
    related_entity: dict[str, Any] | None = None


@dataclass(frozen=True)
class RequestUpdated(SupportEvent):
    """Category, priority and status carry the current values; None where the event does not say."""

    updated_by: str
    category: str | None = None
    priority: str | None = None
    status: str | None = None
    assigned_agent: str | None = None


@dataclass(frozen=True)
class StatusChanged(SupportEvent):
    old_status: str
    new_status: str
    updated_by: str


@dataclass(frozen=True)
class ResponseAdded(SupportEvent):
    response_id: str
    author: str
    is_agent: bool


@dataclass(frozen=True)
class RequestArchived(SupportEvent):
    archived_by: str
    reason: str | None = None


@dataclass(frozen=True)
class RequestPurged(SupportEvent):
    purged_by: str


@dataclass(frozen=True)
class ExternalTicketLinked(SupportEvent):
    external_system: str
    external_ticket_id: str
    linked_by: str
    external_url: str | None = None


@dataclass(frozen=True)
class PoisonEvent:
    """A support_event that could not be decoded; kept, never dropped, with the reason."""

    event_id: str
    height: int
    position: int
    reason: str
    raw: str


@dataclass(frozen=True)
class ContentCheck:
    """Whether the sidecar could open an event's encrypted payload, and why not."""

    state: Literal["decrypted", "placeholder"]
    reason: str | None = None
