"""Decode `support_event`s from a block's results, in chain order, into typed domain objects.

Chain order within a block: `mode=BeginBlock` block events, then successful txs in order, then
`mode=EndBlock` block events (CHAIN_CONTRACT.md). Attributes are plain strings on CometBFT 0.37+
and base64 on 0.34. Unknown attributes are ignored; a malformed event becomes a poison record with
the reason instead of stopping the follower. Any chain account can shape an event's payload, so
nothing in one event, however hostile, raises out of `decode_block`: the boundary is the event.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from sidecar import boundedjson
from sidecar.digits import is_decimal
from sidecar.store.inbox import POISON_RAW_CHARS
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

__all__ = ["EVENT_CLASSES", "PAYLOAD_JSON_MAX_BYTES", "PoisonEvent", "SupportEvent", "decode_block", "parse_ticket_id"]

EVENT_TYPE = "support_event"
# payload_json holds the event's fields and, for created/updated/response events, the envelope:
# base64 of a plaintext bounded by envelope.MAX_PLAINTEXT_BYTES (1 MiB), wrapped keys and ids.
PAYLOAD_JSON_MAX_BYTES = 4 * 1024 * 1024
_INT64_MAX = 2**63 - 1
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
    if len(parts) != 3 or parts[1] != "support" or not parts[0] or not is_decimal(parts[2]) or int(parts[2]) < 1:
        raise ValueError(f"malformed ticket id {ticket_id!r}")
    return parts[0], int(parts[2])


class _Malformed(ValueError):
    """A reason written by this module: safe to record (it names fields, never their values)."""


def _attributes(event: dict[str, Any], base64_encoded: bool) -> dict[str, str]:
    attributes = event.get("attributes") or []
    if not isinstance(attributes, list):
        raise _Malformed("attributes are not a list")
    out: dict[str, str] = {}
    for attr in attributes:
        if not isinstance(attr, dict):
            raise _Malformed("an attribute is not an object")
        key, value = attr.get("key") or "", attr.get("value") or ""
        if not isinstance(key, str) or not isinstance(value, str):
            raise _Malformed("an attribute key or value is not a string")
        if base64_encoded:
            key = base64.b64decode(key).decode()
            value = base64.b64decode(value).decode()
        out.setdefault(key, value)
    return out


def _int(value: Any, name: str) -> int:
    """A non-negative int64 from a JSON number or a decimal string (CometBFT writes int64 as strings)."""
    if isinstance(value, bool):
        raise _Malformed(f"{name} is not an integer")
    if isinstance(value, str) and is_decimal(value) and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
        raise _Malformed(f"{name} is not an integer in range")
    return value


def _is_event(item: Any) -> bool:
    return isinstance(item, dict)


def _tx_ok(tx: Any) -> bool:
    """A tx result with code 0; anything unreadable counts as failed (its events never applied)."""
    if not isinstance(tx, dict):
        return False
    code = tx.get("code") or 0
    return isinstance(code, (int, str)) and str(code) == "0"


def _mode(event: dict[str, Any]) -> set[str]:
    """The event's `mode` values; only strings count (a dict or list value is not hashable, and no mode)."""
    attributes = event.get("attributes")
    if not isinstance(attributes, list):
        return set()
    return {
        a["value"]
        for a in attributes
        if isinstance(a, dict) and a.get("key") in ("mode", "bW9kZQ==") and isinstance(a.get("value"), str)
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def ordered_block_events(results: dict[str, Any]) -> list[dict[str, Any]]:
    """All events of a block in chain order; events of failed txs (code != 0) are left out."""
    begin: list[dict[str, Any]] = []
    end: list[dict[str, Any]] = []
    for event in filter(_is_event, _list(results.get("finalize_block_events"))):
        (begin if _mode(event) & {"BeginBlock", "QmVnaW5CbG9jaw=="} else end).append(event)
    # 0.34 nodes report begin/end block events separately.
    begin = list(filter(_is_event, _list(results.get("begin_block_events")))) + begin
    end += list(filter(_is_event, _list(results.get("end_block_events"))))
    txs: list[dict[str, Any]] = []
    for tx in _list(results.get("txs_results")):
        if _tx_ok(tx):
            txs.extend(filter(_is_event, _list(tx.get("events"))))
    return begin + txs + end


def decode_block(results: dict[str, Any], *, base64_encoded: bool = False) -> list[SupportEvent | PoisonEvent]:
    """Every support_event of one block_results answer, in chain order (the caller checked `height`)."""
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
    """One event, or its poison record; never raises (the reason names what is wrong, never a value)."""
    fallback_id = f"poison:{height}:{position}"
    try:
        attrs = _attributes(event, base64_encoded)
    except _Malformed as exc:
        return PoisonEvent(fallback_id, height, position, str(exc), _raw_event(event))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return PoisonEvent(fallback_id, height, position, "attributes are not valid base64/UTF-8", _raw_event(event))
    raw = attrs.get("payload_json", "")
    event_id = attrs.get("event_id") or fallback_id
    try:
        return _typed_event(attrs, raw, event_id, height, position)
    except (_Malformed, boundedjson.JsonLimitError) as exc:
        reason = str(exc)
    except Exception as exc:  # the per-event boundary: no event may stop the follower
        reason = f"undecodable event ({type(exc).__name__})"
    return PoisonEvent(event_id, height, position, reason[:300], raw[:POISON_RAW_CHARS])


def _typed_event(attrs: dict[str, str], raw: str, event_id: str, height: int, position: int) -> SupportEvent:
    payload = boundedjson.loads(raw, max_bytes=PAYLOAD_JSON_MAX_BYTES, intern_keys=True)
    if not isinstance(payload, dict):
        raise _Malformed("payload_json is not an object")
    event_type = attrs.get("event_type") or payload.get("event_type", "")
    if not isinstance(event_type, str) or event_type not in EVENT_CLASSES:
        raise _Malformed(f"unknown event_type {str(event_type)[:64]!r}")
    if not attrs.get("event_id"):
        raise _Malformed("event_id attribute missing")
    cls = EVENT_CLASSES[event_type]
    typed = _typed_fields(cls, event_type, payload)
    if "ticket_id" not in payload:
        raise _Malformed(f"{event_type} lacks ticket_id")
    ticket_id = payload["ticket_id"]
    if not isinstance(ticket_id, str):
        raise _Malformed("ticket_id is not a string")
    try:
        parse_ticket_id(ticket_id)
    except ValueError:
        raise _Malformed("malformed ticket id") from None
    _check_payload_fields(payload)
    sequence = _int(attrs.get("sequence") or payload.get("sequence") or 0, "sequence")
    sender = payload.get(_SENDER_FIELD[event_type], "")
    return cls(
        event_id=event_id,
        event_type=event_type,
        height=height,
        position=position,
        sequence=sequence,
        ticket_id=ticket_id,
        sender=sender if isinstance(sender, str) else "",
        timestamp=_int(payload.get("timestamp") or 0, "timestamp"),
        payload=payload,
        payload_json=raw,
        **typed,
    )


def _check_payload_fields(payload: dict[str, Any]) -> None:
    """The fields the mirror and the content check read beside the typed ones."""
    for name in ("payload_hash", "envelope_ref"):
        if payload.get(name) is not None and not isinstance(payload[name], str):
            raise _Malformed(f"{name} must be str (got {type(payload[name]).__name__})")
    if payload.get("payload") is not None and not isinstance(payload["payload"], dict):
        raise _Malformed(f"payload must be an object (got {type(payload['payload']).__name__})")


def _raw_event(event: dict[str, Any]) -> str:
    try:
        return json.dumps(event)[:POISON_RAW_CHARS]
    except (TypeError, ValueError, RecursionError):
        return ""


def _typed_fields(cls: type[SupportEvent], event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The event type's own fields from payload_json, checked against their declared types."""
    out: dict[str, Any] = {}
    missing = []
    for name, check, label, required in _OWN_FIELDS[cls]:
        value = payload.get(name)
        if value is None:
            if required:
                missing.append(name)
            continue
        checked = check(value)
        if checked is _WRONG:
            raise _Malformed(f"{name} must be {label} (got {type(value).__name__})")
        out[name] = checked
    if missing:
        raise _Malformed(f"{event_type} lacks {', '.join(missing)}")
    return out


_WRONG = object()  # what a field check answers for a value of another type


def _as_str(value: Any) -> Any:
    return value if isinstance(value, str) else _WRONG


def _as_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _WRONG


def _as_str_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else _WRONG


def _as_dict(value: Any) -> Any:
    return value if isinstance(value, dict) else _WRONG


def _check_of(declared: str) -> Callable[[Any], Any]:
    """The check of a field declared `declared` (the annotation as written in records.py: a string there)."""
    for prefix, check in (("str", _as_str), ("bool", _as_bool), ("tuple[str", _as_str_tuple), ("dict", _as_dict)):
        if declared.startswith(prefix):
            return check
    raise TypeError(f"no check for a field declared {declared!r}")


def _own_fields(cls: type[SupportEvent]) -> tuple[tuple[str, Callable[[Any], Any], str, bool], ...]:
    """(name, check, declared type as an error names it, required) of each field an event type adds."""
    return tuple(
        (spec.name, _check_of(str(spec.type)), str(spec.type).split(" |")[0], spec.default is dataclasses.MISSING)
        for spec in dataclasses.fields(cls)
        if spec.name not in _COMMON
    )


# Built once: dataclasses.fields() per event was a tenth of the decoding time of a busy block, and matching
# each declared type per value another tenth.
_OWN_FIELDS = {cls: _own_fields(cls) for cls in EVENT_CLASSES.values()}
