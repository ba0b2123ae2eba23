"""The devnet's own implementation of the encrypted payload envelope (CHAIN_CONTRACT.md).

Written independently of sidecar/ on purpose: the devnet's customers and agents must produce and
read envelopes the way any client would, so that a mistake on one side cannot hide in shared code.
Hash chain (checked against shared/vectors): SigningPayload = sha256(be32(version) || algorithm_id ||
be32(algorithm_version) || ciphertext || nonce || key ids); digest = sha256(SigningPayload).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import nacl.exceptions
import nacl.utils
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox
from virtengine.support.v1 import types_pb2

ALGORITHM_ID = "X25519-XSALSA20-POLY1305"
VERSION = 1
ALGORITHM_VERSION = 1
MULTI_RECIPIENT = "multi-recipient"
NONCE_SIZE = 24
DATA_KEY_SIZE = 32


class EnvelopeError(ValueError):
    """The envelope is malformed, not addressed to this key, or fails authentication."""


def key_id(public_key: bytes) -> str:
    """Fingerprint of an X25519 public key: lowercase hex of the first 20 bytes of its sha256."""
    return hashlib.sha256(bytes(public_key)).digest()[:20].hex()


def same_key_id(a: str, b: str) -> bool:
    """Compare key ids ignoring case and an optional `:vN` version suffix."""
    return a.split(":", 1)[0].lower() == b.split(":", 1)[0].lower()


def encode_plaintext(plaintext: Mapping[str, Any]) -> bytes:
    """Compact JSON in insertion order: the serialisation the vectors were sealed with."""
    return json.dumps(plaintext, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class WrappedKey:
    """The data key sealed for one recipient: wrapped_key = 24-byte nonce || box(data key)."""

    recipient_id: str
    wrapped_key: bytes
    algorithm: str = ALGORITHM_ID
    ephemeral_pub_key: bytes = b""


@dataclass(frozen=True)
class Envelope:
    """An X25519-XSalsa20-Poly1305 envelope; byte fields are raw bytes."""

    recipient_key_ids: tuple[str, ...]
    nonce: bytes
    ciphertext: bytes
    sender_pub_key: bytes
    sender_signature: bytes = b""
    recipient_public_keys: tuple[bytes, ...] = ()
    wrapped_keys: tuple[WrappedKey, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: int = VERSION
    algorithm_id: str = ALGORITHM_ID
    algorithm_version: int = ALGORITHM_VERSION

    @property
    def is_multi_recipient(self) -> bool:
        """Multi-recipient envelopes carry wrapped data keys."""
        return bool(self.wrapped_keys) or self.metadata.get("_mode") == MULTI_RECIPIENT

    def signing_payload(self) -> bytes:
        """SigningPayload: the sha256 over the fields that fix the ciphertext and its audience."""
        h = hashlib.sha256()
        h.update(struct.pack(">I", self.version))
        h.update(self.algorithm_id.encode())
        h.update(struct.pack(">I", self.algorithm_version))
        h.update(self.ciphertext)
        h.update(self.nonce)
        h.update("".join(self.recipient_key_ids).encode())
        return h.digest()

    def digest(self) -> bytes:
        """sha256(SigningPayload): `envelope_hash` (base64) and events' `payload_hash` (hex)."""
        return hashlib.sha256(self.signing_payload()).digest()

    def envelope_hash(self) -> str:
        return base64.b64encode(self.digest()).decode()

    def payload_hash(self) -> str:
        return self.digest().hex()

    def payload_size(self) -> int:
        return len(self.ciphertext)

    def expected_signature(self) -> bytes:
        """sha256(SigningPayload || sender_pub_key): an integrity tag, not a real signature."""
        return hashlib.sha256(self.signing_payload() + self.sender_pub_key).digest()

    def signature_ok(self) -> bool:
        return self.sender_signature == self.expected_signature()


