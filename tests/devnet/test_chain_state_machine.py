"""x/support state machine, in process: the vector ticket life reproduced event for event, the full
status table, authorisation, counters, automatic status on replies, external refs and retention."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import tx_pb2, types_pb2

from devnet.keys import TestAccount, genesis_app_state
from devnet.support_events import ALLOWED_TRANSITIONS, STATUS_NAMES, check_payload
from devnet.support_module import STATUS_NUMBERS
from tests.devnet.chain_helpers import VECTORS, vector_events, vector_payload
from tests.devnet.inproc import InProcessChain, payloads, support_events

DAY = 86400
PLACEHOLDERS = {
    "customer": "virtengine1cust0mer0000000000000000000000000000x",
    "agent": "virtengine1agent00000000000000000000000000000000",
    "sidecar": "virtengine1sidecar000000000000000000000000000000",
}


@pytest.fixture
def chain(tmp_path: Path, devnet_accounts: dict[str, TestAccount]) -> InProcessChain:
    state = genesis_app_state(devnet_accounts.values(), agents=[devnet_accounts["agent"], devnet_accounts["sidecar"]],
                              archive_after=90 * DAY, purge_after=365 * DAY)
    return InProcessChain(tmp_path / "app", state)


def create(chain: InProcessChain, who: TestAccount, payload: int = 1) -> str:
    msg = tx_pb2.MsgCreateSupportRequest(sender=who.address, category="technical", priority="high",
                                         payload=vector_payload(payload))
    result = chain.deliver(who, [msg])
    assert result.code == 0, result.log
    return payloads(result.events)[0]["ticket_id"]


def update(chain: InProcessChain, who: TestAccount, ticket_id: str, **fields: Any) -> Any:
    return chain.deliver(who, [tx_pb2.MsgUpdateSupportRequest(sender=who.address, ticket_id=ticket_id, **fields)])


def reply(chain: InProcessChain, who: TestAccount, ticket_id: str, payload: int = 2) -> Any:
    return chain.deliver(who, [tx_pb2.MsgAddSupportResponse(sender=who.address, ticket_id=ticket_id,
                                                            payload=vector_payload(payload))])


def status_of(chain: InProcessChain, ticket_id: str) -> str:
    return STATUS_NAMES[chain.state["tickets"][ticket_id]["status"]]


def test_vector_payload_hashes_match() -> None:
    cases = json.loads((VECTORS / "envelopes.json").read_text())["cases"]
    for index, case in enumerate(cases):
        assert check_payload(vector_payload(index)) == case["payload_hash"]


def test_vector_ticket_life_is_reproduced_exactly(chain: InProcessChain,
                                                  devnet_accounts: dict[str, TestAccount]) -> None:
    """Same heights, block times and envelopes as support_events.json: identical events but addresses."""
    customer, agent, sidecar = (devnet_accounts[n] for n in ("customer", "agent", "sidecar"))
    expected = vector_events()
    got: list[tuple[int, str, dict[str, str]]] = []

    def record(height: int, block: Any) -> None:
        for result in block.tx_results:
            assert result.code == 0, result.log
            got.extend((height, "tx", ev) for ev in support_events(result.events))
        got.extend((height, "end", ev) for ev in support_events(block.events))

    created = tx_pb2.MsgCreateSupportRequest(
        sender=customer.address, category="technical", priority="high", payload=vector_payload(1),
        related_entity=types_pb2.RelatedEntity(type="lease", id=f"{customer.address}/1200/1/1"))
    record(100, chain.block([chain.sign(customer, [created])], height=100, time=1764150000))
    ticket_id = f"{customer.address}/support/1"
    assign = tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id, priority="urgent",
                                            assigned_agent=agent.address, status=STATUS_NUMBERS["assigned"])
    record(104, chain.block([chain.sign(agent, [assign])], height=104, time=1764150020))
    answer = tx_pb2.MsgAddSupportResponse(sender=agent.address, ticket_id=ticket_id, payload=vector_payload(2))
    record(110, chain.block([chain.sign(agent, [answer])], height=110, time=1764150050))
    link = tx_pb2.MsgRegisterExternalTicket(
        sender=sidecar.address, resource_id=ticket_id, resource_type="support_request", external_system="jira",
        external_ticket_id="VESUPPORT-7", external_url="https://example.atlassian.net/browse/VESUPPORT-7")
    record(111, chain.block([chain.sign(sidecar, [link])], height=111, time=1764150055))
    close = tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id, status=STATUS_NUMBERS["closed"])
    record(150, chain.block([chain.sign(agent, [close])], height=150, time=1764150250))
    record(899, chain.block([], height=899, time=1764150250 + 90 * DAY - 1))
    record(900, chain.block([], height=900, time=1772000000))
    record(1699, chain.block([], height=1699, time=1772000000 + 365 * DAY - 1))
    purge_time = 1772000000 + 365 * DAY
    record(1700, chain.block([], height=1700, time=purge_time))

    def ours(text: str) -> str:
        for name, placeholder in PLACEHOLDERS.items():
            text = text.replace(placeholder, devnet_accounts[name].address)
        return text

    assert [h for h, _, _ in got] == [e["height"] for e in expected]
    for (_, where, attrs), vector in zip(got, expected, strict=True):
        want = {a["key"]: ours(a["value"]) for a in vector["event"]["attributes"]}
        assert ("end" if "finalize_block_events" in vector["where"] else "tx") == where
        assert list(attrs) == list(want)
        got_payload, want_payload = json.loads(attrs.pop("payload_json")), json.loads(want.pop("payload_json"))
        assert attrs == want
        assert list(got_payload) == list(want_payload)
        if want_payload["event_type"] == "support_request_purged":  # the vector's purge time is illustrative
            want_payload["timestamp"] = purge_time
        assert got_payload == want_payload
    assert ticket_id not in chain.state["tickets"]


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(STATUS_NUMBERS, 2)))
def test_status_table(tmp_path: Path, devnet_accounts: dict[str, TestAccount], source: str, target: str) -> None:
    chain = InProcessChain(tmp_path / "app", genesis_app_state(devnet_accounts.values(),
                                                               agents=[devnet_accounts["agent"]]))
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    ticket_id = create(chain, customer)
    path = {"assigned": ["assigned"], "in_progress": ["in_progress"], "waiting_customer": ["waiting_customer"],
            "waiting_support": ["waiting_support"], "resolved": ["assigned", "resolved"], "closed": ["closed"],
            "archived": ["closed", "archived"]}.get(source, [])
    for step in path:
        assert update(chain, agent, ticket_id, status=STATUS_NUMBERS[step]).code == 0
    assert status_of(chain, ticket_id) == source
    result = update(chain, agent, ticket_id, status=STATUS_NUMBERS[target])
    if target in ALLOWED_TRANSITIONS[source]:
        assert result.code == 0, result.log
        assert status_of(chain, ticket_id) == target
        kinds = [p["event_type"] for p in payloads(result.events)]
        assert kinds == ["support_request_updated", "support_request_status_changed"]
    else:
        assert (result.code, result.codespace) == (5, "support"), result.log
        assert status_of(chain, ticket_id) == source


def test_same_status_is_a_no_op(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    ticket_id = create(chain, devnet_accounts["customer"])
    result = update(chain, devnet_accounts["agent"], ticket_id, status=STATUS_NUMBERS["open"], priority="low")
    assert result.code == 0
    assert [p["event_type"] for p in payloads(result.events)] == ["support_request_updated"]


def test_authorisation(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer, outsider, agent = (devnet_accounts[n] for n in ("customer", "outsider", "agent"))
    ticket_id = create(chain, customer)
    for fields in ({"priority": "low"}, {"status": STATUS_NUMBERS["closed"]}, {"assigned_agent": agent.address}):
        result = update(chain, customer, ticket_id, **fields)
        assert (result.code, result.codespace) == (4, "support")
        assert result.log.startswith("failed to execute message; message index: 0: ")
    assert update(chain, customer, ticket_id, category="billing").code == 0
    assert update(chain, outsider, ticket_id, category="other").code == 4
    assert reply(chain, outsider, ticket_id).code == 4
    assert update(chain, agent, ticket_id, assigned_agent=outsider.address).code == 2
    assert update(chain, agent, ticket_id, priority="extreme").code == 2
    archive = tx_pb2.MsgArchiveSupportRequest(sender=customer.address, ticket_id=ticket_id)
    assert chain.deliver(customer, [archive]).code == 5  # open -> archived is not in the table
    bad_id = tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=f"{customer.address}/ticket/1")
    assert chain.deliver(agent, [bad_id]).code == 2


def test_counters_and_ids(tmp_path: Path, devnet_accounts: dict[str, TestAccount]) -> None:
    customer, customer2, agent = (devnet_accounts[n] for n in ("customer", "customer2", "agent"))
    chain = InProcessChain(tmp_path / "app", genesis_app_state(devnet_accounts.values(), agents=[agent],
                                                               max_responses=3))
    first, second, third = create(chain, customer), create(chain, customer2), create(chain, customer)
    assert (first, second, third) == (f"{customer.address}/support/1", f"{customer2.address}/support/1",
                                      f"{customer.address}/support/2")
    numbers = [chain.state["tickets"][t]["ticket_number"] for t in (first, second, third)]
    assert numbers == ["SUP-000001", "SUP-000002", "SUP-000003"]
    ids = [payloads(reply(chain, agent, first).events)[0]["response_id"] for _ in range(3)]
    assert ids == [f"{first}/response/{n}" for n in (1, 2, 3)]
    too_many = reply(chain, agent, first)
    assert (too_many.code, too_many.codespace) == (6, "support")  # max_responses is 3 in this chain


def test_automatic_status_on_replies(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    ticket_id = create(chain, customer)
    result = reply(chain, customer, ticket_id, payload=1)
    events = payloads(result.events)
    assert [e["event_type"] for e in events] == ["support_response_added", "support_request_status_changed"]
    assert events[0]["sequence"] == events[1]["sequence"] and events[0]["is_agent"] is False
    assert events[1]["event_id"] == f"{ticket_id}/{events[0]['sequence']}/status"
    assert status_of(chain, ticket_id) == "waiting_support"
    kept = reply(chain, agent, ticket_id)  # waiting_support -> waiting_customer is not in the table
    assert [e["event_type"] for e in payloads(kept.events)] == ["support_response_added"]
    assert status_of(chain, ticket_id) == "waiting_support"
    update(chain, agent, ticket_id, status=STATUS_NUMBERS["in_progress"])
    reply(chain, agent, ticket_id)
    assert status_of(chain, ticket_id) == "waiting_customer"
    update(chain, agent, ticket_id, status=STATUS_NUMBERS["resolved"])
    reply(chain, agent, ticket_id)
    assert status_of(chain, ticket_id) == "in_progress"
    update(chain, agent, ticket_id, status=STATUS_NUMBERS["closed"])
    assert reply(chain, agent, ticket_id).code == 11


def test_reply_must_reach_every_recipient(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer = devnet_accounts["customer"]
    ticket_id = create(chain, customer, payload=1)  # three recipients
    result = reply(chain, customer, ticket_id, payload=0)  # support key only
    assert (result.code, result.codespace) == (7, "support")
    assert "77a39ab687a3a42ff70f97347c93a35d115256cf" in result.log
    tampered = vector_payload(2)
    tampered.envelope.ciphertext = b"x" + tampered.envelope.ciphertext[1:]
    msg = tx_pb2.MsgAddSupportResponse(sender=customer.address, ticket_id=ticket_id, payload=tampered)
    assert chain.deliver(customer, [msg]).code == 10


def test_external_refs(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer, agent, sidecar = (devnet_accounts[n] for n in ("customer", "agent", "sidecar"))
    ticket_id = create(chain, customer)

    def ref(cls: Any, who: TestAccount, system: str = "jira", **extra: str) -> Any:
        return chain.deliver(who, [cls(sender=who.address, resource_id=ticket_id, resource_type="support_request",
                                       external_system=system, **extra)])

    assert ref(tx_pb2.MsgRegisterExternalTicket, customer, external_ticket_id="X-1").code == 4
    assert ref(tx_pb2.MsgRegisterExternalTicket, sidecar, system="zendesk", external_ticket_id="X-1").code == 2
    linked = ref(tx_pb2.MsgRegisterExternalTicket, sidecar, external_ticket_id="X-1")
    assert linked.code == 0 and payloads(linked.events)[0]["linked_by"] == sidecar.address
    assert ref(tx_pb2.MsgRegisterExternalTicket, sidecar, external_ticket_id="X-2").code == 8
    assert ref(tx_pb2.MsgRegisterExternalTicket, sidecar, system="waldur", external_ticket_id="w-9").code == 0
    assert ref(tx_pb2.MsgUpdateExternalTicket, agent, external_ticket_id="X-3").code == 4
    moved = ref(tx_pb2.MsgUpdateExternalTicket, sidecar, external_ticket_id="X-3")
    assert payloads(moved.events)[0]["external_ticket_id"] == "X-3"
    assert ref(tx_pb2.MsgRemoveExternalTicket, agent).code == 4
    removed = ref(tx_pb2.MsgRemoveExternalTicket, sidecar)
    assert removed.code == 0 and payloads(removed.events) == []
    assert ref(tx_pb2.MsgRemoveExternalTicket, sidecar).code == 9
    assert list(chain.state["refs"][ticket_id]) == ["waldur"]
    assert ref(tx_pb2.MsgRegisterExternalTicket, sidecar, external_ticket_id="X-4").code == 0


def test_retention_archives_resolved_and_uses_block_time(chain: InProcessChain,
                                                         devnet_accounts: dict[str, TestAccount]) -> None:
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    ticket_id = create(chain, customer)
    update(chain, agent, ticket_id, status=STATUS_NUMBERS["assigned"])
    update(chain, agent, ticket_id, status=STATUS_NUMBERS["resolved"])
    assert chain.block([], advance=90 * DAY - 10).events == []
    block = chain.block([], advance=10)
    attrs = support_events(block.events)
    assert [a["mode"] for a in attrs] == ["EndBlock"]
    assert json.loads(attrs[0]["payload_json"])["reason"] == "retention: resolved for 90 days"
    assert status_of(chain, ticket_id) == "archived"


def test_a_failing_msg_undoes_every_msg_of_its_tx(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]
                                                   ) -> None:
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    ticket_id = create(chain, customer)
    reply(chain, agent, ticket_id)
    before = {k: json.dumps(v, sort_keys=True) for k, v in chain.state.items() if k != "accounts"}
    sequence = chain.state["accounts"][agent.address]["sequence"]
    msgs = [
        tx_pb2.MsgAddSupportResponse(sender=agent.address, ticket_id=ticket_id, payload=vector_payload(2)),
        tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id, priority="low"),
        tx_pb2.MsgRegisterExternalTicket(sender=agent.address, resource_id=ticket_id, resource_type="support_request",
                                         external_system="jira", external_ticket_id="SD-1"),
        tx_pb2.MsgCreateSupportRequest(sender=agent.address, category="technical", priority="high",
                                       payload=vector_payload(1)),
        tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id, priority="extreme"),  # fails
    ]
    result = chain.deliver(agent, msgs)
    assert result.code == 2 and "message index: 4" in result.log
    after = {k: json.dumps(v, sort_keys=True) for k, v in chain.state.items() if k != "accounts"}
    assert after == before  # responses, ticket, refs, counters: as if the msgs never ran
    assert chain.state["accounts"][agent.address]["sequence"] == sequence + 1  # the ante handler's effects stay
    assert create(chain, customer) != ticket_id
