"""Store write throughput: one-row commits per second through `Store.write` with synchronous=FULL (what
the sidecar uses) and NORMAL, each beside a bare sqlite3 connection doing the same commits in the same
process on the same schema and disk. FULL syncs the WAL on every commit; NORMAL only at checkpoints.

Ratios: store/bare (the cost of the writer thread and the event loop hop) and FULL/NORMAL (the cost of
durability). Rounds alternate the four runs so a neighbour's disk load spreads over all of them; the
median round is reported.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sidecar.store.db as db
from bench.results import Figure, report

COMMITS = int(os.environ.get("BENCH_COMMITS", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MODES = ("FULL", "NORMAL")
SYNC_VALUES = {"NORMAL": 1, "FULL": 2}  # what PRAGMA synchronous answers


def _insert_txn(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"bench:{n}", "x" * 64))


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'bench:%'").fetchone()[0])


async def _migrated(path: Path) -> None:
    await (await db.Store.open(str(path))).close()


async def store_run(path: Path, mode: str, commits: int) -> float:
    """Seconds for `commits` sequential Store.write calls, each its own transaction."""
    db.SYNCHRONOUS = mode
    try:
        store = await db.Store.open(str(path))
    finally:
        db.SYNCHRONOUS = "FULL"
    try:
        setting = await store.write("pragma", lambda c: int(c.execute("PRAGMA synchronous").fetchone()[0]))
        assert setting == SYNC_VALUES[mode], f"store opened with synchronous={setting}, not {mode}"
        started = time.perf_counter()
        for n in range(commits):
            await store.write("bench commit", _insert_txn, n)
        elapsed = time.perf_counter() - started
        assert await store.read("count", _count) == commits
    finally:
        await store.close()
    return elapsed


def bare_run(path: Path, mode: str, commits: int) -> float:
    """Seconds for the same commits on one plain sqlite3 connection, on the calling thread."""
    asyncio.run(_migrated(path))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {mode}")
        assert int(conn.execute("PRAGMA synchronous").fetchone()[0]) == SYNC_VALUES[mode]
        started = time.perf_counter()
        for n in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            _insert_txn(conn, n)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        assert _count(conn) == commits
    finally:
        conn.close()
    return elapsed


def measure(tmp: Path, commits: int, rounds: int) -> dict[str, float]:
    """Median commits/s of each run: store_full, store_normal, bare_full, bare_normal."""
    runs: dict[str, Callable[[Path, str], float]] = {
        "store": lambda path, mode: asyncio.run(_store_on_fresh(path, mode, commits)),
        "bare": lambda path, mode: bare_run(path, mode, commits),
    }
    rates: dict[str, list[float]] = {}
    for r in range(rounds):
        for kind, run in runs.items():
            for mode in MODES:
                name = f"{kind}_{mode.lower()}"
                elapsed = run(tmp / f"{name}-{r}.db", mode)
                rates.setdefault(name, []).append(commits / elapsed)
    return {name: statistics.median(values) for name, values in rates.items()}


async def _store_on_fresh(path: Path, mode: str, commits: int) -> float:
    await _migrated(path)  # migrations are not what is timed
    return await store_run(path, mode, commits)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=os.environ.get("BENCH_DIR")) as tmp:
        rates = measure(Path(tmp), COMMITS, ROUNDS)
    report(
        "store_commits",
        [
            Figure("commits_per_run", COMMITS, "commits"),
            Figure(
                "store_full",
                rates["store_full"],
                "commits/s",
                rates["bare_full"],
                rates["store_full"] / rates["bare_full"],
            ),
            Figure(
                "store_normal",
                rates["store_normal"],
                "commits/s",
                rates["bare_normal"],
                rates["store_normal"] / rates["bare_normal"],
            ),
            # The cost of durability: FULL's throughput as a fraction of NORMAL's.
            Figure(
                "store_full_vs_normal",
                rates["store_full"],
                "commits/s",
                rates["store_normal"],
                rates["store_full"] / rates["store_normal"],
            ),
            Figure(
                "bare_full_vs_normal",
                rates["bare_full"],
                "commits/s",
                rates["bare_normal"],
                rates["bare_full"] / rates["bare_normal"],
            ),
            Figure("store_full_commit_latency", 1000 / rates["store_full"], "ms"),
            Figure("store_normal_commit_latency", 1000 / rates["store_normal"], "ms"),
        ],
    )


if __name__ == "__main__":
    main()
