"""Decode `support_event`s from a block's results, in chain order, into typed domain objects.

Chain order within a block: `mode=BeginBlock` block events, then successful txs in order, then
`mode=EndBlock` block events (CHAIN_CONTRACT.md). Attributes are plain strings on CometBFT 0.37+
and base64 on 0.34. Unknown attributes are ignored; a malformed event becomes a poison record with
the reason instead of stopping the follower.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from sidecar.store.records import (
    ExternalTicketLinked,
    PoisonEvent,
    RequestArchived,
    RequestCreated,
    RequestPurged,
    RequestUpdated,
    ResponseAdded,
    StatusChanged,
    SupportEvent,
)

__all__ = ["EVENT_CLASSES", "PoisonEvent", "SupportEvent", "decode_block", "parse_ticket_id"]

EVENT_TYPE = "support_event"
EVENT_CLASSES: dict[str, type[SupportEvent]] = {
    "support_request_created": RequestCreated,
    "support_request_updated": RequestUpdated,
    "support_request_status_changed": StatusChanged,
    "support_response_added": ResponseAdded,
    "support_request_archived": RequestArchived,
    "support_request_purged": RequestPurged,
    "support_external_ticket_linked": ExternalTicketLinked,
}
_SENDER_FIELD = {
    "support_request_created": "submitter",
    "support_request_updated": "updated_by",
    "support_request_status_changed": "updated_by",
    "support_response_added": "author",
    "support_request_archived": "archived_by",
    "support_request_purged": "purged_by",
    "support_external_ticket_linked": "linked_by",
}
_COMMON = frozenset(f.name for f in dataclasses.fields(SupportEvent))


def parse_ticket_id(ticket_id: str) -> tuple[str, int]:
    """`<submitter>/support/<n>` strictly: three parts, the middle one `support`, n >= 1."""
    parts = ticket_id.split("/")
    if len(parts) != 3 or parts[1] != "support" or not parts[0] or not parts[2].isdigit() or int(parts[2]) < 1:
        raise ValueError(f"malformed ticket id {ticket_id!r}")
    return parts[0], int(parts[2])


def _attributes(event: dict[str, Any], base64_encoded: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for attr in event.get("attributes") or []:
        key, value = attr.get("key") or "", attr.get("value") or ""
        if base64_encoded:
            key = base64.b64decode(key).decode()
            value = base64.b64decode(value).decode()
        out.setdefault(key, value)
    return out


def ordered_block_events(results: dict[str, Any]) -> list[dict[str, Any]]:
    """All events of a block in chain order; events of failed txs (code != 0) are left out."""
    begin: list[dict[str, Any]] = []
    end: list[dict[str, Any]] = []
    for event in results.get("finalize_block_events") or []:
        modes = {a.get("value") for a in event.get("attributes") or [] if a.get("key") in ("mode", "bW9kZQ==")}
        (begin if modes & {"BeginBlock", "QmVnaW5CbG9jaw=="} else end).append(event)
    # 0.34 nodes report begin/end block events separately.
    begin = list(results.get("begin_block_events") or []) + begin
    end += list(results.get("end_block_events") or [])
    txs: list[dict[str, Any]] = []
    for tx in results.get("txs_results") or []:
        if int(tx.get("code") or 0) == 0:
            txs.extend(tx.get("events") or [])
    return begin + txs + end


def decode_block(results: dict[str, Any], *, base64_encoded: bool = False) -> list[SupportEvent | PoisonEvent]:
    """Every support_event of one block_results answer, in chain order."""
    height = int(results["height"])
    out: list[SupportEvent | PoisonEvent] = []
    position = 0
    for event in ordered_block_events(results):
        if event.get("type") != EVENT_TYPE:
            continue
        out.append(_decode_one(event, height, position, base64_encoded))
        position += 1
    return out


def _decode_one(event: dict[str, Any], height: int, position: int, base64_encoded: bool) -> SupportEvent | PoisonEvent:
    fallback_id = f"poison:{height}:{position}"
    try:
        attrs = _attributes(event, base64_encoded)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return PoisonEvent(fallback_id, height, position, "attributes are not valid base64/UTF-8", json.dumps(event))
    raw = attrs.get("payload_json", "")
    event_id = attrs.get("event_id") or fallback_id
    try:
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("payload_json is not an object")
        event_type = attrs.get("event_type") or payload.get("event_type", "")
        if event_type not in EVENT_CLASSES:
            raise ValueError(f"unknown event_type {event_type!r}")
        if not attrs.get("event_id"):
            raise ValueError("event_id attribute missing")
        cls = EVENT_CLASSES[event_type]
        typed = _typed_fields(cls, event_type, payload)
        if "ticket_id" not in payload:
            raise ValueError(f"{event_type} lacks ticket_id")
        ticket_id = str(payload["ticket_id"])
        parse_ticket_id(ticket_id)
        sequence = int(attrs.get("sequence") or payload.get("sequence") or 0)
        return cls(
            event_id=event_id,
            event_type=event_type,
            height=height,
            position=position,
            sequence=sequence,
            ticket_id=ticket_id,
            sender=str(payload.get(_SENDER_FIELD[event_type], "")),
            timestamp=int(payload.get("timestamp") or 0),
            payload=payload,
            **typed,
        )
    except (ValueError, TypeError) as exc:
        return PoisonEvent(event_id, height, position, str(exc)[:300], raw[:10_000])


def _typed_fields(cls: type[SupportEvent], event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The event type's own fields from payload_json, checked against their declared types."""
    out: dict[str, Any] = {}
    missing = []
    for spec in dataclasses.fields(cls):
        if spec.name in _COMMON:
            continue
        value = payload.get(spec.name)
        if value is None:
            if spec.default is dataclasses.MISSING:
                missing.append(spec.name)
            continue
        out[spec.name] = _checked(spec.name, str(spec.type), value)
    if missing:
        raise ValueError(f"{event_type} lacks {', '.join(missing)}")
    return out


def _checked(name: str, declared: str, value: Any) -> Any:
    """`declared` is the annotation as written in records.py (annotations are strings there)."""
    if declared.startswith("str"):
        if isinstance(value, str):
            return value
    elif declared == "bool":
        if isinstance(value, bool):
            return value
    elif declared.startswith("tuple[str"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif declared.startswith("dict") and isinstance(value, dict):
        return value
    raise ValueError(f"{name} must be {declared.split(' |')[0]} (got {type(value).__name__})")
