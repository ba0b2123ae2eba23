"""What inbound last read of a desk issue, on a real SQLite file: the desk time only moves forward, and a
sweep hit counts as already read only when its time is not after it (each desk apart)."""

from __future__ import annotations

from pathlib import Path

from sidecar.store.db import Store
from sidecar.store.desk_reads import already_read, record_desk_read_txn


async def test_a_hit_is_already_read_only_up_to_the_time_the_last_re_read_found(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    try:
        await store.write("read", record_desk_read_txn, "jira", "10001", 1000.0, 5.0)
        await store.write("late answer", record_desk_read_txn, "jira", "10001", 900.0, 6.0)  # never rolls back
        await store.write("no time", record_desk_read_txn, "jira", "10002", None, 6.0)  # nothing recorded
        hits = [("10001", 1000.0), ("10002", 1.0), ("10003", 1.0)]
        assert await store.read("seen", already_read, "jira", hits) == {"10001"}
        assert await store.read("later", already_read, "jira", [("10001", 1000.001)]) == set()
        assert await store.read("other desk", already_read, "waldur", [("10001", 1.0)]) == set()
    finally:
        await store.close()
