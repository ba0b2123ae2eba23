"""The store_commits benchmark's own logic at a small size: each run measures the mode it names, and the
benchmark leaves the store's setting as the product uses it. (Figures are never asserted.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import bench.store_commits as store_commits
import sidecar.store.db as db


@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
async def test_a_store_run_commits_each_write_under_the_mode_it_names(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    await store_commits._migrated(path)
    seen: list[int] = []

    def watch(conn: sqlite3.Connection, n: int) -> None:
        seen.append(int(conn.execute("PRAGMA synchronous").fetchone()[0]))
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"bench:{n}", "x"))

    monkeypatch.setattr(store_commits, "_insert_txn", watch)
    elapsed = await store_commits.store_run(path, mode, 25)
    assert elapsed > 0
    assert seen == [store_commits.SYNC_VALUES[mode]] * 25
    assert db.SYNCHRONOUS == "FULL"  # the benchmark never leaves the product on NORMAL


@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
def test_a_bare_run_commits_each_row(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "b.db"
    assert store_commits.bare_run(path, mode, 25) > 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'bench:%'").fetchone()[0] == 25
    conn.close()


def test_measure_reports_the_four_runs(tmp_path: Path) -> None:
    rates = store_commits.measure(tmp_path, 10, 1)
    assert sorted(rates) == ["bare_full", "bare_normal", "store_full", "store_normal"]
    assert all(rate > 0 for rate in rates.values())
