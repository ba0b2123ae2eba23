"""The follower against the real devnet node: exactly once, in order, through every fault we can cause.

In every case the inbox must equal an independent scan of block_results over the same range.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.waiting import async_wait_until, wait_until
from sidecar.app import App
from sidecar.chain.follower import HOLD_EMPTY_HEIGHTS
from tests.sidecar.chain.gate_proxy import GateProxy
from tests.sidecar.chain.lagging_proxy import LaggingResultsProxy
from tests.sidecar.chain.scan import scan_event_ids, support_public, support_secret
from tests.sidecar.chain.stall_proxy import StallProxy
from tests.sidecar.harness import app_flags, running_app
from tests.sidecar.process import SidecarProcess

pytestmark = pytest.mark.node
ENV = {"VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY": support_secret()}
CHAIN_ID = "virtengine-devnet-1"


def db_cursor(path: Path) -> int:
    if not path.exists():
        return -1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT height FROM cursor WHERE id = 1").fetchone()
        return int(row[0]) if row else -1
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


def db_rows(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) if len(r) > 1 else r[0] for r in conn.execute(sql)]
    finally:
        conn.close()


def inbox_ids(path: Path) -> list[str]:
    return db_rows(path, "SELECT event_id FROM chain_inbox ORDER BY height, position")


def driver(node: DevnetNode, name: str = "customer") -> ChainDriver:
    return ChainDriver(node.rpc_url, DevAccount.from_name(name))


async def create(node: DevnetNode, count: int, per_tx: int = 50) -> list[str]:
    def run() -> list[str]:
        with driver(node) as d:
            return d.create_tickets(count, [support_public()], per_tx=per_tx)

    return await asyncio.to_thread(run)


async def caught_up(db: Path, node: DevnetNode, timeout: float = 90.0) -> int:
    """Wait until the cursor reaches the node's current height; return that height."""
    target = await asyncio.to_thread(node.height)
    await async_wait_until(lambda: _at_least(db, target), timeout=timeout, what=f"cursor >= {target}")
    return target


async def _at_least(db: Path, height: int) -> bool:
    return await asyncio.to_thread(db_cursor, db) >= height


def assert_matches_scan(db: Path, node: DevnetNode, ticket_ids: list[str]) -> None:
    last = db_cursor(db)
    stored = inbox_ids(db)
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert stored == scan_event_ids(node.rpc_url, 1, last), "inbox differs from the independent scan"
    created = db_rows(db, "SELECT ticket_id FROM chain_inbox WHERE event_type = 'support_request_created'")
    assert set(ticket_ids) <= set(created)
    assert db_rows(db, "SELECT COUNT(*) FROM chain_inbox WHERE state = 'poison'") == [0]


async def test_thousand_tickets_arrive_exactly_once_in_order(devnet_node: DevnetNode, tmp_path: Path) -> None:
    flags = app_flags(tmp_path, devnet_node.rpc_url, **{"chain.start_height": "1", "chain.chain_id": CHAIN_ID})
    async with running_app(flags, ENV):
        ids = await create(devnet_node, 1000)
        await caught_up(tmp_path / "sidecar.db", devnet_node)
    db = tmp_path / "sidecar.db"
    assert len(ids) == 1000
    assert_matches_scan(db, devnet_node, ids)
    states = db_rows(db, "SELECT content_state, COUNT(*) FROM tickets GROUP BY content_state")
    assert states == [("decrypted", 1000)]


async def test_a_backfill_commits_empty_heights_hundreds_at_a_time(devnet_node_factory: Any, tmp_path: Path) -> None:
    """Heights without events only move the cursor: a backfill holds them for one commit of about
    HOLD_EMPTY_HEIGHTS (one WAL sync), not one per batch request, and commits what it holds at the head."""
    node = devnet_node_factory(timeout_commit="5ms")
    head = await asyncio.to_thread(node.wait_for_height, HOLD_EMPTY_HEIGHTS * 2 + 100, timeout=180)
    db = tmp_path / "sidecar.db"
    seen: set[int] = set()
    flags = app_flags(tmp_path, node.rpc_url, **{"chain.start_height": "1", "chain.chain_id": CHAIN_ID})
    async with running_app(flags, ENV):
        # Every cursor value committed lives for at least one commit's time (a millisecond or more): read
        # this often, a cursor moved per batch request shows values below the hold many times over.
        while (height := await asyncio.to_thread(db_cursor, db)) < head:
            seen.add(height)
            await asyncio.sleep(0.001)
        await caught_up(db, node)  # and the last heights, at the head, are committed too
    early = sorted(h for h in seen if 0 < h < HOLD_EMPTY_HEIGHTS)
    assert not early, f"the cursor was committed at {early[:5]} before holding {HOLD_EMPTY_HEIGHTS} empty heights"
    assert max(seen) >= HOLD_EMPTY_HEIGHTS, "no commit was seen during the backfill"
    assert inbox_ids(db) == scan_event_ids(node.rpc_url, 1, db_cursor(db))


