"""The devnet's envelope implementation against the shared vectors, byte for byte where possible."""

from __future__ import annotations

import base64
import copy
from dataclasses import replace
from typing import Any

import pytest
from nacl.public import Box, PrivateKey, PublicKey

from devnet import envelope as env
from tests.vectors import load

VECTORS = load("envelopes.json")
KEYS: dict[str, dict[str, str]] = VECTORS["keys"]
CASES: list[dict[str, Any]] = VECTORS["cases"]
IDS = [c["name"] for c in CASES]
# Who may read each case: the single-recipient case is for support only.
READERS = {0: ["support"], 1: ["customer", "support", "auditor"], 2: ["customer", "support", "auditor"]}


def private(name: str) -> PrivateKey:
    return PrivateKey(base64.b64decode(KEYS[name]["private_key"]))


def public(name: str) -> bytes:
    return base64.b64decode(KEYS[name]["public_key"])


def vector_envelope(case: dict[str, Any]) -> env.Envelope:
    return env.envelope_from_json(case["payload"]["envelope"])


@pytest.mark.parametrize("name", sorted(KEYS))
def test_key_ids_match_vectors(name: str) -> None:
    assert env.key_id(public(name)) == KEYS[name]["key_id"]
    assert bytes(private(name).public_key) == public(name)


