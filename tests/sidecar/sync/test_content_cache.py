"""The opener's cache of opened creation payloads: it answers only for the exact envelope it opened, and stays
bounded. Real SQLite store and real envelopes; well under a second."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nacl.public import PrivateKey

import sidecar.sync.content as content
from bench.outbound_drain import sealed_created as created
from sidecar.chain.envelope import EnvelopeKey
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn
from sidecar.sync.content import ContentOpener
from tests.sidecar.stores import store_at


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with store_at(tmp_path / "sidecar.db", "test", 0) as opened:
        yield opened


async def test_a_different_envelope_for_the_same_ticket_is_opened_anew(store: Store) -> None:
    key = EnvelopeKey(PrivateKey(os.urandom(32)))
    event = created(key, 1, "first subject")
    await store.write("commit", commit_blocks_txn, "test", [BlockBatch(1, [event], {})])
    opener = ContentOpener(store, key)
    first = await opener.snapshot(event.ticket_id)
    again = await opener.snapshot(event.ticket_id)
    assert first is not None and again is not None
    assert first.subject == again.subject == "first subject"
    replaced = {**event.payload, "payload": {"envelope": key.seal({"subject": "second subject"}, [key.public_bytes])}}
    await store.write(
        "replace",
        lambda conn: conn.execute(
            "UPDATE chain_inbox SET payload_json = ? WHERE event_id = ?", (json.dumps(replaced), event.event_id)
        ),
    )
    changed = await opener.snapshot(event.ticket_id)
    assert changed is not None and changed.subject == "second subject" and changed.content_available


async def test_the_cache_stays_bounded_and_every_ticket_keeps_its_own_content(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(content, "OPENED_CACHE", 2)
    key = EnvelopeKey(PrivateKey(os.urandom(32)))
    events = [created(key, n, f"subject {n}") for n in range(1, 6)]
    await store.write("commit", commit_blocks_txn, "test", [BlockBatch(e.height, [e], {}) for e in events])
    opener = ContentOpener(store, key)
    for _ in range(2):
        for n, event in enumerate(events, start=1):
            snapshot = await opener.snapshot(event.ticket_id)
            assert snapshot is not None and snapshot.subject == f"subject {n}"
            assert len(opener._opened) <= 2
