"""Small tx/RPC helpers for the devnet chain tests: cosmpy-signed SIGN_MODE_DIRECT txs, broadcast,
inclusion by polling `/tx` with a deadline, abci_query, and the shared envelope vectors."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth_query
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from google.protobuf import json_format
from google.protobuf.message import Message
from virtengine.support.v1 import query_pb2, types_pb2

from devnet.cometbft import DevnetNode
from devnet.keys import TestAccount
from devnet.waiting import wait_until
from tests.vectors import VECTORS as VECTORS  # re-exported: the chain tests read envelopes.json through it
from tests.vectors import load

CHAIN_ID = "virtengine-devnet-1"
DEFAULT_GAS = 400_000


def vector_payload(index: int) -> types_pb2.EncryptedSupportPayload:
    """Case `index` of envelopes.json: 0 one recipient, 1 three recipients, 2 agent reply (three)."""
    case = load("envelopes.json")["cases"][index]
    return json_format.ParseDict(case["payload"], types_pb2.EncryptedSupportPayload())


def vector_events() -> list[dict[str, Any]]:
    return list(load("support_events.json")["events"])


def sign_tx(account: TestAccount, msgs: list[Message], *, sequence: int, account_number: int,
            chain_id: str = CHAIN_ID, gas: int = DEFAULT_GAS, fee: str | None = None, memo: str = "",
            timeout_height: int | None = None) -> bytes:
    """A TxRaw signed by cosmpy (deterministic RFC6979, low-S)."""
    tx = Transaction()
    for msg in msgs:
        tx.add_message(msg)
    fee_amount = fee if fee is not None else f"{gas * 25 // 1000}uve"
    tx.seal(SigningCfg.direct(account.key.public_key, sequence), fee=TxFee(amount=fee_amount or None, gas_limit=gas),
            memo=memo, timeout_height=timeout_height)
    tx.sign(account.key, chain_id, account_number, deterministic=True)
    tx.complete()
    raw = sdk_tx.TxRaw(body_bytes=tx.tx.body.SerializeToString(), auth_info_bytes=tx.tx.auth_info.SerializeToString(),
                       signatures=list(tx.tx.signatures))
    return raw.SerializeToString()


def tx_hash(tx_bytes: bytes) -> str:
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def abci_query(node: DevnetNode, path: str, request: Message) -> dict[str, Any]:
    return dict(node.rpc("abci_query", path=path, data=request.SerializeToString().hex())["response"])


def account_info(node: DevnetNode, address: str) -> tuple[int, int]:
    """(account_number, sequence) through /cosmos.auth.v1beta1.Query/Account."""
    response = abci_query(node, "/cosmos.auth.v1beta1.Query/Account", auth_query.QueryAccountRequest(address=address))
    assert response.get("code", 0) == 0, response
    answer = auth_query.QueryAccountResponse.FromString(base64.b64decode(response["value"]))
    base = auth_pb2.BaseAccount()
    answer.account.Unpack(base)
    return base.account_number, base.sequence


def broadcast(node: DevnetNode, tx_bytes: bytes) -> dict[str, Any]:
    """broadcast_tx_sync: the CheckTx answer (code 0 means it entered the mempool)."""
    return dict(node.rpc("broadcast_tx_sync", tx=base64.b64encode(tx_bytes).decode()))


def wait_tx(node: DevnetNode, tx_bytes: bytes, timeout: float = 20.0) -> dict[str, Any]:
    """The committed tx (`height`, `tx_result`), polled with a deadline."""
    digest = base64.b64encode(hashlib.sha256(tx_bytes).digest()).decode()
    return dict(wait_until(lambda: node.rpc("tx", hash=digest, timeout=2), timeout=timeout,
                           what=f"tx {tx_hash(tx_bytes)} to be committed"))


class Wallet:
    """One account's signer that tracks its own sequence, so several txs can share a block."""

    def __init__(self, node: DevnetNode, account: TestAccount) -> None:
        self.node = node
        self.account = account
        self.number, self.sequence = account_info(node, account.address)

    @property
    def address(self) -> str:
        return self.account.address

    def sign(self, msgs: list[Message], **options: Any) -> bytes:
        options.setdefault("sequence", self.sequence)
        options.setdefault("account_number", self.number)
        return sign_tx(self.account, msgs, **options)

    def submit(self, msgs: list[Message], **options: Any) -> bytes:
        """Sign with the next sequence and broadcast; CheckTx must accept it."""
        tx = self.sign(msgs, **options)
        answer = broadcast(self.node, tx)
        assert answer["code"] == 0, answer
        self.sequence += 1
        return tx

    def send(self, msgs: list[Message], **options: Any) -> dict[str, Any]:
        """Submit and wait for the block result (`tx_result` may carry a DeliverTx failure)."""
        return wait_tx(self.node, self.submit(msgs, **options))


def ticket(node: DevnetNode, ticket_id: str) -> types_pb2.SupportRequest | None:
    response = abci_query(node, "/virtengine.support.v1.Query/SupportRequest",
                          query_pb2.QuerySupportRequestRequest(ticket_id=ticket_id))
    if response.get("code", 0) == 22:
        return None
    assert response.get("code", 0) == 0, response
    return query_pb2.QuerySupportRequestResponse.FromString(base64.b64decode(response["value"])).request


def support_events(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """support_event attributes as ordered dicts (CometBFT v0.38 JSON: plain string keys/values)."""
    return [{a["key"]: a["value"] for a in ev["attributes"]} for ev in events if ev["type"] == "support_event"]