async def test_node_killed_and_restarted_mid_stream(devnet_node: DevnetNode, tmp_path: Path) -> None:
    """The node dies under a follower that is provably mid-backfill: its cursor is far below the head, with
    tickets above it, and its next batch requests are in flight (held at a proxy) when the node is killed."""
    ids = await create(devnet_node, 250, per_tx=10)
    first = await asyncio.to_thread(devnet_node.height)
    gate = (first // 10 + 1) * 10  # at least one whole batch of heights below it
    await asyncio.to_thread(devnet_node.wait_for_height, gate + 20)
    ids += await create(devnet_node, 250, per_tx=10)  # above the gate
    db = tmp_path / "sidecar.db"
    async with GateProxy(devnet_node.rpc_url, gate).running() as proxy:
        flags = app_flags(tmp_path, proxy.url, **{"chain.start_height": "1", "chain.ws_url": devnet_node.ws_url})
        async with running_app(flags, ENV):
            try:
                await async_wait_until(lambda: _held(proxy, db), timeout=60, what="the backfill to reach the gate")
                cursor, head = await asyncio.to_thread(db_cursor, db), await asyncio.to_thread(devnet_node.height)
                above = db_rows(db, f"SELECT COUNT(*) FROM chain_inbox WHERE height > {cursor}")
                assert 1 <= cursor <= gate and head - cursor >= 20, (cursor, gate, head)
                assert above == [0] and len(scan_event_ids(devnet_node.rpc_url, cursor + 1, head)) >= 250
                await asyncio.to_thread(devnet_node.kill)  # SIGKILL node and app while the backfill is in flight
            finally:
                proxy.release()
            await async_wait_until(lambda: _unanswered(proxy), timeout=60, what="the follower to hit the dead node")
            assert await asyncio.to_thread(db_cursor, db) < head
            await asyncio.to_thread(devnet_node.start)
            ids += await create(devnet_node, 500)
            await caught_up(db, devnet_node)
    assert len(ids) == 1000
    assert_matches_scan(db, devnet_node, ids)


async def _held(proxy: GateProxy, db: Path) -> bool:
    """A batch above the gate waits in the proxy, and the heights below it are committed."""
    return proxy.held >= 1 and await asyncio.to_thread(db_cursor, db) >= 1


async def _unanswered(proxy: GateProxy) -> bool:
    return proxy.unanswered >= 1


async def test_sidecar_killed_at_random_moments(devnet_node: DevnetNode, tmp_path: Path) -> None:
    db = tmp_path / "sidecar.db"
    env = {**ENV, "VIRTENGINE_SERVICEDESK_STORE_PATH": str(db), "VIRTENGINE_SERVICEDESK_CHAIN_START_HEIGHT": "1"}
    args = [
        "run",
        "--chain-rpc-url",
        devnet_node.rpc_url,
        "--chain-poll-interval",
        "200ms",
        "--webhook-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--observe-listen",
        "",
    ]
    rng = random.Random(20261127)
    creating = asyncio.create_task(_create_in_chunks(devnet_node, chunks=10, size=100))
    kills = 0
    try:
        while not creating.done() or kills < 3:
            proc = SidecarProcess(args, env, cwd=tmp_path)
            try:
                proc.wait_for_log("started")
                start = await asyncio.to_thread(db_cursor, db)
                # A random moment: after the cursor moved by a random number of heights (or a new event landed).
                step = rng.randint(1, 8)
                await async_wait_until(
                    lambda s=start, n=step: _at_least(db, s + n), timeout=60, what="the cursor to move before the kill"
                )
                proc.proc.kill()
                proc.proc.wait(timeout=10)
                kills += 1
            finally:
                proc.close()
        ids = await creating
        proc = SidecarProcess(args, env, cwd=tmp_path)
        try:
            proc.wait_for_log("started")
            await caught_up(db, devnet_node)
            assert proc.terminate() == 0
        finally:
            proc.close()
    finally:
        if not creating.done():
            creating.cancel()
    assert kills >= 3
    assert len(ids) == 1000
    assert_matches_scan(db, devnet_node, ids)


async def _create_in_chunks(node: DevnetNode, chunks: int, size: int) -> list[str]:
    ids: list[str] = []
    for _ in range(chunks):
        ids += await create(node, size, per_tx=25)
    return ids


async def _run_with_stalled_websocket(node: DevnetNode, tmp_path: Path) -> None:
    rpc = urlparse(node.rpc_url)
    proxy = await StallProxy(rpc.hostname or "127.0.0.1", rpc.port or 80).start()
    flags = app_flags(
        tmp_path,
        node.rpc_url,
        **{
            "chain.start_height": "1",
            "chain.ws_url": f"ws://127.0.0.1:{proxy.port}/websocket",
            "chain.no_block_alarm": "2s",
        },
    )
    db = tmp_path / "sidecar.db"
    try:
        async with running_app(flags, ENV) as app:
            await async_wait_until(lambda: _proxy_used(proxy), timeout=20, what="the websocket to connect")
            proxy.stall()
            ids = await create(node, 1000)
            await caught_up(db, node)
            # The stalled socket is noticed and replaced on a new connection.
            await async_wait_until(lambda: _reconnected(app, proxy), timeout=30, what="a websocket reconnect")
            proxy.resume()
            ids += await create(node, 50)
            await caught_up(db, node)
    finally:
        await proxy.close()
    assert_matches_scan(db, node, ids)


async def _proxy_used(proxy: StallProxy) -> bool:
    return proxy.connections >= 1


async def _reconnected(app: App, proxy: StallProxy) -> bool:
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{app.web_port}/metrics")).text
    line = next((m for m in metrics.splitlines() if m.startswith("servicedesk_chain_ws_reconnects_total")), "")
    return proxy.connections >= 2 and line != "" and float(line.split()[-1]) >= 1


async def test_websocket_reader_stalled(devnet_node: DevnetNode, tmp_path: Path) -> None:
    await _run_with_stalled_websocket(devnet_node, tmp_path)


async def test_websocket_stalled_on_a_node_that_closes_slow_clients(devnet_node_factory: Any, tmp_path: Path) -> None:
    node = devnet_node_factory(close_on_slow_client=True)
    await _run_with_stalled_websocket(node, tmp_path)


async def _follower_problem(app: App) -> str | None:
    async with httpx.AsyncClient() as client:
        doc = (await client.get(f"http://127.0.0.1:{app.web_port}/webhooks/health?verbose=1")).json()
    problem: str | None = doc["problems"].get("follower")
    return problem if problem and "waiting" not in problem else None


async def test_newest_block_without_results_yet_is_waited_for_not_refused(
    devnet_node: DevnetNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """CometBFT stores a block before its results: /status can name a height whose block_results still fail."""
    await asyncio.to_thread(devnet_node.wait_for_height, 3)
    async with LaggingResultsProxy(devnet_node.rpc_url).running() as proxy:
        flags = app_flags(tmp_path, proxy.url, **{"chain.ws_url": devnet_node.ws_url, "chain.start_height": "1"})
        async with running_app(flags, ENV) as app:
            ids = await create(devnet_node, 20, per_tx=5)
            await caught_up(tmp_path / "sidecar.db", devnet_node)
            assert await _follower_problem(app) is None
    assert len(proxy.lagged) >= 3, "the proxy never answered like a node between block and results"
    assert not [r for r in caplog.records if r.getMessage() == "not following the chain"]
    assert_matches_scan(tmp_path / "sidecar.db", devnet_node, ids)


async def test_node_that_discards_abci_responses_is_refused(devnet_node_factory: Any, tmp_path: Path) -> None:
    node = devnet_node_factory(discard_abci_responses=True)
    await asyncio.to_thread(node.wait_for_height, 5)
    flags = app_flags(tmp_path, node.rpc_url, **{"chain.start_height": "2"})
    async with running_app(flags, ENV) as app:
        problem = await async_wait_until(lambda: _follower_problem(app), timeout=30, what="a refusal")
    assert "cannot serve block results for height 2" in problem
    assert "discard_abci_responses" in problem
    assert db_cursor(tmp_path / "sidecar.db") == 1  # created, never advanced


async def test_pruned_node_is_refused(devnet_node_factory: Any, tmp_path: Path) -> None:
    node = devnet_node_factory(retain_blocks=3)
    wait_until(
        lambda: int(node.rpc("status")["sync_info"]["earliest_block_height"]) > 2,
        timeout=60,
        what="the node to prune its first blocks",
    )
    flags = app_flags(tmp_path, node.rpc_url, **{"chain.start_height": "1"})
    async with running_app(flags, ENV) as app:
        problem = await async_wait_until(lambda: _follower_problem(app), timeout=30, what="a refusal")
    assert "the node has pruned blocks below" in problem and "the cursor needs 1" in problem


async def test_wrong_chain_id_is_refused(devnet_node: DevnetNode, tmp_path: Path) -> None:
    flags = app_flags(tmp_path, devnet_node.rpc_url, **{"chain.chain_id": "virtengine-1"})
    async with running_app(flags, ENV) as app:
        problem = await async_wait_until(lambda: _follower_problem(app), timeout=30, what="a refusal")
    assert problem == "node serves chain 'virtengine-devnet-1', configured chain.chain_id is 'virtengine-1'"
    assert db_cursor(tmp_path / "sidecar.db") == -1


async def test_database_of_another_chain_is_refused(devnet_node_factory: Any, tmp_path: Path) -> None:
    first = devnet_node_factory()
    flags = app_flags(tmp_path, first.rpc_url)
    async with running_app(flags, ENV):
        await async_wait_until(lambda: _at_least(tmp_path / "sidecar.db", 1), timeout=30, what="a cursor")
    other = devnet_node_factory(chain_id="virtengine-devnet-2")
    async with running_app(app_flags(tmp_path, other.rpc_url), ENV) as app:
        problem = await async_wait_until(lambda: _follower_problem(app), timeout=30, what="a refusal")
    assert "the database follows chain 'virtengine-devnet-1' but the node serves 'virtengine-devnet-2'" in problem