@dataclass(frozen=True)
class Payload:
    """EncryptedSupportPayload: an inline envelope (or a reference) with its hash and size."""

    envelope: Envelope | None
    envelope_hash: bytes = b""
    payload_size: int = 0
    envelope_ref: str = ""

    @classmethod
    def of(cls, envelope: Envelope) -> Payload:
        """Wrap an envelope with the hash and size the chain checks."""
        return cls(envelope=envelope, envelope_hash=envelope.digest(), payload_size=envelope.payload_size())

    def payload_hash(self) -> str:
        return self.envelope_hash.hex()


def _sign(envelope: Envelope) -> Envelope:
    return replace(envelope, sender_signature=envelope.expected_signature())


def _random_or(value: bytes | None, size: int, what: str) -> bytes:
    if value is None:
        return nacl.utils.random(size)
    if len(value) != size:
        raise EnvelopeError(f"{what} must be {size} bytes, got {len(value)}")
    return value


def seal_one(
    plaintext: Mapping[str, Any], sender: PrivateKey, recipient: bytes, *, nonce: bytes | None = None
) -> Envelope:
    """One recipient: NaCl box of the JSON plaintext from sender to recipient."""
    n = _random_or(nonce, NONCE_SIZE, "nonce")
    box = Box(sender, PublicKey(bytes(recipient)))
    ciphertext = box.encrypt(encode_plaintext(plaintext), n).ciphertext
    return _sign(
        Envelope(
            recipient_key_ids=(key_id(recipient),),
            recipient_public_keys=(bytes(recipient),),
            nonce=n,
            ciphertext=ciphertext,
            sender_pub_key=bytes(sender.public_key),
        )
    )


def seal_many(
    plaintext: Mapping[str, Any],
    sender: PrivateKey,
    recipients: Sequence[bytes],
    *,
    nonce: bytes | None = None,
    data_key: bytes | None = None,
    wrap_nonces: Sequence[bytes] | None = None,
) -> Envelope:
    """Several recipients: secretbox under a random data key, the key boxed for each recipient."""
    if not recipients:
        raise EnvelopeError("at least one recipient is needed")
    if wrap_nonces is not None and len(wrap_nonces) != len(recipients):
        raise EnvelopeError("one wrap nonce per recipient")
    n = _random_or(nonce, NONCE_SIZE, "nonce")
    key = _random_or(data_key, DATA_KEY_SIZE, "data key")
    ciphertext = SecretBox(key).encrypt(encode_plaintext(plaintext), n).ciphertext
    wrapped = []
    for i, recipient in enumerate(recipients):
        wn = _random_or(None if wrap_nonces is None else wrap_nonces[i], NONCE_SIZE, "wrap nonce")
        sealed = Box(sender, PublicKey(bytes(recipient))).encrypt(key, wn).ciphertext
        wrapped.append(WrappedKey(recipient_id=key_id(recipient), wrapped_key=wn + sealed))
    return _sign(
        Envelope(
            recipient_key_ids=tuple(key_id(r) for r in recipients),
            recipient_public_keys=tuple(bytes(r) for r in recipients),
            wrapped_keys=tuple(wrapped),
            metadata={"_mode": MULTI_RECIPIENT},
            nonce=n,
            ciphertext=ciphertext,
            sender_pub_key=bytes(sender.public_key),
        )
    )


def seal(plaintext: Mapping[str, Any], sender: PrivateKey, recipients: Sequence[bytes]) -> Envelope:
    """Pick the one-recipient or multi-recipient form by the number of recipients."""
    if len(recipients) == 1:
        return seal_one(plaintext, sender, recipients[0])
    return seal_many(plaintext, sender, recipients)


