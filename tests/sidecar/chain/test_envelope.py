"""Envelopes against the shared vectors: ids, hashes, signatures, decryption, sealing."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from nacl.public import PrivateKey

from sidecar.chain.envelope import EnvelopeError, EnvelopeKey, key_id, payload_hash, same_key_id, sender_signature
from tests.vectors import load

VECTORS = load("envelopes.json")
KEYS = VECTORS["keys"]
CASES = VECTORS["cases"]


def key(name: str) -> EnvelopeKey:
    return EnvelopeKey.from_base64(KEYS[name]["private_key"])


@pytest.mark.parametrize("name", ["customer", "support", "auditor"])
def test_key_ids(name: str) -> None:
    assert key_id(base64.b64decode(KEYS[name]["public_key"])) == KEYS[name]["key_id"]
    assert key(name).key_id == KEYS[name]["key_id"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hashes_and_signature(case: dict[str, Any]) -> None:
    envelope = case["payload"]["envelope"]
    assert payload_hash(envelope) == case["payload_hash"]
    assert base64.b64encode(bytes.fromhex(payload_hash(envelope))).decode() == case["payload"]["envelope_hash"]
    assert sender_signature(envelope) == envelope["sender_signature"]
    assert len(base64.b64decode(envelope["ciphertext"])) == case["payload"]["payload_size"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_support_key_opens_every_case(case: dict[str, Any]) -> None:
    assert key("support").open(case["payload"]["envelope"]) == case["plaintext"]


def test_non_recipient_cannot_open() -> None:
    with pytest.raises(EnvelopeError, match="not a recipient"):
        key("auditor").open(CASES[0]["payload"]["envelope"])
    stranger = EnvelopeKey(PrivateKey.generate())
    with pytest.raises(EnvelopeError, match="not a recipient"):
        stranger.open(CASES[1]["payload"]["envelope"])


def test_tampered_ciphertext_is_refused_without_leaking() -> None:
    envelope = copy.deepcopy(CASES[1]["payload"]["envelope"])
    raw = bytearray(base64.b64decode(envelope["ciphertext"]))
    raw[0] ^= 1
    envelope["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(EnvelopeError) as info:
        key("support").open(envelope)
    assert "Lease" not in str(info.value)
    envelope["sender_signature"] = sender_signature(envelope)
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        key("support").open(envelope)


def test_key_id_suffix_is_ignored() -> None:
    assert same_key_id("ba9ab8bfa00a9207cf1621660c1de8e17d459d46:v2", "BA9AB8BFA00A9207CF1621660C1DE8E17D459D46")


@pytest.mark.parametrize("recipients", [["customer"], ["customer", "support", "auditor"]])
def test_seal_then_every_recipient_opens(recipients: list[str]) -> None:
    plaintext = {"message": "We restarted the ingress."}
    publics = [base64.b64decode(KEYS[r]["public_key"]) for r in recipients]
    envelope = key("support").seal(plaintext, publics)
    assert envelope["recipient_key_ids"] == [KEYS[r]["key_id"] for r in recipients]
    for r in recipients:
        assert key(r).open(envelope) == plaintext
    assert ("wrapped_keys" in envelope) == (len(recipients) > 1)
