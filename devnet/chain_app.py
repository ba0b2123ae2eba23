"""The devnet's ABCI 2.0 application: accounts + SIGN_MODE_DIRECT ante checks + VirtEngine's x/support
contract, served to a real CometBFT v0.38 node over the socket transport.

    python -m devnet.chain_app --listen tcp://127.0.0.1:26658 --state-dir DIR
        [--archive-after SECONDS] [--purge-after SECONDS] [--retain-blocks N]

FinalizeBlock runs its txs in place on the committed tables, each behind an undo journal (a failed tx
keeps only its ante's effects); Commit appends what the block touched to the state log
(devnet/state_log.py), so a block costs what it changed, not the size of the state. A query between
FinalizeBlock and Commit waits for the Commit, so it never sees a block's state under the previous
height. CheckTx and Simulate share the committed tables: CheckTx changes only its own copy of the
accounts, and Simulate undoes what its msgs did. Genesis schema: devnet.app_state.
Retention overrides apply at InitChain only, so a restart cannot change the app hash of old blocks."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cosmpy.protos.cosmos.bank.v1beta1 import tx_pb2 as bank_tx
from cosmpy.protos.cosmos.base.abci.v1beta1 import abci_pb2 as sdk_abci
from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2
from cosmpy.protos.cosmos.tx.v1beta1 import tx_pb2 as sdk_tx
from cosmpy.protos.tendermint.abci import types_pb2 as abci
from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import DecodeError, Message

from devnet import queries
from devnet.abci_events import Event, to_abci
from devnet.abci_socket import AbciServer
from devnet.ante import BANK_SEND, GasMeter, Mode, TxError, decode_tx, msg_signer, run_ante
from devnet.app_state import clone, genesis_state
from devnet.journal import Journal, JournaledTable, journaled
from devnet.state_log import BlockChanges, Snapshot, StateStore, chained_hash, genesis_hash
from devnet.support_module import BlockContext, SupportError, SupportKeeper

log = logging.getLogger("devnet.chain_app")

MSG_BASE_GAS = 10_000
MSG_BYTE_GAS = 20
SIMULATE_PATH = "/cosmos.tx.v1beta1.Service/Simulate"
QUERY_WAIT = 10.0  # seconds a query waits for the Commit of a finalized block (CometBFT commits at once)


class TxOutcome:
    """The result of running one tx: the ABCI result, the state after it and the journal of its msgs."""

    def __init__(
        self,
        result: abci.ExecTxResult,
        state: dict[str, Any],
        msg_responses: list[ProtoAny],
        journal: Journal | None = None,
    ) -> None:
        self.result = result
        self.state = state
        self.msg_responses = msg_responses
        self.journal = journal


def run_tx(state: dict[str, Any], tx_bytes: bytes, ctx: BlockContext, mode: Mode) -> TxOutcome:
    """Decode, ante, then (except in CheckTx) the msgs; a msg failure keeps only the ante's effects."""
    try:
        tx = decode_tx(tx_bytes)
    except TxError as exc:
        return TxOutcome(_failed(exc, 0, 0, []), state, [])
    gas_limit = tx.auth_info.fee.gas_limit
    meter = GasMeter(None if mode == "simulate" else gas_limit)
    after_ante = {**state, "accounts": clone(state["accounts"])}  # the ante handler touches accounts only
    try:
        events = run_ante(after_ante, tx, chain_id=state["chain_id"], height=ctx.height, mode=mode, meter=meter)
    except TxError as exc:
        return TxOutcome(_failed(exc, gas_limit, meter.consumed, []), state, [])
    if mode in ("check", "recheck"):
        return TxOutcome(abci.ExecTxResult(gas_wanted=gas_limit, gas_used=meter.consumed), after_ante, [])
    # The msgs run in place on the committed tables behind an undo journal: DeliverTx keeps what they did
    # unless one fails; Simulate always undoes it.
    journal = Journal()
    try:
        return _run_msgs(tx, after_ante, journal, ctx, meter, events)
    finally:
        if mode == "simulate":
            journal.undo()