def open_envelope(envelope: Envelope, recipient: PrivateKey) -> dict[str, Any]:
    """Decrypt as `recipient`; EnvelopeError if not addressed to it or tampered with."""
    if envelope.algorithm_id != ALGORITHM_ID or envelope.version != VERSION:
        raise EnvelopeError(f"unsupported envelope {envelope.algorithm_id} v{envelope.version}")
    if not envelope.signature_ok():
        raise EnvelopeError("sender_signature does not match the envelope")
    own_id = key_id(bytes(recipient.public_key))
    sender = PublicKey(envelope.sender_pub_key)
    try:
        if envelope.is_multi_recipient:
            entry = next((w for w in envelope.wrapped_keys if same_key_id(w.recipient_id, own_id)), None)
            if entry is None:
                raise EnvelopeError(f"no wrapped key for recipient {own_id}")
            wk = entry.wrapped_key
            data_key = Box(recipient, sender).decrypt(wk[NONCE_SIZE:], wk[:NONCE_SIZE])
            clear = SecretBox(data_key).decrypt(envelope.ciphertext, envelope.nonce)
        else:
            if not any(same_key_id(k, own_id) for k in envelope.recipient_key_ids):
                raise EnvelopeError(f"envelope is not addressed to {own_id}")
            clear = Box(recipient, sender).decrypt(envelope.ciphertext, envelope.nonce)
    except nacl.exceptions.CryptoError as exc:
        raise EnvelopeError("decryption failed") from exc
    value = json.loads(clear)
    if not isinstance(value, dict):
        raise EnvelopeError("plaintext is not a JSON object")
    return value


# --- protobuf form -------------------------------------------------------------------------


def envelope_to_proto(envelope: Envelope) -> types_pb2.EncryptedPayloadEnvelope:
    msg = types_pb2.EncryptedPayloadEnvelope(
        version=envelope.version,
        algorithm_id=envelope.algorithm_id,
        algorithm_version=envelope.algorithm_version,
        recipient_key_ids=list(envelope.recipient_key_ids),
        recipient_public_keys=list(envelope.recipient_public_keys),
        nonce=envelope.nonce,
        ciphertext=envelope.ciphertext,
        sender_pub_key=envelope.sender_pub_key,
        sender_signature=envelope.sender_signature,
    )
    for w in envelope.wrapped_keys:
        msg.wrapped_keys.add(
            recipient_id=w.recipient_id,
            wrapped_key=w.wrapped_key,
            algorithm=w.algorithm,
            ephemeral_pub_key=w.ephemeral_pub_key,
        )
    msg.metadata.update(dict(envelope.metadata))
    return msg


def envelope_from_proto(msg: types_pb2.EncryptedPayloadEnvelope) -> Envelope:
    return Envelope(
        version=msg.version,
        algorithm_id=msg.algorithm_id,
        algorithm_version=msg.algorithm_version,
        recipient_key_ids=tuple(msg.recipient_key_ids),
        recipient_public_keys=tuple(bytes(k) for k in msg.recipient_public_keys),
        wrapped_keys=tuple(
            WrappedKey(w.recipient_id, bytes(w.wrapped_key), w.algorithm, bytes(w.ephemeral_pub_key))
            for w in msg.wrapped_keys
        ),
        metadata=dict(sorted(msg.metadata.items())),  # a proto map has no order; events need one
        nonce=bytes(msg.nonce),
        ciphertext=bytes(msg.ciphertext),
        sender_pub_key=bytes(msg.sender_pub_key),
        sender_signature=bytes(msg.sender_signature),
    )


def payload_to_proto(payload: Payload) -> types_pb2.EncryptedSupportPayload:
    msg = types_pb2.EncryptedSupportPayload(
        envelope_ref=payload.envelope_ref, envelope_hash=payload.envelope_hash, payload_size=payload.payload_size
    )
    if payload.envelope is not None:
        msg.envelope.CopyFrom(envelope_to_proto(payload.envelope))
    return msg


def payload_from_proto(msg: types_pb2.EncryptedSupportPayload) -> Payload:
    return Payload(
        envelope=envelope_from_proto(msg.envelope) if msg.HasField("envelope") else None,
        envelope_ref=msg.envelope_ref,
        envelope_hash=bytes(msg.envelope_hash),
        payload_size=msg.payload_size,
    )


