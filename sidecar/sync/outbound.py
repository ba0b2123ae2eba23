"""Outbound sync: chain events become desk tickets, comments and transitions, exactly once per desk.

The dispatcher turns inbox events into jobs; one worker per desk runs due jobs (first pending job
of each ticket only, so a ticket's changes land in order), retries with backoff and jitter,
honours Retry-After, and dead-letters what cannot succeed. Creates are idempotent: the stored ref,
then a lookup at the desk, come before any POST, and the desk's answer is recorded at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sidecar.config_schema import RetryConfig
from sidecar.desks.base import Desk, ExternalTicket, TicketSnapshot
from sidecar.errors import DeskError
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store
from sidecar.store.jobs import (
    Job,
    claim_due_txn,
    dead_job_txn,
    defer_job_txn,
    dispatch_inbox_txn,
    finish_job_txn,
    retry_job_txn,
)
from sidecar.store.refs import RefRow, get_ref, record_ref_txn
from sidecar.sync.content import ContentOpener

log = logging.getLogger(__name__)
# Test seam: SIDECAR_TEST_CRASH_POINT=after_desk_create SIGKILLs the process between the desk's answer
# and the local record, the worst moment for duplicates. Never set in production.
CRASH_POINT = os.environ.get("SIDECAR_TEST_CRASH_POINT", "")
# Called inside the ref-recording transaction to queue the on-chain registration of a new ref.
RegisterRef = Callable[[sqlite3.Connection, RefRow, float], None]


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    idle_wait: float = 0.5


def backoff(retry: RetryConfig, attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with x0.7-1.3 jitter, capped; never earlier than the desk's Retry-After."""
    delay = min(retry.max_backoff, retry.initial_backoff * retry.backoff_multiplier ** max(0, attempts))
    delay *= rng.uniform(0.7, 1.3)
    return max(delay, retry_after or 0.0)


class Dispatcher:
    """Inbox events -> one job per configured desk; a step per batch."""

    def __init__(self, store: Store, desks: Sequence[str], own_addresses: Sequence[str], batch: int = 500) -> None:
        self._store = store
        self._desks = list(desks)
        self._own = list(own_addresses)
        self._batch = batch

    async def step(self) -> float:
        taken = await self._store.write(
            "dispatch inbox", dispatch_inbox_txn, self._desks, self._own, self._batch, time.time()
        )
        return 0.0 if taken >= self._batch else 0.25


