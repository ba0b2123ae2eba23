"""The chain app driven in-process (no CometBFT): InitChain, FinalizeBlock + Commit, CheckTx and
queries called directly, with block time under the test's control. Fast state-machine tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cosmpy.protos.tendermint.abci import types_pb2 as abci
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from devnet.chain_app import ChainApp
from devnet.keys import TestAccount
from tests.devnet.chain_helpers import CHAIN_ID, sign_tx

GENESIS_TIME = 1_764_150_000


class InProcessChain:
    """One ChainApp on a state dir; tracks each account's number and sequence for signing."""

    def __init__(self, state_dir: Path, app_state: dict[str, Any], *, chain_id: str = CHAIN_ID,
                 time: int = GENESIS_TIME, init: bool = True) -> None:
        self.state_dir = state_dir
        self.app = ChainApp(state_dir)
        self.chain_id = chain_id
        self.time = time
        self.height = self.app.height
        self.numbers = {a["address"]: a["account_number"] for a in app_state.get("accounts", [])}
        self.sequences: dict[str, int] = {}
        if init:
            self.app.init_chain(abci.RequestInitChain(chain_id=chain_id, time=Timestamp(seconds=time),
                                                      app_state_bytes=json.dumps(app_state).encode()))

    def sign(self, account: TestAccount, msgs: list[Message], *, bump: bool = True, **options: Any) -> bytes:
        options.setdefault("sequence", self.sequences.get(account.address, 0))
        options.setdefault("account_number", self.numbers[account.address])
        options.setdefault("chain_id", self.chain_id)
        tx = sign_tx(account, msgs, **options)
        if bump:
            self.sequences[account.address] = options["sequence"] + 1
        return tx

    def block(self, txs: list[bytes], *, advance: int = 5, height: int | None = None,
              time: int | None = None) -> abci.ResponseFinalizeBlock:
        """FinalizeBlock + Commit at the next (or given) height, `advance` seconds later (or at `time`)."""
        self.height = self.height + 1 if height is None else height
        self.time = self.time + advance if time is None else time
        result = self.app.finalize_block(abci.RequestFinalizeBlock(txs=txs, height=self.height,
                                                                   time=Timestamp(seconds=self.time)))
        self.app.commit(abci.RequestCommit())
        return result

    def deliver(self, account: TestAccount, msgs: list[Message], *, height: int | None = None,
                time: int | None = None, **options: Any) -> abci.ExecTxResult:
        block = self.block([self.sign(account, msgs, **options)], height=height, time=time)
        result: abci.ExecTxResult = block.tx_results[0]
        return result

    def check(self, tx: bytes, recheck: bool = False) -> abci.ResponseCheckTx:
        kind = abci.CheckTxType.Value("RECHECK" if recheck else "NEW")
        return self.app.check_tx(abci.RequestCheckTx(tx=tx, type=kind))

    def query(self, path: str, request: Message) -> abci.ResponseQuery:
        return self.app.query(abci.RequestQuery(path=path, data=request.SerializeToString()))

    @property
    def state(self) -> dict[str, Any]:
        """The committed state (genesis state before the first block)."""
        assert self.app.base is not None
        return self.app.base


def support_events(events: Any) -> list[dict[str, str]]:
    """support_event attributes (ABCI protobuf events) as ordered dicts."""
    return [{a.key: a.value for a in ev.attributes} for ev in events if ev.type == "support_event"]


def payloads(events: Any) -> list[dict[str, Any]]:
    return [json.loads(ev["payload_json"]) for ev in support_events(events)]