# --- JSON form (the vectors' shape: standard base64 for bytes, optional fields omitted) --------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise EnvelopeError(f"{name} is not valid base64") from exc


def envelope_to_json(envelope: Envelope) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": envelope.version,
        "algorithm_id": envelope.algorithm_id,
        "algorithm_version": envelope.algorithm_version,
        "recipient_key_ids": list(envelope.recipient_key_ids),
    }
    if envelope.recipient_public_keys:
        out["recipient_public_keys"] = [_b64(k) for k in envelope.recipient_public_keys]
    if envelope.wrapped_keys:
        out["wrapped_keys"] = [_wrapped_to_json(w) for w in envelope.wrapped_keys]
    if envelope.metadata:
        out["metadata"] = dict(envelope.metadata)
    out["nonce"] = _b64(envelope.nonce)
    out["ciphertext"] = _b64(envelope.ciphertext)
    out["sender_pub_key"] = _b64(envelope.sender_pub_key)
    out["sender_signature"] = _b64(envelope.sender_signature)
    return out


def _wrapped_to_json(w: WrappedKey) -> dict[str, Any]:
    out: dict[str, Any] = {"recipient_id": w.recipient_id}
    if w.algorithm:
        out["algorithm"] = w.algorithm
    out["wrapped_key"] = _b64(w.wrapped_key)
    if w.ephemeral_pub_key:
        out["ephemeral_pub_key"] = _b64(w.ephemeral_pub_key)
    return out


def envelope_from_json(data: Mapping[str, Any]) -> Envelope:
    try:
        return Envelope(
            version=int(data["version"]),
            algorithm_id=str(data["algorithm_id"]),
            algorithm_version=int(data["algorithm_version"]),
            recipient_key_ids=tuple(str(k) for k in data["recipient_key_ids"]),
            recipient_public_keys=tuple(
                _unb64(k, "recipient_public_keys") for k in data.get("recipient_public_keys") or ()
            ),
            wrapped_keys=tuple(
                WrappedKey(
                    recipient_id=str(w["recipient_id"]),
                    wrapped_key=_unb64(w["wrapped_key"], "wrapped_key"),
                    algorithm=str(w.get("algorithm", "")),
                    ephemeral_pub_key=_unb64(w["ephemeral_pub_key"], "ephemeral_pub_key")
                    if w.get("ephemeral_pub_key")
                    else b"",
                )
                for w in data.get("wrapped_keys") or ()
            ),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
            nonce=_unb64(data["nonce"], "nonce"),
            ciphertext=_unb64(data["ciphertext"], "ciphertext"),
            sender_pub_key=_unb64(data["sender_pub_key"], "sender_pub_key"),
            sender_signature=_unb64(data.get("sender_signature", ""), "sender_signature"),
        )
    except (KeyError, TypeError) as exc:
        raise EnvelopeError(f"malformed envelope: {exc!r}") from exc


def payload_to_json(payload: Payload) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if payload.envelope is not None:
        out["envelope"] = envelope_to_json(payload.envelope)
    if payload.envelope_ref:
        out["envelope_ref"] = payload.envelope_ref
    if payload.envelope_hash:
        out["envelope_hash"] = _b64(payload.envelope_hash)
    if payload.payload_size:
        out["payload_size"] = payload.payload_size
    return out


def payload_from_json(data: Mapping[str, Any]) -> Payload:
    env = data.get("envelope")
    return Payload(
        envelope=envelope_from_json(env) if env is not None else None,
        envelope_ref=str(data.get("envelope_ref", "")),
        envelope_hash=_unb64(data["envelope_hash"], "envelope_hash") if data.get("envelope_hash") else b"",
        payload_size=int(data.get("payload_size", 0)),
    )
