"""Tx verification, gas, queries, determinism and persistence of the chain app, in process."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import ecdsa
import pytest
from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth_query
from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from cosmpy.protos.tendermint.abci import types_pb2 as abci
from virtengine.support.v1 import query_pb2, tx_pb2

from devnet.ante import verify_signature
from devnet.keys import TestAccount, genesis_app_state
from tests.devnet.chain_helpers import vector_payload
from tests.devnet.inproc import InProcessChain


@pytest.fixture
def app_state(devnet_accounts: dict[str, TestAccount]) -> dict[str, Any]:
    state = genesis_app_state(devnet_accounts.values(), agents=[devnet_accounts["agent"]])
    state["accounts"][-1]["balance"] = 5  # "outsider" cannot pay fees
    return state


@pytest.fixture
def chain(tmp_path: Path, app_state: dict[str, Any]) -> InProcessChain:
    return InProcessChain(tmp_path / "app", app_state)


def create_msg(who: TestAccount) -> tx_pb2.MsgCreateSupportRequest:
    return tx_pb2.MsgCreateSupportRequest(sender=who.address, category="billing", payload=vector_payload(0))


def with_signature(tx: bytes, signature: bytes) -> bytes:
    raw = sdk_tx.TxRaw.FromString(tx)
    del raw.signatures[:]
    raw.signatures.append(signature)
    return raw.SerializeToString()


def high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (ecdsa.SECP256k1.order - s).to_bytes(32, "big")


def test_valid_tx_passes_check_and_deliver(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer = devnet_accounts["customer"]
    tx = chain.sign(customer, [create_msg(customer)], bump=False)
    assert chain.check(tx).code == 0
    result = chain.block([tx]).tx_results[0]
    assert result.code == 0 and result.gas_used > 0 and result.gas_wanted == 400_000
    types = [e.type for e in result.events]
    assert types == ["coin_spent", "coin_received", "transfer", "message", "tx", "tx", "tx", "message",
                     "support_event"]
    action = {a.key: a.value for a in result.events[7].attributes}
    assert action == {"action": "/virtengine.support.v1.MsgCreateSupportRequest", "sender": customer.address,
                      "module": "support", "msg_index": "0"}
    assert {a.key: a.value for a in result.events[5].attributes} == {"acc_seq": f"{customer.address}/0"}


@pytest.mark.parametrize("case", ["chain_id", "account_number", "flipped", "high_s", "short"])
def test_bad_signatures_are_unauthorized(chain: InProcessChain, devnet_accounts: dict[str, TestAccount],
                                         case: str) -> None:
    customer = devnet_accounts["customer"]
    msgs = [create_msg(customer)]
    good = chain.sign(customer, msgs, bump=False)
    signature = bytes(sdk_tx.TxRaw.FromString(good).signatures[0])
    tx = {
        "chain_id": lambda: chain.sign(customer, msgs, bump=False, chain_id="virtengine-1"),
        "account_number": lambda: chain.sign(customer, msgs, bump=False, account_number=7),
        "flipped": lambda: with_signature(good, signature[:10] + bytes([signature[10] ^ 1]) + signature[11:]),
        "high_s": lambda: with_signature(good, high_s(signature)),
        "short": lambda: with_signature(good, signature[:63]),
    }[case]()
    answer = chain.check(tx)
    assert (answer.code, answer.codespace) == (4, "sdk")
    assert answer.log.startswith("signature verification failed; please verify account number (")
    assert chain.block([tx]).tx_results[0].code == 4


def test_high_s_is_rejected_even_though_mathematically_valid(devnet_accounts: dict[str, TestAccount]) -> None:
    key = devnet_accounts["customer"].key
    message = b"sign me"
    signature = key.sign(message, deterministic=True, canonicalise=True)
    pub = key.public_key.public_key_bytes
    assert verify_signature(pub, message, signature)
    assert key.public_key.verify(message, high_s(signature))  # ecdsa alone accepts it...
    assert not verify_signature(pub, message, high_s(signature))  # ...the SDK does not


def test_sequence_mismatch_names_expected_and_got(chain: InProcessChain,
                                                  devnet_accounts: dict[str, TestAccount]) -> None:
    customer = devnet_accounts["customer"]
    answer = chain.check(chain.sign(customer, [create_msg(customer)], sequence=3, bump=False))
    assert (answer.code, answer.codespace) == (32, "sdk")
    assert answer.log == "account sequence mismatch, expected 0, got 3: incorrect account sequence"


def test_check_state_is_separate_and_reset_on_commit(chain: InProcessChain,
                                                     devnet_accounts: dict[str, TestAccount]) -> None:
    customer = devnet_accounts["customer"]
    first, second = (chain.sign(customer, [create_msg(customer)]) for _ in range(2))
    assert chain.check(first).code == 0
    assert chain.check(second).code == 0  # sequence 1 passes before sequence 0 is committed
    assert chain.check(first).code == 19  # the same bytes again
    assert chain.state["accounts"][customer.address]["sequence"] == 0
    chain.block([first])
    assert chain.check(second, recheck=True).code == 0  # mempool recheck after commit
    assert [r.code for r in chain.block([second]).tx_results] == [0]


def test_fees_funds_gas_and_timeout(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer, outsider = devnet_accounts["customer"], devnet_accounts["outsider"]
    msgs = [create_msg(customer)]
    low_fee = chain.check(chain.sign(customer, msgs, fee="100uve", bump=False))
    assert (low_fee.code, low_fee.log) == (13, "insufficient fees; got: 100uve required: 10000uve: insufficient fee")
    poor = chain.check(chain.sign(outsider, [create_msg(outsider)], bump=False))
    assert poor.code == 5 and "insufficient funds" in poor.log
    assert chain.check(chain.sign(customer, msgs, gas=1000, fee="25uve", bump=False)).code == 11
    chain.block([])
    expired = chain.check(chain.sign(customer, msgs, timeout_height=chain.height, bump=False))
    assert (expired.code, expired.codespace) == (30, "sdk")
    assert chain.check(b"\x0a\x03abc\xff").code == 2
    assert chain.check(chain.sign(customer, msgs, memo="m" * 300, bump=False)).code == 12
    assert chain.check(chain.sign(customer, msgs, memo="a memo is fine", bump=False)).code == 0


def test_out_of_gas_in_msgs_keeps_fee_and_sequence(chain: InProcessChain,
                                                   devnet_accounts: dict[str, TestAccount]) -> None:
    customer = devnet_accounts["customer"]
    before = chain.state["accounts"][customer.address]["balance"]
    result = chain.deliver(customer, [create_msg(customer)], gas=20_000, fee="500uve")
    assert (result.code, result.codespace) == (11, "sdk") and "out of gas" in result.log
    account = chain.state["accounts"][customer.address]
    assert account["sequence"] == 1 and account["balance"] == before - 500
    assert "support_event" not in [e.type for e in result.events]
    assert chain.state["tickets"] == {}


def test_simulate_matches_delivered_gas(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer = devnet_accounts["customer"]
    tx = chain.sign(customer, [create_msg(customer)], bump=False)
    chain.block([])
    answer = chain.query("/cosmos.tx.v1beta1.Service/Simulate", service_pb2.SimulateRequest(tx_bytes=tx))
    assert answer.code == 0, answer.log
    simulated = service_pb2.SimulateResponse.FromString(answer.value)
    assert simulated.gas_info.gas_used == chain.block([tx]).tx_results[0].gas_used
    assert chain.state["tickets"]  # simulate changed nothing, the delivered tx did


def test_account_query(chain: InProcessChain, devnet_accounts: dict[str, TestAccount]) -> None:
    customer, stranger = devnet_accounts["customer"], TestAccount.from_name("stranger")
    missing = chain.query("/cosmos.tx.v1beta1.Service/Simulate", service_pb2.SimulateRequest())
    assert missing.code != 0
    chain.deliver(customer, [create_msg(customer)])
    answer = chain.query("/cosmos.auth.v1beta1.Query/Account", auth_query.QueryAccountRequest(address=customer.address))
    account = auth_pb2.BaseAccount()
    auth_query.QueryAccountResponse.FromString(answer.value).account.Unpack(account)
    assert (account.address, account.account_number, account.sequence) == (customer.address, 0, 1)
    assert account.pub_key.type_url == "/cosmos.crypto.secp256k1.PubKey"
    unknown = chain.query("/cosmos.auth.v1beta1.Query/Account",
                          auth_query.QueryAccountRequest(address=stranger.address))
    assert (unknown.code, unknown.codespace) == (22, "sdk") and "not found" in unknown.log
    assert chain.app.query(abci.RequestQuery(path="/nope")).code == 6


def test_same_txs_give_same_app_hash_and_state_survives_restart(
        tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]) -> None:
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    hashes = []
    for name in ("a", "b"):
        chain = InProcessChain(tmp_path / name, app_state)
        chain.deliver(customer, [create_msg(customer)])
        ticket_id = f"{customer.address}/support/1"
        chain.deliver(agent, [tx_pb2.MsgAddSupportResponse(sender=agent.address, ticket_id=ticket_id,
                                                           payload=vector_payload(0))])
        hashes.append([chain.app.info(abci.RequestInfo()).last_block_app_hash, chain.height])
    assert hashes[0] == hashes[1]
    restarted = InProcessChain(tmp_path / "b", app_state, init=False)
    info = restarted.app.info(abci.RequestInfo())
    assert (info.last_block_app_hash, info.last_block_height) == tuple(hashes[1])
    answer = restarted.query("/virtengine.support.v1.Query/SupportResponses",
                             query_pb2.QuerySupportResponsesRequest(ticket_id=f"{customer.address}/support/1"))
    responses = query_pb2.QuerySupportResponsesResponse.FromString(answer.value).responses
    assert [r.id for r in responses] == [f"{customer.address}/support/1/response/1"]
    envelope_hash = base64.b64encode(responses[0].payload.envelope_hash).decode()
    assert envelope_hash == "jYwx33Bil0DoKUjFjf3e0cHpSD5/W+5LfDQ30nDjbKc="
