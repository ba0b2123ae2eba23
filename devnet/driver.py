"""A customer/agent client that drives the devnet chain through CometBFT's RPC, as a wallet would.

It signs SIGN_MODE_DIRECT txs with cosmpy keys and keeps its own sequence so that many txs can sit
in one block; inclusion is awaited by polling `/tx` with a deadline, never by sleeping. Shares no
code with sidecar/: it is the independent second implementation the sidecar is tested against.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import httpx
import nacl.utils
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.crypto.address import Address
from cosmpy.crypto.keypairs import PrivateKey
from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2, query_pb2
from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import Message
from nacl.public import Box, PublicKey
from nacl.public import PrivateKey as BoxKey
from virtengine.support.v1 import tx_pb2, types_pb2

from devnet import envelope
from devnet.waiting import wait_until

PREFIX = "virtengine"
ACCOUNT_QUERY = "/cosmos.auth.v1beta1.Query/Account"
SIMULATE_PATH = "/cosmos.tx.v1beta1.Service/Simulate"
_EXPECTED_SEQ = re.compile(r"expected (\d+), got (\d+)")


class ChainDriverError(Exception):
    """The node could not be reached, answered a JSON-RPC error, or a tx did not land in time."""


class TxFailed(ChainDriverError):
    """A tx was rejected (CheckTx) or failed in its block; `result` says how."""

    def __init__(self, result: TxResult) -> None:
        super().__init__(f"tx {result.hash} failed: code {result.code} ({result.codespace}): {result.log}")
        self.result = result


@dataclass(frozen=True)
class DevAccount:
    """A chain account (secp256k1) paired with its payload key (X25519), derived from a name."""

    key: PrivateKey
    box_key: BoxKey

    @classmethod
    def from_name(cls, name: str) -> DevAccount:
        """Deterministic test keys, so genesis files and tests can name accounts instead of storing keys."""
        return cls(
            key=PrivateKey(hashlib.sha256(f"devnet-account:{name}".encode()).digest()),
            box_key=BoxKey(hashlib.sha256(f"devnet-box:{name}".encode()).digest()),
        )

    @property
    def address(self) -> str:
        return str(Address(self.key.public_key, prefix=PREFIX))

    @property
    def box_public(self) -> bytes:
        return bytes(self.box_key.public_key)


@dataclass(frozen=True)
class TxResult:
    """Outcome of one tx: CheckTx failures have height 0; `events` are CometBFT v0.38 JSON events."""

    hash: str
    code: int
    log: str = ""
    codespace: str = ""
    height: int = 0
    gas_wanted: int = 0
    gas_used: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_rpc(cls, hash_hex: str, result: dict[str, Any], height: int = 0) -> TxResult:
        """From a broadcast_tx_sync result or a /tx `tx_result` (numbers may arrive as strings)."""
        return cls(hash=hash_hex, code=int(result.get("code", 0)), log=str(result.get("log", "")),
                   codespace=str(result.get("codespace", "")), height=height,
                   gas_wanted=int(result.get("gas_wanted", 0)), gas_used=int(result.get("gas_used", 0)),
                   events=list(result.get("events") or []))

    @property
    def ok(self) -> bool:
        return self.code == 0

    def support_events(self) -> list[dict[str, Any]]:
        """The `payload_json` of every support_event, in emission order."""
        out = []
        for event in self.events:
            if event.get("type") == "support_event":
                attrs = {a["key"]: a.get("value", "") for a in event.get("attributes", [])}
                out.append(json.loads(attrs["payload_json"]))
        return out


def pack(msg: Message) -> ProtoAny:
    """Our Msgs travel as Any with type URL /virtengine.support.v1.<Name>; map fields sorted for stable bytes."""
    wrapped = ProtoAny()
    wrapped.Pack(msg, type_url_prefix="/", deterministic=True)
    return wrapped


def build_tx(key: PrivateKey, msgs: Sequence[Message], *, chain_id: str, account_number: int, sequence: int,
             gas_limit: int, fee_amount: int, fee_denom: str = "uve", memo: str = "") -> bytes:
    """Signed TxRaw bytes; the signature is RFC 6979 deterministic and low-S, so re-signing is stable."""
    tx = Transaction()
    for msg in msgs:
        tx.add_message(msg)
    fee = TxFee(amount=f"{fee_amount}{fee_denom}" if fee_amount else None, gas_limit=gas_limit)
    sealed = tx.seal(SigningCfg.direct(key.public_key, sequence), fee=fee, memo=memo).complete().tx
    del sealed.body.messages[:]
    sealed.body.messages.extend(pack(m) for m in msgs)
    # Sign the exact bytes that go on the wire rather than re-serialising the body later.
    body_bytes = sealed.body.SerializeToString(deterministic=True)
    auth_info_bytes = sealed.auth_info.SerializeToString(deterministic=True)
    sign_doc = sdk_tx.SignDoc(
        body_bytes=body_bytes, auth_info_bytes=auth_info_bytes, chain_id=chain_id, account_number=account_number
    )
    signature = key.sign(sign_doc.SerializeToString(), deterministic=True, canonicalise=True)
    raw = sdk_tx.TxRaw(body_bytes=body_bytes, auth_info_bytes=auth_info_bytes, signatures=[signature])
    return bytes(raw.SerializeToString())


def tx_hash(tx_bytes: bytes) -> str:
    """CometBFT's tx hash: uppercase hex sha256 of the raw tx."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


