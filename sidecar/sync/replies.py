"""A public desk comment as MsgAddSupportResponse Msgs, sealed to every recipient of the ticket.

The chain rejects a response that drops any of the ticket's recipients, so the reply is sealed to all
of them or not sent: a recipient whose public key no envelope of the ticket carries (or carries a key
that is not usable) makes the reply MissingKeys, which the caller audits and does not retry.
The message text is ticket content: it lives in memory and in the ciphertext, never in errors.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PublicKey
from virtengine.support.v1 import tx_pb2, types_pb2

from sidecar.chain.envelope import KEY_SIZE, EnvelopeKey, envelope_digest, key_id, same_key_id

# Our documented limit per response, in characters: well inside the chain's payload bounds even when every
# character is escaped in the JSON plaintext. Longer comments become up to MAX_PARTS responses.
MAX_RESPONSE_CHARS = 8000
MAX_PARTS = 4
# A display name is the desk's, not ours: one line, bounded, so it cannot fake a message's structure.
MAX_AUTHOR_CHARS = 100
_DESK_LABELS = {"jira": "Jira", "waldur": "Waldur"}


def _norm(rid: str) -> str:
    return rid.split(":", 1)[0].lower()


@dataclass(frozen=True)
class TicketRecipients:
    """Every recipient of a ticket: key id (without `:vN`, lowercase) -> X25519 public key (32 bytes)."""

    keys: Mapping[str, bytes]

    def ordered(self) -> list[bytes]:
        """Public keys ordered by key id, so the sealed recipient list is deterministic."""
        return [self.keys[k] for k in sorted(self.keys)]


@dataclass(frozen=True)
class MissingKeys:
    """Recipient ids the reply cannot be sealed to: no public key known, or a key no box can use."""

    missing: tuple[str, ...]
    unusable: tuple[str, ...] = ()


def _pairs(envelope: Any) -> tuple[list[str], list[tuple[str, bytes]]]:
    """(ids named, (id, key) pairs offered) by one envelope JSON from the chain; malformed parts offer nothing."""
    if not isinstance(envelope, Mapping):
        return [], []
    ids = envelope.get("recipient_key_ids")
    if not isinstance(ids, list):
        return [], []
    named = [i for i in ids if isinstance(i, str) and i]
    keys = envelope.get("recipient_public_keys")
    if not isinstance(keys, list) or len(keys) != len(ids):
        return named, []
    offered = []
    for rid, text in zip(ids, keys, strict=True):
        if not isinstance(rid, str) or not isinstance(text, str):
            continue
        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == KEY_SIZE:
            offered.append((rid, raw))
    return named, offered


def gather_recipients(
    ticket_recipient_ids: Iterable[str], envelopes: Iterable[Any], support_key: EnvelopeKey
) -> TicketRecipients | MissingKeys:
    """The ticket's recipients with their public keys, from the envelopes of its events and the support key.

    A key is taken only where its fingerprint is the id it is paired with: an envelope cannot make the
    sidecar seal a reply to a key other than the one the chain's recipient list names."""
    wanted: dict[str, None] = {_norm(r): None for r in ticket_recipient_ids if isinstance(r, str) and r}
    known: dict[str, bytes] = {_norm(support_key.key_id): support_key.public_bytes}
    for envelope in envelopes:
        named, offered = _pairs(envelope)
        wanted.update((_norm(r), None) for r in named)
        for rid, raw in offered:
            if same_key_id(rid, key_id(raw)):
                known.setdefault(_norm(rid), raw)
    wanted.setdefault(_norm(support_key.key_id), None)
    missing = tuple(sorted(r for r in wanted if r not in known))
    unusable = tuple(sorted(r for r in wanted if r in known and not _usable(support_key, known[r])))
    if missing or unusable:
        return MissingKeys(missing, unusable)
    return TicketRecipients({r: known[r] for r in wanted})


def _usable(key: EnvelopeKey, public: bytes) -> bool:
    """A low-order point (which any participant could name as a recipient) fails here, not halfway through a seal."""
    try:
        Box(key.private, PublicKey(public))
    except CryptoError:
        return False
    return True


def _one_line(name: str) -> str:
    flat = re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in name)).strip()
    if len(flat) > MAX_AUTHOR_CHARS:
        flat = flat[: MAX_AUTHOR_CHARS - 1].rstrip() + "…"
    return flat or "(unnamed)"


