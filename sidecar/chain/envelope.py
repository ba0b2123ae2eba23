"""Ticket payload envelopes (X25519-XSalsa20-Poly1305), as CHAIN_CONTRACT.md defines them.

The sidecar opens envelopes addressed to the support key to build desk tickets, and seals the
replies it writes to every recipient of the ticket. Plaintext stays in memory only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox
from nacl.utils import random

from sidecar import boundedjson

ALGORITHM_ID = "X25519-XSALSA20-POLY1305"
NONCE_SIZE = 24
KEY_SIZE = 32
MAC_SIZE = 16  # Poly1305 tag
# A ticket's plaintext is a subject, a description and attachment references (the attachments
# themselves live in an artifact store): 1 MiB is far above any real one and bounds the parse.
MAX_PLAINTEXT_BYTES = 1024 * 1024
BOX_CACHE = 1024


class EnvelopeError(Exception):
    """The envelope cannot be opened by this key, or is malformed. Messages carry no content."""


def key_id(public_key: bytes) -> str:
    """Fingerprint: lowercase hex of the first 20 bytes of sha256(public key)."""
    return hashlib.sha256(public_key).digest()[:20].hex()


def same_key_id(a: str, b: str) -> bool:
    """Key ids compare without their optional `:vN` suffix."""
    return a.split(":", 1)[0].lower() == b.split(":", 1)[0].lower()


def _b64(value: Any, name: str) -> bytes:
    """Standard base64 of a JSON string; an absent field is empty. Anything else is an EnvelopeError."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise EnvelopeError(f"envelope field {name} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise EnvelopeError(f"envelope field {name} is not base64") from None


def _sized(value: Any, name: str, size: int) -> bytes:
    return _of_size(_b64(value, name), name, size)


def _of_size(raw: bytes, name: str, size: int) -> bytes:
    if len(raw) != size:
        raise EnvelopeError(f"envelope field {name} is {len(raw)} bytes, not {size}")
    return raw


