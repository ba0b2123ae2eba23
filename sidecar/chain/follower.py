"""The chain follower: every support_event of every committed block, once, in chain order.

For each height from cursor+1 to the head it fetches `block_results` (several heights in flight
at once), decodes the support events, checks whether the sidecar can open their payloads, and
commits them with the cursor advance in one transaction, strictly in height order. It never skips
a height: a height that keeps failing stops the cursor and makes the sidecar unhealthy, saying why.

What one chain account can shape (an event, an envelope) never stops it: such an event becomes a
poison record or a placeholder with its reason. What the node answers is checked on every step and
before every commit: another chain id, a head below the cursor or a different first block (a node
re-genesised or swapped behind the URL) is refused with an alarm and never mixed into the cursor.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any

from sidecar.chain.envelope import EnvelopeError, EnvelopeKey
from sidecar.chain.events import decode_block
from sidecar.chain.heads import HeadTracker
from sidecar.chain.probe import ChainProbe
from sidecar.chain.rpc import CometRpc, NodeAnswerMismatch, NodeStatus
from sidecar.errors import ChainRpcError
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.inbox import (
    BlockBatch,
    Cursor,
    commit_blocks_txn,
    init_cursor_txn,
    load_cursor,
    load_first_block,
    pending_count,
    save_first_block_txn,
)
from sidecar.store.records import ContentCheck, SupportEvent

log = logging.getLogger(__name__)
# A refused node is checked again after chain.poll_interval, then twice as long each time up to this: a node the
# operator fixes at once is followed at once, one left wrong is asked twice a minute.
RECHECK_REFUSED = 30.0
# Chunks holding more events than this are "busy": the window is halved until a commit holds fewer, which
# bounds the decoded events held in memory (about 3 KB each) during a backfill; decoding and storing them is
# then the limit, not the node.
EARLY_FETCH_EVENTS = 100
# A commit of heights without events only moves the cursor. While more heights are already in flight, up to
# this many of them wait for the next commit instead: one WAL sync for hundreds of empty heights, not one per
# batch request (a crash loses nothing: uncommitted heights are fetched again).
HOLD_EMPTY_HEIGHTS = 500


class FollowerState(enum.Enum):
    STARTING = "starting"
    FOLLOWING = "following"
    REFUSED = "refused"


@dataclass(frozen=True)
class FollowerSettings:
    chain_id: str = ""
    start_height: int = 0
    poll_interval: float = 2.0
    no_block_alarm: float = 60.0
    max_pending: int = 10_000
    desks: tuple[str, ...] = ()  # the desks whose queued jobs count towards max_pending
    window: int = 4  # batch requests in flight
    # Heights per batch request, which also asks the node's status: 10 calls, CometBFT's default
    # rpc.max_request_batch_size (a node set lower gets the heights split and its status asked after them).
    chunk: int = 9
    fetch_attempts: int = 5


class ChainFollower:
    def __init__(
        self,
        rpc: CometRpc,
        store: Store,
        probe: ChainProbe,
        heads: HeadTracker,
        health: HealthState,
        metrics: Metrics,
        settings: FollowerSettings,
        support_key: EnvelopeKey | None,
        *,
        activity: ActivityFeed | None = None,
    ) -> None:
        self._rpc = rpc
        self._store = store
        self._probe = probe
        self._heads = heads
        self._health = health
        self._metrics = metrics
        self._settings = settings
        self._key = support_key
        self._activity = activity
        self._base64_attributes = False
        self._next_fetch = 0  # the first height no fetch of the current catch-up has asked for
        self._busy = False  # the last chunks committed held many events (see _fill_window)
        self.state = FollowerState.STARTING
        self.cursor: Cursor | None = None
        # (earliest height, its block hash) of the node as first seen: the chain instance we follow,
        # kept in the store so that a restart still knows it.
        self._first_block: tuple[int, str] | None = None
        self._saved_first_block: tuple[int, str] | None = None
        self._rechecks = 0  # refusals in a row: the next re-check waits longer (see RECHECK_REFUSED)

    async def step(self) -> float:
        status = await self._probe.check()
        if status is None:
            return self._settings.poll_interval
        if self.state is FollowerState.FOLLOWING and await self._refused_node(status):
            self.state = FollowerState.STARTING  # re-checked from scratch, and refused again, until fixed
            return self._recheck_delay()
        self._heads.observe(status.latest_height)
        self._check_block_alarm()
        if self.state is not FollowerState.FOLLOWING:
            await self._start(status)
            if self.state is FollowerState.REFUSED:
                self.state = FollowerState.STARTING  # re-check later: the operator may fix the node
                return self._recheck_delay()
            if self.state is FollowerState.STARTING:
                return self._settings.poll_interval
        if await self._paused():
            if self.cursor is not None:  # the lag keeps growing while paused: the gauge must show it
                self._metrics.set_chain(self.cursor.height, self._heads.height)
            return self._settings.poll_interval
        assert self.cursor is not None
        if self.cursor.height < self._heads.height:
            await self._catch_up()
            if self.state is not FollowerState.FOLLOWING:  # refused mid-way: re-checked later, like at start
                self.state = FollowerState.STARTING
                return self._recheck_delay()
        else:
            await self._heads.wait_change(self._settings.poll_interval)
        self._rechecks = 0  # the node answered a catch-up or is at its head: following, not only past the start check
        return 0.0

    def _recheck_delay(self) -> float:
        """How long to wait before checking a refused node again: poll_interval doubled per refusal in a row."""
        delay = min(RECHECK_REFUSED, self._settings.poll_interval * 2.0 ** min(self._rechecks, 10))
        self._rechecks += 1
        return delay

    def _refuse(self, reason: str) -> None:
        if self._health.problems.get("follower") != reason:
            log.error("not following the chain", extra={"reason": reason})
        self._health.set_problem("follower", reason)
        self._metrics.set_health(self._health.healthy, True)
        self.state = FollowerState.REFUSED

    async def _refused_node(self, status: NodeStatus) -> bool:
        """Refuse (and say so) a node that is not the chain instance the cursor follows."""
        assert self.cursor is not None
        await self._accept_older_history(status)
        problem = self._node_problem(status, self.cursor)
        if problem is not None:
            self._refuse(problem)
            return True
        await self._save_first_block()
        return False

    async def _node_changed(self) -> bool:
        """After a failed read: True (and refused) when the node is no longer the one followed."""
        try:
            status = await self._rpc.status()
        except ChainRpcError:
            return False  # unreachable: the caller's own error says what happened
        return await self._refused_node(status)

    async def _save_first_block(self) -> None:
        if self._first_block is not None and self._first_block != self._saved_first_block:
            await self._store.write("save first block", save_first_block_txn, *self._first_block)
            self._saved_first_block = self._first_block

    def _node_problem(self, status: NodeStatus, cursor: Cursor) -> str | None:
        if status.chain_id != cursor.chain_id:
            return (
                f"the database follows chain {cursor.chain_id!r} but the node serves {status.chain_id!r} "
                "(chain reset?); move the database aside to start over"
            )
        if status.latest_height < cursor.height:
            return (
                f"the node's head {status.latest_height} is below the cursor {cursor.height}: the node was reset "
                "to genesis or the RPC URL now reaches another node; not following it"
            )
        return self._first_block_problem(status)

    async def _accept_older_history(self, status: NodeStatus) -> None:
        """A node whose earliest block is older than the one seen (an archive node, or one that prunes less)
        is the same chain instance if its block at the height seen has the hash seen: then its earliest
        block becomes the one remembered. Any doubt (no answer, another hash) leaves the refusal to
        `_first_block_problem`."""
        seen = self._first_block
        if seen is None or not status.earliest_block_hash or status.earliest_height >= seen[0]:
            return
        try:
            block = await self._rpc.block(seen[0])
        except ChainRpcError:
            return
        block_id = block.get("block_id")
        answered = block_id.get("hash") if isinstance(block_id, dict) else None
        if isinstance(answered, str) and answered.upper() == seen[1]:
            log.info("node keeps older history of the same chain", extra={"earliest_height": status.earliest_height})
            self._first_block = (status.earliest_height, status.earliest_block_hash.upper())

    def _first_block_problem(self, status: NodeStatus) -> str | None:
        """The node's earliest block identifies the chain instance: it may only move up (pruning)."""
        if not status.earliest_block_hash:
            return None
        first = (status.earliest_height, status.earliest_block_hash.upper())
        seen = self._first_block
        if seen is not None and (first[0] < seen[0] or (first[0] == seen[0] and first[1] != seen[1])):
            return (
                f"the node's first block changed (height {seen[0]} hash {seen[1][:16]}..., now height {first[0]} "
                f"hash {first[1][:16]}...): the node was re-genesised or another node answers; not following it"
            )
        if seen is None or first[0] > seen[0]:  # first sight, or the node pruned old blocks
            self._first_block = first
        return None

    async def _start(self, status: NodeStatus) -> None:
        if status.catching_up:
            self._health.set_problem("follower", "waiting for the node to catch up")
            return
        configured = self._settings.chain_id
        if configured and configured != status.chain_id:
            self._refuse(f"node serves chain {status.chain_id!r}, configured chain.chain_id is {configured!r}")
            return
        self._base64_attributes = status.version.startswith("0.34")
        cursor = await self._store.read("load cursor", load_cursor)
        if self._first_block is None:
            self._first_block = self._saved_first_block = await self._store.read("first block", load_first_block)
        await self._accept_older_history(status)
        if cursor is not None and (problem := self._node_problem(status, cursor)) is not None:
            self._refuse(problem)
            return
        if cursor is None:
            self._first_block_problem(status)  # remember the chain instance this cursor starts on
            start = self._settings.start_height or status.latest_height
            cursor = await self._store.write("init cursor", init_cursor_txn, status.chain_id, max(0, start - 1))
            log.info("new cursor", extra={"chain_id": cursor.chain_id, "first_height": cursor.height + 1})
        needed = cursor.height + 1
        if needed < status.earliest_height:
            self._refuse(
                f"the node has pruned blocks below {status.earliest_height} but the cursor needs {needed}; "
                "follow an archive node or move the database aside and set chain.start_height"
            )
            return
        if needed < status.latest_height:  # the newest height's results may not be stored yet
            try:
                await self._rpc.block_results(needed)
            except NodeAnswerMismatch as exc:
                self._refuse(f"the node answers for other heights than asked: {exc}")
                return
            except ChainRpcError as exc:
                if exc.retryable:
                    raise
                self._refuse(
                    f"the node cannot serve block results for height {needed} "
                    f"(pruned, or discard_abci_responses is on): {exc}"
                )
                return
        await self._save_first_block()
        self.cursor = cursor
        self.state = FollowerState.FOLLOWING
        self._health.set_problem("follower", None)
        log.info(
            "following the chain",
            extra={"chain_id": cursor.chain_id, "cursor": cursor.height, "head": status.latest_height},
        )

    async def _paused(self) -> bool:
        pending = await self._store.read("pending inbox", pending_count, self._settings.desks)
        if pending >= self._settings.max_pending:
            if "backpressure" not in self._health.problems:
                log.warning(
                    "follower paused: inbox full", extra={"pending": pending, "max": self._settings.max_pending}
                )
            self._health.set_problem("backpressure", f"{pending} events pending (max {self._settings.max_pending})")
            return True
        if "backpressure" in self._health.problems:
            log.info("follower resumed", extra={"pending": pending})
            self._health.set_problem("backpressure", None)
        return False

    def _check_block_alarm(self) -> None:
        silent = self._heads.silent_for()
        if silent > self._settings.no_block_alarm:
            if "blocks" not in self._health.problems:
                log.error("no new block", extra={"seconds": int(silent)})
            self._health.set_problem("blocks", f"no new block for {int(silent)}s")
        elif "blocks" in self._health.problems:
            self._health.set_problem("blocks", None)
            log.info("blocks are coming again")

    async def _catch_up(self) -> None:
        """Fetch chunks of heights ahead in a window, commit them in order, until the head, backpressure
        or a failure. One chunk is one JSON-RPC batch request, the node's status included; every chunk already
        fetched in order joins the next commit (one transaction, once each chunk's status is checked), and
        the window is refilled before that commit, so the node, the event loop (decoding) and the writer
        thread (storing) work at once."""
        assert self.cursor is not None
        self._next_fetch = self.cursor.height + 1
        self._busy = True  # until a commit shows quiet blocks: a backfill may start in the busiest ones
        inflight: dict[int, asyncio.Task[_Chunk]] = {}
        held: list[BlockBatch] = []  # empty heights checked, waiting for the next commit
        try:
            while (next_height := (held[-1].height if held else self.cursor.height) + 1) <= self._heads.height:
                self._fill_window(inflight)
                chunks = [await inflight.pop(next_height)]
                while (ready := _fetched(inflight.get(chunks[-1].batches[-1].height + 1))) is not None:
                    del inflight[chunks[-1].batches[-1].height + 1]
                    chunks.append(ready)
                fetched = [batch for chunk in chunks for batch in chunk.batches]
                events = sum(len(batch.events) for batch in fetched)
                self._busy = events > EARLY_FETCH_EVENTS
                self._fill_window(inflight)
                # Each chunk came with the status of the node that served it (same request): a node swapped
                # behind the URL is refused before anything it served is committed.
                for status in dict.fromkeys(chunk.status for chunk in chunks):
                    if await self._refused_node(status):
                        self.state = FollowerState.STARTING
                        return
                batches = held + fetched
                if not events and inflight and len(batches) < HOLD_EMPTY_HEIGHTS:
                    held = batches
                    continue
                # Only events add to the backlog: committing heights without any needs no look at its size.
                if events and await self._paused():
                    return  # what was fetched is fetched again when the backlog drains
                held = []
                await self._commit(batches)
        except ChainRpcError as exc:
            height = (held[-1].height if held else self.cursor.height) + 1  # the height that failed
            if await self._node_changed():  # a failure that says "another node answers" says it plainly
                self.state = FollowerState.STARTING
                return
            if not exc.retryable:
                self._refuse(f"cannot read block results at height {height}: {exc}")
                return
            self._health.set_problem("follower", f"stuck at height {height}: {exc}")
            raise
        finally:
            for task in inflight.values():
                task.cancel()
            await asyncio.gather(*inflight.values(), return_exceptions=True)

    def _fill_window(self, inflight: dict[int, asyncio.Task[_Chunk]]) -> None:
        """Start fetches up to the window, in height order, up to the head known now. Through busy blocks
        (the last commit held many events) half the window is enough: decoding and storing the events is
        then the limit, not the node, and every chunk fetched ahead is held decoded in memory."""
        target = self._heads.height
        window = max(1, self._settings.window // 2) if self._busy else self._settings.window
        while len(inflight) < window and self._next_fetch <= target:
            first, last = self._next_fetch, min(target, self._next_fetch + self._settings.chunk - 1)
            inflight[first] = asyncio.create_task(self._fetch(first, last), name=f"fetch-{first}")
            self._next_fetch = last + 1

    async def _fetch(self, first: int, last: int) -> _Chunk:
        delay = 0.2
        for attempt in range(1, self._settings.fetch_attempts + 1):
            head = self._heads.height  # as known when asking (the head may move while the node answers)
            try:
                blocks, status = await self._rpc.block_results_checked(first, last)
                break
            except NodeAnswerMismatch:
                raise  # the node answered for other heights: refused, not retried
            except ChainRpcError as exc:
                # The node stores a block before its results, so the newest height can be briefly
                # missing: only below the head known when asking is "no results" final (the node had
                # stored a later block, so it had stored these results). A head that moved on while the
                # node answered proves nothing about the moment it answered.
                at_head = last >= head
                if (not exc.retryable and not at_head) or attempt == self._settings.fetch_attempts:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        blocks.reverse()
        decoded = []
        while blocks:  # popped one by one: each height's parsed answer is freed as soon as it is decoded
            decoded.append(self._decode(blocks.pop()))
        return _Chunk(decoded, status)

    def _decode(self, results: dict[str, Any]) -> BlockBatch:
        """Events that cannot be decoded come back as poison; payloads that cannot be opened as
        placeholders: neither raises, so one hostile event never holds back its block."""
        events = decode_block(results, base64_encoded=self._base64_attributes)
        content = {
            e.event_id: check
            for e in events
            if isinstance(e, SupportEvent) and (check := check_content(self._key, e)) is not None
        }
        return BlockBatch(int(results["height"]), events, content)

    async def _commit(self, batches: list[BlockBatch]) -> None:
        assert self.cursor is not None
        chain_id = self.cursor.chain_id
        result = await self._store.write("commit blocks", commit_blocks_txn, chain_id, batches)
        self.cursor = Cursor(chain_id, batches[-1].height)
        self._metrics.set_chain(self.cursor.height, self._heads.height)
        self._announce(batches)
        if result.poison:
            log.error(
                "undecodable support events kept as poison",
                extra={"count": result.poison, "height": batches[-1].height},
            )
        if "follower" in self._health.problems:
            self._health.set_problem("follower", None)

    def _announce(self, batches: list[BlockBatch]) -> None:
        """Tell watchers (WatchEvents) of each support event now stored: its type, ticket and height."""
        if self._activity is None:
            return
        for batch in batches:
            for event in batch.events:
                if isinstance(event, SupportEvent):
                    kind = event.event_type
                    self._activity.publish(
                        "event", "processed", ticket_id=event.ticket_id, height=batch.height, detail=kind
                    )


@dataclass(frozen=True)
class _Chunk:
    """One batch request's heights, decoded, and the status of the node that answered it."""

    batches: list[BlockBatch]
    status: NodeStatus


def _fetched(task: asyncio.Task[_Chunk] | None) -> _Chunk | None:
    """The chunk of a fetch that already succeeded; None while it runs or when it failed (a failure is
    raised where the chunk is awaited, in order, after the chunks before it are committed)."""
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def check_content(key: EnvelopeKey | None, event: SupportEvent) -> ContentCheck | None:
    """Whether the sidecar can open an event's payload, and why not (None: the event carries none).
    Never raises, so one hostile payload never holds back its block."""
    payload = event.payload.get("payload") or {}
    if not payload and not event.payload.get("envelope_ref"):
        return None
    envelope = payload.get("envelope") if isinstance(payload, dict) else None
    if not envelope:
        return ContentCheck("placeholder", "payload held off-chain (envelope_ref); no artifact store configured")
    if key is None:
        return ContentCheck("placeholder", "no support key configured (secret support_private_key)")
    try:
        key.open(envelope)
    except EnvelopeError as exc:
        return ContentCheck("placeholder", str(exc))
    except Exception as exc:  # the per-event boundary: opening is pure computation
        return ContentCheck("placeholder", f"payload cannot be opened ({type(exc).__name__})")
    return ContentCheck("decrypted")
