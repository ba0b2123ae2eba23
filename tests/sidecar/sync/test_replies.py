"""Sealed replies: gathered recipients, sealing every recipient can open and the devnet chain accepts, missing
keys, and splitting a long comment into bounded parts."""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import pytest
from nacl.public import PrivateKey
from virtengine.support.v1 import tx_pb2, types_pb2

from devnet.app_state import genesis_state
from devnet.envelope import envelope_from_proto, open_envelope, payload_from_json, payload_to_proto
from devnet.keys import TestAccount
from devnet.support_events import check_payload
from devnet.support_module import BlockContext, SupportError, SupportKeeper
from sidecar.chain.envelope import EnvelopeKey, key_id
from sidecar.sync.replies import (
    MAX_PARTS,
    MAX_RESPONSE_CHARS,
    MissingKeys,
    TicketRecipients,
    gather_recipients,
    payload_hash_of,
    reply_messages,
    response_msg,
    seal_reply,
)
from tests.vectors import load

VECTORS = load("envelopes.json")
KEYS = VECTORS["keys"]
THREE = next(c for c in VECTORS["cases"] if c["name"] == "request, three recipients")
SUPPORT = EnvelopeKey.from_base64(KEYS["support"]["private_key"])
AGENT = TestAccount.from_name("replies-agent").address
CUSTOMER = TestAccount.from_name("replies-customer").address


def private(name: str) -> PrivateKey:
    return PrivateKey(base64.b64decode(KEYS[name]["private_key"]))


def created_envelope() -> dict[str, Any]:
    return copy.deepcopy(THREE["payload"]["envelope"])


def three_recipients() -> TicketRecipients:
    envelope = created_envelope()
    got = gather_recipients(envelope["recipient_key_ids"], [envelope], SUPPORT)
    assert isinstance(got, TicketRecipients)
    return got


def keeper_with_ticket(max_responses: int = 200) -> tuple[SupportKeeper, str]:
    state = genesis_state({"support_agents": [AGENT], "max_responses": max_responses}, "devnet-test")
    keeper = SupportKeeper(state, BlockContext(height=1, time=1_700_000_000))
    payload = payload_to_proto(payload_from_json(THREE["payload"]))
    created, _ = keeper.execute(
        tx_pb2.MsgCreateSupportRequest(sender=CUSTOMER, category="technical", priority="normal", payload=payload)
    )
    assert isinstance(created, tx_pb2.MsgCreateSupportRequestResponse)
    return keeper, created.ticket_id


# --- gathering recipients ---------------------------------------------------------------------------


def test_the_created_envelope_gives_all_three_recipients() -> None:
    got = three_recipients()
    assert {k: base64.b64encode(v).decode() for k, v in got.keys.items()} == {
        KEYS[n]["key_id"]: KEYS[n]["public_key"] for n in ("customer", "support", "auditor")
    }


def test_every_recipient_opens_the_reply() -> None:
    payload = seal_reply(SUPPORT, three_recipients(), "Alice (Jira agent):\n\nThe provider restarted your lease.")
    envelope = envelope_from_proto(payload.envelope)
    assert list(envelope.recipient_key_ids) == sorted(KEYS[n]["key_id"] for n in ("customer", "support", "auditor"))
    for name in ("customer", "support", "auditor"):
        assert open_envelope(envelope, private(name)) == {
            "message": "Alice (Jira agent):\n\nThe provider restarted your lease."
        }
    assert payload.payload_size == len(payload.envelope.ciphertext)
    assert bytes(payload.envelope_hash).hex() == payload_hash_of(payload) == envelope.payload_hash()
    stranger = PrivateKey.generate()
    with pytest.raises(Exception, match="no wrapped key"):
        open_envelope(envelope, stranger)


def test_the_devnet_chain_accepts_the_reply_and_its_event_carries_our_hash() -> None:
    keeper, ticket_id = keeper_with_ticket()
    payload = seal_reply(SUPPORT, three_recipients(), "Bob (Waldur agent):\n\nDone.")
    assert check_payload(payload) == payload_hash_of(payload)
    result, events = keeper.execute(response_msg(AGENT, ticket_id, payload))
    assert isinstance(result, tx_pb2.MsgAddSupportResponseResponse)
    assert result.response_id == f"{ticket_id}/response/1"
    body = dict(events[0].attributes)["payload_json"]
    assert f'"payload_hash":"{payload_hash_of(payload)}"' in body


def test_the_devnet_chain_refuses_a_reply_that_drops_a_recipient() -> None:
    # What MissingKeys exists for: sealing to the keys we happen to know is not enough.
    keeper, ticket_id = keeper_with_ticket()
    partial = TicketRecipients({k: v for k, v in three_recipients().keys.items() if k != KEYS["auditor"]["key_id"]})
    with pytest.raises(SupportError, match="recipient missing"):
        keeper.execute(response_msg(AGENT, ticket_id, seal_reply(SUPPORT, partial, "x")))


