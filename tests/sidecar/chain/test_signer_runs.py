"""Runs of txs signed ahead of their broadcasts, against the real devnet node: a ticket's Msgs keep their order
across the txs of one run, and a run whose first tx is refused (its sequence taken by another sender) lands the
txs the node took after it and gives the refused one's intents back to the queue (each lands once, no attempt
spent). Small: a few seconds each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from tests.sidecar.chain.signer_kit import (
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
WALDUR_ID = "00000000-0000-4000-8000-000000000001"


async def test_a_tickets_later_msg_waits_for_its_earlier_tx_even_within_one_run(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    a, b, c = await tickets(devnet_node, 3)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url, max_msgs_per_tx=2)
    try:
        # Two Msgs a tx: without the rule the run would be [a-jira, b-jira] then [a-waldur, c-jira].
        await queue_msgs(
            rig.store,
            [
                ("a-jira", a, register_msg(SIDECAR.address, a, external_id(a))),
                ("b-jira", b, register_msg(SIDECAR.address, b, external_id(b))),
                ("a-waldur", a, register_msg(SIDECAR.address, a, WALDUR_ID, "waldur")),
                ("c-jira", c, register_msg(SIDECAR.address, c, external_id(c))),
            ],
        )
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 4 and counts["dead"] == 0
    rows = db_rows(
        db,
        "SELECT i.dedupe_key, b.height, b.created_at, b.updated_at FROM tx_intents i "
        "JOIN tx_batches b ON b.id = i.batch_id",
    )
    by_key = {key: (height, created, updated) for key, height, created, updated in rows}
    first, later = by_key["a-jira"], by_key["a-waldur"]
    # a-waldur was signed only once a-jira's tx was recorded included, so it landed in a later block.
    assert later[1] >= first[2] and later[0] > first[0]


async def test_a_run_whose_first_tx_is_refused_lands_the_rest_and_requeues_it_without_an_attempt(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    ids = await tickets(devnet_node, 7)
    db = tmp_path / "s.db"
    rig = await open_rig(db, devnet_node.rpc_url, max_msgs_per_tx=2)
    try:
        await rig.signer.step()  # ready: the signer caches the account's sequence
        await asyncio.to_thread(_send_as_sidecar, devnet_node, ids[6])  # another process uses that sequence
        await queue_refs(rig.store, ids[:6], SIDECAR.address)  # one run of three txs; its first is refused
        counts = await settle(rig)
    finally:
        await rig.close()
    assert counts["included"] == 6 and counts["dead"] == 0
    status = rig.signer.status
    assert status.sequence_mismatches == 1 and status.sequence_errors_unresolved == 0
    # The run went out in one batch request: its later two txs carry the sequences the chain expects and were
    # taken; only the first one's intents went back to the queue, and landed in a tx signed again.
    states = db_rows(db, "SELECT state, code FROM tx_batches ORDER BY id")
    assert states == [("failed", 32), ("included", 0), ("included", 0), ("included", 0)]
    assert db_rows(db, "SELECT MAX(attempts) FROM tx_intents") == [(0,)]
    linked, failed = await asyncio.to_thread(linked_events, devnet_node)
    assert failed == []
    assert all(linked[t] == 1 for t in ids)


def _send_as_sidecar(node: DevnetNode, ticket_id: str) -> None:
    with ChainDriver(node.rpc_url, SIDECAR) as driver:
        assert driver.send([register_msg(driver.address, ticket_id, "FOREIGN-1")]).ok
