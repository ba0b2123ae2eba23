"""1,000 intents queued at once: blocks and seconds until the signer has them all included.

The signer is already running when they are queued (recovered, its tx subscription live), as in the
sidecar; the clock starts at the node's height when the last intent is queued, and `blocks` counts
that already committed block too (included by start + 2 reads "3 blocks").

Baseline, in the same run on the same node: the same 1,000 Msgs as one tx each, broadcast back to back
by devnet.driver (pipelined sequences, no batching) and awaited together. Goal: all included within 3
blocks at the default chain.max_msgs_per_tx, zero sequence errors left unresolved.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.results import Figure, report
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount, TxFailed
from devnet.fixtures import ACCOUNT_NAMES, AGENT_NAMES
from devnet.keys import TestAccount, genesis_app_state
from sidecar.config_schema import ChainConfig
from tests.sidecar.chain.signer_kit import create_tickets, external_id, open_rig, queue_refs, register_msg, settle

INTENTS = int(os.environ.get("BENCH_INTENTS", "1000"))


async def run_signer(
    node: DevnetNode, db: Path, ticket_ids: list[str], max_msgs: int
) -> tuple[int, float, int, int, float]:
    """(blocks, seconds, unresolved sequence errors, txs, seconds until every tx was in the mempool) for the signer."""
    rig = await open_rig(db, node.rpc_url, max_msgs_per_tx=max_msgs)
    try:
        # The signer is running when the intents arrive, as in the sidecar: recovered, its tx subscription live.
        await rig.signer.step()
        if rig.signer.watcher is not None:
            await asyncio.wait_for(rig.signer.watcher.subscription.live.wait(), 30)
        await queue_refs(rig.store, ticket_ids, DevAccount.from_name("sidecar").address)
        start_height = node.height()
        started = time.perf_counter()
        in_mempool: list[float] = []
        counts = await settle(rig, timeout=600, on_step=lambda c: _all_accepted(c, started, in_mempool))
        seconds = time.perf_counter() - started
        unresolved = rig.signer.status.sequence_errors_unresolved
    finally:
        await rig.close()
    assert counts["included"] == len(ticket_ids), counts
    conn = sqlite3.connect(db)
    last, txs = conn.execute("SELECT MAX(height), COUNT(*) FROM tx_batches WHERE state = 'included'").fetchone()
    conn.close()
    return int(last) - start_height + 1, seconds, unresolved, int(txs), in_mempool[0]


def _all_accepted(counts: dict[str, int], started: float, seen: list[float]) -> None:
    """Notes the seconds until no intent is queued or only signed: every tx is in the node's mempool (the signer
    records 'broadcast' once CheckTx accepted it), at the end of the step that sent the last one."""
    if not seen and not counts.get("queued") and not counts.get("signed"):
        seen.append(time.perf_counter() - started)


def run_baseline(node: DevnetNode, ticket_ids: list[str]) -> tuple[int, float, float]:
    """(blocks, seconds, seconds until the last was in the mempool) for one tx per Msg, sent back to back by the
    devnet driver (agent account)."""
    with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as driver:
        start_height = node.height()
        started = time.perf_counter()
        hashes = []
        for ticket_id in ticket_ids:
            checked = driver.broadcast([register_msg(driver.address, ticket_id, external_id(ticket_id))])
            if not checked.ok:
                raise TxFailed(checked)
            hashes.append(checked.hash)
        in_mempool = time.perf_counter() - started
        results = driver.wait_for(hashes, timeout=600)
        seconds = time.perf_counter() - started
    assert all(r.ok for r in results)
    return max(r.height for r in results) - start_height + 1, seconds, in_mempool


GOAL_BLOCKS = 3


def measure(node: DevnetNode, workdir: Path) -> list[Figure]:
    """INTENTS at the default batch size, INTENTS at 100 Msgs per tx, and the one-tx-per-Msg baseline."""
    ids = create_tickets(node, 3 * INTENTS)
    default = ChainConfig().max_msgs_per_tx
    blocks, seconds, unresolved, txs, pooled = asyncio.run(run_signer(node, workdir / "s.db", ids[:INTENTS], default))
    wide = asyncio.run(run_signer(node, workdir / "w.db", ids[INTENTS : 2 * INTENTS], 100))
    base_blocks, base_seconds, base_pooled = run_baseline(node, ids[2 * INTENTS :])
    return [
        Figure("blocks_until_all_included", blocks, "blocks", base_blocks, round(base_blocks / blocks, 2)),
        Figure("seconds_until_all_included", seconds, "s", base_seconds, round(base_seconds / seconds, 2)),
        # From queueing to the last tx accepted by CheckTx: what decides the blocks, and what load stretches.
        Figure("seconds_until_all_in_mempool", pooled, "s", base_pooled, round(base_pooled / pooled, 2)),
        Figure("intents", INTENTS, "intents"),
        Figure("txs_used", txs, "txs", INTENTS, round(INTENTS / txs, 2)),
        Figure("sequence_errors_unresolved", unresolved, "errors"),
        # chain.max_msgs_per_tx = 100 instead of the default: fewer, larger txs.
        Figure("blocks_until_all_included_100_per_tx", wide[0], "blocks", base_blocks, round(base_blocks / wide[0], 2)),
        Figure("seconds_until_all_included_100_per_tx", wide[1], "s", base_seconds, round(base_seconds / wide[1], 2)),
        Figure("sequence_errors_unresolved_100_per_tx", wide[2], "errors"),
    ]


def main() -> None:
    accounts = {name: TestAccount.from_name(name) for name in ACCOUNT_NAMES}
    state = genesis_app_state(accounts.values(), agents=[accounts[n] for n in AGENT_NAMES])
    with tempfile.TemporaryDirectory(prefix="bench-signer-") as tmp, DevnetNode(state, home=Path(tmp) / "node") as node:
        node.start()
        found = {f.name: f for f in measure(node, Path(tmp))}
    report("signer_throughput", list(found.values()))
    blocks, unresolved = found["blocks_until_all_included"].value, found["sequence_errors_unresolved"].value
    verdict = "met" if blocks <= GOAL_BLOCKS and unresolved == 0 else "MISSED"
    pooled = found["seconds_until_all_in_mempool"].value
    print(
        f"  {INTENTS} intents included within {blocks:.0f} blocks at the default {ChainConfig().max_msgs_per_tx}"
        f" Msgs per tx (goal <= {GOAL_BLOCKS}), {unresolved:.0f} unresolved sequence errors (goal 0): {verdict};"
        f" all in the mempool {pooled:.3f} s after queueing"
    )


if __name__ == "__main__":
    main()
