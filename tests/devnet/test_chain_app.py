"""The chain app behind a REAL CometBFT v0.38.25 node: signed txs, the SDK's rejections, the status
table, and support_events over the websocket and in block_results, shaped exactly as the vectors."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from typing import Any

import pytest
from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from virtengine.support.v1 import tx_pb2, types_pb2
from websockets.sync.client import connect

from devnet.cometbft import DevnetNode
from devnet.keys import TestAccount
from devnet.support_events import ALLOWED_TRANSITIONS
from devnet.support_module import STATUS_NUMBERS
from devnet.waiting import wait_until
from tests.devnet.chain_helpers import (
    Wallet,
    abci_query,
    account_info,
    broadcast,
    support_events,
    ticket,
    vector_events,
    vector_payload,
    wait_tx,
)
from tests.devnet.test_chain_ante import high_s, with_signature

pytestmark = pytest.mark.node


def create_msg(who: TestAccount, payload: int = 0, **extra: Any) -> tx_pb2.MsgCreateSupportRequest:
    return tx_pb2.MsgCreateSupportRequest(sender=who.address, category="technical", priority="high",
                                          payload=vector_payload(payload), **extra)


def test_cosmpy_signed_tx_is_accepted(devnet_node: DevnetNode, devnet_accounts: dict[str, TestAccount]) -> None:
    customer = Wallet(devnet_node, devnet_accounts["customer"])
    assert (customer.number, customer.sequence) == (0, 0)
    committed = customer.send([create_msg(customer.account)])
    assert committed["tx_result"]["code"] == 0, committed["tx_result"]["log"]
    ticket_id = f"{customer.address}/support/1"
    stored = ticket(devnet_node, ticket_id)
    assert stored is not None and stored.ticket_number == "SUP-000001"
    assert stored.status == types_pb2.SUPPORT_STATUS_OPEN
    assert account_info(devnet_node, customer.address) == (0, 1)
    simulate = abci_query(devnet_node, "/cosmos.tx.v1beta1.Service/Simulate",
                          service_pb2.SimulateRequest(tx_bytes=customer.sign([create_msg(customer.account)])))
    gas_used = service_pb2.SimulateResponse.FromString(base64.b64decode(simulate["value"])).gas_info.gas_used
    assert 0 < gas_used <= int(committed["tx_result"]["gas_wanted"])


def test_rejections_carry_the_sdk_codes(devnet_node: DevnetNode, devnet_accounts: dict[str, TestAccount]) -> None:
    wallet = Wallet(devnet_node, devnet_accounts["customer"])
    msgs = [create_msg(wallet.account)]
    good = wallet.sign(msgs)
    signature = bytes(sdk_tx.TxRaw.FromString(good).signatures[0])
    cases = {
        "wrong chain id": (wallet.sign(msgs, chain_id="virtengine-mainnet-1"), 4, "signature verification failed"),
        "wrong sequence": (wallet.sign(msgs, sequence=5), 32,
                           "account sequence mismatch, expected 0, got 5: incorrect account sequence"),
        "bad signature": (with_signature(good, bytes(64)), 4, "signature verification failed"),
        "high-S signature": (with_signature(good, high_s(signature)), 4, "signature verification failed"),
        "fee too low": (wallet.sign(msgs, fee="1uve"), 13, "insufficient fees"),
    }
    for name, (tx, code, log) in cases.items():
        answer = broadcast(devnet_node, tx)
        assert (answer["code"], answer["codespace"]) == (code, "sdk"), name
        assert answer["log"].startswith(log), (name, answer["log"])
    assert broadcast(devnet_node, good)["code"] == 0


def test_next_sequence_passes_checktx_before_the_first_commits(devnet_node: DevnetNode,
                                                                devnet_accounts: dict[str, TestAccount]) -> None:
    wallet = Wallet(devnet_node, devnet_accounts["customer"])
    txs = [wallet.submit([create_msg(wallet.account)]) for _ in range(3)]
    results = [wait_tx(devnet_node, tx)["tx_result"] for tx in txs]
    assert [r["code"] for r in results] == [0, 0, 0]
    assert account_info(devnet_node, wallet.address)[1] == 3


def test_every_transition_in_the_table_and_no_other(devnet_node: DevnetNode,
                                                     devnet_accounts: dict[str, TestAccount]) -> None:
    customer, agent = Wallet(devnet_node, devnet_accounts["customer"]), Wallet(devnet_node, devnet_accounts["agent"])
    pairs = list(itertools.permutations(STATUS_NUMBERS, 2))
    created = customer.send([create_msg(customer.account) for _ in pairs], gas=4_000_000)
    assert created["tx_result"]["code"] == 0, created["tx_result"]["log"]
    ids = [json.loads(e["payload_json"])["ticket_id"] for e in support_events(created["tx_result"]["events"])]
    paths = {"assigned": ["assigned"], "in_progress": ["in_progress"], "waiting_customer": ["waiting_customer"],
             "waiting_support": ["waiting_support"], "resolved": ["assigned", "resolved"], "closed": ["closed"],
             "archived": ["closed", "archived"]}

    def move(step: int) -> None:
        msgs = [tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id,
                                               status=STATUS_NUMBERS[paths[source][step]])
                for ticket_id, (source, _) in zip(ids, pairs, strict=True) if len(paths.get(source, [])) > step]
        assert agent.send(msgs, gas=4_000_000)["tx_result"]["code"] == 0

    move(0)
    move(1)
    txs = [agent.submit([tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id,
                                                        status=STATUS_NUMBERS[target])])
           for ticket_id, (_, target) in zip(ids, pairs, strict=True)]
    for tx, ticket_id, (source, target) in zip(txs, ids, pairs, strict=True):
        result = wait_tx(devnet_node, tx)["tx_result"]
        stored = ticket(devnet_node, ticket_id)
        assert stored is not None
        if target in ALLOWED_TRANSITIONS[source]:
            assert result["code"] == 0, (source, target, result["log"])
            assert stored.status == STATUS_NUMBERS[target]
        else:
            assert (result["code"], result["codespace"]) == (5, "support"), (source, target, result)
            assert stored.status == STATUS_NUMBERS[source]


def _shape(attrs: dict[str, str]) -> tuple[list[str], list[str]]:
    return list(attrs), list(json.loads(attrs["payload_json"]))


def test_events_over_websocket_and_in_block_results(devnet_node_factory: Any,
                                                    devnet_accounts: dict[str, TestAccount]) -> None:
    node: DevnetNode = devnet_node_factory(archive_after=1, purge_after=1)
    customer, agent, sidecar = (Wallet(node, devnet_accounts[n]) for n in ("customer", "agent", "sidecar"))
    received: list[dict[str, Any]] = []
    with connect(node.ws_url, open_timeout=10) as ws:
        for sub_id, query in ((1, "tm.event='Tx' AND support_event.event_id EXISTS"),
                              (2, "tm.event='NewBlockEvents' AND support_event.event_id EXISTS")):
            ws.send(json.dumps({"jsonrpc": "2.0", "id": sub_id, "method": "subscribe", "params": {"query": query}}))
            assert json.loads(ws.recv(timeout=10)) == {"jsonrpc": "2.0", "id": sub_id, "result": {}}
        ticket_id = f"{customer.address}/support/1"
        related = types_pb2.RelatedEntity(type="lease", id=f"{customer.address}/1200/1/1")
        txs = [customer.send([create_msg(customer.account, payload=1, related_entity=related)])]
        txs.append(agent.send([tx_pb2.MsgUpdateSupportRequest(
            sender=agent.address, ticket_id=ticket_id, priority="urgent", assigned_agent=agent.address,
            status=STATUS_NUMBERS["assigned"])]))
        txs.append(agent.send([tx_pb2.MsgAddSupportResponse(sender=agent.address, ticket_id=ticket_id,
                                                            payload=vector_payload(2))]))
        txs.append(sidecar.send([tx_pb2.MsgRegisterExternalTicket(
            sender=sidecar.address, resource_id=ticket_id, resource_type="support_request", external_system="jira",
            external_ticket_id="VESUPPORT-7", external_url="https://example.atlassian.net/browse/VESUPPORT-7")]))
        txs.append(agent.send([tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id,
                                                              status=STATUS_NUMBERS["closed"])]))

        def collect() -> bool:
            with contextlib.suppress(TimeoutError):
                received.append(json.loads(ws.recv(timeout=0.2)))
            kinds = [m["result"]["data"]["type"] for m in received if m.get("result", {}).get("data")]
            return kinds.count("tendermint/event/Tx") == 5 and kinds.count("tendermint/event/NewBlockEvents") == 2

        wait_until(collect, timeout=30, what="5 Tx and 2 NewBlockEvents notifications")
    in_blocks: list[dict[str, str]] = []
    for tx in txs:
        result = node.rpc("block_results", height=tx["height"])
        in_blocks += support_events(result["txs_results"][int(tx["index"])]["events"])
    end_heights = [int(m["result"]["data"]["value"]["height"]) for m in received
                   if m["result"]["data"]["type"] == "tendermint/event/NewBlockEvents"]
    for height in end_heights:
        block = node.rpc("block_results", height=height)
        events = block["finalize_block_events"]
        modes = [dict((a["key"], a["value"]) for a in e["attributes"])["mode"] for e in events]
        assert modes and set(modes) == {"EndBlock"}
        in_blocks += support_events(events)
    over_ws = [support_events(m["result"]["data"]["value"]["TxResult"]["result"]["events"]) for m in received
               if m["result"]["data"]["type"] == "tendermint/event/Tx"]
    assert list(itertools.chain(*over_ws)) == in_blocks[:8]
    expected = [{a["key"]: a["value"] for a in v["event"]["attributes"]} for v in vector_events()]
    assert [_shape(a) for a in in_blocks] == [_shape(v) for v in expected]
    assert [a["event_type"] for a in in_blocks] == [v["event_type"] for v in expected]
    assert [int(a["sequence"]) for a in in_blocks] == [1, 2, 2, 3, 3, 4, 5, 5, 6, 7]
    for raw in (m for m in received if m["result"]["data"]["type"] == "tendermint/event/Tx"):
        assert raw["result"]["events"]["support_event.event_id"]
        assert raw["result"]["events"]["tx.acc_seq"]
    assert ticket(node, ticket_id) is None  # purged