def _uint32(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise EnvelopeError(f"envelope field {name} is not a 32-bit unsigned integer")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EnvelopeError(f"envelope field {name} is not a list of strings")
    return value


def signing_payload(envelope: dict[str, Any]) -> bytes:
    """SigningPayload = sha256(be32(version) || algorithm_id || be32(algorithm_version)
    || ciphertext || nonce || recipient key ids)."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("envelope is not a JSON object")
    return _signing_payload(
        envelope,
        _b64(envelope.get("ciphertext"), "ciphertext"),
        _b64(envelope.get("nonce"), "nonce"),
        _strings(envelope.get("recipient_key_ids"), "recipient_key_ids"),
    )


def _signing_payload(envelope: dict[str, Any], ciphertext: bytes, nonce: bytes, key_ids: list[str]) -> bytes:
    """`signing_payload` from the fields already decoded (opening decodes them once for both uses)."""
    algorithm = envelope.get("algorithm_id", "")
    if not isinstance(algorithm, str):
        raise EnvelopeError("envelope field algorithm_id is not a string")
    h = hashlib.sha256()
    h.update(struct.pack(">I", _uint32(envelope.get("version", 0), "version")))
    h.update(algorithm.encode())
    h.update(struct.pack(">I", _uint32(envelope.get("algorithm_version", 0), "algorithm_version")))
    h.update(ciphertext)
    h.update(nonce)
    for rid in key_ids:
        h.update(rid.encode())
    return h.digest()


def envelope_digest(envelope: dict[str, Any]) -> bytes:
    """sha256(SigningPayload): base64 in `envelope_hash`, hex in events' `payload_hash`."""
    return hashlib.sha256(signing_payload(envelope)).digest()


def payload_hash(envelope: dict[str, Any]) -> str:
    return envelope_digest(envelope).hex()


def sender_signature(envelope: dict[str, Any]) -> str:
    """base64(sha256(SigningPayload || sender_pub_key)); the envelope must carry a 32-byte sender key."""
    if not isinstance(envelope, dict) or envelope.get("sender_pub_key") is None:
        raise EnvelopeError("envelope has no sender_pub_key")
    sender = _sized(envelope["sender_pub_key"], "sender_pub_key", KEY_SIZE)
    return _signature(signing_payload(envelope), sender)


def _signature(payload: bytes, sender: bytes) -> str:
    return base64.b64encode(hashlib.sha256(payload + sender).digest()).decode()


@dataclass(frozen=True)
class EnvelopeKey:
    """The support desk's X25519 key pair."""

    private: PrivateKey
    # Box(private, sender) is an X25519 precomputation, most of the cost of opening a payload, and one
    # sender sends many payloads: the boxes of the last BOX_CACHE senders are kept.
    _boxes: dict[bytes, Box] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_base64(cls, text: str) -> EnvelopeKey:
        raw = _b64(text.strip(), "private key")
        if len(raw) != 32:
            raise EnvelopeError("an X25519 private key is 32 bytes")
        return cls(PrivateKey(raw))

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.private.public_key)

    @cached_property
    def key_id(self) -> str:
        return key_id(self.public_bytes)

    def box(self, sender: bytes) -> Box:
        """The box of this key with a sender's public key (nacl's CryptoError for an unusable point)."""
        box = self._boxes.get(sender)
        if box is None:
            box = Box(self.private, PublicKey(sender))
            if len(self._boxes) >= BOX_CACHE:
                self._boxes.pop(next(iter(self._boxes), b""), None)
            self._boxes[sender] = box
        return box

    def open(self, envelope: Any) -> dict[str, Any]:
        """Decrypt an envelope addressed to this key and return the JSON plaintext.

        The envelope comes from any chain account: every way it can be wrong (types, base64, sizes,
        curve points, the plaintext's JSON) is an EnvelopeError whose message names no content."""
        try:
            return self._open(envelope)
        except EnvelopeError:
            raise
        except Exception as exc:  # opening is pure computation: nothing here is an infrastructure failure
            # A shape the checks below did not foresee: refuse it all the same, naming only its kind.
            raise EnvelopeError(f"malformed envelope ({type(exc).__name__})") from None

    def _open(self, envelope: Any) -> dict[str, Any]:
        if not isinstance(envelope, dict):
            raise EnvelopeError("envelope is not a JSON object")
        if envelope.get("algorithm_id") != ALGORITHM_ID:
            raise EnvelopeError("unsupported envelope algorithm")
        ids = _strings(envelope.get("recipient_key_ids"), "recipient_key_ids")
        if not any(same_key_id(r, self.key_id) for r in ids):
            raise EnvelopeError("the support key is not a recipient of this payload")
        # Each field is decoded once, for both the signature check and the opening.
        signature = envelope.get("sender_signature")
        if signature and envelope.get("sender_pub_key") is None:
            raise EnvelopeError("envelope has no sender_pub_key")
        sender = _sized(envelope.get("sender_pub_key"), "sender_pub_key", KEY_SIZE)
        ciphertext = _b64(envelope.get("ciphertext"), "ciphertext")
        nonce = _b64(envelope.get("nonce"), "nonce")
        if signature and signature != _signature(_signing_payload(envelope, ciphertext, nonce, ids), sender):
            raise EnvelopeError("sender_signature does not match the envelope")
        nonce = _of_size(nonce, "nonce", NONCE_SIZE)
        try:
            box = self.box(sender)  # a low-order point fails here, not at decrypt
        except CryptoError:
            raise EnvelopeError("sender_pub_key is not a usable X25519 public key") from None
        try:
            wrapped = envelope.get("wrapped_keys")
            if wrapped:
                data_key = unwrap_data_key(self, box, wrapped)
                plaintext = SecretBox(data_key).decrypt(ciphertext, nonce)
            else:
                plaintext = box.decrypt(ciphertext, nonce)
        except CryptoError:
            raise EnvelopeError("payload does not decrypt with the support key") from None
        try:
            doc = boundedjson.loads(plaintext, max_bytes=MAX_PLAINTEXT_BYTES)
        except boundedjson.JsonLimitError as exc:
            raise EnvelopeError(f"decrypted payload is not acceptable JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise EnvelopeError("decrypted payload is not a JSON object")
        return doc

    def seal(self, plaintext: dict[str, Any], recipients: list[bytes]) -> dict[str, Any]:
        """Encrypt to every recipient public key (one: box; several: secretbox + wrapped data keys)."""
        if not recipients:
            raise EnvelopeError("a payload needs at least one recipient")
        body = json.dumps(plaintext, separators=(",", ":")).encode()
        nonce = random(NONCE_SIZE)
        envelope: dict[str, Any] = {
            "version": 1,
            "algorithm_id": ALGORITHM_ID,
            "algorithm_version": 1,
            "recipient_key_ids": [key_id(r) for r in recipients],
            "recipient_public_keys": [base64.b64encode(r).decode() for r in recipients],
        }
        if len(recipients) == 1:
            ciphertext = Box(self.private, PublicKey(recipients[0])).encrypt(body, nonce).ciphertext
        else:
            data_key = random(SecretBox.KEY_SIZE)
            ciphertext = SecretBox(data_key).encrypt(body, nonce).ciphertext
            envelope["wrapped_keys"] = wrap_data_key(self, data_key, recipients)
            envelope["metadata"] = {"_mode": "multi-recipient"}
        envelope["nonce"] = base64.b64encode(nonce).decode()
        envelope["ciphertext"] = base64.b64encode(ciphertext).decode()
        envelope["sender_pub_key"] = base64.b64encode(self.public_bytes).decode()
        envelope["sender_signature"] = sender_signature(envelope)
        return envelope


def wrap_data_key(sender: EnvelopeKey, data_key: bytes, recipients: Sequence[bytes]) -> list[dict[str, str]]:
    """`wrapped_keys` entries: for each recipient, base64(24-byte nonce || box(data key)) from the sender."""
    wrapped = []
    for public in recipients:
        nonce = random(NONCE_SIZE)
        boxed = Box(sender.private, PublicKey(public)).encrypt(data_key, nonce).ciphertext
        wrapped.append(
            {
                "recipient_id": key_id(public),
                "algorithm": ALGORITHM_ID,
                "wrapped_key": base64.b64encode(nonce + boxed).decode(),
            }
        )
    return wrapped


def unwrap_data_key(key: EnvelopeKey, box: Box, wrapped: Any) -> bytes:
    """The data key wrapped for `key` (box = key's private key with the sender's public key).

    Shapes are EnvelopeErrors; a wrapped key that does not open raises nacl's CryptoError, which each
    caller words for its own object."""
    if not isinstance(wrapped, list) or not all(isinstance(w, dict) for w in wrapped):
        raise EnvelopeError("envelope field wrapped_keys is not a list of objects")
    mine = [w for w in wrapped if isinstance(w.get("recipient_id"), str) and same_key_id(w["recipient_id"], key.key_id)]
    if not mine:
        raise EnvelopeError("no wrapped key for the support key")
    sealed = _b64(mine[0].get("wrapped_key"), "wrapped_key")
    if len(sealed) <= NONCE_SIZE + MAC_SIZE:
        raise EnvelopeError("wrapped_key is too short")
    data_key = box.decrypt(sealed[NONCE_SIZE:], sealed[:NONCE_SIZE])
    if len(data_key) != SecretBox.KEY_SIZE:
        raise EnvelopeError("the wrapped data key is not 32 bytes")
    return bytes(data_key)
