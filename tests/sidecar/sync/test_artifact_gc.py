"""Artifact garbage collection on a real directory store and a real SQLite store: what goes, what stays, why."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devnet.sim_faults import ManualClock
from sidecar.artifacts.local import LocalStore
from sidecar.artifacts.s3 import Credentials, S3Store
from sidecar.chain.events import decode_block
from sidecar.observe.audit import DAY, Auditor
from sidecar.store.attachments import add_outbound_txn
from sidecar.store.audit import AuditRow, iter_audit_rows
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn
from sidecar.store.jobs import dispatch_inbox_txn, finish_job_txn, queue_update_job_txn
from sidecar.sync.artifact_gc import DELETE_BATCH, ArtifactCollector
from tests.sidecar.chain.test_events import all_heights, block_results
from tests.sidecar.stores import store_at

RETENTION_DAYS = 30
R = RETENTION_DAYS * DAY
CHAIN = "virtengine-devnet-1"
TICKET = "virtengine1cust0mer0000000000000000000000000000x/support/1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with store_at(tmp_path / "db", CHAIN, 99) as s:
        yield s


@pytest.fixture
def artifacts(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "artifacts")


async def put(artifacts: LocalStore, tmp_path: Path, data: bytes, stored_at: float) -> str:
    """Store `data` and set its stored time (the object file's mtime, what list_refs reports)."""
    source = tmp_path / "spool"
    source.write_bytes(data)
    ref = (await artifacts.put_file(source)).ref
    os.utime(artifacts.path_of(ref), (stored_at, stored_at))
    return ref


async def reference(store: Store, ref: str, n: int, now: float) -> None:
    await store.write("row", add_outbound_txn, "jira", TICKET, f"{n:064x}", 1, "text/plain", ref, now)


async def collected(store: Store) -> list[AuditRow]:
    rows = await store.read("audit", lambda c: list(iter_audit_rows(c, None, None)))
    return [r for r in rows if r.event_type == "artifacts_collected"]


async def commit_chain_events(store: Store) -> None:
    """The vector ticket's blocks: real chain events, pending until dispatched."""
    heights = range(100, max(all_heights()) + 1)
    batches = [BlockBatch(h, decode_block(block_results(h)), {}) for h in heights]
    await store.write("commit", commit_blocks_txn, CHAIN, batches)


def collector(store: Store, artifacts: LocalStore, clock: ManualClock, **kw: object) -> ArtifactCollector:
    return ArtifactCollector(store, artifacts, Auditor(store, clock=clock), RETENTION_DAYS, clock=clock, **kw)  # type: ignore[arg-type]


async def test_only_old_unreferenced_objects_go_and_the_run_is_audited(
    store: Store, artifacts: LocalStore, clock: ManualClock, tmp_path: Path
) -> None:
    now = clock()
    old_orphan = await put(artifacts, tmp_path, b"old orphan", now - R - 3600)
    old_kept = await put(artifacts, tmp_path, b"old but referenced", now - R - 3600)
    young_orphan = await put(artifacts, tmp_path, b"young orphan", now - R + 3600)
    await reference(store, old_kept, 1, now)
    gc = collector(store, artifacts, clock)

    assert await gc.step() == gc.interval
    assert not await artifacts.exists(old_orphan)
    assert await artifacts.exists(old_kept) and await artifacts.exists(young_orphan)
    [entry] = await collected(store)
    details = json.loads(entry.details_json)
    assert details["count"] == 1 and details["refs"] == [old_orphan] and details["backend"] == "local"
    assert entry.status == "ok"

    await gc.step()  # nothing due: no second entry
    assert len(await collected(store)) == 1
    clock.advance(2 * 3600)  # the young orphan passes the retention period
    await gc.step()
    assert not await artifacts.exists(young_orphan) and await artifacts.exists(old_kept)
    assert len(await collected(store)) == 2


async def test_nothing_goes_while_a_chain_event_is_unread(
    store: Store, artifacts: LocalStore, clock: ManualClock, tmp_path: Path
) -> None:
    """A portal upload for a ticket the sidecar has not read yet is older than the event naming it."""
    now = clock()
    upload = await put(artifacts, tmp_path, b"portal upload", now - 2 * R)
    await commit_chain_events(store)
    gc = collector(store, artifacts, clock)

    assert await gc.step() == gc.retry
    assert await artifacts.exists(upload)
    assert await collected(store) == []

    await store.write("dispatch", dispatch_inbox_txn, [], [], 1000, now)  # read, and nothing named it
    await gc.step()
    assert not await artifacts.exists(upload)


async def test_an_unfinished_job_holds_back_the_cut_off(
    store: Store, artifacts: LocalStore, clock: ManualClock, tmp_path: Path
) -> None:
    """A queued job's files get rows only when it runs; objects stored within the retention before it stay."""
    queued = clock()
    await store.write("job", queue_update_job_txn, "u1", "jira", TICKET, "test", queued)
    within = await put(artifacts, tmp_path, b"stored shortly before the job", queued - R + 3600)
    before = await put(artifacts, tmp_path, b"stored long before the job", queued - R - 3600)
    clock.advance(3 * R)  # the desk was down for long: the job is still pending
    gc = collector(store, artifacts, clock)

    await gc.step()
    assert await artifacts.exists(within)
    assert not await artifacts.exists(before)

    await store.write("finish", finish_job_txn, 1, clock())
    await gc.step()
    assert not await artifacts.exists(within)


async def test_nothing_goes_while_the_follower_catches_up(
    store: Store, artifacts: LocalStore, clock: ManualClock, tmp_path: Path
) -> None:
    caught_up = False
    orphan = await put(artifacts, tmp_path, b"orphan", clock() - 2 * R)
    gc = collector(store, artifacts, clock, caught_up=lambda: caught_up)

    assert await gc.step() == gc.retry
    assert await artifacts.exists(orphan)
    caught_up = True
    await gc.step()
    assert not await artifacts.exists(orphan)


class RacingStore(LocalStore):
    """A directory store; after its first delete, a chain event arrives (another writer, mid-run)."""

    def __init__(self, directory: Path, db: Store) -> None:
        super().__init__(directory)
        self.db = db
        self.deletes = 0

    async def delete(self, ref: str) -> None:
        await super().delete(ref)
        self.deletes += 1
        if self.deletes == 1:
            await commit_chain_events(self.db)


async def test_an_event_arriving_mid_run_stops_it_after_the_batch(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    racing = RacingStore(tmp_path / "artifacts", store)
    refs = [await put(racing, tmp_path, f"orphan {i}".encode(), clock() - 2 * R - i) for i in range(DELETE_BATCH + 5)]
    gc = collector(store, racing, clock)

    assert await gc.step() == gc.retry
    remaining = [ref for ref in refs if await racing.exists(ref)]
    assert len(remaining) == 5  # the batch in progress finished; the guard stopped the next one
    [entry] = await collected(store)
    assert json.loads(entry.details_json)["count"] == DELETE_BATCH


async def test_an_unreachable_store_waits_instead_of_crashing(store: Store, clock: ManualClock) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s3 = S3Store(
        endpoint=f"http://127.0.0.1:{port}",
        region="us-east-1",
        bucket="artifacts",
        prefix="",
        credentials=Credentials("id", "secret"),
        timeout=2.0,
    )
    try:
        gc = ArtifactCollector(store, s3, Auditor(store, clock=clock), RETENTION_DAYS, clock=clock)
        assert await gc.step() == gc.retry
    finally:
        await s3.aclose()
    assert await collected(store) == []
