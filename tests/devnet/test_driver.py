"""The devnet tx driver: tx building without a node, then the ticket life cycle on the real node."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
from cosmpy.crypto.address import Address
from cosmpy.crypto.keypairs import PublicKey
from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2, query_pb2
from cosmpy.protos.cosmos.crypto.secp256k1 import keys_pb2
from cosmpy.protos.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from google.protobuf.any_pb2 import Any as ProtoAny
from virtengine.support.v1 import tx_pb2, types_pb2

from devnet import envelope
from devnet.driver import ChainDriver, DevAccount, TxFailed, TxResult, build_tx, status_value, tx_hash

CHAIN_ID = "virtengine-devnet-1"
HALF_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2


def sample_msgs(account: DevAccount) -> list[Any]:
    return [
        tx_pb2.MsgArchiveSupportRequest(sender=account.address, ticket_id=f"{account.address}/support/1", reason="x"),
        tx_pb2.MsgUpdateSupportRequest(
            sender=account.address,
            ticket_id=f"{account.address}/support/2",
            status=3,
            public_metadata={"b": "2", "a": "1"},
        ),
    ]


def signed(account: DevAccount, **overrides: Any) -> bytes:
    args: dict[str, Any] = dict(chain_id=CHAIN_ID, account_number=7, sequence=3, gas_limit=200_000, fee_amount=5000)
    args.update(overrides)
    return build_tx(account.key, sample_msgs(account), **args)


def test_accounts_are_deterministic_virtengine_addresses() -> None:
    a, b = DevAccount.from_name("customer"), DevAccount.from_name("customer")
    assert a.address == b.address and a.box_public == b.box_public
    assert a.address.startswith("virtengine1")
    assert a.address != DevAccount.from_name("agent").address
    # bech32 of ripemd160(sha256(compressed pubkey)), as the contract fixes it
    assert str(Address(a.key.public_key, prefix="virtengine")) == a.address


def test_signed_tx_decodes_and_verifies() -> None:
    account = DevAccount.from_name("customer")
    raw = sdk_tx.TxRaw.FromString(signed(account))
    body = sdk_tx.TxBody.FromString(raw.body_bytes)
    auth = sdk_tx.AuthInfo.FromString(raw.auth_info_bytes)
    assert [m.type_url for m in body.messages] == [
        "/virtengine.support.v1.MsgArchiveSupportRequest",
        "/virtengine.support.v1.MsgUpdateSupportRequest",
    ]
    update = tx_pb2.MsgUpdateSupportRequest.FromString(body.messages[1].value)
    assert update.status == types_pb2.SUPPORT_STATUS_IN_PROGRESS and dict(update.public_metadata) == {
        "a": "1",
        "b": "2",
    }
    (info,) = auth.signer_infos
    assert info.sequence == 3
    assert info.mode_info.single.mode == SignMode.SIGN_MODE_DIRECT
    assert info.public_key.type_url == "/cosmos.crypto.secp256k1.PubKey"
    pub = keys_pb2.PubKey.FromString(info.public_key.value).key
    assert pub == account.key.public_key.public_key_bytes and len(pub) == 33
    assert auth.fee.gas_limit == 200_000
    assert [(c.denom, c.amount) for c in auth.fee.amount] == [("uve", "5000")]
    (sig,) = raw.signatures
    assert len(sig) == 64 and int.from_bytes(sig[32:], "big") <= HALF_ORDER
    doc = sdk_tx.SignDoc(
        body_bytes=raw.body_bytes, auth_info_bytes=raw.auth_info_bytes, chain_id=CHAIN_ID, account_number=7
    ).SerializeToString()
    assert PublicKey(pub).verify(doc, sig)
    wrong_chain = sdk_tx.SignDoc(
        body_bytes=raw.body_bytes, auth_info_bytes=raw.auth_info_bytes, chain_id="other", account_number=7
    ).SerializeToString()
    assert not PublicKey(pub).verify(wrong_chain, sig)


def test_resigning_gives_identical_bytes() -> None:
    account = DevAccount.from_name("customer")
    first = signed(account)
    assert signed(account) == first
    assert tx_hash(first) == hashlib.sha256(first).hexdigest().upper()
    assert signed(account, sequence=4) != first
    assert signed(account, account_number=8) != first


def test_status_names() -> None:
    assert status_value("in_progress") == 3
    assert status_value("archived") == 8
    assert status_value(6) == 6
    with pytest.raises(ValueError):
        status_value("reopened")


def test_support_events_are_read_from_tx_events() -> None:
    created = {"event_type": "support_request_created", "ticket_id": "t/support/1"}
    result = TxResult(
        hash="AB",
        code=0,
        events=[
            {"type": "message", "attributes": [{"key": "action", "value": "x"}]},
            {"type": "support_event", "attributes": [{"key": "payload_json", "value": json.dumps(created)}]},
        ],
    )
    assert result.support_events() == [created]


class FakeNode:
    """A scripted CometBFT RPC answering the few calls the driver makes, to test it without a node."""

    def __init__(self, account: DevAccount, sequence: int = 5) -> None:
        self.account = account
        self.sequence = sequence
        self.broadcasts: list[bytes] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(
                200, json={"jsonrpc": "2.0", "id": -1, "error": {"code": -32603, "data": "not found"}}
            )
        call = json.loads(request.content)
        method, params = call["method"], call["params"]
        if method == "status":
            result: Any = {"node_info": {"network": CHAIN_ID}}
        elif method == "abci_query":
            assert params["path"] == "/cosmos.auth.v1beta1.Query/Account"
            assert (
                query_pb2.QueryAccountRequest.FromString(bytes.fromhex(params["data"])).address == self.account.address
            )
            packed = ProtoAny()
            packed.Pack(auth_pb2.BaseAccount(address=self.account.address, account_number=9, sequence=self.sequence))
            value = base64.b64encode(query_pb2.QueryAccountResponse(account=packed).SerializeToString()).decode()
            result = {"response": {"code": 0, "value": value}}
        else:
            assert method == "broadcast_tx_sync"
            raw = base64.b64decode(params["tx"])
            seq = sdk_tx.AuthInfo.FromString(sdk_tx.TxRaw.FromString(raw).auth_info_bytes).signer_infos[0].sequence
            if seq != self.sequence:
                log = f"account sequence mismatch, expected {self.sequence}, got {seq}: incorrect account sequence"
                result = {"code": 32, "log": log, "codespace": "sdk", "hash": tx_hash(raw)}
            else:
                self.broadcasts.append(raw)
                self.sequence += 1
                result = {"code": 0, "log": "", "codespace": "", "hash": tx_hash(raw)}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": call["id"], "result": result})


def fake_driver(node: FakeNode) -> ChainDriver:
    client = httpx.Client(base_url="http://node.invalid", transport=httpx.MockTransport(node.handle))
    return ChainDriver("http://node.invalid", node.account, client=client)


def test_local_sequence_allows_many_txs_per_block() -> None:
    account = DevAccount.from_name("customer")
    node = FakeNode(account, sequence=5)
    with fake_driver(node) as driver:
        msg = tx_pb2.MsgArchiveSupportRequest(sender=account.address, ticket_id=f"{account.address}/support/1")
        for _ in range(3):
            assert driver.broadcast([msg]).ok
    seqs = [
        sdk_tx.AuthInfo.FromString(sdk_tx.TxRaw.FromString(r).auth_info_bytes).signer_infos[0].sequence
        for r in node.broadcasts
    ]
    assert seqs == [5, 6, 7]
    doc = sdk_tx.SignDoc(
        body_bytes=sdk_tx.TxRaw.FromString(node.broadcasts[0]).body_bytes,
        auth_info_bytes=sdk_tx.TxRaw.FromString(node.broadcasts[0]).auth_info_bytes,
        chain_id=CHAIN_ID,
        account_number=9,
    ).SerializeToString()
    assert account.key.public_key.verify(doc, sdk_tx.TxRaw.FromString(node.broadcasts[0]).signatures[0])


def test_sequence_mismatch_is_corrected_once() -> None:
    account = DevAccount.from_name("customer")
    node = FakeNode(account, sequence=5)
    with fake_driver(node) as driver:
        msg = tx_pb2.MsgArchiveSupportRequest(sender=account.address, ticket_id=f"{account.address}/support/1")
        assert driver.broadcast([msg]).ok
        node.sequence = 11  # someone else used the key meanwhile
        assert driver.broadcast([msg]).ok  # rejected at 6 ("expected 11"), re-signed at 11
        assert driver.broadcast([msg]).ok  # and the local sequence carries on from there
        node.sequence = 20
        assert driver.broadcast([msg]).ok
    seqs = [
        sdk_tx.AuthInfo.FromString(sdk_tx.TxRaw.FromString(r).auth_info_bytes).signer_infos[0].sequence
        for r in node.broadcasts
    ]
    assert seqs == [5, 11, 12, 20]


def test_fee_follows_gas_price() -> None:
    account = DevAccount.from_name("customer")
    node = FakeNode(account)
    with fake_driver(node) as driver:
        raw = sdk_tx.TxRaw.FromString(driver.sign([sample_msgs(account)[0]], gas_limit=100_001))
    fee = sdk_tx.AuthInfo.FromString(raw.auth_info_bytes).fee
    assert fee.gas_limit == 100_001
    assert [(c.denom, c.amount) for c in fee.amount] == [("uve", "2501")]  # ceil(100001 * 0.025)


def test_payloads_are_encrypted_to_the_recipients() -> None:
    customer, agent = DevAccount.from_name("customer"), DevAccount.from_name("agent")
    with fake_driver(FakeNode(customer)) as driver:
        msg = driver.create_msg("technical", "high", {"subject": "s", "description": "d"}, [agent.box_public])
    payload = envelope.payload_from_proto(msg.payload)
    assert payload.envelope is not None
    assert payload.envelope_hash == payload.envelope.digest() and payload.payload_size == len(
        payload.envelope.ciphertext
    )
    assert envelope.open_envelope(payload.envelope, agent.box_key) == {"subject": "s", "description": "d"}
    assert msg.sender == customer.address and msg.category == "technical" and msg.priority == "high"


# --- against the real node (fixtures from devnet.fixtures) -------------------------------------


def block_support_events(driver: ChainDriver, height: int) -> list[dict[str, Any]]:
    """payload_json of every support_event in a block's successful tx results, in chain order."""
    results = driver.call("block_results", height=str(height))
    out = []
    for tx in results.get("txs_results") or []:
        if int(tx.get("code", 0)) == 0:
            out.extend(TxResult.from_rpc("", tx).support_events())
    return out


