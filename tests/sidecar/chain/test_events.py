"""Decoding support events from block_results, against the shared vectors."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from sidecar.chain.events import EVENT_CLASSES, PoisonEvent, SupportEvent, decode_block, parse_ticket_id
from sidecar.store.records import ExternalTicketLinked, RequestCreated, ResponseAdded
from tests.vectors import load

EVENTS = load("support_events.json")["events"]


def block_results(height: int, *, encode: bool = False) -> dict[str, Any]:
    """Rebuild a v0.38 block_results answer for one height from the vector events."""
    txs: dict[int, list[dict[str, Any]]] = {}
    block: list[dict[str, Any]] = []
    for item in EVENTS:
        if item["height"] != height:
            continue
        event = copy.deepcopy(item["event"])
        if encode:
            for a in event["attributes"]:
                a["key"] = base64.b64encode(a["key"].encode()).decode()
                a["value"] = base64.b64encode(a["value"].encode()).decode()
        if item["where"].startswith("txs_results"):
            txs.setdefault(int(item["where"].split("[")[1].rstrip("]")), []).append(event)
        else:
            block.append(event)
    tx_results = [{"code": 0, "events": txs.get(i, [])} for i in range(max(txs, default=-1) + 1)]
    return {"height": str(height), "txs_results": tx_results or None, "finalize_block_events": block}


def all_heights() -> list[int]:
    return sorted({item["height"] for item in EVENTS})


def test_vector_life_decodes_in_order() -> None:
    decoded = [e for h in all_heights() for e in decode_block(block_results(h))]
    assert decoded and all(isinstance(e, SupportEvent) for e in decoded)
    events = [e for e in decoded if isinstance(e, SupportEvent)]
    assert [e.event_id for e in events] == [item["event"]["attributes"][1]["value"] for item in EVENTS]
    assert [e.event_type for e in events][:3] == [
        "support_request_created",
        "support_request_updated",
        "support_request_status_changed",
    ]
    assert events[1].sequence == events[2].sequence  # status_changed shares the sequence
    assert events[0].sender == events[0].payload["submitter"]
    assert events[0].ticket_id == "virtengine1cust0mer0000000000000000000000000000x/support/1"


def test_each_event_type_becomes_its_own_typed_object() -> None:
    events = [e for h in all_heights() for e in decode_block(block_results(h))]
    by_type = {e.event_type: e for e in events}
    assert {t: type(e) for t, e in by_type.items()} == {t: EVENT_CLASSES[t] for t in by_type}
    created = events[0]
    assert isinstance(created, RequestCreated)
    assert (created.ticket_number, created.category, created.status) == (
        created.payload["ticket_number"], created.payload["category"], "open")
    assert created.recipients == tuple(created.payload["recipients"])
    response = by_type["support_response_added"]
    assert isinstance(response, ResponseAdded) and isinstance(response.is_agent, bool)
    linked = by_type["support_external_ticket_linked"]
    assert isinstance(linked, ExternalTicketLinked) and linked.external_system == linked.payload["external_system"]


def test_a_field_of_the_wrong_type_makes_poison() -> None:
    height = next(item["height"] for item in EVENTS if item["event"]["attributes"][0]["value"] ==
                  "support_response_added")
    results = block_results(height)
    for tx in results["txs_results"] or []:
        for event in tx["events"]:
            for attr in event["attributes"]:
                if attr["key"] == "payload_json" and '"is_agent"' in attr["value"]:
                    payload = json.loads(attr["value"])
                    payload["is_agent"] = "yes"
                    attr["value"] = json.dumps(payload)
    poisoned = [e for e in decode_block(results) if isinstance(e, PoisonEvent)]
    assert len(poisoned) == 1 and poisoned[0].reason == "is_agent must be bool (got str)"


def test_base64_attributes_of_034_nodes() -> None:
    plain = [e for h in all_heights() for e in decode_block(block_results(h))]
    encoded = [e for h in all_heights() for e in decode_block(block_results(h, encode=True), base64_encoded=True)]
    assert plain == encoded


def test_failed_txs_are_ignored_and_block_events_ordered() -> None:
    results = block_results(100)
    assert results["txs_results"]
    results["txs_results"].insert(0, {"code": 5, "events": copy.deepcopy(results["txs_results"][0]["events"])})
    end = {
        "type": "support_event",
        "attributes": [
            {"key": "event_type", "value": "support_request_archived"},
            {"key": "event_id", "value": "a/support/9/7"},
            {"key": "sequence", "value": "7"},
            {"key": "mode", "value": "EndBlock"},
            {"key": "payload_json", "value": json.dumps({"ticket_id": "a/support/9", "archived_by": "system"})},
        ],
    }
    begin = copy.deepcopy(end)
    begin["attributes"][1]["value"] = "a/support/9/6"
    begin["attributes"][3]["value"] = "BeginBlock"
    results["finalize_block_events"] = [end, begin]
    ids = [e.event_id for e in decode_block(results)]
    assert ids == ["a/support/9/6", EVENTS[0]["event"]["attributes"][1]["value"], "a/support/9/7"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda attrs: attrs.__setitem__("payload_json", "{not json"), "Expecting property name"),
        (lambda attrs: attrs.__setitem__("event_type", "support_request_exploded"), "unknown event_type"),
        (lambda attrs: attrs.pop("event_id"), "event_id attribute missing"),
        (
            lambda attrs: attrs.__setitem__("payload_json", json.dumps({"ticket_id": "x/support/1"})),
            "support_request_created lacks",
        ),
        (
            lambda attrs: attrs.__setitem__(
                "payload_json",
                json.dumps(
                    {
                        "ticket_id": "x/tickets/1",
                        "ticket_number": "SUP-1",
                        "submitter": "x",
                        "category": "other",
                        "priority": "low",
                        "status": "open",
                    }
                ),
            ),
            "malformed ticket id",
        ),
        # Python's parser takes NaN: stored, it made the inbox row text SQLite's JSON functions refuse.
        (
            lambda attrs: attrs.__setitem__("payload_json", attrs["payload_json"][:-1] + ', "note": NaN}'),
            "NaN is not a JSON number",
        ),
    ],
)
def test_malformed_events_become_poison(mutate: Any, reason: str) -> None:
    results = block_results(100)
    event = results["txs_results"][0]["events"][0]
    attrs = {a["key"]: a["value"] for a in event["attributes"]}
    mutate(attrs)
    event["attributes"] = [{"key": k, "value": v} for k, v in attrs.items()]
    (decoded,) = decode_block(results)
    assert isinstance(decoded, PoisonEvent)
    assert reason in decoded.reason
    assert decoded.height == 100


@pytest.mark.parametrize(
    "bad",
    ["a/support", "a/support/0", "a/support/x", "a/tickets/1", "/support/1", "a/support/1/2", "a/support/\u0661\u0662"],
)
def test_ticket_ids_parse_strictly(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ticket_id(bad)
    assert parse_ticket_id("virtengine1abc/support/12") == ("virtengine1abc", 12)