def status_value(status: str | int) -> int:
    """`in_progress` or 3 -> 3 (SupportStatus); unknown names raise ValueError."""
    if isinstance(status, int):
        return status
    return int(types_pb2.SupportStatus.Value("SUPPORT_STATUS_" + status.upper()))


class ChainDriver:
    """Sends x/support txs for one account; not thread-safe (one local sequence per driver)."""

    def __init__(self, rpc_url: str, account: DevAccount, *, chain_id: str | None = None, gas_price: str = "0.025",
                 fee_denom: str = "uve", gas_per_msg: int = 50_000, auto_gas: bool = False, timeout: float = 10.0,
                 client: httpx.Client | None = None) -> None:
        self.account = account
        self.address = account.address
        self.gas_price = Decimal(gas_price)
        self.fee_denom = fee_denom
        self.gas_per_msg = gas_per_msg
        self.auto_gas = auto_gas
        self.timeout = timeout
        self._client = client or httpx.Client(base_url=rpc_url.rstrip("/"), timeout=timeout)
        self._ids = itertools.count(1)
        self._chain_id = chain_id
        self._account_number: int | None = None
        self._sequence: int | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ChainDriver:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    # --- RPC -------------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC call; JSON-RPC errors (e.g. "tx already exists in cache") raise ChainDriverError."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            doc = self._client.post("/", json=body).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ChainDriverError(f"RPC {method} failed: {exc!r}") from exc
        if doc.get("error"):
            err = doc["error"]
            raise ChainDriverError(f"RPC {method}: {err.get('data') or err.get('message')}")
        return doc["result"]

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.call("status")["node_info"]["network"])
        return self._chain_id

    def abci_query(self, path: str, request: Message) -> bytes:
        """A protobuf query through CometBFT's abci_query; a non-zero code raises ChainDriverError."""
        data = request.SerializeToString().hex()
        response = self.call("abci_query", path=path, data=data, height="0", prove=False)["response"]
        if int(response.get("code", 0)) != 0:
            raise ChainDriverError(f"query {path} failed: code {response.get('code')}: {response.get('log')}")
        return base64.b64decode(response.get("value") or "")

    def query_account(self) -> tuple[int, int]:
        """(account_number, sequence) from committed state."""
        value = self.abci_query(ACCOUNT_QUERY, query_pb2.QueryAccountRequest(address=self.address))
        answer = query_pb2.QueryAccountResponse.FromString(value)
        base = auth_pb2.BaseAccount()
        if not answer.account.Unpack(base):
            raise ChainDriverError(f"account {self.address} is a {answer.account.type_url}, not a BaseAccount")
        return int(base.account_number), int(base.sequence)

    def resync(self) -> None:
        """Re-read account number and sequence from the chain (after a restart or a foreign tx)."""
        self._account_number, self._sequence = self.query_account()

    # --- txs -------------------------------------------------------------------------------

    def sign(self, msgs: Sequence[Message], *, sequence: int | None = None, gas_limit: int | None = None) -> bytes:
        """Signed TxRaw for `msgs` at the local (or given) sequence, fee at the configured gas price."""
        if self._sequence is None or self._account_number is None:
            self.resync()
        assert self._account_number is not None and self._sequence is not None
        # Without simulation: generous for the devnet's gas model (10/tx byte, 10k + 20/byte per msg).
        gas = gas_limit or 50_000 + self.gas_per_msg * len(msgs) + 40 * sum(m.ByteSize() for m in msgs)
        return build_tx(self.account.key, msgs, chain_id=self.chain_id, account_number=self._account_number,
                        sequence=self._sequence if sequence is None else sequence, gas_limit=gas,
                        fee_amount=math.ceil(self.gas_price * gas), fee_denom=self.fee_denom)

    def estimate_gas(self, msgs: Sequence[Message]) -> int:
        """Gas from the node's simulate query, with a 30% margin."""
        value = self.abci_query(SIMULATE_PATH, service_pb2.SimulateRequest(tx_bytes=self.sign(msgs, gas_limit=1)))
        used: int = service_pb2.SimulateResponse.FromString(value).gas_info.gas_used
        return math.ceil(used * 1.3) + 1000

    def broadcast(self, msgs: Sequence[Message], *, gas_limit: int | None = None) -> TxResult:
        """broadcast_tx_sync; on success the local sequence advances. Retries once on a sequence mismatch."""
        if gas_limit is None and self.auto_gas:
            gas_limit = self.estimate_gas(msgs)
        for attempt in range(2):
            raw = self.sign(msgs, gas_limit=gas_limit)
            res = self.call("broadcast_tx_sync", tx=base64.b64encode(raw).decode())
            result = TxResult.from_rpc(str(res.get("hash") or tx_hash(raw)), res)
            if result.ok:
                assert self._sequence is not None
                self._sequence += 1
                return result
            if result.code == 32 and attempt == 0 and (m := _EXPECTED_SEQ.search(result.log)):
                self._sequence = int(m.group(1))
                continue
            return result
        raise AssertionError("unreachable")

    def lookup(self, hash_hex: str) -> TxResult | None:
        """The committed result of a tx, or None while it is not in a block yet."""
        try:
            doc = self._client.get("/tx", params={"hash": "0x" + hash_hex, "prove": "false"}).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ChainDriverError(f"tx lookup failed: {exc!r}") from exc
        if doc.get("error"):
            return None  # "tx (...) not found" until it is committed and indexed
        res = doc["result"]
        return TxResult.from_rpc(str(res["hash"]), res["tx_result"], int(res["height"]))

    def wait_for(self, hashes: Sequence[str], *, timeout: float | None = None) -> list[TxResult]:
        """Results of all `hashes` once committed, in the given order; WaitTimeout past the deadline."""
        found: dict[str, TxResult] = {}

        def all_found() -> bool:
            for h in hashes:  # pipelined txs land in order: stop polling at the first one still missing
                if h not in found:
                    if (r := self.lookup(h)) is None:
                        return False
                    found[h] = r
            return True

        wait_until(all_found, timeout=timeout or self.timeout * 3, what=f"{len(hashes)} tx(s) in a block")
        results = [found[h] for h in hashes]
        if any(r.code == 32 for r in results):
            self._sequence = None  # a tx failed in its ante handler: the chain's sequence is the truth
        return results

    def send(self, msgs: Sequence[Message], *, gas_limit: int | None = None) -> TxResult:
        """Broadcast and wait for the block; returns the CheckTx result when that already failed."""
        checked = self.broadcast(msgs, gas_limit=gas_limit)
        if not checked.ok:
            return checked
        return self.wait_for([checked.hash])[0]

    def must_send(self, msgs: Sequence[Message]) -> TxResult:
        result = self.send(msgs)
        if not result.ok:
            raise TxFailed(result)
        return result

    # --- x/support ---------------------------------------------------------------------------

    def seal(self, plaintext: dict[str, Any], recipients: Sequence[bytes]) -> types_pb2.EncryptedSupportPayload:
        """Encrypt `plaintext` from this account to `recipients` (X25519 public keys)."""
        sealed = envelope.seal(plaintext, self.account.box_key, list(recipients))
        return envelope.payload_to_proto(envelope.Payload.of(sealed))

    def seal_raw(self, plaintext: bytes, recipient: bytes, **fields: Any) -> types_pb2.EncryptedSupportPayload:
        """Hostile input for tests: box any bytes (JSON or not) to one recipient, then set raw envelope
        fields (devnet.envelope.Envelope fields, e.g. `sender_pub_key=bytes(32)`). The envelope is
        re-signed unless `sender_signature` is given, so what the chain itself checks still passes."""
        nonce = nacl.utils.random(envelope.NONCE_SIZE)
        ciphertext = Box(self.account.box_key, PublicKey(recipient)).encrypt(plaintext, nonce).ciphertext
        sealed = replace(envelope.seal({}, self.account.box_key, [recipient]), nonce=nonce, ciphertext=ciphertext)
        sealed = replace(sealed, **fields)
        if "sender_signature" not in fields:
            sealed = replace(sealed, sender_signature=sealed.expected_signature())
        return envelope.payload_to_proto(envelope.Payload.of(sealed))

    def create_with_payload(
        self, payload: types_pb2.EncryptedSupportPayload, *, category: str = "technical", priority: str = "normal"
    ) -> TxResult:
        """Create a ticket from a ready payload (see `seal_raw`); the TxResult says whether the chain took it."""
        msg = tx_pb2.MsgCreateSupportRequest(sender=self.address, category=category, priority=priority,
                                             payload=payload)
        return self.send([msg])

    def create_msg(
        self, category: str, priority: str, plaintext: dict[str, Any], recipients: Sequence[bytes]
    ) -> tx_pb2.MsgCreateSupportRequest:
        return tx_pb2.MsgCreateSupportRequest(
            sender=self.address, category=category, priority=priority, payload=self.seal(plaintext, recipients)
        )

    def create_ticket(
        self, category: str, priority: str, plaintext: dict[str, Any], recipients: Sequence[bytes]
    ) -> str:
        """Create a ticket and return its id (read from its support_request_created event)."""
        return _created_ids(self.must_send([self.create_msg(category, priority, plaintext, recipients)]))[0]

    def reply(self, ticket_id: str, message: str, recipients: Sequence[bytes], *, internal: bool = False,
              attachments: Sequence[dict[str, Any]] = ()) -> TxResult:
        """A response; `internal` marks an agent's note for agents only (in the encrypted plaintext);
        `attachments` are entries listed in the plaintext (devnet.artifacts.attach_file makes them)."""
        return self.must_send([self.reply_msg(ticket_id, message, recipients, internal=internal,
                                              attachments=attachments)])

    def reply_msg(self, ticket_id: str, message: str, recipients: Sequence[bytes], *, internal: bool = False,
                  attachments: Sequence[dict[str, Any]] = ()) -> tx_pb2.MsgAddSupportResponse:
        plaintext: dict[str, Any] = {"message": message, **({"internal": True} if internal else {})}
        if attachments:
            plaintext["attachments"] = list(attachments)
        return tx_pb2.MsgAddSupportResponse(
            sender=self.address, ticket_id=ticket_id, payload=self.seal(plaintext, recipients)
        )

    def update(self, ticket_id: str, *, status: str | int | None = None, priority: str = "", category: str = "",
               assigned_agent: str = "") -> TxResult:
        """Update a ticket; empty or None fields stay unchanged (status, priority, agent: agents only)."""
        return self.must_send([self.update_msg(ticket_id, status=status, priority=priority, category=category,
                                               assigned_agent=assigned_agent)])

    def update_msg(self, ticket_id: str, *, status: str | int | None = None, priority: str = "", category: str = "",
                   assigned_agent: str = "") -> tx_pb2.MsgUpdateSupportRequest:
        status_name = types_pb2.SupportStatus.Name(0 if status is None else status_value(status))
        return tx_pb2.MsgUpdateSupportRequest(sender=self.address, ticket_id=ticket_id, status=status_name,
                                              priority=priority, category=category, assigned_agent=assigned_agent)

    def archive(self, ticket_id: str, reason: str = "") -> TxResult:
        msg = tx_pb2.MsgArchiveSupportRequest(sender=self.address, ticket_id=ticket_id, reason=reason)
        return self.must_send([msg])

    def register_external(
        self, ticket_id: str, external_system: str, external_ticket_id: str, external_url: str = ""
    ) -> TxResult:
        msg = tx_pb2.MsgRegisterExternalTicket(
            sender=self.address, resource_id=ticket_id, resource_type="support_request",
            external_system=external_system, external_ticket_id=external_ticket_id, external_url=external_url)
        return self.must_send([msg])

    def create_tickets(self, count: int, recipients: Sequence[bytes], *, per_tx: int = 50,
                       category: str = "technical", priority: str = "normal",
                       plaintext: Callable[[int], dict[str, Any]] | None = None, timeout: float = 120.0) -> list[str]:
        """Create `count` tickets fast: `per_tx` msgs per tx, all txs pipelined, then awaited together."""
        make = plaintext or (lambda i: {"subject": f"devnet ticket {i}", "description": f"bulk ticket number {i}"})
        batches = [range(start, min(count, start + per_tx)) for start in range(0, count, per_tx)]
        txs = [[self.create_msg(category, priority, make(i), recipients) for i in batch] for batch in batches]
        return [ticket for result in self.send_pipelined(txs, timeout=timeout) for ticket in _created_ids(result)]

    def send_pipelined(self, txs: Sequence[Sequence[Message]], *, timeout: float = 120.0) -> list[TxResult]:
        """Each element of `txs` one tx, all broadcast back to back (consecutive sequences, no block awaited in
        between), then awaited together: many changes in a few blocks. TxFailed at the first one refused."""
        hashes = []
        for msgs in txs:
            checked = self.broadcast(msgs)
            if not checked.ok:
                raise TxFailed(checked)
            hashes.append(checked.hash)
        results = self.wait_for(hashes, timeout=timeout)
        for result in results:
            if not result.ok:
                raise TxFailed(result)
        return results


def _created_ids(result: TxResult) -> list[str]:
    return [e["ticket_id"] for e in result.support_events() if e.get("event_type") == "support_request_created"]