def test_key_id_version_suffix_is_ignored() -> None:
    kid = KEYS["support"]["key_id"]
    assert env.same_key_id(kid, kid + ":v2")
    assert env.same_key_id(kid.upper() + ":v1", kid)
    assert not env.same_key_id(kid, KEYS["customer"]["key_id"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hashes_size_and_signature_match_vectors(case: dict[str, Any]) -> None:
    e = vector_envelope(case)
    assert e.payload_hash() == case["payload_hash"]
    assert e.envelope_hash() == case["payload"]["envelope_hash"]
    assert e.payload_size() == case["payload"]["payload_size"]
    assert base64.b64encode(e.expected_signature()).decode() == case["payload"]["envelope"]["sender_signature"]
    assert e.signature_ok()
    p = env.payload_from_json(case["payload"])
    assert p.payload_hash() == case["payload_hash"]
    assert p == env.Payload.of(e)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_decrypts_with_every_recipient_key(index: int) -> None:
    case = CASES[index]
    for reader in READERS[index]:
        assert env.open_envelope(vector_envelope(case), private(reader)) == case["plaintext"]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_wrong_key_fails(index: int) -> None:
    outsiders = [n for n in KEYS if n not in READERS[index]] or []
    for name in outsiders:
        with pytest.raises(env.EnvelopeError):
            env.open_envelope(vector_envelope(CASES[index]), private(name))
    with pytest.raises(env.EnvelopeError):
        env.open_envelope(vector_envelope(CASES[index]), PrivateKey.generate())


def test_key_id_claimed_but_wrong_key_fails_authentication() -> None:
    """A recipient listed by id whose key does not match still cannot open the box."""
    e = vector_envelope(CASES[0])
    stranger = PrivateKey.generate()
    forged = replace(e, recipient_key_ids=(env.key_id(bytes(stranger.public_key)),))
    forged = replace(forged, sender_signature=forged.expected_signature())
    with pytest.raises(env.EnvelopeError, match="decryption failed"):
        env.open_envelope(forged, stranger)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_tampering_is_detected(index: int) -> None:
    e = vector_envelope(CASES[index])
    flipped = bytes([e.ciphertext[0] ^ 1]) + e.ciphertext[1:]
    with pytest.raises(env.EnvelopeError, match="sender_signature"):
        env.open_envelope(replace(e, ciphertext=flipped), private("support"))
    resigned = replace(e, ciphertext=flipped)
    resigned = replace(resigned, sender_signature=resigned.expected_signature())
    with pytest.raises(env.EnvelopeError, match="decryption failed"):
        env.open_envelope(resigned, private("support"))


def _recovered_secrets(e: env.Envelope, reader: str) -> tuple[bytes, list[bytes]]:
    """The data key and wrap nonces of a vector, recovered by a legitimate recipient."""
    own = env.key_id(public(reader))
    entry = next(w for w in e.wrapped_keys if w.recipient_id == own)
    box = Box(private(reader), PublicKey(e.sender_pub_key))
    data_key = box.decrypt(entry.wrapped_key[24:], entry.wrapped_key[:24])
    return data_key, [w.wrapped_key[:24] for w in e.wrapped_keys]


def test_reproduces_single_recipient_vector_byte_for_byte() -> None:
    case = CASES[0]
    e = vector_envelope(case)
    again = env.seal_one(case["plaintext"], private(case["sender"]), public("support"), nonce=e.nonce)
    assert again == e
    assert env.payload_to_json(env.Payload.of(again)) == case["payload"]


@pytest.mark.parametrize("index", [1, 2], ids=IDS[1:])
def test_reproduces_multi_recipient_vectors_byte_for_byte(index: int) -> None:
    case = CASES[index]
    e = vector_envelope(case)
    data_key, wrap_nonces = _recovered_secrets(e, "auditor")
    again = env.seal_many(
        case["plaintext"],
        private(case["sender"]),
        list(e.recipient_public_keys),
        nonce=e.nonce,
        data_key=data_key,
        wrap_nonces=wrap_nonces,
    )
    assert again == e
    assert env.payload_to_json(env.Payload.of(again)) == case["payload"]


def test_round_trip_one_recipient() -> None:
    plaintext = {"subject": "ünïcode ✓", "description": "line\nbreak", "tags": ["a"]}
    e = env.seal(plaintext, private("customer"), [public("support")])
    assert not e.is_multi_recipient and not e.metadata
    assert e.recipient_key_ids == (KEYS["support"]["key_id"],)
    assert env.open_envelope(e, private("support")) == plaintext
    with pytest.raises(env.EnvelopeError):
        env.open_envelope(e, private("customer"))


def test_round_trip_several_recipients() -> None:
    plaintext = {"message": "hello"}
    readers = ["customer", "support", "auditor"]
    e = env.seal(plaintext, private("support"), [public(n) for n in readers])
    assert e.metadata == {"_mode": "multi-recipient"}
    assert [w.recipient_id for w in e.wrapped_keys] == [KEYS[n]["key_id"] for n in readers]
    assert all(len(w.wrapped_key) == 24 + 32 + 16 for w in e.wrapped_keys)
    for reader in readers:
        assert env.open_envelope(e, private(reader)) == plaintext
    with pytest.raises(env.EnvelopeError, match="no wrapped key"):
        env.open_envelope(e, PrivateKey.generate())


def test_random_nonces_differ() -> None:
    a = env.seal({"message": "x"}, private("customer"), [public("support")])
    b = env.seal({"message": "x"}, private("customer"), [public("support")])
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_injected_sizes_are_checked() -> None:
    with pytest.raises(env.EnvelopeError, match="nonce"):
        env.seal_one({}, private("customer"), public("support"), nonce=b"short")
    with pytest.raises(env.EnvelopeError, match="data key"):
        env.seal_many({}, private("customer"), [public("support")], data_key=b"\0" * 16)
    with pytest.raises(env.EnvelopeError, match="recipient"):
        env.seal_many({}, private("customer"), [])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_proto_json_round_trips(case: dict[str, Any]) -> None:
    payload = env.payload_from_json(case["payload"])
    msg = env.payload_to_proto(payload)
    assert msg.envelope_hash == base64.b64decode(case["payload"]["envelope_hash"])
    assert msg.payload_size == case["payload"]["payload_size"]
    assert msg.envelope.nonce == base64.b64decode(case["payload"]["envelope"]["nonce"])
    wire = msg.SerializeToString()
    decoded = type(msg).FromString(wire)
    back = env.payload_from_proto(decoded)
    assert back == payload
    assert env.payload_to_json(back) == case["payload"]


def test_payload_with_reference_only() -> None:
    p = env.Payload(envelope=None, envelope_ref="artifact://abc", envelope_hash=b"\1" * 32, payload_size=7)
    assert env.payload_from_proto(env.payload_to_proto(p)) == p
    assert env.payload_from_json(env.payload_to_json(p)) == p
    assert "envelope" not in env.payload_to_json(p)


@pytest.mark.parametrize(("field", "value"), [("nonce", "not base64!"), ("ciphertext", 5), ("recipient_key_ids", None)])
def test_malformed_json_is_rejected(field: str, value: Any) -> None:
    data = copy.deepcopy(CASES[0]["payload"]["envelope"])
    data[field] = value
    with pytest.raises(env.EnvelopeError):
        env.envelope_from_json(data)


def test_missing_field_is_rejected() -> None:
    data = copy.deepcopy(CASES[0]["payload"]["envelope"])
    del data["nonce"]
    with pytest.raises(env.EnvelopeError):
        env.envelope_from_json(data)