class DeskWorker:
    def __init__(
        self,
        desk: Desk,
        store: Store,
        opener: ContentOpener,
        auditor: Auditor,
        metrics: Metrics,
        health: HealthState,
        retry: RetryConfig,
        settings: WorkerSettings,
        register: RegisterRef | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.desk = desk
        self._store = store
        self._opener = opener
        self._auditor = auditor
        self._metrics = metrics
        self._health = health
        self._retry = retry
        self._settings = settings
        self._register = register
        self._rng = rng or random.Random()
        self._paused_until = 0.0
        self._outage_probes = 0  # failed health probes since the desk went down; 0: the desk is up
        self._probe_lock = asyncio.Lock()

    async def step(self) -> float:
        now = time.time()
        if now < self._paused_until:
            return self._paused_until - now
        if self._outage_probes and not await self._probe(now):
            return max(0.0, self._paused_until - now)
        jobs = await self._store.write("claim jobs", claim_due_txn, self.desk.name, now, self._settings.concurrency)
        if not jobs:
            return self._settings.idle_wait
        await asyncio.gather(*(self._run(job) for job in jobs))
        return 0.0

    async def check(self) -> float:
        """A cheap authenticated call, so health says whether the desk answers even when idle."""
        try:
            await self.desk.check()
        except DeskError as exc:
            if self._health.desks.get(self.desk.name) != "unhealthy":
                log.warning("desk does not answer well", extra={"desk": self.desk.name, "error": str(exc)})
            self._health.desks[self.desk.name] = "unhealthy"
            return 10.0
        self._health.desks[self.desk.name] = "healthy"
        return 30.0

    async def _run(self, job: Job) -> None:
        try:
            await self._handle(job)
        except DeskError as exc:
            await self._failed(job, exc)
            return
        await self._store.write("finish job", self._finish_txn, job, time.time())
        self._metrics.count_sync("outbound", "success")
        self._health.desks[self.desk.name] = "healthy"

    def _finish_txn(self, conn: sqlite3.Connection, job: Job, now: float) -> None:
        """The job is done and audited in one transaction: a sync that happened is never unrecorded."""
        finish_job_txn(conn, job.id, now)
        if self._auditor.enabled:
            entry = _outbound_entry("ticket_synced", job, "ok", {"job_id": job.id, "kind": job.kind})
            append_audit_txn(conn, self._auditor.clean(entry), now)

    async def _desk_down(self, now: float) -> bool:
        """After a desk-wide failure: is the whole desk down (its cheap health call fails too)?"""
        async with self._probe_lock:
            return bool(self._outage_probes) or not await self._probe(now)

    async def _probe(self, now: float) -> bool:
        """One health call: True when the desk answers. A failure starts or extends the outage; while it
        lasts, one probe per backoff period decides when the desk's jobs resume."""
        try:
            await self.desk.check()
        except DeskError as exc:
            if not self._outage_probes:
                self._health.desks[self.desk.name] = "unhealthy"
                log.warning(
                    "desk is down: its jobs wait without spending attempts", extra={"desk": self.desk.name}
                )
            self._paused_until = now + backoff(self._retry, self._outage_probes, exc.retry_after, self._rng)
            self._outage_probes += 1
            return False
        if self._outage_probes:
            log.info("desk is back", extra={"desk": self.desk.name, "probes": self._outage_probes})
            self._outage_probes = 0
            self._health.desks[self.desk.name] = "healthy"
        return True

    async def _failed(self, job: Job, exc: DeskError) -> None:
        now = time.time()
        error = str(exc)
        if exc.retryable and exc.scope == "desk" and exc.retry_after:
            self._paused_until = max(self._paused_until, now + exc.retry_after)
        if exc.retryable and (exc.status == 429 or (exc.scope == "desk" and await self._desk_down(now))):
            # A rate limit or an outage is not the job's fault: it waits without spending an attempt.
            await self._store.write("defer job", defer_job_txn, job.id, error, now + (exc.retry_after or 0.0), now)
            return
        if not exc.retryable or job.attempts + 1 >= self._retry.max_retries:
            await self._store.write("dead job", dead_job_txn, job.id, error, now)
            self._metrics.count_sync("outbound", "failed")
            details = {"job_id": job.id, "kind": job.kind, "attempts": job.attempts + 1}
            await self._auditor.record(_outbound_entry("sync_failed", job, "dead", details, error))
            log.error(
                "desk job dead-lettered", extra={"job_id": job.id, "desk": job.desk, "kind": job.kind, "error": error}
            )
            return
        delay = backoff(self._retry, job.attempts, exc.retry_after, self._rng)
        await self._store.write("retry job", retry_job_txn, job.id, error, now + delay, now)
        log.info(
            "desk job will be retried",
            extra={"job_id": job.id, "desk": job.desk, "in_s": round(delay, 2), "error": error},
        )

    async def _handle(self, job: Job) -> None:
        snapshot = await self._opener.snapshot(job.ticket_id)
        if snapshot is None:
            raise DeskError(f"ticket {job.ticket_id} is not in the local mirror", retryable=False)
        if job.kind in ("create", "update"):
            for value in self.desk.unmapped(snapshot):
                details = {"field": value.field, "chain_value": value.chain_value, "used": value.used}
                await self._auditor.record(_outbound_entry("field_unmapped", job, "defaulted", details))
        ref = await self._ensure_ref(snapshot)
        if job.kind == "update":
            await self.desk.update_fields(ref, snapshot)
            await self.desk.set_status(ref, snapshot.status)
        elif job.kind == "status":
            await self.desk.set_status(ref, snapshot.status)  # the current status: replays cannot go backwards
        elif job.kind == "comment":
            comment = await self._opener.comment(str(job.payload.get("event_id", "")))
            if comment is None:
                raise DeskError(f"response event of job {job.id} is not in the inbox", retryable=False)
            if not await self.desk.has_comment(ref, comment.marker):
                await self.desk.add_comment(ref, comment)
        elif job.kind == "close":
            await self.desk.close(ref, "the ticket was archived on chain")

    async def _ensure_ref(self, snapshot: TicketSnapshot) -> ExternalTicket:
        """The desk ticket for this chain ticket: stored ref, else adopted by lookup, else created."""
        row = await self._store.read("ref", get_ref, snapshot.ticket_id, self.desk.name)
        if row is not None:
            return ExternalTicket(
                self.desk.name, row.external_id, row.external_key or row.external_id, row.external_url or ""
            )
        found = await self.desk.find(snapshot)
        event = "external_ticket_adopted"
        if found is None:
            found = await self.desk.create(snapshot)
            event = "external_ticket_created"
            if CRASH_POINT == "after_desk_create":
                os.kill(os.getpid(), signal.SIGKILL)
        await self._store.write("record ref", self._record_txn, snapshot, found, event, time.time())
        return found

    def _record_txn(
        self, conn: sqlite3.Connection, snapshot: TicketSnapshot, ext: ExternalTicket, event: str, now: float
    ) -> None:
        row = record_ref_txn(conn, RefRow(snapshot.ticket_id, ext.desk, ext.external_id, ext.key, ext.url, False), now)
        entry = AuditEntry(
            event,
            ticket_id=snapshot.ticket_id,
            desk=ext.desk,
            direction="outbound",
            actor="sidecar",
            status="ok",
            details={"external_id": ext.external_id, "external_key": ext.key},
        )
        if self._auditor.enabled:
            append_audit_txn(conn, self._auditor.clean(entry), now)
        if self._register is not None and not row.registered_on_chain:
            self._register(conn, row, now)


def _outbound_entry(
    event: str, job: Job, status: str, details: Mapping[str, object], error: str | None = None
) -> AuditEntry:
    return AuditEntry(
        event,
        ticket_id=job.ticket_id,
        desk=job.desk,
        direction="outbound",
        actor="sidecar",
        status=status,
        error=error,
        details=details,
    )
