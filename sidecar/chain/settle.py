"""Settling txs in flight: confirm inclusion by hash, expire the provably lost, dead-letter the hopeless.

Inclusion is learnt from the tx subscription (txwatch.py) or, for what it did not report, from `/tx`.
Only these facts release intents back to the queue: a block holds the tx with a failure code, CheckTx
refused it, or the tx provably never lands. That proof needs two answers, two blocks past its
timeout_height (a tx can only be in a block <= timeout_height; the second block covers the indexer's
lag): `/tx`'s exact "tx (HASH) not found", and the account's sequence at a height at or past
timeout_height still at or below the tx's (or `tx.acc_seq` naming another tx as the one that used
it). Anything less keeps the tx in flight and raises an alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sidecar.chain.outcomes import OUT_OF_GAS, ChainAnswer, Verdict, judge
from sidecar.chain.rpc import CometRpc
from sidecar.chain.txbuild import query_account
from sidecar.chain.txwatch import Inclusion, Lookup, TxWatcher, look_up, sequence_user
from sidecar.errors import ChainRpcError
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import Metrics
from sidecar.store.audit import AuditEntry
from sidecar.store.db import Store
from sidecar.store.intents import (
    Intent,
    dead_letter_txn,
    get_intents,
    record_included_txn,
    requeue_batch_txn,
)

if TYPE_CHECKING:
    from sidecar.chain.signer import InFlight

log = logging.getLogger(__name__)
EXPIRY_GRACE = 2  # blocks past timeout_height before "not found" is final
POLL_AFTER = 3  # blocks after a broadcast before `/tx` is asked about a tx the subscription did not report
MAX_ATTEMPTS = 5  # failures pinned on one intent before it is dead-lettered


class Settler:
    def __init__(
        self,
        rpc: CometRpc,
        store: Store,
        auditor: Auditor,
        on_lost_sequence: Callable[[], None],
        on_out_of_gas: Callable[[], None],
        metrics: Metrics,
        watcher: TxWatcher | None,
        *,
        address: str = "",
        on_pause: Callable[[ChainAnswer], None] = lambda answer: None,
        activity: ActivityFeed | None = None,
    ) -> None:
        self._rpc = rpc
        self._metrics = metrics
        self._watcher = watcher
        self._on_out_of_gas = on_out_of_gas
        self._store = store
        self._auditor = auditor
        self._on_lost_sequence = on_lost_sequence
        self._on_pause = on_pause
        self._address = address
        self._activity = activity
        self.unproven: dict[str, str] = {}  # tx hash -> why its loss cannot be proven (the alarm)

    async def settle(self, flight: list[InFlight], head: int) -> list[InFlight]:
        """Walk txs in sequence order; return those still unresolved."""
        flight = sorted(flight, key=lambda f: f.sequence)
        remaining: list[InFlight] = []
        for index, tx in enumerate(flight):
            found = self._watcher.take(tx.tx_hash) if self._watcher is not None else None
            polled = False
            if found is None and self._should_poll(tx, head, flight[index + 1 :]):
                polled = True
                lookup = await look_up(self._rpc, tx.tx_hash)
                found = lookup.found
                if found is None and head >= tx.timeout_height + EXPIRY_GRACE:
                    found, released = await self._prove_lost(tx, lookup)
                    if released:
                        continue
            if found is None:
                remaining.extend(flight[index:])  # later sequences cannot be in a block before this one
                break
            self.unproven.pop(tx.tx_hash, None)
            self._metrics.count_tx_confirmation("poll" if polled else "websocket")
            await self._settle_included(tx, found.answer, found.height)
        kept = {tx.tx_hash for tx in remaining}
        for tx_hash in [h for h in self.unproven if h not in kept]:
            del self.unproven[tx_hash]
        return remaining

    def _should_poll(self, tx: InFlight, head: int, later: Sequence[InFlight]) -> bool:
        """Ask `/tx` unless the subscription has watched since the broadcast and may still report it."""
        watcher = self._watcher
        if watcher is None or not watcher.watched_since(tx.watch_epoch):
            return True
        if tx.sent_at is None or head >= tx.sent_at + POLL_AFTER or head >= tx.timeout_height + EXPIRY_GRACE:
            return True  # reported late or dropped: the poll is authoritative
        return any(watcher.has(t.tx_hash) for t in later)  # a later sequence landed, so this one did

    async def _prove_lost(self, tx: InFlight, lookup: Lookup) -> tuple[Inclusion | None, bool]:
        """(inclusion found another way, released): release only on proof; otherwise alarm and wait."""
        try:
            account = await query_account(self._rpc, self._address)
        except ChainRpcError as exc:
            self._alarm(tx, f"account query failed: {exc}")
            return None, False
        if account.height < tx.timeout_height:
            self._alarm(tx, f"account answered for height {account.height}, before timeout height {tx.timeout_height}")
            return None, False
        if account.sequence <= tx.sequence:
            if lookup.unknown:
                await self._expire(tx, account.height)
                return None, True
            self._alarm(tx, f"/tx did not say the tx is unknown: {lookup.error}")
            return None, False
        # The sequence moved on: by our tx, or by another tx signed with the same key.
        user = await sequence_user(self._rpc, self._address, tx.sequence)
        if user is not None and user[0] == tx.tx_hash.upper():
            return user[1], False
        if user is not None and lookup.unknown:
            await self._superseded(tx, user[0])
            return None, True
        why = f"/tx: {lookup.error}" if lookup.error else "no tx found for the sequence it used"
        self._alarm(tx, f"sequence {tx.sequence} was used, {why}")
        return None, False

    def _alarm(self, tx: InFlight, reason: str) -> None:
        if tx.tx_hash not in self.unproven:
            log.warning(
                "tx past its timeout height without proof it did not land: its intents wait",
                extra={"tx_hash": tx.tx_hash, "timeout_height": tx.timeout_height, "reason": reason},
            )
        self.unproven[tx.tx_hash] = reason

    async def _expire(self, tx: InFlight, height: int) -> None:
        log.info(
            "tx expired unconfirmed, its intents are queued again",
            extra={"tx_hash": tx.tx_hash, "timeout_height": tx.timeout_height, "head": height},
        )
        await self._requeue(tx, "expired", f"not included by height {tx.timeout_height}")

    async def _superseded(self, tx: InFlight, other: str) -> None:
        """Another tx of this key used our sequence: ours can never land. Re-sign, spending no attempt."""
        log.warning(
            "tx superseded by another tx of the same key, its intents are queued again",
            extra={"tx_hash": tx.tx_hash, "sequence": tx.sequence, "used_by": other},
        )
        await self._requeue(tx, "failed", f"sequence {tx.sequence} used by {other}")

    async def _requeue(self, tx: InFlight, state: str, reason: str) -> None:
        """A tx proven never to land: its intents go back to the queue (no attempt spent), its sequence is lost."""
        self.unproven.pop(tx.tx_hash, None)
        await self._store.write(f"requeue {state} tx", requeue_batch_txn, tx.batch_id, state, None, reason)
        self._on_lost_sequence()

    async def _settle_included(self, tx: InFlight, answer: ChainAnswer, height: int) -> None:
        verdict = judge(answer, len(tx.intent_ids))
        if verdict is Verdict.LANDED:
            await self._store.write("record included tx", record_included_txn, tx.batch_id, height)
            await self._announce(tx.intent_ids, "included", height)
            return
        if not answer.consumed_sequence:
            self._on_lost_sequence()
        if answer.code == OUT_OF_GAS and answer.codespace in ("", "sdk"):
            self._on_out_of_gas()
        log.warning(
            "tx failed in block",
            extra={
                "tx_hash": tx.tx_hash,
                "height": height,
                "code": answer.code,
                "codespace": answer.codespace,
                "verdict": verdict.value,
            },
        )
        await self._release(tx, answer, verdict, height)

    async def refused(self, tx: InFlight, answer: ChainAnswer, batch_size: int) -> None:
        """CheckTx refused the tx (not for its sequence): nothing landed."""
        log.warning("tx refused by the node: %s", answer.summary, extra={"tx_hash": tx.tx_hash})
        await self._release(tx, answer, judge(answer, batch_size), None)

    async def _release(self, tx: InFlight, answer: ChainAnswer, verdict: Verdict, height: int | None) -> None:
        intents = await self._store.read("intents of tx", get_intents, tx.intent_ids)
        ids = [i.id for i in intents]
        code, text = answer.code, answer.log
        if verdict is Verdict.ISOLATE:
            index = answer.message_index or 0
            culprit = [ids[index]] if index < len(ids) else []
            await self._store.write(
                "isolate failed message",
                requeue_batch_txn,
                tx.batch_id,
                "failed",
                code,
                text,
                height,
                culprit,
                blame=culprit,
            )
            return
        if verdict is Verdict.SPLIT:
            await self._store.write(
                "split failed tx", requeue_batch_txn, tx.batch_id, "failed", code, text, height, ids
            )
            return
        if verdict in (Verdict.PAUSE, Verdict.RESIGN):
            await self._store.write("requeue failed tx", requeue_batch_txn, tx.batch_id, "failed", code, text, height)
            if verdict is Verdict.PAUSE:
                self._on_pause(answer)
            return
        if verdict is Verdict.RETRY and all(i.attempts + 1 < MAX_ATTEMPTS for i in intents):
            await self._store.write(
                "requeue failed tx", requeue_batch_txn, tx.batch_id, "failed", code, text, height, blame=ids
            )
            return
        await self._dead_letter(tx, intents, answer, height)

    async def _dead_letter(
        self, tx: InFlight, intents: Sequence[Intent], answer: ChainAnswer, height: int | None
    ) -> None:
        audits = (
            [self._auditor.clean(_audit_entry(tx, i, answer, height)) for i in intents] if self._auditor.enabled else []
        )
        await self._store.write(
            "dead-letter intents",
            dead_letter_txn,
            [i.id for i in intents],
            answer.code,
            answer.summary,
            audits,
            tx.batch_id,
            height,
        )
        await self._announce([i.id for i in intents], "dead", height, intents)
        log.warning(
            "chain sync failed: tx intents dead-lettered",
            extra={
                "intent_ids": [i.id for i in intents],
                "code": answer.code,
                "codespace": answer.codespace,
                "tx_hash": tx.tx_hash,
            },
        )

    async def _announce(
        self, ids: Sequence[int], action: str, height: int | None, known: Sequence[Intent] | None = None
    ) -> None:
        """Tell watchers (WatchEvents) what became of these intents: ids, ticket, Msg type and height."""
        if self._activity is None or not self._activity.subscribers:
            return
        intents = known if known is not None else await self._store.read("intents of tx", get_intents, ids)
        for intent in intents:
            self._activity.publish(
                "intent",
                action,
                ticket_id=intent.ticket_id or "",
                height=height or 0,
                id=intent.id,
                detail=intent.msg_type,
            )


def _audit_entry(tx: InFlight, intent: Intent, answer: ChainAnswer, height: int | None) -> AuditEntry:
    return AuditEntry(
        event_type="tx_dead_lettered",
        ticket_id=intent.ticket_id,
        direction="inbound",
        actor="sidecar",
        status="dead",
        error=answer.summary,
        block_height=height,
        tx_hash=tx.tx_hash,
        details={
            "intent_id": intent.id,
            "msg_type": intent.msg_type,
            "code": answer.code,
            "codespace": answer.codespace or "sdk",
            "attempts": intent.attempts + 1,
        },
    )
