"""Hostile chain input, one event at a time: every way an envelope or an event can be wrong is a
recorded outcome (EnvelopeError, poison, placeholder) for that event alone, never an exception that
stops the follower, and no reason quotes ticket content or key material."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.public import Box, PrivateKey, PublicKey

from sidecar.chain.envelope import EnvelopeError, EnvelopeKey
from sidecar.chain.events import decode_block
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn, load_cursor
from sidecar.store.records import PoisonEvent, RequestCreated, SupportEvent
from sidecar.store.tickets import get_ticket
from tests.sidecar.chain.test_events import block_results

SUPPORT = EnvelopeKey(PrivateKey(b"\x07" * 32))
CUSTOMER = PrivateKey(b"\x09" * 32)
SECRET_WORD = "Zanzibar-7731"  # in every plaintext below: it must never surface in a reason


def sealed(plaintext: bytes, **override: Any) -> dict[str, Any]:
    """A one-recipient envelope of arbitrary bytes from CUSTOMER to SUPPORT, re-signed after `override`."""
    nonce = b"\x01" * 24
    ciphertext = Box(CUSTOMER, PublicKey(SUPPORT.public_bytes)).encrypt(plaintext, nonce).ciphertext
    envelope: dict[str, Any] = {
        "version": 1,
        "algorithm_id": "X25519-XSALSA20-POLY1305",
        "algorithm_version": 1,
        "recipient_key_ids": [SUPPORT.key_id],
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "sender_pub_key": base64.b64encode(bytes(CUSTOMER.public_key)).decode(),
    }
    envelope.update(override)
    envelope = {k: v for k, v in envelope.items() if v is not None}
    if "sender_signature" not in override:
        envelope["sender_signature"] = _tag(envelope)
    return envelope


def _tag(envelope: dict[str, Any]) -> str:
    """sender_signature computed here, not by the module under test, so a short key gets a valid tag;
    a shape that cannot be hashed gets an arbitrary one (open must refuse it all the same)."""
    try:
        inner = hashlib.sha256(
            struct.pack(">I", envelope["version"]) + envelope["algorithm_id"].encode()
            + struct.pack(">I", envelope["algorithm_version"]) + base64.b64decode(envelope["ciphertext"])
            + base64.b64decode(envelope["nonce"]) + "".join(envelope["recipient_key_ids"]).encode()
        ).digest()
        return b64(hashlib.sha256(inner + base64.b64decode(envelope.get("sender_pub_key", ""))).digest())
    except (KeyError, TypeError, ValueError, AttributeError, struct.error):
        return b64(b"\x05" * 32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def boxed(plaintext: bytes, nonce: bytes) -> bytes:
    return bytes(Box(CUSTOMER, PublicKey(SUPPORT.public_bytes)).encrypt(plaintext, nonce).ciphertext)


def good() -> bytes:
    return json.dumps({"subject": SECRET_WORD, "description": SECRET_WORD}).encode()


def test_the_well_formed_envelope_opens() -> None:
    assert SUPPORT.open(sealed(good())) == {"subject": SECRET_WORD, "description": SECRET_WORD}


HOSTILE: dict[str, Callable[[], Any]] = {
    "plaintext of 1,200 nested [": lambda: sealed(b"[" * 1200 + b"]" * 1200),
    "plaintext of 1,200 unclosed [": lambda: sealed(b"[" * 1200),
    "plaintext over the size cap": lambda: sealed(json.dumps({"d": SECRET_WORD * 100_000}).encode()),
    "plaintext not UTF-8": lambda: sealed(b"\xff\xfe" + SECRET_WORD.encode()),
    "plaintext not JSON": lambda: sealed(SECRET_WORD.encode()),
    "plaintext a JSON list": lambda: sealed(json.dumps([SECRET_WORD]).encode()),
    "short sender_pub_key": lambda: sealed(good(), sender_pub_key=base64.b64encode(b"\x01" * 5).decode()),
    "sender_signature without sender_pub_key": lambda: sealed(
        good(), sender_pub_key=None, sender_signature=base64.b64encode(b"\x02" * 32).decode()
    ),
    "no sender_pub_key at all": lambda: sealed(good(), sender_pub_key=None, sender_signature=None),
    "sender_pub_key a low-order curve point": lambda: sealed(good(), sender_pub_key=b64(bytes(32))),
    "sender_pub_key a number": lambda: sealed(good(), sender_pub_key=12345, sender_signature=None),
    "nonce not base64": lambda: sealed(good(), nonce="!!not base64!!", sender_signature=None),
    "nonce the wrong length": lambda: sealed(good(), nonce=base64.b64encode(b"\x01" * 8).decode()),
    "nonce a list": lambda: sealed(good(), nonce=[1, 2], sender_signature=None),
    "ciphertext an object": lambda: sealed(good(), ciphertext={"a": 1}, sender_signature=None),
    "recipient_key_ids a string": lambda: sealed(good(), recipient_key_ids=SUPPORT.key_id),
    "recipient_key_ids with a number": lambda: sealed(good(), recipient_key_ids=[SUPPORT.key_id, 7]),
    "version a string": lambda: sealed(good(), version="1", sender_signature="x"),
    "version beyond 32 bits": lambda: sealed(good(), version=2**40, sender_signature="x"),
    "algorithm_id a list": lambda: sealed(good(), algorithm_id=["X25519-XSALSA20-POLY1305"]),
    "sender_signature a number": lambda: sealed(good(), sender_signature=5),
    "wrapped_keys not a list": lambda: sealed(good(), wrapped_keys="abc"),
    "wrapped_keys of numbers": lambda: sealed(good(), wrapped_keys=[1, 2]),
    "wrapped_key too short": lambda: sealed(
        good(), wrapped_keys=[{"recipient_id": SUPPORT.key_id, "wrapped_key": base64.b64encode(b"abc").decode()}]
    ),
    "wrapped data key not 32 bytes": lambda: sealed(
        good(),
        wrapped_keys=[
            {
                "recipient_id": SUPPORT.key_id,
                "wrapped_key": b64(b"\x03" * 24 + boxed(b"k" * 5, b"\x03" * 24)),
            }
        ],
    ),
    "envelope a list": lambda: [SECRET_WORD],
    "envelope a string": lambda: SECRET_WORD,
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_every_hostile_envelope_is_an_envelope_error_without_content(case: str) -> None:
    envelope = HOSTILE[case]()
    with pytest.raises(EnvelopeError) as info:
        SUPPORT.open(envelope)
    reason = str(info.value)
    assert reason
    assert SECRET_WORD not in reason
    assert base64.b64encode(bytes(CUSTOMER.public_key)).decode() not in reason


# --- events --------------------------------------------------------------------------------------


def _created_event(results: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = results["txs_results"][0]["events"][0]
    return event


def _set_attribute(event: dict[str, Any], key: str, value: str) -> None:
    for attr in event["attributes"]:
        if attr["key"] == key:
            attr["value"] = value


def _set_payload(event: dict[str, Any], text: str) -> None:
    _set_attribute(event, "payload_json", text)


def _payload(event: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(next(a["value"] for a in event["attributes"] if a["key"] == "payload_json"))
    return doc


def _with(event: dict[str, Any], **fields: Any) -> str:
    return json.dumps({**_payload(event), **fields})


EVENT_CASES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "payload_json of 1,200 nested [": (lambda e: _set_payload(e, "[" * 1200 + "]" * 1200), "nests over 64 levels deep"),
    "payload_json a list": (lambda e: _set_payload(e, "[1]"), "payload_json is not an object"),
    "payload_json not JSON": (lambda e: _set_payload(e, "{" + SECRET_WORD), "not JSON"),
    "attributes not a list": (lambda e: e.__setitem__("attributes", {"a": 1}), "attributes are not a list"),
    "an attribute not an object": (lambda e: e["attributes"].append("x"), "an attribute is not an object"),
    "an attribute value a number": (
        lambda e: e["attributes"].append({"key": "extra", "value": 5}),
        "an attribute key or value is not a string",
    ),
    "sequence beyond int64": (lambda e: _set_attribute(e, "sequence", str(2**70)), "sequence is not an integer"),
    "timestamp a list": (lambda e: _set_payload(e, _with(e, timestamp=[1])), "timestamp is not an integer"),
    "ticket_id a number": (lambda e: _set_payload(e, _with(e, ticket_id=17)), "ticket_id is not a string"),
    "payload_hash a list": (lambda e: _set_payload(e, _with(e, payload_hash=[SECRET_WORD])), "payload_hash must"),
    "payload a list": (lambda e: _set_payload(e, _with(e, payload=[SECRET_WORD])), "payload must be an object"),
    "event_type a list": (
        lambda e: (_set_attribute(e, "event_type", ""), _set_payload(e, _with(e, event_type=["x"]))),
        "unknown event_type",
    ),
}


@pytest.mark.parametrize("case", list(EVENT_CASES), ids=list(EVENT_CASES))
def test_a_hostile_event_is_poison_and_the_next_event_of_the_block_decodes(case: str) -> None:
    mutate, reason = EVENT_CASES[case]
    results = block_results(100)
    second = copy.deepcopy(_created_event(results))
    for attr in second["attributes"]:
        if attr["key"] == "event_id":
            attr["value"] += "-second"
    if case == "payload_json a list" or "attributes" in case or "attribute" in case:
        for attr in _created_event(results)["attributes"]:
            if attr["key"] == "event_type":
                attr["value"] = "support_request_created"
    mutate(_created_event(results))
    results["txs_results"][0]["events"].append(second)
    first, after = decode_block(results)
    assert isinstance(first, PoisonEvent)
    assert reason in first.reason
    assert SECRET_WORD not in first.reason
    assert first.height == 100 and first.position == 0
    assert isinstance(after, RequestCreated) and after.position == 1


def test_malformed_block_structure_skips_what_cannot_be_an_event() -> None:
    results = block_results(100)
    created = _created_event(results)
    results["txs_results"].insert(0, "not a tx")
    results["txs_results"].insert(1, {"code": [1], "events": [created]})
    results["txs_results"][2]["events"].insert(0, 42)
    results["finalize_block_events"] = {"not": "a list"}
    decoded = decode_block(results)
    assert [type(e) for e in decoded] == [RequestCreated]


# --- the mirror ----------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(str(tmp_path / "db"))
    await s.write("cursor", init_cursor_txn, "virtengine-devnet-1", 99)
    yield s  # type: ignore[misc]
    await s.close()


def _inbox(path: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute("SELECT event_id, state, error FROM chain_inbox ORDER BY height, position"))
    finally:
        conn.close()


async def test_an_event_the_mirror_cannot_take_is_poison_alone(store: Store, tmp_path: Path) -> None:
    """A value SQLite cannot bind (built past the decoder, which would refuse it) rolls back that one
    event and keeps it as poison; the next event of the same block and the cursor advance commit."""
    (decoded,) = decode_block(block_results(100))
    assert isinstance(decoded, RequestCreated)
    unbindable = RequestCreated(**{**decoded.__dict__, "ticket_number": ["SUP", 1]})  # type: ignore[arg-type]
    fine = RequestCreated(**{**decoded.__dict__, "event_id": decoded.event_id + "-2", "position": 1,
                             "ticket_id": decoded.ticket_id.replace("/1", "/2")})
    batch = BlockBatch(100, [unbindable, fine], {})
    result = await store.write("commit", commit_blocks_txn, "virtengine-devnet-1", [batch])
    assert result.poison == 1 and result.inserted == 2
    rows = _inbox(tmp_path / "db")
    assert [(r[0], r[1]) for r in rows] == [(decoded.event_id, "poison"), (fine.event_id, "pending")]
    assert rows[0][2] == "support_request_created event cannot be stored in the mirror (ProgrammingError)"
    assert (await store.read("cursor", load_cursor)).height == 100
    assert await store.read("ticket", get_ticket, decoded.ticket_id) is None  # the poisoned fold left nothing
    assert await store.read("ticket", get_ticket, fine.ticket_id) is not None


async def test_an_untyped_event_still_refuses_the_whole_commit(store: Store) -> None:
    bare = SupportEvent("x/support/1/1", "support_request_created", 100, 0, 1, "x/support/1", "x", 0, {})
    with pytest.raises(TypeError):
        await store.write("commit", commit_blocks_txn, "virtengine-devnet-1", [BlockBatch(100, [bare], {})])
    assert (await store.read("cursor", load_cursor)).height == 99
