"""Every connection the store opens syncs each commit (synchronous=FULL in WAL mode).

With NORMAL, a power loss can undo the last commits, and with them the record of a signed tx or of
a desk ticket already created. The pragma is per connection, so both threads' connections are checked.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sidecar.store.db import Store

FULL = 2  # PRAGMA synchronous answers 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def _settings(conn: sqlite3.Connection) -> tuple[int, int, str]:
    """(thread id, synchronous, journal_mode) of the connection this runs on."""
    synchronous = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    return threading.get_ident(), synchronous, journal


@pytest.mark.parametrize("reopen", [False, True], ids=["new file", "existing file"])
async def test_writer_and_reader_connections_sync_every_commit(tmp_path: Path, reopen: bool) -> None:
    path = str(tmp_path / "sidecar.db")
    if reopen:  # an existing database (no migration to apply) must get the same settings
        await (await Store.open(path)).close()
    store = await Store.open(path)
    try:
        writer = await store.write("pragmas", _settings)
        reader = await store.read("pragmas", _settings)
    finally:
        await store.close()
    assert writer[0] != reader[0], "the reads did not run on the reader thread's own connection"
    assert writer[1:] == (FULL, "wal")
    assert reader[1:] == (FULL, "wal")
