"""The database: one SQLite file in WAL mode (synchronous=FULL), one writer thread, one reader thread.

Every write is a named function run in the writer thread inside BEGIN IMMEDIATE, so writes never
interleave and never block the event loop: `await store.write("advance cursor", advance_txn, ...)`.
Side effects (HTTP calls, broadcasts) belong after the awaited write returns, i.e. after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
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


class WriterBusy(StoreError):
    """A bounded kind of write was refused because its slots are all taken; retry later."""


class WriteSlots:
    """How many writes of one kind may wait for or use the writer thread at once (see write_within).

    Counted on the event loop's thread only, so a plain integer is enough."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a write slot limit must be at least 1")
        self.limit = limit
        self.in_use = 0


def _make_private(path: str) -> None:
    """Create the database file 0600 if missing, and tighten it and its WAL/SHM to 0600 if looser.

    SQLite creates the WAL and SHM with the database file's mode, so a private database keeps them
    private; an older, looser file is tightened rather than refused (it holds ticket ids, not secrets)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for file in (path, f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_IMODE(os.stat(file).st_mode) & 0o077:
                    os.chmod(file, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open database {path}: {exc.strerror}") from None


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
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_private(self.path)
        try:
            conn = _connect(self.path)
            applied = migrate(conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        if self.path != ":memory:":
            _make_private(self.path)  # the WAL and SHM files exist now
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

    async def write_within(
        self,
        slots: WriteSlots,
        desc: str,
        fn_txn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`write`, unless `slots.limit` writes of the same kind are already queued or running: then
        WriterBusy, and nothing is queued. Intake from outside takes this path, so it can never queue
        more than a few transactions ahead of the follower's and the desk workers' writes."""
        if slots.in_use >= slots.limit:
            raise WriterBusy(f"{desc}: {slots.in_use} writes of this kind already queued")
        slots.in_use += 1
        write = asyncio.ensure_future(self.write(desc, fn_txn, *args, **kwargs))

        def release(done: asyncio.Future[T]) -> None:
            # When the write itself ends, not when its caller stops waiting (a client that disconnects
            # leaves its transaction queued: it still holds the slot until the writer has run it).
            slots.in_use -= 1
            if not done.cancelled():
                done.exception()  # retrieved here, for a caller that went away

        write.add_done_callback(release)
        return await asyncio.shield(write)

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