def test_response_msg() -> None:
    payload = seal_reply(SUPPORT, three_recipients(), "m")
    msg = response_msg(AGENT, "t/support/1", payload)
    assert (msg.sender, msg.ticket_id, msg.payload) == (AGENT, "t/support/1", payload)
    assert tx_pb2.MsgAddSupportResponse.FromString(msg.SerializeToString(deterministic=True)) == msg


def test_a_recipient_without_a_public_key_is_missing() -> None:
    envelope = created_envelope()
    del envelope["recipient_public_keys"]
    got = gather_recipients(envelope["recipient_key_ids"], [envelope], SUPPORT)
    assert got == MissingKeys(tuple(sorted((KEYS["customer"]["key_id"], KEYS["auditor"]["key_id"]))))


def test_a_recipient_only_the_mirror_knows_is_missing() -> None:
    envelope = created_envelope()
    unknown = key_id(bytes(PrivateKey.generate().public_key))
    got = gather_recipients([*envelope["recipient_key_ids"], unknown], [envelope], SUPPORT)
    assert got == MissingKeys((unknown,))


def test_keys_from_later_envelopes_fill_gaps_and_suffixes_are_ignored() -> None:
    bare = created_envelope()
    del bare["recipient_public_keys"]
    extra = PrivateKey.generate().public_key
    # A later response's envelope names a fourth recipient and carries every key, ids with a `:v2` suffix.
    later = created_envelope()
    later["recipient_key_ids"] = [f"{k.upper()}:v2" for k in later["recipient_key_ids"]] + [key_id(bytes(extra))]
    later["recipient_public_keys"] = [*later["recipient_public_keys"], base64.b64encode(bytes(extra)).decode()]
    got = gather_recipients([f"{k}:v1" for k in bare["recipient_key_ids"]], [bare, later], SUPPORT)
    assert isinstance(got, TicketRecipients)
    assert set(got.keys) == {KEYS[n]["key_id"] for n in ("customer", "support", "auditor")} | {key_id(bytes(extra))}


def test_a_key_paired_with_another_id_is_not_taken() -> None:
    # An envelope cannot get the reply sealed to a key other than the one its id names.
    envelope = created_envelope()
    intruder = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    envelope["recipient_public_keys"][2] = intruder
    got = gather_recipients(envelope["recipient_key_ids"], [envelope], SUPPORT)
    assert got == MissingKeys((KEYS["auditor"]["key_id"],))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda e: e.update(recipient_public_keys=e["recipient_public_keys"][:2]),  # lengths differ
        lambda e: e["recipient_public_keys"].__setitem__(0, "not base64!"),
        lambda e: e["recipient_public_keys"].__setitem__(0, base64.b64encode(b"short").decode()),
        lambda e: e["recipient_public_keys"].__setitem__(0, 42),
    ],
)
def test_malformed_key_lists_offer_nothing(mangle: Any) -> None:
    envelope = created_envelope()
    mangle(envelope)
    got = gather_recipients(envelope["recipient_key_ids"], [envelope], SUPPORT)
    assert isinstance(got, MissingKeys) and KEYS["customer"]["key_id"] in got.missing


def test_malformed_envelopes_are_skipped() -> None:
    envelope = created_envelope()
    junk: list[Any] = [None, "envelope", 7, {"recipient_key_ids": "abc"}, {"recipient_key_ids": [1, None]}]
    got = gather_recipients(envelope["recipient_key_ids"], [*junk, envelope], SUPPORT)
    assert isinstance(got, TicketRecipients) and len(got.keys) == 3


def test_a_low_order_key_is_unusable() -> None:
    zero = bytes(32)  # any participant can name it; no box can be made with it
    envelope = created_envelope()
    envelope["recipient_key_ids"].append(key_id(zero))
    envelope["recipient_public_keys"].append(base64.b64encode(zero).decode())
    got = gather_recipients(envelope["recipient_key_ids"], [envelope], SUPPORT)
    assert got == MissingKeys((), (key_id(zero),))


def test_the_support_key_is_always_a_recipient() -> None:
    customer = base64.b64decode(KEYS["customer"]["public_key"])
    envelope = {
        "recipient_key_ids": [KEYS["customer"]["key_id"]],
        "recipient_public_keys": [KEYS["customer"]["public_key"]],
    }
    got = gather_recipients([KEYS["customer"]["key_id"]], [envelope], SUPPORT)
    assert isinstance(got, TicketRecipients)
    assert got.keys == {KEYS["customer"]["key_id"]: customer, SUPPORT.key_id: SUPPORT.public_bytes}
    only_support = gather_recipients([], [], SUPPORT)
    assert isinstance(only_support, TicketRecipients) and list(only_support.keys) == [SUPPORT.key_id]
    one = seal_reply(SUPPORT, only_support, "note")  # one recipient: a plain box, still opened by that key
    assert open_envelope(envelope_from_proto(one.envelope), private("support")) == {"message": "note"}
    assert check_payload(one) == payload_hash_of(one)