@pytest.fixture
def drivers(devnet_node: Any) -> Any:
    """One driver per named genesis account (same names, same keys as devnet.fixtures)."""
    made = {
        name: ChainDriver(devnet_node.rpc_url, DevAccount.from_name(name)) for name in ("customer", "agent", "sidecar")
    }
    yield made
    for driver in made.values():
        driver.close()


@pytest.mark.node
def test_ticket_life_cycle_on_the_node(drivers: dict[str, ChainDriver]) -> None:
    customer, agent, sidecar = drivers["customer"], drivers["agent"], drivers["sidecar"]
    readers = [customer.account.box_public, agent.account.box_public]
    plaintext = {"subject": "Lease 42 unreachable", "description": "502 since block 1200"}
    ticket = customer.create_ticket("technical", "high", plaintext, readers)
    assert ticket == f"{customer.address}/support/1"
    assert customer.chain_id == "virtengine-devnet-1"

    reply = agent.reply(ticket, "We restarted the ingress.", readers)
    types = [(e["event_type"], e.get("new_status")) for e in reply.support_events()]
    assert types == [("support_response_added", None), ("support_request_status_changed", "waiting_customer")]
    assert reply.support_events()[0]["response_id"] == f"{ticket}/response/1"

    updated = agent.update(ticket, status="in_progress", priority="urgent", assigned_agent=agent.address)
    upd, changed = updated.support_events()
    assert (upd["event_type"], upd["status"], upd["priority"], upd["assigned_agent"]) == (
        "support_request_updated",
        "in_progress",
        "urgent",
        agent.address,
    )
    assert (changed["old_status"], changed["new_status"], changed["updated_by"]) == (
        "waiting_customer",
        "in_progress",
        agent.address,
    )
    assert changed["sequence"] == upd["sequence"] and changed["event_id"] == upd["event_id"] + "/status"

    linked = sidecar.register_external(ticket, "jira", "SUP-1", "https://jira.example/browse/SUP-1")
    assert linked.support_events()[0]["event_type"] == "support_external_ticket_linked"
    agent.update(ticket, status="resolved")
    agent.update(ticket, status="closed")
    archived = customer.archive(ticket, "done")
    (gone,) = archived.support_events()
    assert (gone["event_type"], gone["archived_by"], gone["reason"]) == (
        "support_request_archived",
        customer.address,
        "done",
    )

    # block_results carries the same events (plain-string attributes on v0.38)
    seen = []
    for height in sorted({r.height for r in (reply, updated, linked, archived)}):
        seen += [e for e in block_support_events(customer, height) if e["ticket_id"] == ticket]
    assert [e["event_type"] for e in seen] == [
        "support_response_added",
        "support_request_status_changed",
        "support_request_updated",
        "support_request_status_changed",
        "support_external_ticket_linked",
        "support_request_archived",
    ]
    raw = customer.call("block_results", height=str(archived.height))["txs_results"][0]["events"]
    (event,) = [e for e in raw if e["type"] == "support_event"]
    attrs = {a["key"]: a["value"] for a in event["attributes"]}
    assert {"event_type", "event_id", "block_height", "sequence", "payload_json"} <= set(attrs)
    assert attrs["block_height"] == str(archived.height) and attrs["event_id"] == gone["event_id"]

    again = customer.send([tx_pb2.MsgArchiveSupportRequest(sender=customer.address, ticket_id=ticket)])
    assert not again.ok and again.codespace == "support" and again.height > 0 and again.support_events() == []


