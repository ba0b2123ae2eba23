"""The one owner of the signing key and the account sequence: lands queued intents exactly once.

Each `step()` (run by loops.run_loop) confirms txs in flight, re-broadcasts stale ones, then signs
and broadcasts new batches: a run of up to `sign_ahead` txs at consecutive sequences is signed and
stored in one write, then sent in JSON-RPC batch requests back to back, so a deep queue reaches the
mempool within a block instead of one tx per round trip.
Exactly-once rests on three rules: signed bytes and hash are stored before a broadcast; after a
restart the stored bytes are re-broadcast, never re-signed; intents go back to the queue only when
their tx provably did not land (refused by CheckTx, failed in its block, or past its timeout_height
with no block holding its hash). Inclusion is learnt from a websocket
subscription to the account's txs, started before the first broadcast, with `/tx` by hash as the
fallback; txs are settled in sequence order (txs of one account land in that order).

Every step first checks the node (node_guard.py). An account that cannot pay its fees (sdk codes 5
and 13) pauses signing with an alarm instead of dead-lettering anything; a probe (the next batch's
simulation and CheckTx) every `pause_probe_interval` seconds resumes it once the balance allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sidecar.chain.keys import SigningKey, forbid_core_dumps, load_signing_key
from sidecar.chain.node_guard import NodeGuard, NodeRefused
from sidecar.chain.outcomes import ALREADY_IN_MEMPOOL, SEQUENCE_MISMATCH, ChainAnswer, expected_sequence
from sidecar.chain.rpc import CometRpc, NodeStatus
from sidecar.chain.settle import Settler
from sidecar.chain.txbuild import Account, FeePolicy, SignedTx, build_tx, query_account, simulate
from sidecar.chain.txwatch import TxWatcher
from sidecar.config_schema import ChainConfig
from sidecar.errors import ChainRpcError
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.secrets import Secret
from sidecar.store.db import Store
from sidecar.store.intents import (
    Intent,
    highest_included_height,
    intent_counts,
    queued_intents,
    record_broadcast_txn,
    record_broadcasts_txn,
    record_signed_run_txn,
    release_unsent_txn,
    requeue_batch_txn,
    set_signer_chain_id_txn,
    signer_chain_id,
    unresolved_batches,
)

log = logging.getLogger(__name__)
CrashPoint = Literal["after_sign", "after_broadcast"]
SUBSCRIBE_WAIT = 5.0  # seconds the first broadcast waits for the tx subscription
GAS_MEMORY = 30.0  # seconds a simulation's gas is reused for batches of the same Msgs
BROADCAST_BATCH = 10  # txs per broadcast request: CometBFT's default rpc.max_request_batch_size
BROADCAST_BYTES = 512 * 1024  # tx bytes per broadcast request: base64 of it stays under rpc.max_body_bytes (1 MB)


@dataclass(frozen=True)
class SignerSettings:
    chain_id: str  # empty: adopt the node's
    fee: FeePolicy
    max_msgs_per_tx: int = 20
    timeout_height_delta: int = 20
    max_tx_msg_bytes: int = 200_000  # byte cap on the Msgs of one tx (node limits are far above)
    max_in_flight: int = 100  # txs broadcast but not yet confirmed
    sign_ahead: int = 20  # txs signed and stored in one write, then broadcast back to back
    rebroadcast_after: int = 3  # blocks without inclusion before the stored bytes are sent again
    busy_interval: float = 0.1
    idle_interval: float = 0.5
    pause_probe_interval: float = 10.0  # seconds between probes while the account cannot pay its fees
    refused_interval: float = 5.0  # seconds between looks at a refused node

    @classmethod
    def from_chain(cls, c: ChainConfig) -> SignerSettings:
        """The chain.* keys the signer reads."""
        fee = FeePolicy(
            c.fee_denom, Decimal(str(c.gas_price)), Decimal(str(c.gas_multiplier)), c.gas_limit_max, c.gas_fallback
        )
        return cls(c.chain_id, fee, c.max_msgs_per_tx, c.timeout_height_delta)


@dataclass
class InFlight:
    """A signed tx whose fate is not known yet; `sent_at` is the head when it was last broadcast."""

    batch_id: int
    tx_hash: str
    tx_bytes: bytes
    sequence: int
    timeout_height: int
    intent_ids: tuple[int, ...]
    broadcast: bool
    sent_at: int | None = None
    watch_epoch: int | None = None  # the tx subscription's epoch when last broadcast (None: not watched)


@dataclass
class SignerStatus:
    """The small picture for health and the benchmark."""

    address: str
    next_sequence: int | None = None
    in_flight: int = 0
    sequence_mismatches: int = 0
    sequence_mismatches_resolved: int = 0
    mempool_full: int = 0
    last_error: str | None = None
    paused: str | None = None  # why signing waits for the account (out of funds, fee too low)
    node_refused: str | None = None
    unproven_txs: dict[str, str] = field(default_factory=dict)  # tx hash -> why its fate is not proven
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def sequence_errors_unresolved(self) -> int:
        return self.sequence_mismatches - self.sequence_mismatches_resolved


class Signer:
    """Construct once in app.py and run `step` with run_loop("chain-signer", ...).

    `crash_at` is a test seam: the process SIGKILLs itself at that point (after the signed tx is
    stored, or right after the node accepted the broadcast, before anything more is recorded)."""

    def __init__(
        self,
        rpc: CometRpc,
        store: Store,
        key: SigningKey,
        settings: SignerSettings,
        metrics: Metrics,
        auditor: Auditor,
        *,
        watcher: TxWatcher | None = None,
        crash_at: CrashPoint | None = None,
        health: HealthState | None = None,
        activity: ActivityFeed | None = None,
    ) -> None:
        self._rpc = rpc
        self._store = store
        self._key = key
        self.settings = settings
        self._metrics = metrics
        self._crash_at = crash_at
        self.watcher = watcher
        self._health = health
        self._settler = Settler(
            rpc,
            store,
            auditor,
            self._on_lost_sequence,
            self._on_out_of_gas,
            metrics,
            watcher,
            address=key.address,
            on_pause=self._pause,
            activity=activity,
        )
        self._guard = NodeGuard(settings.chain_id, 0)
        self._probe_at = 0.0
        self._flight: list[InFlight] = []
        self._ready = False
        self._chain_id = settings.chain_id
        self._account_number = 0
        self._next_sequence = 0
        self._should_resync = False
        self._resync_asked: list[asyncio.Future[tuple[int, int]]] = []  # operators' resyncs, served by the step
        self._backoff = 0.0
        self._gas_seen: dict[tuple[str, ...], tuple[int, int, float]] = {}  # Msg types -> gas, bytes, when
        self.status = SignerStatus(address=key.address)

    # --- the loop step -------------------------------------------------------------------------

    async def step(self) -> float:
        try:
            return await self._step()
        except NodeRefused as exc:  # nothing this node says may touch the sequence or the intents
            self._answer_resyncs(exc)
            await self._publish()
            return self.settings.refused_interval
        except ChainRpcError as exc:
            self._answer_resyncs(exc)
            raise

    async def resync_sequence(self) -> tuple[int, int]:
        """Ask the step loop to read the account sequence from the chain again: (previous, new) next sequence.

        Served by the signer's own step, so it never races a signing in progress. Raises what the node
        answered (ChainRpcError, NodeRefused); waits as long as the step loop does (callers bound it)."""
        asked: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._resync_asked.append(asked)
        return await asked

    def _answer_resyncs(self, result: tuple[int, int] | BaseException) -> None:
        asked, self._resync_asked = self._resync_asked, []
        for future in asked:
            if future.done():  # the caller gave up waiting
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _serve_resyncs(self) -> None:
        """An operator's resync: the chain's sequence, or past the txs still in flight (they hold theirs; a
        lower number would sign over them). The automatic resync after a lost sequence waits for those instead."""
        if not self._resync_asked:
            return
        previous = self._next_sequence
        account = await query_account(self._rpc, self._key.address)
        in_flight = max((f.sequence + 1 for f in self._flight), default=0)
        self._next_sequence = max(account.sequence, in_flight)
        log.info(
            "account sequence read again on request",
            extra={"previous": previous, "sequence": self._next_sequence, "chain": account.sequence},
        )
        self._answer_resyncs((previous, self._next_sequence))

    async def _step(self) -> float:
        if not self._ready:
            await self._recover(await self._rpc.status())
        head = self._guard.check(await self._rpc.status())  # after a recovery, which may wait for the watcher
        self._flight = await self._settler.settle(self._flight, head)
        await self._serve_resyncs()
        delay = await self._rebroadcast(head)
        if delay == 0.0 and len(self._flight) < self.settings.max_in_flight:
            delay = await self._send_new(head)
        await self._publish()
        if delay:
            return delay
        return self.settings.busy_interval if self._flight else self.settings.idle_interval

    async def _recover(self, node: NodeStatus) -> None:
        """Adopt stored unresolved txs (to re-broadcast as they are) and the chain's account, once the node is
        the chain they were signed for (configured, else stored, else the node's own)."""
        stored_chain = await self._store.read("signer chain", signer_chain_id)
        self._chain_id = self.settings.chain_id or stored_chain or node.chain_id
        floor = await self._store.read("highest height", highest_included_height)
        self._guard = NodeGuard(self._chain_id, floor)
        self._guard.check(node)
        if stored_chain != self._chain_id:
            if stored_chain:
                log.warning("signer chain changed by configuration", extra={"from": stored_chain, "to": self._chain_id})
            await self._store.write("signer chain", set_signer_chain_id_txn, self._chain_id)
        account = await query_account(self._rpc, self._key.address)
        self._account_number = account.number
        if self.watcher is not None:  # subscribe before the first broadcast; /tx covers it if that fails
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.watcher.subscription.live.wait(), SUBSCRIBE_WAIT)
        stored = await self._store.read("unresolved txs", unresolved_batches)
        self._flight = [
            InFlight(
                b.id, b.tx_hash, b.tx_bytes, b.account_sequence, b.timeout_height, b.intent_ids, b.state == "broadcast"
            )
            for b in stored
        ]
        cached = max((f.sequence + 1 for f in self._flight), default=0)
        self._next_sequence = max(account.sequence, cached)
        self._ready = True
        log.info(
            "signer ready",
            extra={"address": self._key.address, "sequence": self._next_sequence, "unresolved_txs": len(self._flight)},
        )

    def _on_out_of_gas(self) -> None:
        self._gas_seen.clear()

    def _on_lost_sequence(self) -> None:
        """A tx of ours did not consume its sequence: later ones cannot land; resync once they settle."""
        self._should_resync = True

    # --- re-broadcast ------------------------------------------------------------------------------

    async def _rebroadcast(self, head: int) -> float:
        """Send stored bytes again (restart, lost mempool): same bytes, same hash, never a new signature."""
        for flight in self._flight:
            if flight.sent_at is not None and head - flight.sent_at < self.settings.rebroadcast_after:
                continue
            if flight.timeout_height < head:
                continue  # can no longer land: the settler expires it
            answer = await self._broadcast(flight)
            if answer is None:
                return self._full_mempool()
            flight.sent_at = head
            if answer.code in (0, ALREADY_IN_MEMPOOL) and not flight.broadcast:
                await self._store.write("record broadcast", record_broadcast_txn, flight.batch_id)
                flight.broadcast = True
        return 0.0

    async def _broadcast(self, flight: InFlight) -> ChainAnswer | None:
        """broadcast_tx_sync; None when the mempool is full. "Already in cache" means pending, i.e. accepted.
        The subscription's epoch is noted first: inclusion events of this tx can only come after it."""
        flight.watch_epoch = self.watcher.epoch() if self.watcher is not None else None
        try:
            result = await self._rpc.broadcast_tx_sync(flight.tx_bytes)
        except ChainRpcError as exc:
            answer = _error_answer(exc)
            if isinstance(answer, ChainRpcError):
                raise
            return answer
        return self._answered(result)

    def _answered(self, result: dict[str, Any]) -> ChainAnswer:
        """A broadcast_tx_sync result: the node answered, so any backoff ends."""
        self._backoff = 0.0
        return ChainAnswer(int(result.get("code", 0)), str(result.get("codespace", "")), str(result.get("log", "")))

    async def _broadcast_many(self, flights: list[InFlight]) -> list[ChainAnswer | ChainRpcError | None]:
        """The flights in one batch request, answered one by one as `_broadcast` answers a single one (an RPC
        error of one call comes back as it is, for the caller to raise once the answers before it are recorded)."""
        epoch = self.watcher.epoch() if self.watcher is not None else None
        for flight in flights:
            flight.watch_epoch = epoch
        out: list[ChainAnswer | ChainRpcError | None] = []
        for result in await self._rpc.broadcast_txs_sync([f.tx_bytes for f in flights]):
            out.append(_error_answer(result) if isinstance(result, ChainRpcError) else self._answered(result))
        return out

    def _full_mempool(self) -> float:
        self.status.mempool_full += 1
        self._backoff = min(10.0, max(0.25, self._backoff * 2))
        log.warning("mempool full, backing off", extra={"seconds": self._backoff})
        return self._backoff

    # --- new txs ----------------------------------------------------------------------------------

    async def _send_new(self, head: int) -> float:
        if self.status.paused is not None and time.monotonic() < self._probe_at:
            return 0.0  # the account cannot pay yet: the next probe decides
        if self._should_resync:
            if self._flight:
                return 0.0  # wait until every tx in flight landed or provably expired
            account = await query_account(self._rpc, self._key.address)
            self._next_sequence = account.sequence
            self._should_resync = False
        while len(self._flight) < self.settings.max_in_flight:
            # While paused, one tx is the probe; otherwise a run of txs is signed ahead of its broadcasts.
            ahead = 1 if self.status.paused is not None else self.settings.sign_ahead
            slots = max(1, min(ahead, self.settings.max_in_flight - len(self._flight)))
            limit = slots * self.settings.max_msgs_per_tx
            batches = self._plan(await self._store.read("queued intents", queued_intents, limit), slots)
            if not batches:
                return 0.0
            if self._flight:  # signing takes time: the timeout is counted from the head of now
                head = self._guard.check(await self._rpc.status())
            before = len(self._flight)
            delay = await self._sign_and_send(batches, head, retried=False)
            if delay or self.status.paused is not None:
                return delay
            if len(self._flight) <= before:
                return self.settings.busy_interval  # refused: its intents are queued again, judged next step
        return 0.0

    def _pause(self, answer: ChainAnswer) -> None:
        """The account cannot pay (sdk 5 or 13): hold every new tx, say so once, probe now and then."""
        self._probe_at = time.monotonic() + self.settings.pause_probe_interval
        if self.status.paused is None:
            log.error(
                "signing paused: the account cannot pay its fees (fund it, or check chain.gas_price): %s",
                answer.summary,
                extra={"address": self._key.address, "code": answer.code},
            )
        self.status.paused = f"{self._key.address} cannot pay its fees: {answer.summary}"

    def _resume(self) -> None:
        if self.status.paused is not None:
            log.info("signing resumed: the account pays its fees again", extra={"address": self._key.address})
        self.status.paused = None

    def _plan(self, queued: list[Intent], slots: int) -> list[list[Intent]]:
        """Up to `slots` batches, in queue order, within the Msg and byte caps; isolated intents alone.

        A ticket whose Msg is in an earlier batch of the run gets no Msg in a later one: if that earlier tx
        fails, its intents are queued again and must land before the ticket's later ones (queued_intents
        holds them back the same way across steps)."""
        batches: list[list[Intent]] = []
        sealed: set[str] = set()  # tickets of the batches already closed
        batch: list[Intent] = []
        size = 0

        def close() -> None:
            nonlocal batch, size
            if batch:
                batches.append(batch)
                sealed.update(i.ticket_id for i in batch if i.ticket_id is not None)
            batch, size = [], 0

        for intent in queued:
            if intent.ticket_id is not None and intent.ticket_id in sealed:
                continue
            full = len(batch) >= self.settings.max_msgs_per_tx
            if batch and (
                full or intent.should_go_alone or size + len(intent.msg_bytes) > self.settings.max_tx_msg_bytes
            ):
                close()
                if len(batches) >= slots:
                    break
                if intent.ticket_id is not None and intent.ticket_id in sealed:
                    continue
            batch.append(intent)
            size += len(intent.msg_bytes)
            if intent.should_go_alone:
                close()
                if len(batches) >= slots:
                    break
        if len(batches) < slots:
            close()
        return batches

    async def _gas(self, batch: list[Intent], head: int) -> tuple[list[Intent], int] | None:
        """Simulated gas; a message that fails simulation cuts the batch before it (or goes alone).
        None when the simulation says the account cannot pay (signing is paused)."""
        fee = self.settings.fee
        sequence, resims = self._next_sequence, 0
        while True:
            shape = tuple(i.msg_type for i in batch)
            size = sum(len(i.msg_bytes) for i in batch)
            known = self._gas_seen.get(shape)
            fresh = known is not None and size <= known[1] and time.monotonic() - known[2] < GAS_MEMORY
            if known is not None and fresh and self.status.paused is None:
                # A simulation of the same Msgs, no smaller, ran moments ago: its answer holds (the margin of
                # gas_multiplier covers state drift; an out-of-gas result forgets it).
                return batch, fee.limit_from_simulation(known[0])
            probe = self._build(batch, head, fee.fallback, sequence)
            sim = await simulate(self._rpc, probe.tx_bytes)
            if sim.gas_used is not None:
                self._gas_seen[shape] = (sim.gas_used, size, time.monotonic())
                return batch, fee.limit_from_simulation(sim.gas_used)
            refusal = ChainAnswer(sim.code, sim.codespace, sim.log)
            if refusal.should_pause:
                self._pause(refusal)
                return None
            seqs = expected_sequence(sim.log) if sim.code == SEQUENCE_MISMATCH else None
            if seqs is not None and resims < 3:
                # The node simulates on its check state, which lags behind our txs in flight (rechecks run
                # after each commit). Gas does not depend on the sequence: simulate at the one it expects.
                sequence, resims = seqs[0], resims + 1
                continue
            log.info(
                "simulation refused the tx: %s",
                f"code {sim.code} ({sim.codespace or 'sdk'}): {sim.log}",
                extra={"msgs": len(batch), "sequence": self._next_sequence},
            )
            if len(batch) == 1:
                # The chain decides in the block (the failure may depend on a tx still in flight).
                return batch, fee.fallback
            # gas_fallback is sized for one Msg: a batch that cannot be simulated is cut down to its failing
            # message's predecessors, or to its first message.
            index = sim.failed_index
            batch = batch[: max(1, index or 1)]

    def _build(self, batch: list[Intent], head: int, gas: int, sequence: int | None = None) -> SignedTx:
        return build_tx(
            self._key,
            [(i.msg_type, i.msg_bytes) for i in batch],
            chain_id=self._chain_id,
            account=Account(self._account_number, self._next_sequence if sequence is None else sequence),
            gas_limit=gas,
            fee=self.settings.fee,
            timeout_height=head + self.settings.timeout_height_delta,
        )

    async def _size_run(self, batches: list[list[Intent]], head: int) -> list[tuple[list[Intent], int]]:
        """Each batch with its gas; stop after a batch the simulation cut (the Msgs it left out must keep their
        place before later ones) or when signing pauses."""
        run: list[tuple[list[Intent], int]] = []
        if len(batches) > 1:
            # A simulation's gas serves every later batch of the same Msgs no larger than it (the gas memory):
            # simulating the largest first spares one simulation per slightly larger batch of the run.
            largest = max(batches, key=lambda b: sum(len(i.msg_bytes) for i in b))
            if await self._gas(largest, head) is None:
                return run
        for planned in batches:
            sized = await self._gas(planned, head)
            if sized is None:
                break
            run.append(sized)
            if len(sized[0]) < len(planned):
                break
        return run

    async def _sign_and_send(self, batches: list[list[Intent]], head: int, *, retried: bool) -> float:
        """Sign a run of txs, store them all in one write (bytes before any broadcast), then broadcast them in
        sequence order, in JSON-RPC batch requests, without waiting for a block: the node's CheckTx takes
        consecutive sequences of one account, each on the check state the previous one left. One compact burst
        after the write: sending a first part while the rest is signed measured no faster, and a part that
        meets a block being built waits for it."""
        sized = await self._size_run(batches, head)
        if not sized:
            return 0.0
        run: list[tuple[list[Intent], SignedTx]] = []
        for batch, gas in sized:
            run.append((batch, self._build(batch, head, gas, self._next_sequence + len(run))))
        rows = [(tuple(i.id for i in b), t.tx_hash, t.tx_bytes, t.sequence, t.timeout_height) for b, t in run]
        batch_ids = await self._store.write("record signed txs", record_signed_run_txn, rows)
        signed = [
            (batch, InFlight(batch_id, t.tx_hash, t.tx_bytes, t.sequence, t.timeout_height, ids, False))
            for batch_id, (ids, *_), (batch, t) in zip(batch_ids, rows, run, strict=True)
        ]
        flights = [f for _, f in signed]
        self._flight.extend(flights)
        self._next_sequence = flights[-1].sequence + 1
        self._crash_point("after_sign")
        sent: list[InFlight] = []
        for chunk in _broadcast_chunks(flights):
            answers = await self._broadcast_many(chunk)
            for offset, (flight, answer) in enumerate(zip(chunk, answers, strict=True)):
                if isinstance(answer, ChainAnswer) and _accepted(answer):
                    flight.sent_at = head
                    self._resume()
                    sent.append(flight)
                    continue
                later = self._accepted_past(chunk[offset + 1 :], answers[offset + 1 :])
                await self._record_broadcast(sent + later)
                return await self._not_accepted(flight, answer, later, signed, head, retried=retried)
            self._crash_point("after_broadcast")
        await self._record_broadcast(sent)
        return 0.0

    async def _not_accepted(
        self,
        flight: InFlight,
        answer: ChainAnswer | ChainRpcError | None,
        later: list[InFlight],
        signed: list[tuple[list[Intent], InFlight]],
        head: int,
        *,
        retried: bool,
    ) -> float:
        """A tx of the run did not enter the mempool. An RPC error or a full mempool leaves it and every later tx
        in flight as 'signed' (re-broadcast in order); a refusal releases the later ones never accepted."""
        if isinstance(answer, ChainRpcError):
            raise answer
        if answer is None:
            return self._full_mempool()
        flight.sent_at = head
        index = next(n for n, (_, f) in enumerate(signed) if f is flight)
        unsent = [f for _, f in signed[index + 1 :] if all(f is not a for a in later)]
        if later:
            return await self._overtaken(signed[index][0], flight, unsent, later, answer)
        return await self._refused(signed[index][0], flight, unsent, answer, head, retried=retried)

    async def _overtaken(
        self, batch: list[Intent], flight: InFlight, unsent: list[InFlight], later: list[InFlight], answer: ChainAnswer
    ) -> float:
        """The node took later txs of the request after refusing this one: on a node that checks sequences, only
        because the account's sequence was ahead of ours (another sender used it) and they carry the sequences it
        expects. They stay in flight and signing goes on after them; this tx and the others not taken go back to
        the queue, spending no attempt."""
        for dropped in (flight, *unsent):
            self._flight.remove(dropped)
        if unsent:
            reason = f"not in the mempool: the tx at sequence {flight.sequence} before it was refused"
            await self._store.write("release unsent txs", release_unsent_txn, [f.batch_id for f in unsent], reason)
        self._next_sequence = max(f.sequence for f in self._flight) + 1
        if answer.code != SEQUENCE_MISMATCH:  # not expected: read the chain's sequence once all in flight settle
            self._should_resync = True
            await self._settler.refused(flight, answer, len(batch))
            return 0.0
        self.status.sequence_mismatches += 1
        await self._store.write(
            "requeue refused tx", requeue_batch_txn, flight.batch_id, "failed", answer.code, answer.log
        )
        seqs = expected_sequence(answer.log)
        if seqs is not None and any(f.sequence == seqs[0] for f in later):
            log.info("account sequence drifted", extra={"expected": seqs[0], "got": seqs[1], "retry": False})
            self.status.sequence_mismatches_resolved += 1
        else:
            self._should_resync = True
        return 0.0

    def _accepted_past(
        self, chunk: list[InFlight], answers: list[ChainAnswer | ChainRpcError | None]
    ) -> list[InFlight]:
        """Txs of a batch request accepted after an earlier one of it was not: they are in the mempool (sent at
        their sequence, they can still land) and stay in flight; the node's CheckTx normally refuses them all."""
        return [f for f, a in zip(chunk, answers, strict=True) if isinstance(a, ChainAnswer) and _accepted(a)]

    async def _record_broadcast(self, sent: list[InFlight]) -> None:
        if sent:
            await self._store.write("record broadcast", record_broadcasts_txn, [f.batch_id for f in sent])
            for flight in sent:
                flight.broadcast = True

    async def _refused(
        self,
        batch: list[Intent],
        flight: InFlight,
        unsent: list[InFlight],
        answer: ChainAnswer,
        head: int,
        *,
        retried: bool,
    ) -> float:
        """CheckTx refused it: these bytes are not in any mempool and never will be. Drop them, and the run's later
        txs not in the mempool (never broadcast, or refused after it), whose sequences now lie past a gap: their
        intents are queued again."""
        for dropped in (flight, *unsent):
            self._flight.remove(dropped)
        self._next_sequence = flight.sequence
        if unsent:
            reason = f"not in the mempool: the tx at sequence {flight.sequence} before it was refused"
            await self._store.write("release unsent txs", release_unsent_txn, [f.batch_id for f in unsent], reason)
        if answer.code == SEQUENCE_MISMATCH:
            return await self._sequence_mismatch(batch, flight, answer, head, retried=retried)
        await self._settler.refused(flight, answer, len(batch))
        return 0.0

    async def _sequence_mismatch(
        self, batch: list[Intent], flight: InFlight, answer: ChainAnswer, head: int, *, retried: bool
    ) -> float:
        self.status.sequence_mismatches += 1
        await self._store.write(
            "requeue refused tx", requeue_batch_txn, flight.batch_id, "failed", answer.code, answer.log
        )
        seqs = expected_sequence(answer.log)
        if seqs is None:
            self._should_resync = True
            return 0.0
        expected, got = seqs
        if expected < got and any(expected <= f.sequence < got for f in self._flight):
            # Our own earlier txs left the mempool (node restart): send them again, they fill the gap.
            for f in self._flight:
                f.sent_at = None
            self.status.sequence_mismatches_resolved += 1
            return self.settings.busy_interval
        log.info("account sequence drifted", extra={"expected": expected, "got": got, "retry": not retried})
        self._next_sequence = expected
        if retried:
            self._should_resync = True
            return 0.0
        delay = await self._sign_and_send([batch], head, retried=True)
        if any(f.sequence == expected and f.broadcast for f in self._flight):
            self.status.sequence_mismatches_resolved += 1
        return delay

    def _crash_point(self, point: CrashPoint) -> None:
        if self._crash_at == point:
            log.warning("test seam: crashing", extra={"crash_point": point})
            os.kill(os.getpid(), signal.SIGKILL)

    async def _publish(self) -> None:
        counts = await self._store.read("intent counts", intent_counts)
        self.status.counts = counts
        self.status.next_sequence = self._next_sequence
        self.status.in_flight = len(self._flight)
        self._metrics.set_tx_intents(counts)  # type: ignore[arg-type]
        self._metrics.set_signer_sequence(self._next_sequence)
        self.status.node_refused = self._guard.problem
        self.status.unproven_txs = dict(self._settler.unproven)
        self._metrics.set_signer_alarms(
            paused=self.status.paused is not None,
            unproven_txs=len(self.status.unproven_txs),
            node_refused=self.status.node_refused is not None,
        )
        if self._health is not None:
            self._health.set_problem("signer-funds", self.status.paused)
            self._health.set_problem("signer-node", self.status.node_refused)
            unproven = self.status.unproven_txs
            self._health.set_problem(
                "signer-txs",
                f"{len(unproven)} tx(s) past timeout height neither landed nor proven lost" if unproven else None,
            )