def _run_msgs(
    tx: Any, after_ante: dict[str, Any], journal: Journal, ctx: BlockContext, meter: GasMeter, events: list[Event]
) -> TxOutcome:
    gas_limit = tx.auth_info.fee.gas_limit
    after_msgs = journaled(after_ante, journal)
    keeper = SupportKeeper(after_msgs, ctx)
    responses: list[ProtoAny] = []
    msg_events: list[Event] = []
    for index, (type_url, msg) in enumerate(tx.msgs):
        try:
            meter.consume(MSG_BASE_GAS + MSG_BYTE_GAS * len(tx.body.messages[index].value), "msg execution")
            if type_url == BANK_SEND:
                accounts = JournaledTable(after_msgs["accounts"], journal, "accounts")
                response, events_of_msg = bank_send(accounts, msg, after_ante["params"]["fee_denom"], after_msgs)
            else:
                response, events_of_msg = keeper.execute(msg)
        except (TxError, SupportError) as exc:
            failed = _failed(_msg_error(exc, index), gas_limit, meter.consumed, events)
            return TxOutcome(failed, _rolled_back(after_ante, journal), [], journal)
        module = "bank" if type_url == BANK_SEND else "support"
        action = Event("message", [("action", type_url), ("sender", msg_signer(msg)), ("module", module)])
        msg_events.extend(ev.with_attr("msg_index", str(index)) for ev in [action, *events_of_msg])
        packed = ProtoAny()
        packed.Pack(response, type_url_prefix="/")
        responses.append(packed)
    data = sdk_abci.TxMsgData(msg_responses=responses).SerializeToString()
    result = abci.ExecTxResult(code=0, data=data, gas_wanted=gas_limit, gas_used=meter.consumed,
                               events=to_abci(events + msg_events))
    return TxOutcome(result, after_ante, responses, journal)


class BankError(TxError):
    """A MsgSend refused by x/bank (codespace sdk); wrapped with its message index like any Msg error."""


def bank_send(accounts: Any, msg: bank_tx.MsgSend, denom: str, state: dict[str, Any]) -> tuple[Message, list[Event]]:
    """x/bank MsgSend in the fee denom, enough to fund a test account: as the SDK's bank keeper
    (x/bank/keeper/send.go), the sender's spendable balance must cover the amount (sdk code 5, "spendable
    balance %s is smaller than %s"), coins must be positive (code 10, invalid coins), and an unknown
    recipient gets a new account (SendCoins creates it)."""
    amount = 0
    for coin in msg.amount:
        if coin.denom != denom or not coin.amount.isdigit() or int(coin.amount) <= 0:
            raise BankError(10, f"{coin.amount}{coin.denom}: invalid coins")
        amount += int(coin.amount)
    if not msg.amount:
        raise BankError(10, ": invalid coins")
    sender = accounts[msg.from_address]
    if sender["balance"] < amount:
        raise BankError(5, f"spendable balance {sender['balance']}{denom} is smaller than {amount}{denom}: "
                           "insufficient funds")
    if msg.to_address not in accounts:
        number = 1 + max((a["account_number"] for a in state["accounts"].values()), default=-1)
        accounts[msg.to_address] = {"account_number": number, "sequence": 0, "balance": 0, "pub_key": None}
    sender["balance"] -= amount
    accounts[msg.to_address]["balance"] += amount
    text = f"{amount}{denom}"
    return bank_tx.MsgSendResponse(), [
        Event("coin_spent", [("spender", msg.from_address), ("amount", text)]),
        Event("coin_received", [("receiver", msg.to_address), ("amount", text)]),
        Event("transfer", [("recipient", msg.to_address), ("sender", msg.from_address), ("amount", text)]),
    ]


def _msg_error(exc: TxError | SupportError, index: int) -> TxError:
    """A msg's failure as the SDK reports it: bank and support errors name the msg's index."""
    if isinstance(exc, BankError):
        return TxError(exc.code, f"failed to execute message; message index: {index}: {exc.log}")
    if isinstance(exc, SupportError):
        return TxError(exc.code, f"failed to execute message; message index: {index}: {exc.log}", "support")
    return exc


def _rolled_back(after_ante: dict[str, Any], journal: Journal) -> dict[str, Any]:
    """The state as the ante handler left it, before any msg ran."""
    journal.undo()
    return after_ante


def _failed(exc: TxError, gas_wanted: int, gas_used: int, events: list[Event]) -> abci.ExecTxResult:
    return abci.ExecTxResult(code=exc.code, codespace=exc.codespace, log=exc.log, gas_wanted=gas_wanted,
                             gas_used=gas_used, events=to_abci(events))