@pytest.mark.node
def test_created_payload_decrypts_for_each_recipient(drivers: dict[str, ChainDriver]) -> None:
    customer, agent = drivers["customer"], drivers["agent"]
    readers = [customer.account.box_public, agent.account.box_public]
    result = customer.must_send([customer.create_msg("billing", "low", {"subject": "s", "description": "d"}, readers)])
    (created,) = result.support_events()
    assert created["recipients"] == [envelope.key_id(r) for r in readers]
    tx = sdk_tx.TxRaw.FromString(
        base64.b64decode(customer.call("tx", hash=base64.b64encode(bytes.fromhex(result.hash)).decode())["tx"])
    )
    msg = tx_pb2.MsgCreateSupportRequest.FromString(sdk_tx.TxBody.FromString(tx.body_bytes).messages[0].value)
    payload = envelope.payload_from_proto(msg.payload)
    assert payload.envelope is not None and created["payload_hash"] == payload.payload_hash()
    for driver in (customer, agent):
        assert envelope.open_envelope(payload.envelope, driver.account.box_key) == {"subject": "s", "description": "d"}


@pytest.mark.node
def test_failures_are_reported_with_codes(drivers: dict[str, ChainDriver]) -> None:
    customer = drivers["customer"]
    ticket = customer.create_ticket(
        "other", "normal", {"subject": "s", "description": "d"}, [customer.account.box_public]
    )
    with pytest.raises(TxFailed) as failed:
        customer.update(ticket, status="closed")  # status is for agents only
    assert failed.value.result.code == 4 and failed.value.result.height > 0
    # the failed tx still used a sequence: the next tx goes through
    assert customer.update(ticket, category="billing").ok


