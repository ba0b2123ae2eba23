"""Ticket payload envelopes (X25519-XSalsa20-Poly1305), as CHAIN_CONTRACT.md defines them.

The sidecar opens envelopes addressed to the support key to build desk tickets, and seals the
replies it writes to every recipient of the ticket. Plaintext stays in memory only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox
from nacl.utils import random

ALGORITHM_ID = "X25519-XSALSA20-POLY1305"
NONCE_SIZE = 24


class EnvelopeError(Exception):
    """The envelope cannot be opened by this key, or is malformed. Messages carry no content."""


def key_id(public_key: bytes) -> str:
    """Fingerprint: lowercase hex of the first 20 bytes of sha256(public key)."""
    return hashlib.sha256(public_key).digest()[:20].hex()


def same_key_id(a: str, b: str) -> bool:
    """Key ids compare without their optional `:vN` suffix."""
    return a.split(":", 1)[0].lower() == b.split(":", 1)[0].lower()


def _b64(value: Any, name: str) -> bytes:
    try:
        return base64.b64decode(value or "", validate=True)
    except (ValueError, TypeError):
        raise EnvelopeError(f"envelope field {name} is not base64") from None


def signing_payload(envelope: dict[str, Any]) -> bytes:
    """SigningPayload = sha256(be32(version) || algorithm_id || be32(algorithm_version)
    || ciphertext || nonce || recipient key ids)."""
    h = hashlib.sha256()
    h.update(struct.pack(">I", int(envelope.get("version", 0))))
    h.update(str(envelope.get("algorithm_id", "")).encode())
    h.update(struct.pack(">I", int(envelope.get("algorithm_version", 0))))
    h.update(_b64(envelope.get("ciphertext"), "ciphertext"))
    h.update(_b64(envelope.get("nonce"), "nonce"))
    for rid in envelope.get("recipient_key_ids") or []:
        h.update(str(rid).encode())
    return h.digest()


def envelope_digest(envelope: dict[str, Any]) -> bytes:
    """sha256(SigningPayload): base64 in `envelope_hash`, hex in events' `payload_hash`."""
    return hashlib.sha256(signing_payload(envelope)).digest()


def payload_hash(envelope: dict[str, Any]) -> str:
    return envelope_digest(envelope).hex()


def sender_signature(envelope: dict[str, Any]) -> str:
    tag = hashlib.sha256(signing_payload(envelope) + _b64(envelope["sender_pub_key"], "sender_pub_key")).digest()
    return base64.b64encode(tag).decode()


@dataclass(frozen=True)
class EnvelopeKey:
    """The support desk's X25519 key pair."""

    private: PrivateKey

    @classmethod
    def from_base64(cls, text: str) -> EnvelopeKey:
        raw = _b64(text.strip(), "private key")
        if len(raw) != 32:
            raise EnvelopeError("an X25519 private key is 32 bytes")
        return cls(PrivateKey(raw))

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.private.public_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_bytes)

    def open(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Decrypt an envelope addressed to this key and return the JSON plaintext."""
        if envelope.get("algorithm_id") != ALGORITHM_ID:
            raise EnvelopeError(f"unsupported algorithm {envelope.get('algorithm_id')!r}")
        ids = [str(r) for r in envelope.get("recipient_key_ids") or []]
        if not any(same_key_id(r, self.key_id) for r in ids):
            raise EnvelopeError("the support key is not a recipient of this payload")
        signature = envelope.get("sender_signature")
        if signature and signature != sender_signature(envelope):
            raise EnvelopeError("sender_signature does not match the envelope")
        sender = PublicKey(_b64(envelope.get("sender_pub_key"), "sender_pub_key"))
        nonce = _b64(envelope.get("nonce"), "nonce")
        ciphertext = _b64(envelope.get("ciphertext"), "ciphertext")
        box = Box(self.private, sender)
        try:
            wrapped = envelope.get("wrapped_keys")
            if wrapped:
                entry = next((w for w in wrapped if same_key_id(str(w.get("recipient_id", "")), self.key_id)), None)
                if entry is None:
                    raise EnvelopeError("no wrapped key for the support key")
                sealed = _b64(entry.get("wrapped_key"), "wrapped_key")
                data_key = box.decrypt(sealed[NONCE_SIZE:], sealed[:NONCE_SIZE])
                plaintext = SecretBox(data_key).decrypt(ciphertext, nonce)
            else:
                plaintext = box.decrypt(ciphertext, nonce)
        except CryptoError:
            raise EnvelopeError("payload does not decrypt with the support key") from None
        try:
            doc = json.loads(plaintext)
        except ValueError:
            raise EnvelopeError("decrypted payload is not JSON") from None
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
            wrapped = []
            for r in recipients:
                wrap_nonce = random(NONCE_SIZE)
                sealed = Box(self.private, PublicKey(r)).encrypt(data_key, wrap_nonce).ciphertext
                wrapped.append(
                    {
                        "recipient_id": key_id(r),
                        "algorithm": ALGORITHM_ID,
                        "wrapped_key": base64.b64encode(wrap_nonce + sealed).decode(),
                    }
                )
            envelope["wrapped_keys"] = wrapped
            envelope["metadata"] = {"_mode": "multi-recipient"}
        envelope["nonce"] = base64.b64encode(nonce).decode()
        envelope["ciphertext"] = base64.b64encode(ciphertext).decode()
        envelope["sender_pub_key"] = base64.b64encode(self.public_bytes).decode()
        envelope["sender_signature"] = sender_signature(envelope)
        return envelope