class ChainApp:
    """ABCI methods (named like the Request oneof fields); one lock serialises all connections."""

    def __init__(self, state_dir: Path, *, archive_after: int | None = None, purge_after: int | None = None,
                 retain_blocks: int = 0) -> None:
        self.store = StateStore(state_dir)
        self.lock = threading.RLock()
        self.committed_cv = threading.Condition(self.lock)  # notified by Commit: queries wait out a block
        self.overrides = {"archive_after_seconds": archive_after, "purge_after_seconds": purge_after}
        self.retain_blocks = retain_blocks
        snap = self.store.load()
        self.height = snap.height if snap else 0
        self.last_hash = snap.app_hash if snap else b""
        self.block_time = snap.block_time if snap else 0
        self.base: dict[str, Any] | None = snap.state if snap else None  # the committed state
        self.check: dict[str, Any] | None = self.base  # CheckTx's: the committed tables, its own accounts
        self.pending: set[bytes] = set()
        self.working: Snapshot | None = None  # FinalizeBlock's result, until Commit

    def info(self, req: abci.RequestInfo) -> abci.ResponseInfo:
        with self.lock:
            return abci.ResponseInfo(data="virtengine-devnet", version="0.1.0", app_version=0,
                                     last_block_height=self.height,
                                     last_block_app_hash=self.last_hash if self.height else b"")

    def init_chain(self, req: abci.RequestInitChain) -> abci.ResponseInitChain:
        with self.lock:
            app_state = json.loads(req.app_state_bytes or b"{}")
            state = genesis_state(app_state, req.chain_id)
            for key, value in self.overrides.items():
                if value is not None:
                    state["params"][key] = value
            self.base = self.check = state
            self.last_hash = genesis_hash(state)
            self.block_time = req.time.seconds
            return abci.ResponseInitChain(app_hash=self.last_hash)

    def check_tx(self, req: abci.RequestCheckTx) -> abci.ResponseCheckTx:
        with self.lock:
            if self.check is None:
                return abci.ResponseCheckTx(code=1, log="chain not initialised")
            digest = hashlib.sha256(req.tx).digest()
            recheck = req.type == abci.CheckTxType.Value("RECHECK")
            if not recheck and digest in self.pending:
                return abci.ResponseCheckTx(code=19, codespace="sdk", log="tx already in mempool")
            ctx = BlockContext(self.height + 1, self.block_time)
            outcome = run_tx(self.check, req.tx, ctx, "recheck" if recheck else "check")
            self.check = outcome.state
            r = outcome.result
            if r.code == 0:
                self.pending.add(digest)
            return abci.ResponseCheckTx(code=r.code, log=r.log, codespace=r.codespace, gas_wanted=r.gas_wanted,
                                        gas_used=r.gas_used)

    def prepare_proposal(self, req: abci.RequestPrepareProposal) -> abci.ResponsePrepareProposal:
        txs, total = [], 0
        for tx in req.txs:
            total += len(tx)
            if total > req.max_tx_bytes:
                break
            txs.append(tx)
        return abci.ResponsePrepareProposal(txs=txs)

    def process_proposal(self, req: abci.RequestProcessProposal) -> abci.ResponseProcessProposal:
        return abci.ResponseProcessProposal(status=abci.ResponseProcessProposal.ACCEPT)

    def verify_vote_extension(self, req: abci.RequestVerifyVoteExtension) -> abci.ResponseVerifyVoteExtension:
        return abci.ResponseVerifyVoteExtension(status=abci.ResponseVerifyVoteExtension.ACCEPT)

    def finalize_block(self, req: abci.RequestFinalizeBlock) -> abci.ResponseFinalizeBlock:
        with self.lock:
            if self.base is None:
                raise RuntimeError("FinalizeBlock before InitChain")
            ctx = BlockContext(req.height, req.time.seconds)
            params = self.base["params"]
            retention = params["archive_after_seconds"] is not None or params["purge_after_seconds"] is not None
            if not req.txs and not retention:
                self.working = Snapshot(req.height, self.last_hash, self.base, ctx.time)
                return abci.ResponseFinalizeBlock(app_hash=self.last_hash)
            state, changes, results = self.base, BlockChanges(), []
            for tx in req.txs:
                outcome = run_tx(state, tx, ctx, "deliver")
                state = outcome.state
                results.append(outcome.result)
                if outcome.journal is not None:
                    changes.add(outcome.journal)
            end_events = []
            if retention:
                end_events = [ev.with_attr("mode", "EndBlock") for ev in SupportKeeper(state, ctx).end_block()]
                _touch_aged(state, end_events, changes)
            record = changes.encode(state) if req.txs or end_events else None
            digest = chained_hash(self.last_hash, record) if record is not None else self.last_hash
            self.working = Snapshot(req.height, digest, state, ctx.time, record)
            return abci.ResponseFinalizeBlock(events=to_abci(end_events), tx_results=results, app_hash=digest)

    def commit(self, req: abci.RequestCommit) -> abci.ResponseCommit:
        with self.lock:
            snap = self.working
            if snap is None:
                raise RuntimeError("Commit without FinalizeBlock")
            self.store.save(snap)
            self.height, self.last_hash, self.block_time = snap.height, snap.app_hash, snap.block_time
            self.base = self.check = snap.state
            self.pending.clear()
            self.working = None
            self.committed_cv.notify_all()
            retain = max(0, snap.height - self.retain_blocks) if self.retain_blocks else 0
            return abci.ResponseCommit(retain_height=retain)

    def query(self, req: abci.RequestQuery) -> abci.ResponseQuery:
        with self.lock:
            # FinalizeBlock changed the tables in place: what a query reads must wait for the Commit.
            self.committed_cv.wait_for(lambda: self.working is None, timeout=QUERY_WAIT)
            if self.base is None or self.check is None:
                return queries.error(18, "no committed state yet: invalid request", self.height)
            if req.height not in (0, self.height):
                return queries.error(26, f"only the latest height {self.height} is served: invalid height",
                                     self.height)
            if req.path == SIMULATE_PATH:
                return self._simulate(req.data)
            return queries.run_state_query(self.base, req.path, req.data, self.height)

    def _simulate(self, data: bytes) -> abci.ResponseQuery:
        assert self.check is not None
        try:
            request = service_pb2.SimulateRequest.FromString(data)
        except DecodeError as exc:
            return queries.error(2, f"{exc}: tx parse error", self.height)
        tx_bytes = request.tx_bytes
        if not tx_bytes and request.HasField("tx"):
            tx_bytes = sdk_tx.TxRaw(body_bytes=request.tx.body.SerializeToString(),
                                    auth_info_bytes=request.tx.auth_info.SerializeToString(),
                                    signatures=request.tx.signatures).SerializeToString()
        ctx = BlockContext(self.height + 1, self.block_time)
        r = run_tx(self.check, tx_bytes, ctx, "simulate")
        if r.result.code:
            return abci.ResponseQuery(code=r.result.code, codespace=r.result.codespace, log=r.result.log,
                                      height=self.height)
        answer = service_pb2.SimulateResponse(
            gas_info=sdk_abci.GasInfo(gas_wanted=r.result.gas_wanted, gas_used=r.result.gas_used),
            result=sdk_abci.Result(data=r.result.data, events=r.result.events, msg_responses=r.msg_responses),
        )
        return abci.ResponseQuery(code=0, value=answer.SerializeToString(), height=self.height)


