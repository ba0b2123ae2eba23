"""A running follower whose RPC URL starts answering for another chain instance (a node re-genesised,
or another node behind the same address) refuses it with an alarm and never mixes it into its cursor:
the inbox stays exactly the first chain's events up to the cursor, and the cursor does not move."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from devnet.cometbft import DevnetNode
from devnet.waiting import async_wait_until
from sidecar.chain.follower import FollowerSettings
from sidecar.store.inbox import load_first_block
from tests.sidecar.chain.node_proxy import NodeProxy
from tests.sidecar.chain.scan import scan_event_ids
from tests.sidecar.chain.test_follower_node import (
    CHAIN_ID,
    ENV,
    _follower_problem,
    caught_up,
    create,
    db_cursor,
    inbox_ids,
)
from tests.sidecar.harness import app_flags, running_app
from tests.sidecar.process import closed_port

pytestmark = pytest.mark.node

CASES = {
    # name: (chain id of the node swapped in, started before the first node (so higher), expected reason)
    "re-genesised node above the cursor": (CHAIN_ID, True, "the node's first block changed"),
    "re-genesised node below the cursor": (CHAIN_ID, False, "is below the cursor"),
    # Refused first by the follower's per-step check (against its cursor), then on each re-check also by the
    # start check against the configured chain.chain_id: both name the chain the node serves.
    "node of another chain": ("virtengine-devnet-2", False, "'virtengine-devnet-2'"),
}

# On a re-check the swapped node may have grown past the cursor: then only its first block tells.
RECHECK_REASONS = {
    "re-genesised node above the cursor": ("the node's first block changed",),
    "re-genesised node below the cursor": ("the node's first block changed", "is below the cursor"),
    "node of another chain": ("'virtengine-devnet-2'",),
}


def _through(proxy: NodeProxy, tmp_path: Path, start_height: int = 1) -> dict[str, object]:
    """The sidecar's flags to follow the chain CHAIN_ID through `proxy` only, from `start_height`. No websocket:
    every head the follower sees comes through the proxy's /status."""
    return app_flags(tmp_path, proxy.url, **{
        "chain.start_height": str(start_height),
        "chain.chain_id": CHAIN_ID,
        "chain.ws_url": f"ws://127.0.0.1:{closed_port()}/websocket",
    })


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_a_node_swapped_under_a_running_follower_is_refused_and_the_cursor_kept(
    devnet_node_factory: Any, tmp_path: Path, case: str
) -> None:
    chain_id, swap_first, reason = CASES[case]
    swapped: DevnetNode | None = devnet_node_factory(chain_id=chain_id) if swap_first else None
    first: DevnetNode = devnet_node_factory()
    db = tmp_path / "sidecar.db"
    async with NodeProxy(first.rpc_url).running() as proxy:
        flags = _through(proxy, tmp_path)
        async with running_app(flags, ENV) as app:
            ids = await create(first, 20, per_tx=5)
            if not swap_first:  # a lead the swapped node cannot make up while it starts
                await asyncio.to_thread(first.wait_for_height, 40, 60.0)
            await caught_up(db, first)
            if swapped is None:
                swapped = devnet_node_factory(chain_id=chain_id)
            head_first, head_swapped = await asyncio.to_thread(first.height), await asyncio.to_thread(swapped.height)
            assert (head_swapped > head_first) == swap_first  # the case is what its name says
            proxy.point_at(swapped.rpc_url)
            await async_wait_until(lambda: _refusal(app, (reason,)), timeout=30, what="a refusal")
            held = db_cursor(db)
            assert held <= head_first
            # Every /status after the refusal is a fresh start check (batches fetched in flight when the
            # URL changed may be read, never committed): the second one has run and refused again.
            await async_wait_until(lambda: _checked_again(proxy, swapped), timeout=90, what="a second check")
            expected = RECHECK_REASONS[case]
            assert await _refusal(app, expected), await _follower_problem(app)
            assert db_cursor(db) == held
        # A restart on the same database still knows which chain instance it follows.
        async with running_app(flags, ENV) as app:
            await async_wait_until(lambda: _refusal(app, expected), timeout=30, what="a refusal on restart")
            assert db_cursor(db) == held
    stored = inbox_ids(db)
    assert stored == scan_event_ids(first.rpc_url, 1, held)
    assert len(stored) >= len(ids)


