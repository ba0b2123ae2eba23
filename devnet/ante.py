"""Transaction decoding and the SDK's ante checks (SIGN_MODE_DIRECT only), with the SDK's error
codes, codespace `sdk` and log texts, so the sidecar's signer meets the same answers as on a real
VirtEngine node. Decorator order follows the SDK's default ante handler."""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import ecdsa
from cosmpy.crypto.hashfuncs import ripemd160
from cosmpy.protos.cosmos.bank.v1beta1 import tx_pb2 as bank_tx
from cosmpy.protos.cosmos.crypto.secp256k1 import keys_pb2
from cosmpy.protos.cosmos.tx.signing.v1beta1.signing_pb2 import SignMode
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from ecdsa.ellipticcurve import PointJacobi
from ecdsa.util import sigdecode_string
from google.protobuf.message import DecodeError, Message
from virtengine.support.v1 import tx_pb2

from devnet.abci_events import Event
from devnet.app_state import address_from_bytes, is_address

Mode = Literal["check", "recheck", "deliver", "simulate"]

TX_SIZE_COST_PER_BYTE = 10
SIG_VERIFY_COST_SECP256K1 = 1000
MAX_MEMO_CHARACTERS = 256
SECP256K1_PUBKEY_URL = "/cosmos.crypto.secp256k1.PubKey"
FEE_COLLECTOR = address_from_bytes(hashlib.sha256(b"fee_collector").digest()[:20])
_CURVE_ORDER = ecdsa.SECP256k1.order

BANK_SEND = "/cosmos.bank.v1beta1.MsgSend"  # to fund test accounts; its signer is from_address
MSG_TYPES: dict[str, Any] = {
    **{
        f"/virtengine.support.v1.{name}": getattr(tx_pb2, name)
        for name in (
            "MsgCreateSupportRequest", "MsgUpdateSupportRequest", "MsgAddSupportResponse",
            "MsgArchiveSupportRequest", "MsgRegisterExternalTicket", "MsgUpdateExternalTicket",
            "MsgRemoveExternalTicket",
        )
    },
    BANK_SEND: bank_tx.MsgSend,
}


def msg_signer(msg: Message) -> str:
    """The Msg's signer field: `sender` for x/support, `from_address` for x/bank (cosmos.msg.v1.signer)."""
    return str(msg.from_address if isinstance(msg, bank_tx.MsgSend) else msg.sender)  # type: ignore[attr-defined]


class TxError(Exception):
    """A tx rejection as the SDK reports it: code, codespace and log text."""

    def __init__(self, code: int, log: str, codespace: str = "sdk") -> None:
        super().__init__(log)
        self.code = code
        self.log = log
        self.codespace = codespace


@dataclass
class DecodedTx:
    raw_bytes: bytes
    raw: sdk_tx.TxRaw
    body: sdk_tx.TxBody
    auth_info: sdk_tx.AuthInfo
    msgs: list[tuple[str, Message]]
    signers: list[str]


