"""`python -m tests.sidecar.chain.signer_proc`: the real signer alone in a process, for SIGKILL tests.

Runs the signer with run_loop over an existing database until no intent is queued or in flight, then
exits 0. `--crash-at` sets the signer's crash seam, so the process kills itself with SIGKILL there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sidecar.loops import run_loop
from sidecar.observe.metrics import Metrics
from tests.sidecar.chain.signer_kit import UNSETTLED, open_rig


async def run(db: Path, rpc_url: str, crash_at: str | None, max_msgs: int, timeout_delta: int) -> int:
    rig = await open_rig(
        db,
        rpc_url,
        crash_at=crash_at,  # type: ignore[arg-type]
        max_msgs_per_tx=max_msgs,
        timeout_height_delta=timeout_delta,
    )
    stop = asyncio.Event()

    async def step() -> float:
        delay = await rig.signer.step()
        if not any(rig.signer.status.counts.get(s) for s in UNSETTLED):
            stop.set()
        return delay

    try:
        await asyncio.wait_for(run_loop("chain-signer", step, stop, Metrics()), timeout=120)
    finally:
        await rig.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--crash-at", choices=("after_sign", "after_broadcast"))
    parser.add_argument("--max-msgs", type=int, default=5)
    # Blocks a stored tx stays valid: wide enough that a restart on a busy machine (a new Python process) still
    # finds the txs signed before the crash sendable, so the test can require that exactly those bytes land.
    parser.add_argument("--timeout-height-delta", type=int, default=300)
    args = parser.parse_args()
    return asyncio.run(run(args.db, args.rpc, args.crash_at, args.max_msgs, args.timeout_height_delta))


if __name__ == "__main__":
    sys.exit(main())
