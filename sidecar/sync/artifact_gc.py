"""Artifact garbage collection: deletes stored objects nothing refers to any more, after the audit retention.

The rule, and why. An object is deleted only when all of these hold:
  1. no `attachments` row names its ref (rows are kept for good, so a copied or withheld file stays);
  2. no chain event is waiting to be processed, and the chain follower is caught up (`caught_up`): an object
     is stored *before* the event that names it (the portal uploads, then submits its transaction), so no age
     cut-off can protect what an unread event names; the run waits for a quiet moment instead (the inbox
     drains in seconds);
  3. it was stored more than the retention period before the oldest unfinished desk job was queued (and
     before now): a queued job's attachments get their rows only when the job runs, and the objects it names
     were stored before it was queued, under the assumption that an object is named on chain within the
     retention period of being stored.
The guard is read again before every batch of deletions; a new event or row since the last read stops the
run (or re-filters it), so the window between check and delete is one batch of deletes, not the whole run.
Objects the sidecar itself stores (inbound) are new when their row is written, so the age rule keeps them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sidecar.artifacts.base import ArtifactError, ArtifactStore
from sidecar.observe.audit import DAY, Auditor, iso_time
from sidecar.store.attachments import CollectGuard, collect_guard
from sidecar.store.audit import AuditEntry
from sidecar.store.db import Store

log = logging.getLogger(__name__)
Clock = Callable[[], float]

DELETE_BATCH = 50  # deletions between two reads of the guard
SAMPLE_REFS = 3  # refs named in the audit entry (content-free hashes): enough to trace one object


def _always() -> bool:
    return True


class ArtifactCollector:
    """One garbage collection run per step: `run_loop("artifact-gc", collector.step, stop, metrics)`."""

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        auditor: Auditor,
        retention_days: int,
        *,
        clock: Clock = time.time,
        caught_up: Callable[[], bool] = _always,
        interval: float = 3600.0,
        retry: float = 300.0,
        batch: int = 1000,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._auditor = auditor
        self.retention = retention_days * DAY
        self._clock = clock
        self._caught_up = caught_up
        self.interval = interval
        self.retry = retry
        self.batch = batch

    def cutoff(self, guard: CollectGuard, now: float) -> float:
        """Objects stored before this time may go (rule 3 of the module docstring)."""
        since = now if guard.oldest_job is None else min(now, guard.oldest_job)
        return since - self.retention

    async def step(self) -> float:
        """Seconds until the next run: `retry` when the run had to wait or failed, 1 when more is due."""
        if not self._caught_up():
            return self.retry
        try:
            listed = await self._artifacts.list_refs()
        except ArtifactError as exc:
            return self._failed("list", exc)
        guard = await self._store.read("artifact gc guard", collect_guard)
        if guard.pending_events:
            return self.retry
        due = self._due(listed, guard)
        deleted: list[str] = []
        try:
            waited = await self._delete(due[: self.batch], guard, deleted)
        except ArtifactError as exc:
            await self._record(deleted, guard)
            return self._failed("delete", exc)
        await self._record(deleted, guard)
        if waited:
            return self.retry
        return 1.0 if len(due) > self.batch else self.interval

    def _due(self, listed: list[tuple[str, float]], guard: CollectGuard) -> list[str]:
        cutoff = self.cutoff(guard, self._clock())
        due = [(stored, ref) for ref, stored in listed if stored < cutoff and ref not in guard.referenced]
        return [ref for _, ref in sorted(due)]  # oldest first

    async def _delete(self, due: list[str], guard: CollectGuard, deleted: list[str]) -> bool:
        """Delete `due` in batches, re-checking the guard before each; True when the run stopped to wait."""
        remaining = due
        while remaining:
            fresh = await self._store.read("artifact gc guard", collect_guard)
            if fresh.watermark != guard.watermark:
                if fresh.pending_events or not self._caught_up():
                    return True
                # Jobs queued since were queued after this run's cut-off time was taken, so the cut-off
                # still holds for them; only rows written since can newly name an object.
                remaining = [ref for ref in remaining if ref not in fresh.referenced]
                guard = fresh
            batch, remaining = remaining[:DELETE_BATCH], remaining[DELETE_BATCH:]
            for ref in batch:
                await self._artifacts.delete(ref)
                deleted.append(ref)
        return False

    async def _record(self, deleted: list[str], guard: CollectGuard) -> None:
        if not deleted:
            return
        cutoff = self.cutoff(guard, self._clock())
        log.info("artifacts collected", extra={"count": len(deleted), "backend": self._artifacts.name})
        await self._auditor.record(
            AuditEntry(
                event_type="artifacts_collected",
                actor="sidecar",
                status="ok",
                details={
                    "count": len(deleted),
                    "backend": self._artifacts.name,
                    "stored_before": iso_time(cutoff),
                    "refs": deleted[:SAMPLE_REFS],
                },
            )
        )

    def _failed(self, what: str, exc: ArtifactError) -> float:
        """A store that cannot be listed or written is the attachment engines' problem to report: GC waits."""
        level = logging.WARNING if exc.retryable else logging.ERROR
        log.log(level, "artifact gc could not %s objects", what, extra={"error": str(exc)})
        return self.retry if exc.retryable else self.interval
