"""Nothing is dead-lettered for someone else's fault, against the real devnet node: a bad Msg in a batch
is blamed alone, an account without funds pauses signing, a sequence re-sign spends no attempt (an expiry
spending none is in test_signer_proofs.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cosmpy.protos.cosmos.bank.v1beta1 import tx_pb2 as bank_tx
from cosmpy.protos.cosmos.base.v1beta1 import coin_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.fixtures import ACCOUNT_NAMES, AGENT_NAMES
from devnet.keys import TestAccount, genesis_app_state
from devnet.waiting import async_wait_until
from sidecar.observe.health import HealthState
from tests.sidecar.chain.signer_kit import (
    FEE,
    create_tickets,
    db_rows,
    linked_events,
    open_rig,
    queue_refs,
    settle,
)
from tests.sidecar.observe.support import metric_value

pytestmark = pytest.mark.node
SIDECAR = DevAccount.from_name("sidecar")
PAUPER = DevAccount.from_name("pauper")  # a support agent whose account holds nothing


async def tickets(node: DevnetNode, count: int) -> list[str]:
    return await asyncio.to_thread(create_tickets, node, count)


def _register_as_agent(node: DevnetNode, ticket_id: str) -> None:
    with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as driver:
        driver.register_external(ticket_id, "jira", "OTHER-1")


async def test_a_bad_msg_in_a_batch_of_five_dead_letters_only_itself(
    devnet_node: DevnetNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await tickets(devnet_node, 10)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url, max_msgs_per_tx=5)
    try:
        # Five refs land first; their simulated gas is remembered, so the next five Msgs of the same types (no
        # larger) are signed without a simulation and the bad one fails in the block, not in the simulation.
        await queue_refs(rig.store, ids[5:], SIDECAR.address)
        await settle(rig)
        first = await asyncio.to_thread(devnet_node.height)
        await asyncio.to_thread(_register_as_agent, devnet_node, ids[2])  # ids[2] now has a jira ref
        await queue_refs(rig.store, ids[:5], SIDECAR.address)
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 9 and counts["dead"] == 1
    _, failed = await asyncio.to_thread(linked_events, devnet_node, first)
    # The batch of five failed in its block at message index 2, in the SDK's words (baseapp runMsgs wraps a
    # Msg's error as "failed to execute message; message index: %d: ..."); then the culprit failed alone.
    assert [log.split(": ")[0] for _, _, log in failed] == ["failed to execute message; message index"] * 2
    assert "message index: 2: " in failed[0][2] and "message index: 0: " in failed[1][2]
    rows = db_rows(db, "SELECT ticket_id, state, attempts FROM tx_intents WHERE ticket_id IN (?, ?, ?, ?, ?)", *ids[:5])
    assert sorted(rows) == sorted(
        [(t, "included", 0) for t in ids[:5] if t != ids[2]] + [(ids[2], "dead", 2)]
    )  # the four others spent nothing; the culprit failed in the batch, then alone
    dead_id = db_rows(db, "SELECT id FROM tx_intents WHERE ticket_id = ?", ids[2])[0][0]
    failed = [r for r in caplog.records if "sync failed" in r.getMessage()]
    logged = [(r.getMessage(), getattr(r, "intent_ids", None)) for r in failed]
    assert logged == [("chain sync failed: tx intents dead-lettered", [dead_id])]  # the guide's grep finds it once


def _pauper_genesis() -> dict[str, Any]:
    accounts = [TestAccount.from_name(n) for n in (*ACCOUNT_NAMES, "pauper")]
    agents = [a for a in accounts if a.name in (*AGENT_NAMES, "pauper")]
    state = genesis_app_state(accounts, agents=agents)
    for entry in state["accounts"]:
        if entry["address"] == PAUPER.address:
            entry["balance"] = 0
    return state


def _fund(node: DevnetNode, address: str, amount: int) -> None:
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as driver:
        coin = coin_pb2.Coin(denom="uve", amount=str(amount))
        result = driver.send([bank_tx.MsgSend(from_address=driver.address, to_address=address, amount=[coin])])
        assert result.ok, result


async def test_an_account_without_funds_pauses_signing_and_resumes_once_funded(
    devnet_node_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node: DevnetNode = devnet_node_factory(app_state=_pauper_genesis())
    ids = await tickets(node, 6)
    db = tmp_path / "s.db"
    health = HealthState()
    rig = await open_rig(db, node.rpc_url, name="pauper", health=health, pause_probe_interval=0.2, max_msgs_per_tx=3)
    caplog.set_level(logging.INFO, logger="sidecar.chain")
    try:
        await queue_refs(rig.store, ids, PAUPER.address)
        await async_wait_until(_stepped(rig, lambda: rig.signer.status.paused is not None), timeout=30,
                               what="signing to pause", interval=0.0)
        assert "code 5" in (rig.signer.status.paused or "") and "insufficient funds" in (rig.signer.status.paused or "")
        for _ in range(10):  # probes while the balance is still 0: nothing moves, nothing dies
            await rig.signer.step()
            await asyncio.sleep(0.05)
        assert rig.signer.status.counts["queued"] == 6 and rig.signer.status.counts["dead"] == 0
        assert metric_value(rig.metrics, "servicedesk_signer_paused") == 1
        assert "insufficient funds" in health.problems["signer-funds"] and not health.healthy
        paused_lines = [r for r in caplog.records if r.getMessage().startswith("signing paused")]
        assert len(paused_lines) == 1

        await asyncio.to_thread(_fund, node, PAUPER.address, 50_000_000)
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 6 and counts["dead"] == 0
    assert rig.signer.status.paused is None and metric_value(rig.metrics, "servicedesk_signer_paused") == 0
    assert "signer-funds" not in health.problems
    assert db_rows(db, "SELECT MAX(attempts) FROM tx_intents") == [(0,)]
    linked, failed = await asyncio.to_thread(linked_events, node)
    assert sorted(linked) == sorted(ids) and failed == []


def _stepped(rig: Any, done: Any) -> Any:
    async def condition() -> bool:
        await rig.signer.step()
        return bool(done())

    return condition


def _send_as_sidecar(node: DevnetNode, ticket_id: str) -> None:
    with ChainDriver(node.rpc_url, SIDECAR) as driver:
        driver.register_external(ticket_id, "waldur", "00000000-0000-4000-8000-000000000001")


async def test_a_sequence_resign_spends_no_attempt(devnet_node: DevnetNode, tmp_path: Path) -> None:
    ids = await tickets(devnet_node, 4)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url)
    try:
        await rig.signer.step()  # ready: the signer caches the account's sequence
        await asyncio.to_thread(_send_as_sidecar, devnet_node, ids[3])  # another process uses that sequence
        await queue_refs(rig.store, ids[:3], SIDECAR.address)
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 3 and counts["dead"] == 0
    assert rig.signer.status.sequence_mismatches == 1
    assert db_rows(db, "SELECT MAX(attempts) FROM tx_intents") == [(0,)]


async def test_a_fee_below_the_nodes_minimum_pauses_signing_and_kills_nothing(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    ids = await tickets(devnet_node, 3)
    db = tmp_path / "s.db"
    cheap = replace(FEE, gas_price=Decimal("0.001"))  # the devnet's minimum is 0.025uve per gas
    # One Msg a tx: a run of three in one batch request, the first refused for its fee and the two after it for
    # their sequences (the check state never took the first): all three are released, none is left in flight.
    rig = await open_rig(db, devnet_node.rpc_url, fee=cheap, pause_probe_interval=0.2, max_msgs_per_tx=1)
    try:
        await queue_refs(rig.store, ids, SIDECAR.address)
        await async_wait_until(_stepped(rig, lambda: rig.signer.status.paused is not None), timeout=30,
                               what="signing to pause", interval=0.0)
        assert "code 13" in (rig.signer.status.paused or "") and "insufficient fee" in (rig.signer.status.paused or "")
        released = "SELECT COUNT(*) FROM tx_batches WHERE state = 'failed' AND log LIKE 'not in the mempool%'"
        assert db_rows(db, released) == [(2,)] and rig.signer.status.in_flight == 0
        for _ in range(5):
            await rig.signer.step()
        assert rig.signer.status.counts["queued"] == 3 and rig.signer.status.counts["dead"] == 0
        rig.signer.settings = replace(rig.signer.settings, fee=FEE)  # the operator raises chain.gas_price
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 3 and rig.signer.status.paused is None
    assert db_rows(db, "SELECT MAX(attempts) FROM tx_intents") == [(0,)]