@pytest.mark.node
def test_stale_local_sequence_is_corrected(devnet_node: Any, drivers: dict[str, ChainDriver]) -> None:
    customer = drivers["customer"]
    customer.create_ticket("other", "normal", {"subject": "a", "description": "b"}, [customer.account.box_public])
    with ChainDriver(devnet_node.rpc_url, customer.account) as twin:  # same key, its own sequence
        twin.create_ticket("other", "normal", {"subject": "c", "description": "d"}, [customer.account.box_public])
    third = customer.create_ticket(
        "other", "normal", {"subject": "e", "description": "f"}, [customer.account.box_public]
    )
    assert third.endswith("/support/3")


@pytest.mark.node
def test_bulk_create_pipelines_many_tickets(drivers: dict[str, ChainDriver]) -> None:
    customer, agent = drivers["customer"], drivers["agent"]
    ids = customer.create_tickets(1000, [customer.account.box_public, agent.account.box_public])
    assert ids == [f"{customer.address}/support/{n}" for n in range(1, 1001)]


@pytest.mark.node
def test_auto_gas_uses_simulation(devnet_node: Any) -> None:
    with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer2"), auto_gas=True) as driver:
        msg = driver.create_msg("account", "normal", {"subject": "s", "description": "d"}, [driver.account.box_public])
        estimate = driver.estimate_gas([msg])
        result = driver.must_send([msg])
    assert result.gas_used <= result.gas_wanted and result.gas_wanted == estimate
