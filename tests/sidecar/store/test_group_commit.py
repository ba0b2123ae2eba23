"""GroupCommit on a real store: writes that arrive while a commit runs share the next transaction, each
caller gets its own result, a failed transaction fails its whole group and stores none of it, and the
slots bound how many writes wait, as for write_within."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devnet.waiting import async_wait_until
from sidecar.store.db import GroupCommit, GroupFailed, Store, WriterBusy, WriteSlots


@dataclass
class MetaWriter:
    """A group's txn: one meta row per key, the key 'poison' refused, a repeat of a key in or across groups
    reported as not fresh. Records each group's keys, so tests see how the writes were grouped."""

    groups: list[list[str]] = field(default_factory=list)

    def txn(self, conn: sqlite3.Connection, keys: Sequence[str]) -> list[bool]:
        self.groups.append(list(keys))
        fresh = []
        for key in keys:
            if key == "poison":
                raise sqlite3.IntegrityError("refused")
            cur = conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x') ON CONFLICT (key) DO NOTHING", (key,))
            fresh.append(cur.rowcount == 1)
        return fresh


@dataclass
class Rig:
    store: Store
    db: Path
    writer: MetaWriter
    slots: WriteSlots
    group: GroupCommit[str, bool]

    def stored(self) -> list[str]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return sorted(k for (k,) in conn.execute("SELECT key FROM meta WHERE key LIKE 'k%' OR key = 'poison'"))
        finally:
            conn.close()

    def hold(self) -> sqlite3.Connection:
        """Take the database's write lock from outside: the writer thread waits on it until released."""
        holder = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return holder


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = tmp_path / "sidecar.db"
    store = await Store.open(str(db))
    writer = MetaWriter()
    slots = WriteSlots(50)
    try:
        yield Rig(store, db, writer, slots, GroupCommit(store, "meta keys", writer.txn, slots, max_group=8))
    finally:
        await store.close()


async def held_first(rig: Rig, key: str) -> tuple[sqlite3.Connection, asyncio.Task[bool]]:
    """A first write that is committing (the writer thread waits on an outside lock): what is submitted
    next waits for the next group."""
    holder = rig.hold()
    first = asyncio.create_task(rig.group.submit(key))
    await async_wait_until(committing(rig.group), timeout=10, what="the first group to start")
    return holder, first


def committing(group: GroupCommit[str, bool]) -> Callable[[], bool]:
    """True once one more group was taken into a transaction (the writer thread may be waiting for the
    lock) and none waits."""
    before = group.groups
    return lambda: group.groups > before and group.waiting == 0


async def test_writes_arriving_during_a_commit_share_the_next_transaction(rig: Rig) -> None:
    holder, first = await held_first(rig, "k-first")
    rest = [asyncio.create_task(rig.group.submit(f"k-{n}")) for n in range(7)]
    repeat = asyncio.create_task(rig.group.submit("k-3"))  # the same key twice in one group
    await async_wait_until(lambda: rig.group.waiting == 8, timeout=10, what="eight writes to wait")
    assert not first.done() and rig.slots.in_use == 9
    holder.execute("ROLLBACK")
    holder.close()
    assert await first is True
    assert await asyncio.gather(*rest) == [True] * 7
    assert await repeat is False  # stored once, by the first of the two
    assert rig.writer.groups == [["k-first"], [*(f"k-{n}" for n in range(7)), "k-3"]]  # in arrival order
    assert (rig.group.groups, rig.group.written) == (2, 9)
    assert rig.stored() == sorted(["k-first", *(f"k-{n}" for n in range(7))])
    assert rig.slots.in_use == 0


async def test_a_lone_write_is_committed_at_once_and_groups_are_capped(rig: Rig) -> None:
    assert await rig.group.submit("k-alone") is True  # nothing to wait for: no delay for company
    holder, first = await held_first(rig, "k-first")
    rest = [asyncio.create_task(rig.group.submit(f"k-{n}")) for n in range(20)]
    await async_wait_until(lambda: rig.group.waiting == 20, timeout=10, what="twenty writes to wait")
    holder.execute("ROLLBACK")
    holder.close()
    assert await asyncio.gather(first, *rest) == [True] * 21
    assert [len(g) for g in rig.writer.groups] == [1, 1, 8, 8, 4]  # max_group=8
    assert len(rig.stored()) == 22


async def test_a_failed_transaction_fails_every_write_of_its_group_and_stores_none(rig: Rig) -> None:
    holder, first = await held_first(rig, "k-first")
    doomed = [asyncio.create_task(rig.group.submit(key)) for key in ("k-a", "poison", "k-b")]
    await async_wait_until(lambda: rig.group.waiting == 3, timeout=10, what="three writes to wait")
    holder.execute("ROLLBACK")
    holder.close()
    assert await first is True  # an earlier group is not touched
    answers = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(a, GroupFailed) for a in answers), answers
    assert all("meta keys: group of 3 not written" in str(a) for a in answers)
    assert all(isinstance(a.__cause__, sqlite3.IntegrityError) for a in answers if isinstance(a, BaseException))
    assert rig.stored() == ["k-first"]  # k-a and k-b were rolled back with the poison
    assert rig.slots.in_use == 0
    assert list(await asyncio.gather(rig.group.submit("k-a"), rig.group.submit("k-b"))) == [True, True]  # a retry works
    assert rig.stored() == ["k-a", "k-b", "k-first"]


async def test_beyond_its_slots_a_write_is_refused_and_nothing_is_queued(rig: Rig) -> None:
    slots = WriteSlots(3)
    group: GroupCommit[str, bool] = GroupCommit(rig.store, "meta keys", rig.writer.txn, slots)
    holder = rig.hold()
    first = asyncio.create_task(group.submit("k-first"))
    await async_wait_until(committing(group), timeout=10, what="the first group to start")
    waiting = [asyncio.create_task(group.submit(f"k-{n}")) for n in range(2)]
    await async_wait_until(lambda: group.waiting == 2, timeout=10, what="two writes to wait")
    with pytest.raises(WriterBusy):
        await group.submit("k-refused")
    assert group.waiting == 2
    waiting[0].cancel()  # its caller goes away: the write stays queued and keeps its slot until written
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]
    assert slots.in_use == 3
    holder.execute("ROLLBACK")
    holder.close()
    assert list(await asyncio.gather(first, waiting[1])) == [True, True]
    await async_wait_until(lambda: slots.in_use == 0, timeout=10, what="every slot to be freed")
    assert rig.stored() == ["k-0", "k-1", "k-first"]  # the cancelled caller's write was stored, once


async def test_a_closed_store_fails_the_group_rather_than_leaving_callers_waiting(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    group: GroupCommit[str, bool] = GroupCommit(store, "meta keys", MetaWriter().txn, WriteSlots(4))
    await store.close()
    with pytest.raises(GroupFailed, match="group of 1 not written"):
        await group.submit("k-late")


async def test_a_txn_answering_for_fewer_writes_than_its_group_is_rolled_back(rig: Rig) -> None:
    def short_txn(conn: sqlite3.Connection, keys: Sequence[str]) -> list[bool]:
        conn.execute("INSERT INTO meta (key, value) VALUES ('k-partial', 'x')")
        return []

    group: GroupCommit[str, bool] = GroupCommit(rig.store, "meta keys", short_txn, WriteSlots(4))
    with pytest.raises(GroupFailed):
        await group.submit("k-any")
    assert rig.stored() == []
