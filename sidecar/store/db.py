"""The database: one SQLite file in WAL mode (synchronous=FULL), one writer thread, one reader thread.

Every write is a named function run in the writer thread inside BEGIN IMMEDIATE, so writes never
interleave and never block the event loop: `await store.write("advance cursor", advance_txn, ...)`.
Side effects (HTTP calls, broadcasts) belong after the awaited write returns, i.e. after commit.
Many small writes of one kind arriving at once (webhook intake) share commits through `GroupCommit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, Generic, ParamSpec, TypeVar

from sidecar.errors import StoreError
from sidecar.store.migrations import migrate

T = TypeVar("T")
P = ParamSpec("P")
Item = TypeVar("Item")
Result = TypeVar("Result")
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


class GroupFailed(StoreError):
    """The one transaction of a group of writes failed: every write of the group failed with it, none is
    stored. The message names the kind of write and the group's size, never what was written."""


class GroupCommit(Generic[Item, Result]):
    """Writes of one kind share transactions: those that arrive while a group is being committed wait, and
    go together in the next BEGIN IMMEDIATE ... COMMIT (one WAL sync for many under synchronous=FULL).

    `fn_txn(conn, items)` runs in the writer thread through `Store.write` and returns one result per item,
    in order; an item sees the items before it in its group as already written. Each `submit` returns
    only after its group committed, so its result is durable. `slots` bound how many items may wait or be
    written at once (beyond: WriterBusy, nothing queued), as for `write_within`; a slot is freed when its
    group's transaction ends, not when its caller stops waiting. `max_group` keeps each transaction short.
    Used from one event loop's thread only."""

    def __init__(
        self,
        store: Store,
        desc: str,
        fn_txn: Callable[[sqlite3.Connection, Sequence[Item]], Sequence[Result]],
        slots: WriteSlots,
        max_group: int = 256,
    ) -> None:
        if max_group < 1:
            raise ValueError("a group must hold at least one write")
        self._store = store
        self._desc = desc
        self._fn_txn = fn_txn
        self._slots = slots
        self.max_group = max_group
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.groups = 0  # transactions committed or failed, and the writes they held: figures for benchmarks
        self.written = 0

    @property
    def waiting(self) -> int:
        """Items submitted and not yet taken into a group's transaction."""
        return len(self._waiting)

    async def submit(self, item: Item) -> Result:
        """Wait for `item`'s group to commit and return its result; GroupFailed if the group's transaction
        failed, WriterBusy (nothing queued) if the slots are all taken."""
        if self._slots.in_use >= self._slots.limit:
            raise WriterBusy(f"{self._desc}: {self._slots.in_use} writes of this kind already queued")
        self._slots.in_use += 1
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._committer is None or self._committer.done():  # done: its loop ended without finishing it
            self._committer = asyncio.ensure_future(self._commit_waiting())
        # Awaited bare, not shielded: a caller that goes away cancels only its own future; its item stays
        # queued (or in its group's transaction), and its slot is freed with its group, below.
        return await done

    async def _commit_waiting(self) -> None:
        """Commit groups until none waits. Started by the first submit after an idle spell; whatever arrives
        while a group commits forms the next group, so a lone write is never delayed to wait for company.
        Before taking a group it lets the loop finish one step: requests read while the last group committed
        (their tasks scheduled, not yet run) join this group instead of the next (fewer, larger commits;
        no timer, so a lone write waits one step, not for company)."""
        try:
            while self._waiting:
                await asyncio.sleep(0)
                group = self._waiting[: self.max_group]
                del self._waiting[: self.max_group]
                await self._commit(group)
        finally:
            self._committer = None
            self._slots.in_use -= len(self._waiting)
            self._fail(self._waiting, "the committer stopped")  # only when cancelled: the loop is ending
            self._waiting = []

    async def _commit(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in group]
        self.groups += 1
        self.written += len(items)
        try:
            results = await self._store.write(self._desc, self._group_txn, items)
        except Exception as exc:
            log.warning(
                "group commit failed", extra={"desc": self._desc, "size": len(items), "error": type(exc).__name__}
            )
            self._fail(group, f"its transaction failed ({type(exc).__name__})", exc)
            return
        except BaseException:
            # Cancelled while the writer thread may still commit: the callers are told it failed (a retry of
            # a write that did commit finds it there), never left waiting.
            self._fail(group, "cancelled while committing")
            raise
        finally:
            self._slots.in_use -= len(group)  # the group's transaction has ended (or its callers are told it did)
        for (_, done), result in zip(group, results, strict=True):
            if not done.done():  # done: its caller went away (cancelled)
                done.set_result(result)

    def _group_txn(self, conn: sqlite3.Connection, items: Sequence[Item]) -> list[Result]:
        results = list(self._fn_txn(conn, items))
        if len(results) != len(items):  # raised inside the transaction, so nothing of the group is kept
            raise StoreError(f"{self._desc}: {len(results)} results for a group of {len(items)}")
        return results

    def _fail(
        self, group: list[tuple[Item, asyncio.Future[Result]]], why: str, cause: BaseException | None = None
    ) -> None:
        for _, done in group:
            if not done.done():
                error = GroupFailed(f"{self._desc}: group of {len(group)} not written: {why}")
                error.__cause__ = cause
                done.set_exception(error)
