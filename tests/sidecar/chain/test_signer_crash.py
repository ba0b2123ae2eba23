"""SIGKILL between signing and broadcast, and between broadcast and the inclusion record: each intent lands once.

The signer runs in its own process (tests/sidecar/chain/signer_proc.py) with its crash seam set, so
the kill is a real SIGKILL at that point; a second process on the same SQLite file finishes the job.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devnet.cometbft import DevnetNode
from devnet.driver import DevAccount
from devnet.waiting import wait_until
from sidecar.store.db import Store
from tests.sidecar.chain.signer_kit import create_tickets, db_counts, db_rows, linked_events, queue_refs

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[3]
SIDECAR = DevAccount.from_name("sidecar")


def signer_process(db: Path, node: DevnetNode, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "tests.sidecar.chain.signer_proc", "--db", str(db), "--rpc", node.rpc_url]
    if crash_at:
        args += ["--crash-at", crash_at]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)


def tx_on_chain(node: DevnetNode, tx_hash: str) -> bool:
    try:
        node.rpc("tx", hash=base64.b64encode(bytes.fromhex(tx_hash)).decode(), prove=False)  # POST: bytes as base64
    except RuntimeError:
        return False
    return True


async def queued(db: Path, ticket_ids: list[str]) -> None:
    store = await Store.open(str(db))
    try:
        await queue_refs(store, ticket_ids, SIDECAR.address)
    finally:
        await store.close()


@pytest.mark.parametrize("crash_at", ["after_sign", "after_broadcast"])
async def test_sigkill_then_restart_lands_each_intent_once(
    crash_at: str, devnet_node: DevnetNode, tmp_path: Path
) -> None:
    ids = await asyncio.to_thread(create_tickets, devnet_node, 12)
    db = tmp_path / "s.db"
    await queued(db, ids)

    crashed = await asyncio.to_thread(signer_process, db, devnet_node, crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    # 12 intents at 5 Msgs a tx: one run of three txs, all stored before the first broadcast; the crash came
    # before anything else was recorded.
    stored = db_rows(db, "SELECT tx_hash, state FROM tx_batches ORDER BY account_sequence")
    assert [state for _, state in stored] == ["signed"] * 3
    hashes = [tx_hash for tx_hash, _ in stored]
    if crash_at == "after_broadcast":
        # The run went out in one batch request and the node accepted all three: they land while we are
        # down, and the restart must only notice.
        await asyncio.to_thread(wait_until, lambda: all(tx_on_chain(devnet_node, h) for h in hashes), timeout=30,
                                what="the broadcast txs in a block")
    else:
        assert not any(tx_on_chain(devnet_node, tx_hash) for tx_hash in hashes)

    finished = await asyncio.to_thread(signer_process, db, devnet_node)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert db_counts(db) == {"included": 12}
    # The txs signed before the crash are the ones that landed: their stored bytes were sent, not re-signed.
    assert db_rows(db, "SELECT tx_hash, state FROM tx_batches ORDER BY account_sequence") == [
        (tx_hash, "included") for tx_hash in hashes
    ]
    linked, failed = await asyncio.to_thread(linked_events, devnet_node)
    assert failed == []
    assert sorted(linked) == sorted(ids) and set(linked.values()) == {1}
