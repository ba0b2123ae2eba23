"""The follower's backpressure counts the inbox and the jobs of the desks this run serves, nothing else.

Jobs of a desk that is no longer configured never drain: counted, they would pause the follower forever.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from devnet.cometbft import DevnetNode
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from sidecar.chain.events import decode_block
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn, pending_count
from sidecar.store.jobs import dispatch_inbox_txn, queue_manual_sync_txn
from tests.sidecar.chain.test_events import all_heights, block_results
from tests.sidecar.harness import cursor_height, running_app
from tests.sidecar.sync.test_outbound_e2e import assert_jira_exactly_once, desk_env, desk_flags, drive_tickets


async def test_pending_count_counts_jobs_of_the_given_desks_only(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db"))
    try:
        await store.write("cursor", init_cursor_txn, "c", 99)
        batches = [BlockBatch(h, decode_block(block_results(h)), {}) for h in range(100, max(all_heights()) + 1)]
        await store.write("commit", commit_blocks_txn, "c", batches)
        assert await store.read("pending", pending_count, ["jira"]) == 10  # all ten events still in the inbox
        await store.write("dispatch", dispatch_inbox_txn, ["jira", "waldur"], [], 100, 1.0)
        assert await store.read("pending", pending_count, ["jira", "waldur"]) == 18  # nine jobs per desk
        assert await store.read("pending", pending_count, ["jira"]) == 9
        assert await store.read("pending", pending_count, []) == 0
    finally:
        await store.close()


def _jira_jobs_left(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        inbox = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
        jobs = conn.execute("SELECT COUNT(*) FROM jobs WHERE desk = 'jira' AND state IN ('pending', 'running')"
                            ).fetchone()[0]
        return int(inbox) + int(jobs)
    finally:
        conn.close()


@pytest.mark.node
async def test_jobs_of_an_unconfigured_desk_do_not_pause_the_follower(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    store = await Store.open(str(db))  # left from an earlier configuration that had Waldur
    for n in range(40):
        await store.write("old job", queue_manual_sync_txn, f"virtengine1old/support/{n}", ["waldur"], time.time())
    await store.close()
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{"sync.max_pending": "10"})  # 40 waldur jobs > 10
    async with running_app(flags, desk_env(jira_sim, None)) as app:
        ids, answered = await drive_tickets(devnet_node, 12)
        head = await asyncio.to_thread(devnet_node.height)

        async def synced() -> bool:
            read = await asyncio.to_thread(cursor_height, db)
            return read >= head and await asyncio.to_thread(_jira_jobs_left, db) == 0

        await async_wait_until(synced, timeout=120, what="the follower to read to the head and Jira to drain")

        async def relieved() -> bool:
            """Backpressure while the 12 tickets' events queued up is right; once they are done it must lift:
            the 40 Waldur jobs alone (4x max_pending) would hold it forever if they were counted."""
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{app.web_port}/webhooks/health?verbose=1"
                doc = (await client.get(url, timeout=5)).json()
            return "backpressure" not in doc["problems"]

        await async_wait_until(relieved, timeout=30, what="backpressure to lift once Jira drained", interval=0.2)
    conn = sqlite3.connect(db)
    waldur = conn.execute("SELECT COUNT(*) FROM jobs WHERE desk = 'waldur' AND state = 'pending'").fetchone()[0]
    conn.close()
    assert waldur == 40  # still queued beyond max_pending the whole time: they were there and not counted
    assert_jira_exactly_once(jira_sim, db, ids, answered)
