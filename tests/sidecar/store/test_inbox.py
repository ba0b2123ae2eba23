"""Cursor + inbox + ticket mirror on a real SQLite file, fed with the vector ticket's life."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from sidecar.chain.events import decode_block
from sidecar.store.audit import verify_audit
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, inbox_event_ids, init_cursor_txn, load_cursor
from sidecar.store.records import ContentCheck, PoisonEvent, SupportEvent
from sidecar.store.tickets import get_ticket
from tests.sidecar.chain.test_events import all_heights, block_results

TICKET = "virtengine1cust0mer0000000000000000000000000000x/support/1"


def batches(first: int, last: int, content: dict[str, ContentCheck] | None = None) -> list[BlockBatch]:
    return [BlockBatch(h, decode_block(block_results(h)), content or {}) for h in range(first, last + 1)]


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(str(tmp_path / "db"))
    await s.write("cursor", init_cursor_txn, "virtengine-devnet-1", 99)
    yield s  # type: ignore[misc]
    await s.close()


async def test_the_vector_life_builds_the_mirror(store: Store) -> None:
    created_id = f"{TICKET}/1"
    result = await store.write(
        "commit",
        commit_blocks_txn,
        "virtengine-devnet-1",
        batches(100, max(all_heights()), {created_id: ContentCheck("decrypted")}),
    )
    assert result.duplicates == 0 and result.poison == 0
    ticket = await store.read("ticket", get_ticket, TICKET)
    assert ticket is not None
    assert ticket.ticket_number == "SUP-000001"
    assert ticket.priority == "urgent"  # from the update
    assert ticket.response_count == 1
    assert ticket.archived and ticket.purged
    assert ticket.content_state == "decrypted"
    assert len(ticket.recipients) == 3
    cursor = await store.read("cursor", load_cursor)
    assert cursor is not None and cursor.height == max(all_heights())
    ids = await store.read("ids", inbox_event_ids)
    assert len(ids) == len(set(ids)) == sum(len(b.events) for b in batches(100, max(all_heights())))
    refs = await store.read("refs", lambda c: [dict(r) for r in c.execute("SELECT * FROM external_refs")])
    assert [(r["desk"], r["registered_on_chain"]) for r in refs] == [("jira", 1)]


async def test_commits_refuse_gaps_and_replays(store: Store) -> None:
    with pytest.raises(RuntimeError, match="out-of-order commit: height 101, expected 100"):
        await store.write("gap", commit_blocks_txn, "virtengine-devnet-1", batches(101, 101))
    await store.write("ok", commit_blocks_txn, "virtengine-devnet-1", batches(100, 100))
    with pytest.raises(RuntimeError, match="expected 101"):
        await store.write("replay", commit_blocks_txn, "virtengine-devnet-1", batches(100, 100))
    with pytest.raises(RuntimeError, match="another chain"):
        await store.write("chain", commit_blocks_txn, "other-chain", batches(101, 101))


async def test_the_inbox_keeps_the_chains_payload_text_as_it_is(store: Store) -> None:
    """What the chain said, byte for byte (spacing, key order, escapes), not the parsed value encoded again."""
    results = block_results(100)
    event = results["txs_results"][0]["events"][0]
    (payload,) = [a for a in event["attributes"] if a["key"] == "payload_json"]
    parsed = json.loads(payload["value"])
    payload["value"] = json.dumps(dict(reversed(parsed.items())), indent=1, ensure_ascii=True) + "\n"
    (decoded,) = decode_block(results)
    assert isinstance(decoded, SupportEvent) and decoded.payload == parsed
    await store.write("commit", commit_blocks_txn, "virtengine-devnet-1", [BlockBatch(100, [decoded], {})])
    stored = await store.read("row", lambda c: c.execute("SELECT payload_json FROM chain_inbox").fetchone()[0])
    assert stored == payload["value"]
    made = dataclasses.replace(decoded, event_id="made-here", payload_json="")  # an event made without the text
    await store.write("commit", commit_blocks_txn, "virtengine-devnet-1", [BlockBatch(101, [made], {})])
    encoded = await store.read(
        "row", lambda c: c.execute("SELECT payload_json FROM chain_inbox WHERE event_id = 'made-here'").fetchone()[0]
    )
    assert json.loads(encoded) == parsed


async def test_duplicate_event_ids_are_stored_once(store: Store) -> None:
    events = decode_block(block_results(100))
    twice = [BlockBatch(100, list(events), {}), BlockBatch(101, list(events), {})]
    result = await store.write("dup", commit_blocks_txn, "virtengine-devnet-1", twice)
    assert (result.inserted, result.duplicates) == (1, 1)
    ticket = await store.read("ticket", get_ticket, TICKET)
    assert ticket is not None and ticket.last_height == 100


async def test_poison_and_placeholder_are_kept_and_audited(store: Store) -> None:
    (event,) = decode_block(block_results(100))
    assert isinstance(event, SupportEvent)
    poison = PoisonEvent("poison:100:1", 100, 1, "payload_json is not an object", "[]")
    check = ContentCheck("placeholder", "the support key is not a recipient of this payload")
    await store.write(
        "p", commit_blocks_txn, "virtengine-devnet-1", [BlockBatch(100, [event, poison], {event.event_id: check})]
    )

    def rows(conn: sqlite3.Connection) -> tuple[list[str], list[tuple[str, str]]]:
        states = [r[0] for r in conn.execute("SELECT state FROM chain_inbox ORDER BY position")]
        audit = [(r[0], r[1]) for r in conn.execute("SELECT event_type, error FROM audit ORDER BY id")]
        return states, audit

    states, audit = await store.read("rows", rows)
    assert states == ["pending", "poison"]
    # In chain order, written by one batched append that keeps the hash chain intact.
    assert audit == [
        ("content_unavailable", "the support key is not a recipient of this payload"),
        ("chain_event_poison", "payload_json is not an object"),
    ]
    assert (await store.read("verify", verify_audit)).ok
    ticket = await store.read("ticket", get_ticket, TICKET)
    assert ticket is not None and ticket.content_state == "placeholder"


async def test_an_untyped_event_is_refused_and_nothing_is_committed(store: Store) -> None:
    bare = SupportEvent(f"{TICKET}/1", "support_request_created", 100, 0, 1, TICKET, "x", 0, {})
    with pytest.raises(TypeError, match="untyped class SupportEvent"):
        await store.write("commit", commit_blocks_txn, "virtengine-devnet-1", [BlockBatch(100, [bare], {})])
    assert await store.read("ids", inbox_event_ids) == []
    assert (await store.read("cursor", load_cursor)).height == 99
