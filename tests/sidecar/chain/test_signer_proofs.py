"""What the signer believes about the chain, against the real devnet node behind a loopback JSON-RPC proxy:
a tx is expired only on proof, and a node for another chain or at an older height is refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.waiting import async_wait_until
from sidecar.chain.rpc import CometRpc
from sidecar.observe.health import HealthState
from tests.sidecar.chain.rpc_proxy import RpcProxy
from tests.sidecar.chain.signer_kit import Rig, create_tickets, db_rows, open_rig, queue_refs, settle
from tests.sidecar.observe.support import metric_value

pytestmark = pytest.mark.node
SIDECAR = DevAccount.from_name("sidecar")
# Contains "not found" but is not CometBFT's answer for an unknown hash ("tx (HASH) not found").
LOOKALIKE = "tx index not found: the indexer is rebuilding"


def stepped(rig: Rig, done: object) -> object:
    async def condition() -> bool:
        await rig.signer.step()
        return bool(done())  # type: ignore[operator]

    return condition


async def test_the_node_says_exactly_tx_not_found_for_an_unknown_hash(devnet_node: DevnetNode) -> None:
    rpc = CometRpc(devnet_node.rpc_url, 10)
    try:
        assert await rpc.tx("AB" * 32) is None  # the real node's own words match the exact form
    finally:
        await rpc.aclose()


async def test_a_landed_tx_is_never_expired_when_tx_lookups_fail_otherwise(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    ids = await asyncio.to_thread(create_tickets, devnet_node, 3)
    db = tmp_path / "s.db"
    health = HealthState()
    async with RpcProxy(devnet_node.rpc_url).running() as proxy:
        proxy.errors = {"tx": LOOKALIKE, "tx_search": "timed out waiting for the index"}
        rig = await open_rig(db, proxy.url, ws_url=None, health=health, timeout_height_delta=3)
        try:
            await queue_refs(rig.store, ids, SIDECAR.address)
            # The tx lands, but neither /tx nor tx_search can say so: past its timeout height it waits, alarmed.
            await async_wait_until(stepped(rig, lambda: rig.signer.status.unproven_txs), timeout=60,
                                   what="the unproven-tx alarm", interval=0.05)
            timeout_height = db_rows(db, "SELECT timeout_height FROM tx_batches")[0][0]
            await async_wait_until(lambda: devnet_node.height() > timeout_height + 3, timeout=30, what="blocks")
            for _ in range(5):
                await rig.signer.step()
            assert proxy.answered["tx"] > 0
            assert db_rows(db, "SELECT state FROM tx_batches") == [("broadcast",)]
            assert rig.signer.status.counts["broadcast"] == 3
            assert metric_value(rig.metrics, "servicedesk_signer_unproven_txs") == 1
            assert "signer-txs" in health.problems
            # tx_search answers again: the tx that used the sequence is ours, so it is settled as included.
            del proxy.errors["tx_search"]
            counts = await settle(rig)
        finally:
            await rig.close()
    assert counts["included"] == 3
    assert db_rows(db, "SELECT state FROM tx_batches") == [("included",)]
    assert metric_value(rig.metrics, "servicedesk_signer_unproven_txs") == 0 and "signer-txs" not in health.problems


async def test_a_tx_that_truly_expired_is_expired_and_spends_no_attempt(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    ids = await asyncio.to_thread(create_tickets, devnet_node, 2)
    db = tmp_path / "s.db"
    expired = "SELECT COUNT(*) FROM tx_batches WHERE state = 'expired'"
    async with RpcProxy(devnet_node.rpc_url).running() as proxy:
        proxy.swallow_broadcasts = True  # "accepted", but the node never hears of it: the tx truly expires
        rig = await open_rig(db, proxy.url, ws_url=None, timeout_height_delta=3)
        try:
            await queue_refs(rig.store, ids, SIDECAR.address)
            await async_wait_until(stepped(rig, lambda: db_rows(db, expired)[0][0] >= 1), timeout=60,
                                   what="the tx to expire", interval=0.05)
            assert proxy.answered["broadcast_tx_sync"] >= 1 and not rig.signer.status.unproven_txs
            assert rig.signer.status.counts["dead"] == 0
            proxy.swallow_broadcasts = False
            counts = await settle(rig)
        finally:
            await rig.close()
    assert counts["included"] == 2
    states = [r[0] for r in db_rows(db, "SELECT state FROM tx_batches ORDER BY id")]
    assert states[0] == "expired" and states[-1] == "included" and set(states) == {"expired", "included"}
    assert db_rows(db, "SELECT MAX(attempts) FROM tx_intents") == [(0,)]  # expiries are nobody's failure


async def test_another_chain_or_an_older_height_is_refused(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await asyncio.to_thread(create_tickets, devnet_node, 4)
    db = tmp_path / "s.db"
    health = HealthState()
    async with RpcProxy(devnet_node.rpc_url).running() as proxy:
        rig = await open_rig(db, proxy.url, health=health, refused_interval=0.05)
        try:
            await queue_refs(rig.store, ids[:2], SIDECAR.address)
            await settle(rig)
            await queue_refs(rig.store, ids[2:], SIDECAR.address)
            for chain_id, height in (("virtengine-other-1", None), (None, 1)):
                proxy.chain_id, proxy.height = chain_id, height
                for _ in range(5):
                    await rig.signer.step()
                assert rig.signer.status.node_refused and "signer-node" in health.problems
                assert metric_value(rig.metrics, "servicedesk_signer_node_refused") == 1
                assert rig.signer.status.counts["queued"] == 2  # nothing signed against that node
            proxy.chain_id = proxy.height = None
            counts = await settle(rig)
            assert counts["included"] == 4 and "signer-node" not in health.problems
        finally:
            await rig.close()
        # A restart remembers the chain and the highest block holding our txs: a node re-genesised to a lower
        # height (or answering for another chain) is refused before anything is adopted from it.
        landed_at = db_rows(db, "SELECT MAX(height) FROM tx_batches")[0][0]
        proxy.height = landed_at - 1
        rig = await open_rig(db, proxy.url, refused_interval=0.05)
        try:
            await rig.signer.step()
            assert f"below height {landed_at}" in (rig.signer.status.node_refused or "")
            proxy.height = None
            proxy.chain_id = "virtengine-other-1"
            rig.signer.settings = replace(rig.signer.settings, chain_id="")  # adopt: the stored chain still rules
            await rig.signer.step()
            assert "virtengine-other-1" in (rig.signer.status.node_refused or "")
        finally:
            await rig.close()


def _use_the_sequence(node: DevnetNode, ticket_id: str) -> None:
    """Another process signing with the sidecar's key takes the sequence of the signer's (unheard-of) tx."""
    with ChainDriver(node.rpc_url, SIDECAR) as driver:
        driver.register_external(ticket_id, "waldur", "00000000-0000-4000-8000-000000000001")


async def test_a_tx_whose_sequence_another_tx_used_is_released_without_an_attempt(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    ids = await asyncio.to_thread(create_tickets, devnet_node, 3)
    db = tmp_path / "s.db"
    async with RpcProxy(devnet_node.rpc_url).running() as proxy:
        proxy.swallow_broadcasts = True
        rig = await open_rig(db, proxy.url, ws_url=None, timeout_height_delta=3)
        try:
            await queue_refs(rig.store, ids[:2], SIDECAR.address)
            await rig.signer.step()  # signed at sequence 0, "accepted", never heard of by the node
            assert db_rows(db, "SELECT account_sequence FROM tx_batches") == [(0,)]
            await asyncio.to_thread(_use_the_sequence, devnet_node, ids[2])
            proxy.swallow_broadcasts = False
            counts = await settle(rig)
        finally:
            await rig.close()
    assert counts["included"] == 2
    first, *_, last = db_rows(db, "SELECT state, log FROM tx_batches ORDER BY id")
    assert first[0] == "failed" and first[1].startswith("sequence 0 used by ") and last[0] == "included"
    assert db_rows(db, "SELECT MAX(attempts) FROM tx_intents") == [(0,)]
