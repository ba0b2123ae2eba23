"""Building, simulating and signing Cosmos txs (SIGN_MODE_DIRECT) with cosmpy, through CometBFT's RPC only.

Every byte is serialised deterministically and signatures are RFC 6979, so the same content at the
same sequence always yields the same TxRaw and hash: a re-sign can never fork into two txs.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import DecodeError, Message

import sidecar
from sidecar.chain.rpc import CometRpc
from sidecar.errors import ChainRpcError

if TYPE_CHECKING:
    from sidecar.chain.keys import SigningKey

# cosmpy and the Cosmos SDK protobufs are imported by the functions that use them: the sync engines import
# this module for encode_msg, and a sidecar without a signing key must not pay their memory.

ACCOUNT_PATH = "/cosmos.auth.v1beta1.Query/Account"
SIMULATE_PATH = "/cosmos.tx.v1beta1.Service/Simulate"
TYPE_URL_PREFIX = "/virtengine.support.v1."
MEMO = f"servicedesk-sidecar/{sidecar.__version__}"
_MSG_INDEX = re.compile(r"message index: (\d+)")


@dataclass(frozen=True)
class FeePolicy:
    """chain.* gas and fee settings."""

    fee_denom: str
    gas_price: Decimal
    gas_multiplier: Decimal
    gas_limit_max: int
    gas_fallback: int

    def fee_for(self, gas: int) -> int:
        return math.ceil(Decimal(gas) * self.gas_price)

    def limit_from_simulation(self, gas_used: int) -> int:
        return min(self.gas_limit_max, math.ceil(Decimal(gas_used) * self.gas_multiplier))

    @property
    def fallback(self) -> int:
        return min(self.gas_limit_max, self.gas_fallback)


@dataclass(frozen=True)
class Account:
    number: int
    sequence: int
    height: int = 0  # the committed height the node answered for (0: not said)


@dataclass(frozen=True)
class SignedTx:
    tx_bytes: bytes
    tx_hash: str  # uppercase hex sha256, as CometBFT names txs
    sequence: int
    timeout_height: int
    gas_limit: int


@dataclass(frozen=True)
class Simulation:
    """gas_used when the node could simulate; else the chain's code/log and the failing message index."""

    gas_used: int | None
    code: int = 0
    codespace: str = ""
    log: str = ""

    @property
    def failed_index(self) -> int | None:
        match = _MSG_INDEX.search(self.log)
        return int(match.group(1)) if match else None


def tx_hash(tx_bytes: bytes) -> str:
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def pack_msg(msg_type: str, msg_bytes: bytes) -> ProtoAny:
    """Stored Msg bytes (already deterministic) as Any /virtengine.support.v1.<Name>, never re-encoded."""
    return ProtoAny(type_url=TYPE_URL_PREFIX + msg_type, value=msg_bytes)


def encode_msg(msg: Message) -> tuple[str, bytes]:
    """(msg_type, bytes) of one of our Msgs, as queue_intent_txn stores them."""
    return msg.DESCRIPTOR.name, msg.SerializeToString(deterministic=True)


def build_tx(
    key: SigningKey,
    msgs: Sequence[tuple[str, bytes]],
    *,
    chain_id: str,
    account: Account,
    gas_limit: int,
    fee: FeePolicy,
    timeout_height: int,
    memo: str = MEMO,
) -> SignedTx:
    """Seal with cosmpy, then sign the exact deterministic body and auth-info bytes that go on the wire."""
    from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
    from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx

    tx = Transaction()
    amount = fee.fee_for(gas_limit)
    tx_fee = TxFee(amount=f"{amount}{fee.fee_denom}" if amount else None, gas_limit=gas_limit)
    tx.seal(SigningCfg.direct(key.public_key, account.sequence), fee=tx_fee, memo=memo, timeout_height=timeout_height)
    sealed = tx.complete().tx  # no message added through cosmpy: ours are packed from their stored bytes
    sealed.body.messages.extend(pack_msg(t, b) for t, b in msgs)
    body_bytes = sealed.body.SerializeToString(deterministic=True)
    auth_info_bytes = sealed.auth_info.SerializeToString(deterministic=True)
    doc = sdk_tx.SignDoc(
        body_bytes=body_bytes, auth_info_bytes=auth_info_bytes, chain_id=chain_id, account_number=account.number
    )
    signature = key.sign(doc.SerializeToString(deterministic=True))
    raw = sdk_tx.TxRaw(body_bytes=body_bytes, auth_info_bytes=auth_info_bytes, signatures=[signature])
    tx_bytes = raw.SerializeToString(deterministic=True)
    return SignedTx(tx_bytes, tx_hash(tx_bytes), account.sequence, timeout_height, gas_limit)


async def query_account(rpc: CometRpc, address: str) -> Account:
    """Account number and sequence from committed state (abci_query, protobuf in and out), with the height
    the node answered for."""
    from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
    from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth_query

    request = auth_query.QueryAccountRequest(address=address).SerializeToString()
    response = await rpc.abci_query(ACCOUNT_PATH, request)
    if int(response.get("code", 0)) != 0:
        raise ChainRpcError(
            f"account query for {address} failed: code {response.get('code')}: {response.get('log', '')}",
            retryable=True,
        )
    try:
        answer = auth_query.QueryAccountResponse.FromString(base64.b64decode(response.get("value") or ""))
        base = auth_pb2.BaseAccount()
        if not answer.account.Unpack(base):
            raise ChainRpcError(f"account {address} is a {answer.account.type_url}, not a BaseAccount", retryable=False)
    except DecodeError as exc:
        raise ChainRpcError(f"account query for {address} answered undecodable bytes", retryable=True) from exc
    return Account(int(base.account_number), int(base.sequence), int(response.get("height") or 0))


async def simulate(rpc: CometRpc, tx_bytes: bytes) -> Simulation:
    """Simulate a signed tx; a refusal is returned (with the chain's log), an unreachable node raises."""
    from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2

    request = service_pb2.SimulateRequest(tx_bytes=tx_bytes).SerializeToString()
    response = await rpc.abci_query(SIMULATE_PATH, request)
    code = int(response.get("code", 0))
    if code:
        return Simulation(None, code, str(response.get("codespace", "")), str(response.get("log", "")))
    try:
        answer = service_pb2.SimulateResponse.FromString(base64.b64decode(response.get("value") or ""))
    except DecodeError:
        return Simulation(None, 1, "", "simulation answered undecodable bytes")
    return Simulation(int(answer.gas_info.gas_used))


BALANCE_PATH = "/cosmos.bank.v1beta1.Query/Balance"


async def query_balance(rpc: CometRpc, address: str, denom: str) -> str:
    """The account's balance of one denom as the chain writes coins ("1000uve"); read-only, for operators."""
    from cosmpy.protos.cosmos.bank.v1beta1 import query_pb2 as bank_query

    request = bank_query.QueryBalanceRequest(address=address, denom=denom).SerializeToString()
    try:
        response = await rpc.abci_query(BALANCE_PATH, request)
        if int(response.get("code", 0)) != 0:
            raise ChainRpcError(f"balance query for {address} failed: code {response.get('code')}", retryable=True)
        coin = bank_query.QueryBalanceResponse.FromString(base64.b64decode(response.get("value") or "")).balance
    except (DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ChainRpcError(f"balance query for {address} answered unusable data", retryable=True) from exc
    return f"{coin.amount or '0'}{coin.denom or denom}"
