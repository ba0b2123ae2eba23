"""Webhook intake's write slots bound the writes queued, not the callers waiting: a caller that goes away
leaves its write queued, and its slot stays taken until the writer has run it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from devnet.waiting import async_wait_until
from sidecar.store.db import Store, WriterBusy, WriteSlots


def insert_meta(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))


async def test_a_cancelled_caller_keeps_its_slot_until_its_write_has_run(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    holder = sqlite3.connect(tmp_path / "sidecar.db", timeout=30, isolation_level=None)
    slots = WriteSlots(1)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the writer thread will wait on this lock
        caller = asyncio.create_task(store.write_within(slots, "first", insert_meta, "first"))
        await async_wait_until(lambda: slots.in_use == 1, timeout=10, what="the first write to take its slot")
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert slots.in_use == 1  # its transaction is still queued behind the lock
        with pytest.raises(WriterBusy):
            await store.write_within(slots, "second", insert_meta, "second")
        holder.execute("ROLLBACK")
        await async_wait_until(lambda: slots.in_use == 0, timeout=30, what="the queued write to run and free its slot")
        query = "SELECT key FROM meta WHERE key = 'first'"
        rows = await store.read("meta", lambda conn: conn.execute(query).fetchall())
        assert [tuple(r) for r in rows] == [("first",)]  # the write its caller gave up on did run, once
    finally:
        holder.close()
        await store.close()