class GasMeter:
    """Deterministic gas: `limit=None` is the SDK's infinite meter (simulate)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.consumed = 0

    def consume(self, amount: int, where: str) -> None:
        self.consumed += amount
        if self.limit is not None and self.consumed > self.limit:
            raise TxError(11, f"out of gas in location: {where}; gasWanted: {self.limit}, "
                              f"gasUsed: {self.consumed}: out of gas")


def decode_tx(tx_bytes: bytes) -> DecodedTx:
    """TxRaw -> body, auth info and typed msgs; anything unreadable is code 2 (tx parse error)."""
    try:
        raw = sdk_tx.TxRaw.FromString(tx_bytes)
        body = sdk_tx.TxBody.FromString(raw.body_bytes)
        auth_info = sdk_tx.AuthInfo.FromString(raw.auth_info_bytes)
    except DecodeError as exc:
        raise TxError(2, f"{exc}: tx parse error") from exc
    if not body.messages:
        raise TxError(18, "must contain at least one message: invalid request")
    msgs: list[tuple[str, Message]] = []
    signers: list[str] = []
    for any_msg in body.messages:
        cls = MSG_TYPES.get(any_msg.type_url)
        if cls is None:
            raise TxError(2, f"unable to resolve type URL {any_msg.type_url}: tx parse error")
        try:
            msg = cls.FromString(any_msg.value)
        except DecodeError as exc:
            raise TxError(2, f"{exc}: tx parse error") from exc
        sender = msg_signer(msg)
        if not is_address(sender):
            raise TxError(7, f"invalid sender address ({sender!r}): invalid address")
        msgs.append((any_msg.type_url, msg))
        if sender not in signers:
            signers.append(sender)
    return DecodedTx(tx_bytes, raw, body, auth_info, msgs, signers)


def coins_str(amount: int, denom: str) -> str:
    return f"{amount}{denom}"


def run_ante(state: dict[str, Any], tx: DecodedTx, *, chain_id: str, height: int, mode: Mode,
             meter: GasMeter) -> list[Event]:
    """Apply the ante checks to `state` (fee deducted, pubkeys set, sequences bumped); raise TxError."""
    simulate = mode == "simulate"
    params = state["params"]
    sigs = list(tx.raw.signatures)
    infos = list(tx.auth_info.signer_infos)
    if not sigs and not simulate:
        raise TxError(15, "no signatures supplied")
    if len(sigs) != len(tx.signers) and not simulate:
        raise TxError(4, f"wrong number of signers; expected {len(tx.signers)}, got {len(sigs)}: unauthorized")
    if len(infos) != len(tx.signers):
        raise TxError(4, f"invalid number of signer;  expected: {len(tx.signers)}, got {len(infos)}: unauthorized")
    if tx.body.unordered:
        raise TxError(18, "unordered transactions are not enabled: invalid request")
    if tx.body.timeout_height and height > tx.body.timeout_height:
        raise TxError(30, f"block height: {height}, timeout height: {tx.body.timeout_height}: tx timeout height")
    if len(tx.body.memo) > MAX_MEMO_CHARACTERS:
        raise TxError(12, f"maximum number of characters is {MAX_MEMO_CHARACTERS} but received "
                          f"{len(tx.body.memo)} characters: memo too large")
    meter.consume(TX_SIZE_COST_PER_BYTE * len(tx.raw_bytes), "txSize")
    events = _deduct_fee(state, tx, params, mode)
    accounts = state["accounts"]
    for index, (signer, info) in enumerate(zip(tx.signers, infos, strict=True)):
        account = accounts.get(signer)
        if account is None:
            raise TxError(9, f"account {signer} does not exist: unknown address")
        if info.HasField("public_key"):
            pub = _secp256k1_pubkey(info.public_key)
            if address_from_bytes(ripemd160(hashlib.sha256(pub).digest())) != signer:
                raise TxError(8, f"pubKey does not match signer address {signer} with signer index: {index}: "
                                 "invalid pubkey")
            if account["pub_key"] is None:
                account["pub_key"] = base64.b64encode(pub).decode()
        elif account["pub_key"] is None and not simulate:
            raise TxError(8, f"pubkey on account is not set: {signer}: invalid pubkey")
        events.append(Event("tx", [("acc_seq", f"{signer}/{info.sequence}")]))
        if index < len(sigs):
            events.append(Event("tx", [("signature", base64.b64encode(sigs[index]).decode())]))
    for _ in infos:
        meter.consume(SIG_VERIFY_COST_SECP256K1, "ante verify: secp256k1")
    for index, (signer, info) in enumerate(zip(tx.signers, infos, strict=True)):
        account = accounts[signer]
        if info.sequence != account["sequence"]:
            raise TxError(32, f"account sequence mismatch, expected {account['sequence']}, got {info.sequence}: "
                              "incorrect account sequence")
        if not simulate:
            if info.mode_info.single.mode != SignMode.SIGN_MODE_DIRECT:
                raise TxError(4, "unsupported sign mode; only SIGN_MODE_DIRECT is accepted: unauthorized")
            sign_doc = sdk_tx.SignDoc(body_bytes=tx.raw.body_bytes, auth_info_bytes=tx.raw.auth_info_bytes,
                                      chain_id=chain_id, account_number=account["account_number"])
            pub = base64.b64decode(account["pub_key"])
            if not verify_signature(pub, sign_doc.SerializeToString(), sigs[index]):
                raise TxError(4, f"signature verification failed; please verify account number "
                                 f"({account['account_number']}) and chain-id ({chain_id}): unauthorized")
    for signer in tx.signers:
        accounts[signer]["sequence"] += 1
    return events


def _secp256k1_pubkey(any_key: Any) -> bytes:
    if any_key.type_url != SECP256K1_PUBKEY_URL:
        raise TxError(8, f"unsupported public key type {any_key.type_url}: invalid pubkey")
    key = keys_pb2.PubKey.FromString(any_key.value).key
    if len(key) != 33:
        raise TxError(8, f"invalid secp256k1 public key length {len(key)}: invalid pubkey")
    return bytes(key)


def verify_signature(pub: bytes, message: bytes, signature: bytes) -> bool:
    """64-byte r||s over sha256(message); like the SDK, a high-S signature is invalid."""
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < _CURVE_ORDER and 0 < s <= _CURVE_ORDER // 2):
        return False
    return _verified(pub, hashlib.sha256(message).digest(), signature)


@functools.lru_cache(maxsize=4096)
def _verified(pub: bytes, digest: bytes, signature: bytes) -> bool:
    """Pure-Python ECDSA is slow and each tx is verified by CheckTx, FinalizeBlock and every recheck:
    a verdict is a pure function of its inputs, so it is computed once."""
    try:
        return bool(_verifying_key(pub).verify_digest(signature, digest, sigdecode=sigdecode_string))
    except (ecdsa.BadSignatureError, ecdsa.MalformedPointError, ValueError):
        return False


@functools.lru_cache(maxsize=256)
def _verifying_key(pub: bytes) -> ecdsa.VerifyingKey:
    """Decoded once per public key (point decompression is costly): a devnet has a handful of signers.
    Its point gets a table of precomputed multiples, as VerifyingKey.precompute() builds (that method
    needs the point's order, which from_string leaves unset): each CheckTx of a new tx then verifies in
    about half the time, with the same arithmetic and the same verdicts."""
    key = ecdsa.VerifyingKey.from_string(pub, curve=ecdsa.SECP256k1, hashfunc=hashlib.sha256)
    point = key.pubkey.point
    key.pubkey.point = PointJacobi(ecdsa.SECP256k1.curve, point.x(), point.y(), 1, _CURVE_ORDER, generator=True)
    return key


def _deduct_fee(state: dict[str, Any], tx: DecodedTx, params: dict[str, Any], mode: Mode) -> list[Event]:
    fee = tx.auth_info.fee
    denom = params["fee_denom"]
    if mode != "simulate" and fee.gas_limit == 0:
        raise TxError(41, "must provide positive gas: invalid gas limit")
    amounts: dict[str, int] = {}
    for coin in fee.amount:
        amounts[coin.denom] = amounts.get(coin.denom, 0) + int(coin.amount or "0")
    if mode in ("check", "recheck"):
        required = math.ceil(Decimal(params["min_gas_price"]) * fee.gas_limit)
        if required > 0 and amounts.get(denom, 0) < required:
            got = ",".join(coins_str(v, k) for k, v in sorted(amounts.items())) or "0" + denom
            raise TxError(13, f"insufficient fees; got: {got} required: {coins_str(required, denom)}: insufficient fee")
    payer = tx.signers[0]
    account = state["accounts"].get(payer)
    if account is None:
        raise TxError(9, f"fee payer address: {payer} does not exist: unknown address")
    fee_text = ",".join(coins_str(v, k) for k, v in sorted(amounts.items()) if v)
    events: list[Event] = []
    if fee_text:
        for fee_denom, value in sorted(amounts.items()):
            have = account["balance"] if fee_denom == denom else 0
            if have < value:
                raise TxError(5, f"spendable balance {coins_str(have, fee_denom)} is smaller than "
                                 f"{coins_str(value, fee_denom)}: insufficient funds")
        account["balance"] -= amounts.get(denom, 0)
        events += [
            Event("coin_spent", [("spender", payer), ("amount", fee_text)]),
            Event("coin_received", [("receiver", FEE_COLLECTOR), ("amount", fee_text)]),
            Event("transfer", [("recipient", FEE_COLLECTOR), ("sender", payer), ("amount", fee_text)]),
            Event("message", [("sender", payer)]),
        ]
    events.append(Event("tx", [("fee", fee_text), ("fee_payer", payer)]))
    return events