async def test_a_refused_node_is_checked_again_at_once_then_less_and_less_often(
    devnet_node_factory: Any, tmp_path: Path
) -> None:
    """A node the operator fixes right away is followed right away; one left wrong is not asked in a tight loop:
    the re-checks start at chain.poll_interval (200 ms here) and double each time (up to 30 s)."""
    first: DevnetNode = devnet_node_factory()
    other: DevnetNode = devnet_node_factory(chain_id="virtengine-devnet-2")
    db = tmp_path / "sidecar.db"
    async with NodeProxy(first.rpc_url).running() as proxy:
        flags = _through(proxy, tmp_path)
        async with running_app(flags, ENV) as app:
            await caught_up(db, first)
            proxy.point_at(other.rpc_url)
            await async_wait_until(lambda: _refusal(app, ("'virtengine-devnet-2'",)), timeout=30, what="a refusal")
            checks = (other.rpc_url, "status")
            await async_wait_until(lambda: proxy.calls(*checks) >= 7, timeout=60, what="seven checks")
            times = proxy.times[checks][:7]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] < 1.0, gaps  # the first re-check comes at once
    # 0.2, 0.4, 0.8, 1.6, 3.2 and 6.4 s: each of the last three about twice the one before.
    for earlier, later in itertools.pairwise(gaps[2:]):
        assert 1.5 * earlier < later < 2.5 * earlier, gaps
    assert 5.0 < gaps[-1] < 8.0, gaps


async def _checked_again(proxy: NodeProxy, node: DevnetNode) -> bool:
    return proxy.calls(node.rpc_url, "status") >= 2


async def _refusal(app: Any, reasons: tuple[str, ...]) -> str | None:
    """The follower's problem once it is one of `reasons` (a transient "stuck" may come first)."""
    problem = await _follower_problem(app)
    return problem if problem and any(r in problem for r in reasons) else None


async def test_block_results_for_another_height_are_refused_and_never_committed(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    ids = await create(devnet_node, 10, per_tx=2)
    async with NodeProxy(devnet_node.rpc_url).running() as proxy:
        flags = app_flags(tmp_path, proxy.url, **{"chain.start_height": "1", "chain.ws_url": devnet_node.ws_url})
        async with running_app(flags, ENV) as app:
            await caught_up(db, devnet_node)
            bad = db_cursor(db) + 3
            proxy.wrong_heights_from = bad
            problem = await async_wait_until(lambda: _refusal(app, ("when asked for",)), timeout=60, what="a refusal")
            assert f"answered height {bad + 1} when asked for {bad}" in problem
            held = db_cursor(db)
            # The heights fetched in the same batch as `bad` (which the follower lagging the head may have
            # asked together) are refused with it; every height before that batch is committed.
            assert bad - FollowerSettings().chunk <= held <= bad - 1
            asked = proxy.calls(devnet_node.rpc_url, "block_results")
            # Checked again from a fresh start, which reads the next height's results once more: still refused.
            await async_wait_until(lambda: _asked_more(proxy, devnet_node, asked), timeout=90, what="another check")
            assert f"answered height {bad + 1} when asked for {bad}" in (await _follower_problem(app) or "")
            assert db_cursor(db) == held
    stored = inbox_ids(db)
    assert stored == scan_event_ids(devnet_node.rpc_url, 1, held)
    assert len(stored) >= len(ids)


async def _asked_more(proxy: NodeProxy, node: DevnetNode, before: int) -> bool:
    return proxy.calls(node.rpc_url, "block_results") > before



async def test_a_node_with_older_history_of_the_same_chain_is_followed(
    devnet_node_factory: Any, tmp_path: Path
) -> None:
    """The follower first sees a node that pruned below height 5, then one that keeps everything (an archive
    node behind the same URL): its block 5 has the hash seen, so it is the same chain and is followed."""
    node: DevnetNode = devnet_node_factory()
    await asyncio.to_thread(node.wait_for_height, 8, 60.0)
    block5 = str(node.rpc("block", height=5)["block_id"]["hash"]).upper()
    db = tmp_path / "sidecar.db"
    async with NodeProxy(node.rpc_url).running() as proxy:
        proxy.earliest = (5, block5)
        flags = _through(proxy, tmp_path, start_height=6)
        async with running_app(flags, ENV) as app:
            await create(node, 3, per_tx=3)
            await caught_up(db, node)
            assert _first_block(db) == (5, block5)
            proxy.earliest = None  # from now on the node's own answer: its earliest block is 1
            await create(node, 3, per_tx=3)
            await caught_up(db, node)
            assert await _follower_problem(app) is None
            assert inbox_ids(db) == scan_event_ids(node.rpc_url, 6, db_cursor(db))
            assert _first_block(db) == (1, str(node.rpc("block", height=1)["block_id"]["hash"]).upper())


def _first_block(db: Path) -> tuple[int, str] | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return load_first_block(conn)
    finally:
        conn.close()