def _error_answer(error: ChainRpcError) -> ChainAnswer | ChainRpcError | None:
    """A broadcast's RPC error read as an answer: "already in cache" is pending (accepted), a full mempool
    None, anything else the error itself (to raise)."""
    text = str(error)
    if "already exists in cache" in text:
        return ChainAnswer(0)
    return None if "mempool is full" in text else error


def _accepted(answer: ChainAnswer) -> bool:
    return answer.code in (0, ALREADY_IN_MEMPOOL)


def _broadcast_chunks(flights: list[InFlight]) -> list[list[InFlight]]:
    """The flights in batch requests of at most BROADCAST_BATCH txs and BROADCAST_BYTES bytes, in order."""
    chunks: list[list[InFlight]] = []
    size = 0
    for flight in flights:
        if not chunks or len(chunks[-1]) >= BROADCAST_BATCH or size + len(flight.tx_bytes) > BROADCAST_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(flight)
        size += len(flight.tx_bytes)
    return chunks


def build_signer(
    chain: ChainConfig,
    secrets: Mapping[str, Secret],
    rpc: CometRpc,
    store: Store,
    metrics: Metrics,
    auditor: Auditor,
    ws_url: str,
    health: HealthState | None = None,
    activity: ActivityFeed | None = None,
) -> Signer:
    """What app.py calls with the configuration's chain.* keys and secrets: make the process undumpable, load the
    key (ConfigError without one), build the signer with its tx subscription (app.py runs
    `signer.watcher.subscription` in the TaskGroup)."""
    forbid_core_dumps()
    key = load_signing_key(chain, secrets)
    watcher = TxWatcher(ws_url, key.address, metrics)
    settings = SignerSettings.from_chain(chain)
    return Signer(rpc, store, key, settings, metrics, auditor, watcher=watcher, health=health, activity=activity)
