"""The `support_event` wire shape of CHAIN_CONTRACT.md: attribute order, payload_json key order
(as in tests/vectors/support_events.json), envelope hashing and JSON rendering of payloads."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from virtengine.support.v1 import types_pb2

from devnet.abci_events import Event
from devnet.envelope import envelope_from_proto, payload_from_proto, payload_to_json

ALGORITHM_ID = "X25519-XSALSA20-POLY1305"
STATUS_NAMES = {
    1: "open", 2: "assigned", 3: "in_progress", 4: "waiting_customer",
    5: "waiting_support", 6: "resolved", 7: "closed", 8: "archived",
}
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"assigned", "in_progress", "waiting_support", "waiting_customer", "closed"}),
    "assigned": frozenset({"in_progress", "waiting_customer", "waiting_support", "resolved", "closed"}),
    "in_progress": frozenset({"waiting_customer", "waiting_support", "resolved", "closed"}),
    "waiting_customer": frozenset({"in_progress", "resolved", "closed"}),
    "waiting_support": frozenset({"in_progress", "resolved", "closed"}),
    "resolved": frozenset({"in_progress", "closed"}),
    "closed": frozenset({"archived"}),
    "archived": frozenset(),
}


class EnvelopeError(ValueError):
    """The payload's envelope is malformed or its hash/size/tag does not match its content."""


def signing_payload(env: types_pb2.EncryptedPayloadEnvelope) -> bytes:
    """SigningPayload (defined once, in devnet.envelope)."""
    return envelope_from_proto(env).signing_payload()


def envelope_digest(env: types_pb2.EncryptedPayloadEnvelope) -> bytes:
    """sha256(SigningPayload): the envelope_hash bytes and, in hex, the events' payload_hash."""
    return envelope_from_proto(env).digest()


def normalise_key_id(key_id: str) -> str:
    """Key ids compare without their optional `:vN` suffix, case-insensitively."""
    return key_id.split(":", 1)[0].lower()


def check_payload(payload: types_pb2.EncryptedSupportPayload) -> str:
    """Validate an encrypted payload and return its payload_hash (hex)."""
    if payload.HasField("envelope"):
        env = payload.envelope
        if env.version != 1 or env.algorithm_id != ALGORITHM_ID or env.algorithm_version != 1:
            raise EnvelopeError("unsupported envelope version or algorithm")
        if not env.recipient_key_ids or not env.ciphertext:
            raise EnvelopeError("envelope needs recipients and ciphertext")
        if len(env.nonce) != 24 or len(env.sender_pub_key) != 32:
            raise EnvelopeError("envelope nonce must be 24 bytes and sender_pub_key 32 bytes")
        if env.recipient_public_keys and len(env.recipient_public_keys) != len(env.recipient_key_ids):
            raise EnvelopeError("recipient_public_keys and recipient_key_ids differ in length")
        digest = envelope_digest(env)
        if payload.envelope_hash and payload.envelope_hash != digest:
            raise EnvelopeError("envelope_hash does not match the envelope")
        if payload.payload_size and payload.payload_size != len(env.ciphertext):
            raise EnvelopeError("payload_size does not match the ciphertext length")
        tag = hashlib.sha256(signing_payload(env) + env.sender_pub_key).digest()
        if env.sender_signature and env.sender_signature != tag:
            raise EnvelopeError("sender_signature does not match the envelope")
        return digest.hex()
    if not payload.envelope_ref or len(payload.envelope_hash) != 32:
        raise EnvelopeError("payload needs an inline envelope, or an envelope_ref with a 32-byte envelope_hash")
    return payload.envelope_hash.hex()


def payload_recipients(payload: types_pb2.EncryptedSupportPayload) -> list[str]:
    return [normalise_key_id(k) for k in payload.envelope.recipient_key_ids] if payload.HasField("envelope") else []


def payload_json(payload: types_pb2.EncryptedSupportPayload) -> dict[str, Any]:
    """The payload object as it appears inside payload_json: the vectors' JSON form of the envelope."""
    return payload_to_json(payload_from_proto(payload))


def payload_fields(payload: types_pb2.EncryptedSupportPayload | None) -> dict[str, Any]:
    """`payload_hash?, envelope_ref?, payload?` for created/updated/response events."""
    if payload is None:
        return {}
    out: dict[str, Any] = {"payload_hash": check_payload(payload)}
    if payload.envelope_ref:
        out["envelope_ref"] = payload.envelope_ref
    out["payload"] = payload_json(payload)
    return out


def support_event(event_type: str, event_id: str, *, height: int, sequence: int, timestamp: int,
                  fields: dict[str, Any]) -> Event:
    """One `support_event`: attributes in contract order; payload_json = common keys, fields, timestamp."""
    body: dict[str, Any] = {"event_type": event_type, "event_id": event_id, "block_height": height,
                            "sequence": sequence, **fields, "timestamp": timestamp}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Event("support_event", [
        ("event_type", event_type), ("event_id", event_id), ("block_height", str(height)),
        ("sequence", str(sequence)), ("payload_json", text),
    ])