def _touch_aged(state: dict[str, Any], end_events: list[Event], changes: BlockChanges) -> None:
    """The retention step scans the tickets table, outside any journal: the entries it archived or purged
    are the tickets its events name (and the event counter it moved)."""
    changes.touch("counters", "event_sequence")
    for event in end_events:
        ticket_id = json.loads(dict(event.attributes)["payload_json"])["ticket_id"]
        for table in ("tickets", "responses", "refs"):
            changes.touch(table, ticket_id, removed=ticket_id not in state[table])


def _listen_address(value: str) -> tuple[str, int]:
    host_port = value.removeprefix("tcp://")
    host, _, port = host_port.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devnet.chain_app", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="tcp://HOST:PORT for CometBFT's proxy_app")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--archive-after", type=int, default=None, help="retention: archive after SECONDS")
    parser.add_argument("--purge-after", type=int, default=None, help="retention: purge archived after SECONDS")
    parser.add_argument("--retain-blocks", type=int, default=0, help="Commit retain_height = height - N (0: keep all)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = ChainApp(args.state_dir, archive_after=args.archive_after, purge_after=args.purge_after,
                   retain_blocks=args.retain_blocks)
    server = AbciServer(*_listen_address(args.listen), app)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("chain app listening on %s (height %d)", args.listen, app.height)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