def _cut(text: str, budget: int) -> tuple[str, str]:
    """Split off a head of at most `budget` characters at a paragraph, line or space boundary in its second
    half, else exactly at `budget`; the boundary itself is dropped. Never returns an empty head."""
    for sep in ("\n\n", "\n", " "):
        at = text.rfind(sep, budget // 2, budget + len(sep))
        if at > 0:
            return text[:at], text[at + len(sep) :]
    return text[:budget], text[budget:]


def reply_messages(author_name: str, desk: str, text: str) -> list[str]:
    """The message(s) of a desk comment: `<author> (<Desk> agent):`, a blank line, the text.

    Over MAX_RESPONSE_CHARS it becomes parts whose first lines say "(part i/n)"; beyond MAX_PARTS parts the
    last one ends with a line saying the rest is at the desk. Every part is at most MAX_RESPONSE_CHARS."""
    label = _DESK_LABELS.get(desk, desk.capitalize())
    who = f"{_one_line(author_name)} ({label} agent)"
    body = text.rstrip()
    single = f"{who}:\n\n{body}" if body else f"{who}:"
    if len(single) <= MAX_RESPONSE_CHARS:
        return [single]
    truncated = f"\n\n(truncated here: the whole comment is in {label})"
    budget = MAX_RESPONSE_CHARS - len(f"{who} (part {MAX_PARTS}/{MAX_PARTS}):\n\n")
    chunks: list[str] = []
    rest = body
    while rest:
        if len(rest) <= budget:
            chunks.append(rest)
            break
        if len(chunks) == MAX_PARTS - 1:
            head, _ = _cut(rest, budget - len(truncated))
            chunks.append(head + truncated)
            break
        head, rest = _cut(rest, budget)
        chunks.append(head)
    n = len(chunks)
    return [f"{who} (part {i}/{n}):\n\n{chunk}" for i, chunk in enumerate(chunks, start=1)]


def _envelope_proto(envelope: Mapping[str, Any]) -> types_pb2.EncryptedPayloadEnvelope:
    """The proto form of an envelope EnvelopeKey.seal made (its JSON byte fields are standard base64)."""
    b64 = base64.b64decode
    msg = types_pb2.EncryptedPayloadEnvelope(
        version=envelope["version"],
        algorithm_id=envelope["algorithm_id"],
        algorithm_version=envelope["algorithm_version"],
        recipient_key_ids=list(envelope["recipient_key_ids"]),
        recipient_public_keys=[b64(k) for k in envelope.get("recipient_public_keys", [])],
        nonce=b64(envelope["nonce"]),
        ciphertext=b64(envelope["ciphertext"]),
        sender_pub_key=b64(envelope["sender_pub_key"]),
        sender_signature=b64(envelope["sender_signature"]),
    )
    for wrapped in envelope.get("wrapped_keys", []):
        msg.wrapped_keys.add(
            recipient_id=wrapped["recipient_id"],
            wrapped_key=b64(wrapped["wrapped_key"]),
            algorithm=wrapped.get("algorithm", ""),
        )
    msg.metadata.update(envelope.get("metadata", {}))
    return msg


def seal_reply(key: EnvelopeKey, recipients: TicketRecipients, message: str) -> types_pb2.EncryptedSupportPayload:
    """{"message": message} sealed by the support key to every recipient, as the chain's payload proto."""
    return seal_payload(key, recipients, {"message": message})


def seal_payload(
    key: EnvelopeKey, recipients: TicketRecipients, plain: Mapping[str, Any]
) -> types_pb2.EncryptedSupportPayload:
    """A response plaintext (a message, attachments) sealed by the support key to every recipient, as the
    chain's payload proto."""
    envelope = key.seal(dict(plain), recipients.ordered())
    proto = _envelope_proto(envelope)
    return types_pb2.EncryptedSupportPayload(
        envelope=proto, envelope_hash=envelope_digest(envelope), payload_size=len(proto.ciphertext)
    )


def payload_hash_of(payload: types_pb2.EncryptedSupportPayload) -> str:
    """The hex payload_hash the chain's events will carry for this payload (recomputed from the envelope)."""
    if not payload.HasField("envelope"):
        return bytes(payload.envelope_hash).hex()
    env = payload.envelope
    hashed = {
        "version": env.version,
        "algorithm_id": env.algorithm_id,
        "algorithm_version": env.algorithm_version,
        "ciphertext": base64.b64encode(env.ciphertext).decode(),
        "nonce": base64.b64encode(env.nonce).decode(),
        "recipient_key_ids": list(env.recipient_key_ids),
    }
    return envelope_digest(hashed).hex()


def response_msg(
    sender: str, ticket_id: str, payload: types_pb2.EncryptedSupportPayload
) -> tx_pb2.MsgAddSupportResponse:
    return tx_pb2.MsgAddSupportResponse(sender=sender, ticket_id=ticket_id, payload=payload)
