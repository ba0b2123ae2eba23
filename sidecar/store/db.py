"""The database: one SQLite file in WAL mode (synchronous=FULL), one writer thread, one reader thread.

Every write is a named function run in the writer thread inside BEGIN IMMEDIATE, so writes never
interleave and never block the event loop: `await store.write("advance cursor", advance_txn, ...)`.
Side effects (HTTP calls, broadcasts) belong after the awaited write returns, i.e. after commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from sidecar.errors import StoreError
from sidecar.store.migrations import migrate

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger(__name__)


# FULL, not NORMAL: in WAL mode NORMAL syncs only at checkpoints, so a power loss can undo the last
# commits, and with them the record of a signed tx or of a desk ticket already created: a duplicate
# after restart. FULL syncs the WAL on every commit. The cost is measured by `python -m bench
# store_commits`; benchmarks may set this to compare, the product never does.
SYNCHRONOUS = "FULL"


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


class Store:
    """Owns the database connections and the two threads that use them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._closed = threading.Event()

    @classmethod
    async def open(cls, path: str) -> Store:
        """Create the file (and its folder) if needed and apply migrations."""
        store = cls(path)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(store._writer, store._open_writer)
        await loop.run_in_executor(store._reader, store._open_reader)
        return store

    def _open_writer(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _connect(self.path)
            applied = migrate(conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        if applied:
            log.info("database migrated", extra={"path": self.path, "versions": applied})
        self._write_conn = conn

    def _open_reader(self) -> None:
        self._read_conn = _connect(self.path)

    async def write(
        self, desc: str, fn_txn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run fn_txn(conn, ...) in the writer thread inside one BEGIN IMMEDIATE transaction."""

        def run() -> T:
            conn = self._require(self._write_conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn_txn(conn, *args, **kwargs)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(self._writer, desc, run)

    async def read(
        self, desc: str, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run fn(conn, ...) in the reader thread over a consistent snapshot."""

        def run() -> T:
            conn = self._require(self._read_conn)
            conn.execute("BEGIN")
            try:
                return fn(conn, *args, **kwargs)
            finally:
                conn.execute("COMMIT")

        return await self._run(self._reader, desc, run)

    async def _run(self, executor: ThreadPoolExecutor, desc: str, run: Callable[[], T]) -> T:
        if self._closed.is_set():
            raise StoreError(f"store is closed ({desc})")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, run)

    def _require(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise StoreError("store is not open")
        return conn

    async def close(self) -> None:
        """Finish queued work, then close both connections. Called last at shutdown."""
        if self._closed.is_set():
            return
        self._closed.set()
        loop = asyncio.get_running_loop()
        if self._read_conn is not None:
            await loop.run_in_executor(self._reader, self._read_conn.close)
        if self._write_conn is not None:
            await loop.run_in_executor(self._writer, self._write_conn.close)
        self._reader.shutdown(wait=True)
        self._writer.shutdown(wait=True)
