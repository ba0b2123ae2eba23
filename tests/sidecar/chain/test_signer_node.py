"""The signer against the real devnet node: exactly once, batching, isolation, dead letters, drift, node restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import tx_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.node_config import free_port
from sidecar.store.audit import verify_audit
from tests.sidecar.chain.signer_kit import (
    Rig,
    chain_refs,
    db_rows,
    external_id,
    linked_events,
    open_rig,
    queue_msgs,
    queue_refs,
    register_msg,
    settle,
    tickets,
)

pytestmark = pytest.mark.node
SIDECAR = DevAccount.from_name("sidecar")
OUTSIDER = DevAccount.from_name("outsider")


async def test_a_thousand_intents_land_exactly_once(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await tickets(devnet_node, 1000)
    rig = await open_rig(tmp_path / "s.db", devnet_node.rpc_url)
    try:
        await queue_refs(rig.store, ids, SIDECAR.address)
        await queue_refs(rig.store, ids[:10], SIDECAR.address)  # queueing again is a no-op (dedupe_key)
        counts = await settle(rig, timeout=120)
    finally:
        await rig.close()
    assert counts["included"] == 1000 and counts["dead"] == 0
    batches = db_rows(
        tmp_path / "s.db",
        "SELECT COUNT(*), MAX(n) FROM (SELECT batch_id, COUNT(*) n FROM tx_intents GROUP BY batch_id)",
    )[0]
    assert batches == (50, 20)  # max_msgs_per_tx = 20
    linked, failed = await asyncio.to_thread(linked_events, devnet_node)
    assert failed == []
    assert sorted(linked) == sorted(ids) and set(linked.values()) == {1}
    for ticket_id in ids[::97]:
        refs = await asyncio.to_thread(chain_refs, devnet_node, ticket_id)
        assert [(r.external_system, r.external_ticket_id) for r in refs] == [("jira", external_id(ticket_id))]


async def register_all(node: DevnetNode, db: Path, count: int, **rig_options: Any) -> tuple[Rig, list[str]]:
    """Queue a ref for `count` new tickets, 5 Msgs a tx, and run the signer until all landed."""
    ids = await tickets(node, count)
    rig = await open_rig(db, node.rpc_url, max_msgs_per_tx=5, **rig_options)
    try:
        await queue_refs(rig.store, ids, SIDECAR.address)
        counts = await settle(rig, timeout=120)
    finally:
        await rig.close()
    assert counts["included"] == count
    return rig, ids


async def test_inclusion_is_learnt_from_the_subscription(devnet_node: DevnetNode, tmp_path: Path) -> None:
    rig, _ = await register_all(devnet_node, tmp_path / "s.db", 100)
    # 20 txs: each confirmed once; the subscription, live before the first broadcast, reports them as they land
    # (a tx whose event came later than three blocks is asked of /tx instead; that can happen, rarely).
    assert rig.confirmations("websocket") + rig.confirmations("poll") == 20
    assert rig.confirmations("websocket") >= 10


async def test_without_a_subscription_inclusion_is_polled(devnet_node: DevnetNode, tmp_path: Path) -> None:
    dead_socket = f"ws://127.0.0.1:{free_port()}/websocket"  # nothing listens: the subscription never comes up
    rig, ids = await register_all(devnet_node, tmp_path / "s.db", 30, ws_url=dead_socket)
    assert (rig.confirmations("websocket"), rig.confirmations("poll")) == (0, 6)
    linked, failed = await asyncio.to_thread(linked_events, devnet_node)
    assert failed == [] and sorted(linked) == sorted(ids)


async def test_isolates_the_failing_message_and_dead_letters_it(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await tickets(devnet_node, 5)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url)
    try:
        # ids[2] already has a jira ref: its register fails in the block with "external ref exists".
        await asyncio.to_thread(_register_as_agent, devnet_node, ids[2])
        await queue_refs(rig.store, ids, SIDECAR.address)
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 4 and counts["dead"] == 1
    dead = db_rows(db, "SELECT ticket_id, code, log FROM tx_intents WHERE state = 'dead'")
    assert dead[0][0] == ids[2] and "external ref exists" in dead[0][2] and "message index: 0" in dead[0][2]


def _register_as_agent(node: DevnetNode, ticket_id: str) -> None:
    with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as driver:
        driver.register_external(ticket_id, "jira", "OTHER-1")


async def test_unauthorized_key_dead_letters_with_the_chain_message(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await tickets(devnet_node, 2)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url, name="outsider")
    try:
        await queue_refs(rig.store, ids, OUTSIDER.address)
        counts = await settle(rig)
        verdict = await rig.store.read("verify", verify_audit)
    finally:
        await rig.close()
    assert counts["dead"] == 2 and counts["included"] == 0
    logs = [r[0] for r in db_rows(db, "SELECT log FROM tx_intents WHERE state = 'dead'")]
    assert len(logs) == 2 and all("does not hold the support_agent role: unauthorized" in text for text in logs)
    audits = db_rows(db, "SELECT ticket_id, tx_hash, error FROM audit WHERE event_type = 'tx_dead_lettered'")
    assert sorted(a[0] for a in audits) == sorted(ids) and all(a[1] and "unauthorized" in a[2] for a in audits)
    assert verdict.ok


async def test_invalid_transition_dead_letters_with_the_chain_message(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await tickets(devnet_node, 1)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url)
    msg = tx_pb2.MsgUpdateSupportRequest(sender=SIDECAR.address, ticket_id=ids[0], status="SUPPORT_STATUS_RESOLVED")
    ok = register_msg(SIDECAR.address, ids[0], "SD-1")
    try:
        await queue_msgs(rig.store, [("bad-transition", ids[0], msg), ("register", ids[0], ok)])
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts == {**counts, "included": 1, "dead": 1}
    dead = db_rows(db, "SELECT dedupe_key, log FROM tx_intents WHERE state = 'dead'")
    assert dead[0][0] == "bad-transition" and "is not allowed" in dead[0][1]


async def test_sequence_drift_is_absorbed_within_one_retry(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await tickets(devnet_node, 60)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url, max_msgs_per_tx=5)
    try:
        await queue_refs(rig.store, ids[:30], SIDECAR.address)
        await rig.signer.step()  # six txs in flight; our cached sequence is ahead of the chain's
        # Another process sends from the same key mid-run, then we go on with the rest.
        foreign = await asyncio.to_thread(_register_as, devnet_node, "sidecar", ids[59])
        assert foreign.ok
        await queue_refs(rig.store, ids[30:59], SIDECAR.address)
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 59 and counts["dead"] == 0
    status = rig.signer.status
    assert status.sequence_mismatches == 1 and status.sequence_errors_unresolved == 0
    linked, failed = await asyncio.to_thread(linked_events, devnet_node)
    assert failed == [] and sorted(linked) == sorted(ids) and set(linked.values()) == {1}


def _register_as(node: DevnetNode, name: str, ticket_id: str) -> object:
    with ChainDriver(node.rpc_url, DevAccount.from_name(name)) as driver:
        return driver.send([register_msg(driver.address, ticket_id, "FOREIGN-1")])


async def test_node_restart_with_txs_in_its_mempool_recovers(devnet_node_factory: Any, tmp_path: Path) -> None:
    devnet_node: DevnetNode = devnet_node_factory(timeout_commit="2s")
    ids = await tickets(devnet_node, 100)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url, max_msgs_per_tx=2)
    try:
        await queue_refs(rig.store, ids, SIDECAR.address)
        await rig.signer.step()  # 50 txs broadcast: with 2 s blocks they still wait in the mempool
        assert int(devnet_node.rpc("num_unconfirmed_txs")["n_txs"]) > 0
        await asyncio.to_thread(devnet_node.restart, hard=True)
        counts = await settle(rig, timeout=120)
    finally:
        await rig.close()
    assert counts["included"] == 100 and counts["dead"] == 0
    linked, _ = await asyncio.to_thread(linked_events, devnet_node)
    assert sorted(linked) == sorted(ids) and set(linked.values()) == {1}


async def test_full_mempool_is_retried_with_backoff(devnet_node_factory: Any, tmp_path: Path) -> None:
    node: DevnetNode = devnet_node_factory(config={("mempool", "size"): 3})
    ids = await tickets(node, 30)
    rig = await open_rig(tmp_path / "s.db", node.rpc_url, max_msgs_per_tx=1)
    try:
        await queue_refs(rig.store, ids, SIDECAR.address)
        counts = await settle(rig, timeout=120)
        full = rig.signer.status.mempool_full
    finally:
        await rig.close()
    assert counts["included"] == 30 and full >= 1
    linked, _ = await asyncio.to_thread(linked_events, node)
    assert sorted(linked) == sorted(ids) and set(linked.values()) == {1}
