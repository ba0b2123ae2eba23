"""The signer's queue on a real SQLite file: which intents may go next."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar.store.db import Store
from sidecar.store.intents import (
    INTENT_STATES,
    dead_letter_txn,
    intent_counts,
    queue_intent_txn,
    queued_intents,
    record_broadcast_txn,
    record_included_txn,
    record_signed_txn,
    redrive_intents_txn,
    requeue_batch_txn,
)
from sidecar.store.migrations import migrate

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


def counted(conn: sqlite3.Connection) -> dict[str, int]:
    """What intent_counts must say: the intents counted now, row by row."""
    counts = dict.fromkeys(INTENT_STATES, 0)
    for state, n in conn.execute("SELECT state, COUNT(*) FROM tx_intents GROUP BY state"):
        counts[state] = n
    return counts


async def test_intents_per_state_are_kept_right_through_every_change(tmp_path: Path) -> None:
    """The counts metrics read are kept by triggers as intents change (reading them costs the same however
    many intents were ever included): through queueing, signing, broadcasting, inclusion, a failed batch put
    back, dead letters, a re-drive and a deletion, they equal a count of the rows after each step."""
    store = await Store.open(str(tmp_path / "s.db"))
    try:
        seen: list[dict[str, int]] = []

        async def check() -> None:
            kept, truth = await store.read("kept", intent_counts), await store.read("truth", counted)
            assert kept == truth
            seen.append(truth)

        a, b, c, d = await queue(store, [("a", "t1"), ("b", "t2"), ("c", "t3"), ("d", None)])
        await check()
        first = await store.write("sign", record_signed_txn, [a, b], "AA", b"tx", 7, 100)
        await check()
        await store.write("broadcast", record_broadcast_txn, first)
        await check()
        await store.write("included", record_included_txn, first, 12)
        await check()
        second = await store.write("sign", record_signed_txn, [c], "AB", b"tx2", 8, 100)
        await store.write("fail", requeue_batch_txn, second, "failed", 5, "out of funds")
        await check()
        await store.write("dead", dead_letter_txn, [c, d], 5, "out of funds", [])
        await check()
        assert await store.write("redrive", redrive_intents_txn, c) == 1
        await check()
        await store.write("delete", lambda conn: conn.execute("DELETE FROM tx_intents WHERE id = ?", (d,)))
        await check()
        assert seen[3]["included"] == 2 and seen[5]["dead"] == 2 and seen[-1]["queued"] == 1
    finally:
        await store.close()


def test_the_counts_start_from_the_intents_a_database_already_holds(tmp_path: Path) -> None:
    """A database from before the counts were kept (schema 11) gets them counted once by the migration."""
    path = str(tmp_path / "s.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        migrate(conn, path)
        conn.executescript(
            "DROP TRIGGER tx_intents_count_insert; DROP TRIGGER tx_intents_count_delete;"
            " DROP TRIGGER tx_intents_count_state; DROP TABLE tx_intent_counts; DROP INDEX jobs_finished;"
            " DELETE FROM schema_migrations WHERE version = 12;"
        )
        for key, state in (("a", "included"), ("b", "included"), ("c", "queued"), ("d", "dead")):
            conn.execute(
                "INSERT INTO tx_intents (dedupe_key, msg_type, msg_bytes, state, created_at, updated_at)"
                " VALUES (?, ?, x'00', ?, 0, 0)",
                (key, MSG, state),
            )
        assert migrate(conn, path) == [12]
        assert (
            intent_counts(conn)
            == counted(conn)
            == {**dict.fromkeys(INTENT_STATES, 0), "included": 2, "queued": 1, "dead": 1}
        )
    finally:
        conn.close()
