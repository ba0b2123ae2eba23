"""Value types that cross the store boundary: decoded chain events and content checks.

They live here, at the bottom of the dependency order, so the chain package can produce them and
the store can persist them without the store importing the chain package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class SupportEvent:
    """One decoded support event. `payload` is the parsed payload_json (ciphertext, never plaintext)."""

    event_id: str
    event_type: str
    height: int
    position: int  # order within the block
    sequence: int
    ticket_id: str
    sender: str
    timestamp: int
    payload: dict[str, Any]


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
