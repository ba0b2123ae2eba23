"""The signer's queue on a real SQLite file: which intents may go next."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar.store.db import Store
from sidecar.store.intents import (
    queue_intent_txn,
    queued_intents,
    record_included_txn,
    record_signed_txn,
    requeue_batch_txn,
)

MSG = "/virtengine.support.v1.MsgUpdateSupportRequest"


async def queue(store: Store, items: list[tuple[str, str | None]]) -> list[int]:
    def txn(conn: sqlite3.Connection) -> list[int]:
        return [queue_intent_txn(conn, key, MSG, ticket, key.encode()) for key, ticket in items]

    return await store.write("queue", txn)


async def next_keys(store: Store) -> list[str]:
    return [i.dedupe_key for i in await store.read("queued", queued_intents, 50)]


async def test_a_ticket_waits_while_its_earlier_msg_is_in_flight(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "s.db"))
    try:
        a, _, _, _ = await queue(store, [("a", "t1"), ("b", "t2"), ("c", "t1"), ("d", None)])
        assert await next_keys(store) == ["a", "b", "c", "d"]
        batch = await store.write("sign", record_signed_txn, [a], "AA", b"tx", 7, 100)
        assert await next_keys(store) == ["b", "d"]  # c must not overtake a: a's tx may still fail
        await store.write("fail", requeue_batch_txn, batch, "failed", 5, "out of funds")
        assert await next_keys(store) == ["a", "b", "c", "d"]  # a is back in front of c
        batch = await store.write("sign", record_signed_txn, [a], "AB", b"tx2", 8, 100)
        await store.write("included", record_included_txn, batch, 12)
        assert await next_keys(store) == ["b", "c", "d"]
    finally:
        await store.close()