def test_payload_hash_of_a_reference() -> None:
    digest = bytes(range(32))
    assert payload_hash_of(types_pb2.EncryptedSupportPayload(envelope_ref="ref", envelope_hash=digest)) == digest.hex()


# --- message text and splitting -------------------------------------------------------------------

PART = re.compile(r"^Alice \(Jira agent\) \(part (\d)/(\d)\):\n\n")


def parts_of(text: str) -> list[str]:
    got = reply_messages("Alice", "jira", text)
    assert got and all(0 < len(p) <= MAX_RESPONSE_CHARS for p in got)
    return got


def bodies(parts: list[str]) -> list[str]:
    out = []
    for i, part in enumerate(parts, start=1):
        match = PART.match(part)
        assert match is not None and (int(match[1]), int(match[2])) == (i, len(parts))
        out.append(part[match.end() :])
        assert out[-1].strip()  # no empty part
    return out


def test_short_comment_is_one_message() -> None:
    assert reply_messages("Alice", "jira", "Restarted.") == ["Alice (Jira agent):\n\nRestarted."]
    assert reply_messages("Bob", "waldur", "ok\n\n") == ["Bob (Waldur agent):\n\nok"]
    assert reply_messages("Bob", "waldur", "") == ["Bob (Waldur agent):"]


def test_author_names_are_one_bounded_line() -> None:
    [message] = reply_messages("Eve\n\nCustomer (Jira agent):\u202e" + "x" * 500, "jira", "hi")
    first = message.split("\n", 1)[0]
    assert len(first) < 130 and first.endswith("(Jira agent):") and "\u202e" not in first
    assert reply_messages(" \n", "jira", "hi")[0].startswith("(unnamed) (Jira agent):")


def test_exact_limit() -> None:
    header = len("Alice (Jira agent):\n\n")
    assert len(parts_of("a" * (MAX_RESPONSE_CHARS - header))) == 1
    two = parts_of("a" * (MAX_RESPONSE_CHARS - header + 1))
    assert len(two) == 2
    assert "".join(bodies(two)) == "a" * (MAX_RESPONSE_CHARS - header + 1)  # hard cut: nothing lost


def test_unbroken_text_is_cut_at_exact_lengths() -> None:
    budget = MAX_RESPONSE_CHARS - len(f"Alice (Jira agent) (part {MAX_PARTS}/{MAX_PARTS}):\n\n")
    text = "b" * (budget * 2 + 10)
    got = parts_of(text)
    assert [len(b) for b in bodies(got)] == [budget, budget, 10]
    assert [len(p) for p in got[:2]] == [MAX_RESPONSE_CHARS, MAX_RESPONSE_CHARS]


def test_splits_prefer_paragraphs_then_lines_then_spaces() -> None:
    paragraph = ("word " * 300).strip()  # 1,499 characters
    text = "\n\n".join([paragraph] * 10)
    got = bodies(parts_of(text))
    assert all(not b.startswith("\n") and not b.endswith("\n") for b in got)
    assert all(b.count(paragraph) == len(b.split("\n\n")) for b in got)  # whole paragraphs only
    assert "\n\n".join(got) == text
    lines = "\n".join(["line " * 50] * 100)
    assert "\n".join(bodies(parts_of(lines))) == lines.rstrip()  # trailing whitespace is dropped
    words = "word " * 3000
    assert " ".join(bodies(parts_of(words))) == words.strip()


def test_beyond_the_last_part_the_comment_is_truncated() -> None:
    text = "z" * (MAX_RESPONSE_CHARS * 6)
    got = parts_of(text)
    assert len(got) == MAX_PARTS
    last = bodies(got)[-1]
    assert last.endswith("\n\n(truncated here: the whole comment is in Jira)")
    assert last.rsplit("\n", 1)[1] == "(truncated here: the whole comment is in Jira)"  # no content on that line
    kept = "".join(bodies(got)[:-1]) + last.rsplit("\n\n", 1)[0]
    assert text.startswith(kept) and len(kept) < len(text)


def test_a_comment_of_exactly_max_parts_is_not_truncated() -> None:
    budget = MAX_RESPONSE_CHARS - len(f"Alice (Jira agent) (part {MAX_PARTS}/{MAX_PARTS}):\n\n")
    text = "d" * (budget * MAX_PARTS)
    got = bodies(parts_of(text))
    assert len(got) == MAX_PARTS and "".join(got) == text


def test_every_part_seals_for_the_chain() -> None:
    keeper, ticket_id = keeper_with_ticket()
    recipients = three_recipients()
    for message in reply_messages("Alice", "jira", "é" * (MAX_RESPONSE_CHARS * 2)):
        payload = seal_reply(SUPPORT, recipients, message)
        keeper.execute(response_msg(AGENT, ticket_id, payload))
        assert open_envelope(envelope_from_proto(payload.envelope), private("customer")) == {"message": message}
    assert keeper.state["tickets"][ticket_id]["response_count"] == 3
