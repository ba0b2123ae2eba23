"""Outbound sync: chain events become desk tickets, comments and transitions, exactly once per desk.

The dispatcher turns inbox events into jobs; one worker per desk runs due jobs (first pending job
of each ticket only, so a ticket's changes land in order), retries with backoff and jitter,
honours Retry-After, and dead-letters what cannot succeed. Creates are idempotent: the stored ref,
then a lookup at the desk, come before any POST, and the desk's answer is recorded at once. A create
mark committed before each POST makes a retry wait out the desk's index lag before creating again;
a ref from the chain is used only when its desk ticket carries the sidecar's claim. Any exception in
one job dead-letters that job alone; cancellation and a failing database still stop the worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sidecar.config_schema import RetryConfig
from sidecar.desks.base import (
    INBOUND_FIELDS,
    SYNCED_FIELDS,
    Desk,
    DeskNote,
    DeskOutcome,
    ExternalTicket,
    FinishesCreates,
    ReadsChanges,
    TicketSnapshot,
    collecting_notes,
    remembering_reads,
)
from sidecar.desks.files import HasAttachments
from sidecar.desks.mapping import DeskMapping
from sidecar.errors import DeskError
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.audit import Auditor
from sidecar.observe.health import DeskState, HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store
from sidecar.store.inbound import FieldState, bases_and_held, enqueue_issue_txn, field_states, set_field_state_txn
from sidecar.store.jobs import (
    ATTACHMENT_KIND,
    Job,
    claim_due_txn,
    dead_job_txn,
    defer_job_txn,
    dispatch_inbox_txn,
    finish_covered_txn,
    finish_job_txn,
    inbox_horizon,
    inbox_payload,
    queue_event_jobs_txn,
    retry_job_txn,
)
from sidecar.store.pauses import PauseBook
from sidecar.store.refs import (
    CreateMark,
    RefRow,
    clear_create_mark_txn,
    drop_ref_txn,
    evict_unverified_txn,
    get_create_mark,
    get_ref,
    mark_create_txn,
    record_ref_txn,
    verify_ref_txn,
)
from sidecar.sync.attach_out import AttachmentSync, PlannedFile
from sidecar.sync.content import ContentOpener
from sidecar.sync.failures import is_store_failure, job_failure_reason
from sidecar.sync.fields import chain_value
from sidecar.sync.window import Work, run_window

log = logging.getLogger(__name__)
# Test seam: a hook run between the desk's answer to a create and the local record, the worst moment
# for duplicates (the crash tests SIGKILL the process there). See install_crash_hook.
_after_desk_create: Callable[[], None] | None = None
# While a create may be waiting for the desk's index, the job searches again this often (seconds).
INDEX_RECHECK = 5.0
# Called inside the ref-recording transaction to queue the on-chain registration of a new ref.
RegisterRef = Callable[[sqlite3.Connection, RefRow, float], None]


def install_crash_hook(hook: Callable[[], None] | None) -> None:
    """Install (or remove, with None) the test seam run right after a desk created a ticket.

    Only the test harness calls this (tests/sidecar/seamed.py, which then runs the real CLI); the product's
    entry points never do, and nothing reads the environment for it, so no variable, key or request can
    make a production process crash itself (`run` warns about SIDECAR_TEST_* variables it ignores)."""
    global _after_desk_create
    _after_desk_create = hook


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    idle_wait: float = 0.5
    # Keep the field bases inbound sync decides by (a desk read before and after field writes). Off when
    # inbound sync does not run: outbound alone needs no bases, and those reads would only cost requests.
    keep_bases: bool = True
    # Seconds one step keeps filling the slots its finished jobs free before it lets its last jobs finish and
    # returns (0: one batch per step, claimed together).
    step_span: float = 2.0


class _DeskHolds(Exception):
    """The job's event is a change the sidecar carried from this desk to the chain, and the desk is known to
    hold the ticket's status, priority and assignee already (their bases, set when the change was read): the
    job has nothing to write, and no desk request is made to find that out."""


class _WaitForIndex(Exception):
    """A create was sent for this ticket within the desk's index lag and search does not show it yet:
    the job waits (without spending an attempt) and searches again, rather than create a second one."""

    def __init__(self, reason: str, until: float) -> None:
        super().__init__(reason)
        self.until = until


def backoff(retry: RetryConfig, attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with x0.7-1.3 jitter, capped; never earlier than the desk's Retry-After."""
    delay = min(retry.max_backoff, retry.initial_backoff * retry.backoff_multiplier ** max(0, attempts))
    delay *= rng.uniform(0.7, 1.3)
    return max(delay, retry_after or 0.0)


class Dispatcher:
    """Inbox events -> one job per configured desk; a step per batch.

    An event is marked processed once dispatched to the desks configured at that moment, so events
    read while outbound is off, no desk is configured, or a desk is not yet added reach no desk. Keeping
    them pending instead would hold the follower's backpressure for desks that may never come, so each
    desk has a watermark in `meta`: the inbox id through which every event has its job for that desk.
    Before its first dispatch, the dispatcher queues, per configured desk, the jobs of processed events
    past that desk's watermark (in chunks, in event order; INSERT OR IGNORE on the job's dedupe key makes
    it idempotent). Per event, not per ticket: a ticket already at the desk still needs the replies and
    status changes made while outbound was off. A store without watermarks (older than this) is
    scanned once in full; events that already have their job are left alone.
    """

    CATCH_UP_CHUNK = 5_000  # inbox ids per catch-up transaction, so the writer is never held for long
    IDLE_WAIT = 0.25  # seconds between looks at an empty inbox (app.py wakes it when the follower stored blocks)

    def __init__(self, store: Store, desks: Sequence[str], own_addresses: Sequence[str], batch: int = 500) -> None:
        self._store = store
        self._desks = list(desks)
        self._own = list(own_addresses)
        self._batch = batch
        self._caught_up = not self._desks
        self.dispatched = 0  # events (and caught-up jobs) handed to the desks so far: app.py wakes the workers

    async def step(self) -> float:
        now = time.time()
        if not self._caught_up:
            queued, self._caught_up = await self._store.write("catch up desks", self._catch_up_txn, now)
            self.dispatched += sum(queued.values())
            for desk, count in queued.items():
                log.info(
                    "queued desk jobs for events read while the desk was not served",
                    extra={"desk": desk, "jobs": count},
                )
            return 0.0
        taken = await self._store.write("dispatch inbox", self._dispatch_txn, now)
        self.dispatched += taken
        return 0.0 if taken >= self._batch else self.IDLE_WAIT

    def _dispatch_txn(self, conn: sqlite3.Connection, now: float) -> int:
        taken = dispatch_inbox_txn(conn, self._desks, self._own, self._batch, now)
        if taken:
            top = _last_processed(conn)
            for desk in self._desks:
                _set_watermark(conn, desk, top)
        return taken

    def _catch_up_txn(self, conn: sqlite3.Connection, now: float) -> tuple[dict[str, int], bool]:
        """One chunk per desk behind the last processed event: (jobs queued per desk, all caught up)."""
        top = _last_processed(conn)
        queued: dict[str, int] = {}
        done = True
        for desk in self._desks:
            through = _watermark(conn, desk)
            if through >= top:
                continue
            upto = min(top, through + self.CATCH_UP_CHUNK)
            count = queue_event_jobs_txn(conn, desk, self._own, through, upto, now, state="processed")
            if count:
                queued[desk] = count
            _set_watermark(conn, desk, upto)
            done = done and upto >= top
        return queued, done


def _origin_holds(conn: sqlite3.Connection, job: Job, snapshot: TicketSnapshot, own: Sequence[str]) -> bool:
    """Whether `job` is this desk's own change coming back from the chain with nothing left to write: its
    event was signed by the sidecar (a desk change it carried) and every field inbound syncs has a base here
    that the desk is known to hold and the chain now holds too. Where any differs, or was never read, the
    job runs as any other (it reads the desk and decides)."""
    if job.inbox_id is None:
        return False
    row = conn.execute("SELECT sender FROM chain_inbox WHERE id = ?", (job.inbox_id,)).fetchone()
    if row is None or row["sender"] not in own:
        return False
    states = field_states(conn, job.ticket_id, job.desk)
    chain = {"status": snapshot.status, "priority": snapshot.priority, "assignee": snapshot.assigned_agent}
    for name, value in chain.items():
        state = states.get(name)
        if state is None or state.base != value or state.desk_value != value:
            return False
    return True


def _last_processed(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM chain_inbox WHERE state = 'processed'").fetchone()[0])


def _watermark(conn: sqlite3.Connection, desk: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"dispatched_through:{desk}",)).fetchone()
    return int(row[0]) if row else 0


def _set_watermark(conn: sqlite3.Connection, desk: str, inbox_id: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"dispatched_through:{desk}", str(inbox_id)),
    )


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
        clock: Callable[[], float] = time.time,
        *,
        pauses: PauseBook | None = None,
        activity: ActivityFeed | None = None,
        attachments: AttachmentSync | None = None,
        own_senders: Sequence[str] = (),
    ) -> None:
        self.desk = desk
        self._own_senders = tuple(own_senders)  # the sidecar's chain addresses (its inbound Msgs' sender)
        self._store = store
        self._opener = opener
        self._auditor = auditor
        self._metrics = metrics
        self._health = health
        self._retry = retry
        self._settings = settings
        self._register = register
        self._rng = rng or random.Random()
        self._clock = clock
        self._pauses = pauses  # an operator's pause: no job is claimed (the queue keeps them) until resumed
        self._activity = activity
        # Outbound attachments (sync.sync_attachments): None, or a desk without HasAttachments, copies none.
        self._attachments = attachments if isinstance(desk, HasAttachments) else None
        self._paused_until = 0.0
        self._outage_probes = 0  # failed health probes since the desk went down; 0: the desk is up
        self._probe_lock = asyncio.Lock()
        self.jobs_run = 0  # jobs run so far (a create queues its ref's registration: app.py wakes the signer)

    @property
    def idle_wait(self) -> float:
        """Seconds between looks for due jobs when there were none."""
        return self._settings.idle_wait

    async def step(self) -> float:
        """Run due jobs, up to `concurrency` at a time: a slot a finished job frees is filled at once (no job
        waits for the slowest of a batch), for up to `step_span` seconds; then the step lets its last jobs finish
        and returns, so the loop's wake-ups (the signer's, for new refs) and a shutdown come at least that often."""
        if self._pauses is not None and self._pauses.is_paused("outbound", self.desk.name):
            return self._settings.idle_wait
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        if self._outage_probes and not await self._probe(now):
            return max(0.0, self._paused_until - now)
        jobs, horizon = await self._store.write("claim jobs", self._claim_txn, now, self._settings.concurrency)
        if not jobs:
            return self._settings.idle_wait

        async def refill(free: int) -> list[Work]:
            if not self._may_claim(self._clock()):
                return []
            more, at = await self._store.write("claim jobs", self._claim_txn, self._clock(), free)
            return [self._run(job, at) for job in more]

        await run_window(
            [self._run(job, horizon) for job in jobs],
            refill,
            self._settings.concurrency,
            self._settings.step_span,
            self._count_run,
        )
        return 0.0

    def _count_run(self, n: int) -> None:
        self.jobs_run += n

    def _may_claim(self, now: float) -> bool:
        """No operator pause, no desk pause (Retry-After, an outage) begun by a job of this step."""
        paused = self._pauses is not None and self._pauses.is_paused("outbound", self.desk.name)
        return not paused and now >= self._paused_until and not self._outage_probes

    def _claim_txn(self, conn: sqlite3.Connection, now: float, limit: int) -> tuple[list[Job], int]:
        """Due jobs, and the inbox horizon they are claimed at: each job's snapshot, read later, holds every
        event up to it (what lets a finished update cover later ones, finish_covered_txn)."""
        return claim_due_txn(conn, self.desk.name, now, limit), inbox_horizon(conn)

    async def check(self) -> float:
        """A cheap authenticated call, so health says whether the desk answers even when idle."""
        try:
            await self.desk.check()
        except DeskError as exc:
            if self._health.desks.get(self.desk.name) not in ("unhealthy", "unauthorized"):
                log.warning("desk does not answer well", extra={"desk": self.desk.name, "error": str(exc)})
            self._set_state(exc)
            return 10.0
        self._set_state(None)
        return 30.0

    def _set_state(self, exc: DeskError | None) -> None:
        """Health, the problem text and the auth alarm after a call: answered (None) or failed (`exc`).
        A 401 is the desk refusing the sidecar's credentials (an expired or revoked API token): desk-wide,
        healed only by the operator, so it gets its own state, reason and metric (alert ServiceDeskAuthFailed)."""
        unauthorized = exc is not None and exc.status == 401
        state: DeskState = "healthy" if exc is None else "unauthorized" if unauthorized else "unhealthy"
        self._health.desks[self.desk.name] = state
        self._metrics.set_desk_auth_failed(self.desk.name, unauthorized)
        problem = None
        if unauthorized:
            problem = (
                f"{self.desk.name} refuses the sidecar's credentials (HTTP 401: expired or revoked API token, or "
                "a wrong username); its jobs wait without spending attempts until the token is fixed"
            )
        self._health.set_problem(f"{self.desk.name}_auth", problem)

    async def _run(self, job: Job, horizon: int = 0) -> None:
        """One job; whatever it raises stays with it (CancelledError and store failures excepted). Within it a
        desk answers a read of an issue the job has already seen from that (see remembering_reads)."""
        with collecting_notes() as notes, remembering_reads():
            await self._run_noting(job, notes, horizon)

    async def _run_noting(self, job: Job, notes: list[DeskNote], horizon: int) -> None:
        if job.kind == ATTACHMENT_KIND:
            await self._run_attachment(job)
            return
        written: dict[str, str | None] = {}
        try:
            await self._handle(job, written)
        except DeskOutcome as outcome:  # a part no retry can do (an unreachable status): finished, audited
            planned = await self._plan_attachments(job)
            await self._store.write("finish job", self._finish_txn, job, self._clock(), notes, outcome, None, planned)
            self._announce(job, "done", f"{job.kind}, skipped {outcome.event}")
            self._metrics.count_sync("outbound", "skipped")
            log.warning(
                "desk job finished without one part",
                extra={"job_id": job.id, "desk": job.desk, "event": outcome.event, "error": str(outcome)},
            )
            return
        except DeskError as exc:
            await self._record_notes(job, notes)
            await self._failed(job, exc)
            return
        except _DeskHolds:
            # Done without covering later jobs: they may carry what this check does not compare (a category).
            await self._store.write("finish job", self._finish_txn, job, self._clock(), notes, None, {}, (), 0)
            self._announce(job, "done", f"{job.kind}, the desk made this change")
            self._metrics.count_sync("outbound", "success")
            return
        except _WaitForIndex as wait:
            now = self._clock()
            await self._store.write("defer job", defer_job_txn, job.id, str(wait), wait.until, now)
            self._announce(job, "retry", f"{job.kind}, waits for the desk's search index")
            log.info(
                "desk create waits for the search index",
                extra={"job_id": job.id, "desk": job.desk, "in_s": round(wait.until - now, 2)},
            )
            return
        except Exception as exc:
            if is_store_failure(exc):
                raise
            await self._record_notes(job, notes)
            await self._dead(job, job_failure_reason(exc))
            return
        planned = await self._plan_attachments(job)
        covered = await self._store.write(
            "finish job", self._finish_txn, job, self._clock(), notes, None, written, planned, horizon
        )
        self._announce(job, "done", job.kind)
        for covered_id, kind in covered:
            self._announce(job, "done", f"{kind}, covered by job {job.id}", covered_id)
            self._metrics.count_sync("outbound", "success")
        self._metrics.count_sync("outbound", "success")
        await self._observe_latency(job)
        self._set_state(None)

    async def _observe_latency(self, job: Job) -> None:
        """Outbound sync latency: from the chain event's block time (its payload's `timestamp`, whole seconds)
        to now, the desk having confirmed every call of the job. A job no event made (a manual sync, a repair,
        a reconcile) has no block time to start from and is not observed."""
        event_id = job.payload.get("event_id")
        if not isinstance(event_id, str):
            return
        try:
            event = await self._store.read("event block time", inbox_payload, event_id)
        except ValueError:  # a payload beyond bounds (JsonLimitError): the job is done, only its timing is lost
            return
        stamp = event.get("timestamp") if event is not None else None
        if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp > 0:
            self._metrics.observe_sync_latency("outbound", self.desk.name, self._clock() - stamp)

    def _finish_txn(
        self,
        conn: sqlite3.Connection,
        job: Job,
        now: float,
        notes: list[DeskNote],
        outcome: DeskOutcome | None,
        written: Mapping[str, str | None] | None = None,
        planned: Sequence[PlannedFile] = (),
        horizon: int = 0,
    ) -> list[tuple[int, str]]:
        """The job is done and audited in one transaction: a sync that happened is never unrecorded. The
        fields it wrote become their base (what chain and desk now agree on) for conflict detection. The
        files its event lists are queued in the same transaction (one attachment job each). A job done in
        full (no `outcome`) also finishes the later jobs it covered (finish_covered_txn), each audited;
        returns those (id, kind)."""
        finish_job_txn(conn, job.id, now)
        covered = finish_covered_txn(conn, job, horizon, now) if outcome is None else []
        if planned and self._attachments is not None:
            self._attachments.queue_txn(conn, job, planned, now)
        for name, value in (written or {}).items():
            set_field_state_txn(
                conn,
                job.ticket_id,
                self.desk.name,
                name,
                base=value,
                desk_value=value,
                chain_value=value,
                synced_from="chain",
                now=now,
            )
        for entry in _note_entries(job, notes):
            self._audit_txn(conn, entry, now)
        ids = {"job_id": job.id, "kind": job.kind}
        if outcome is not None:
            entry = _outbound_entry(outcome.event, job, "skipped", {**ids, **outcome.details}, str(outcome))
        else:
            entry = _outbound_entry("ticket_synced", job, "ok", ids)
        self._audit_txn(conn, entry, now)
        for covered_id, kind in covered:
            details = {"job_id": covered_id, "kind": kind, "covered_by": job.id}
            self._audit_txn(conn, _outbound_entry("ticket_synced", job, "ok", details), now)
        return covered

    async def _plan_attachments(self, job: Job) -> list[PlannedFile]:
        """The files a finished create/comment job's event lists, to queue with its finish; [] when
        attachments are off, the desk takes none, or the event cannot be read (never fails the job)."""
        if self._attachments is None or job.kind not in ("create", "comment"):
            return []
        try:
            return await self._attachments.plan(job)
        except Exception as exc:
            if is_store_failure(exc):
                raise
            log.warning(
                "attachments of a synced event not queued",
                extra={"job_id": job.id, "desk": job.desk, "error": job_failure_reason(exc)},
            )
            return []

    async def _run_attachment(self, job: Job) -> None:
        """An attachment job: AttachmentSync records its end (done or withheld) with the job; what a retry may
        fix (desk or store unreachable) goes the normal retry path, anything unexpected dead-letters it."""
        if self._attachments is None:  # attachments turned off since it was queued: nothing is copied
            await self._store.write("skip job", finish_job_txn, job.id, self._clock(), "skipped")
            self._announce(job, "done", f"{job.kind}, skipped: attachments are off")
            return
        try:
            row = await self._store.read("ref", get_ref, job.ticket_id, self.desk.name)
            if row is None or not row.verified:
                raise DeskError(f"{self.desk.name}: no desk ticket recorded for the attachment", retryable=False)
            ref = ExternalTicket(
                self.desk.name, row.external_id, row.external_key or row.external_id, row.external_url or ""
            )
            outcome = await self._attachments.run(job, self.desk, ref)
        except DeskError as exc:
            await self._failed(job, exc)
            return
        except Exception as exc:
            if is_store_failure(exc):
                raise
            await self._dead(job, job_failure_reason(exc))
            return
        self._announce(job, "done", f"{job.kind}, {outcome.split(':', 1)[0]}")
        self._metrics.count_sync("outbound", "success" if outcome in ("done", "adopted") else "skipped")
        self._set_state(None)

    async def _record_notes(self, job: Job, notes: list[DeskNote]) -> None:
        """Notes of a job that then failed: what the desk skipped is audited all the same."""
        for entry in _note_entries(job, notes):
            await self._auditor.record(entry)

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
                log.warning(
                    "desk is down: its jobs wait without spending attempts",
                    extra={"desk": self.desk.name, "status": exc.status},
                )
            self._set_state(exc)
            self._paused_until = now + backoff(self._retry, self._outage_probes, exc.retry_after, self._rng)
            self._outage_probes += 1
            return False
        if self._outage_probes:
            log.info("desk is back", extra={"desk": self.desk.name, "probes": self._outage_probes})
            self._outage_probes = 0
            self._set_state(None)
        return True

    async def _failed(self, job: Job, exc: DeskError) -> None:
        now = self._clock()
        error = str(exc)
        if exc.retryable and exc.scope == "desk" and exc.retry_after:
            self._paused_until = max(self._paused_until, now + exc.retry_after)
        if exc.retryable and (exc.status == 429 or (exc.scope == "desk" and await self._desk_down(now))):
            # A rate limit or an outage is not the job's fault: it waits without spending an attempt.
            await self._store.write("defer job", defer_job_txn, job.id, error, now + (exc.retry_after or 0.0), now)
            self._announce(job, "retry", f"{job.kind}, deferred: desk rate limit or outage")
            return
        if not exc.retryable or job.attempts + 1 >= self._retry.max_retries:
            await self._dead(job, error)
            return
        delay = backoff(self._retry, job.attempts, exc.retry_after, self._rng)
        await self._store.write("retry job", retry_job_txn, job.id, error, now + delay, now)
        self._announce(job, "retry", f"{job.kind}, attempt {job.attempts + 1} failed")
        log.info(
            "outbound sync failed: desk job will be retried",
            extra={"job_id": job.id, "desk": job.desk, "in_s": round(delay, 2), "error": error},
        )

    async def _dead(self, job: Job, error: str) -> None:
        await self._store.write("dead job", dead_job_txn, job.id, error, self._clock())
        self._announce(job, "dead", f"{job.kind} after {job.attempts + 1} attempts")
        self._metrics.count_sync("outbound", "failed")
        details = {"job_id": job.id, "kind": job.kind, "attempts": job.attempts + 1}
        await self._auditor.record(_outbound_entry("sync_failed", job, "dead", details, error))
        log.error(
            "outbound sync failed: desk job dead-lettered",
            extra={"job_id": job.id, "desk": job.desk, "kind": job.kind, "error": error},
        )

    def _announce(self, job: Job, action: str, detail: str, job_id: int | None = None) -> None:
        """Tell watchers (WatchEvents) what became of the job (or of `job_id`, a job of the same ticket and desk
        it covered): ids and kinds, never the desk's error text."""
        if self._activity is not None:
            shown = job.id if job_id is None else job_id
            self._activity.publish(
                "job", action, ticket_id=job.ticket_id, desk=job.desk, direction="outbound", id=shown, detail=detail
            )

    async def _handle(self, job: Job, written: dict[str, str | None]) -> None:
        """Run the job; `written` receives the synced fields (chain vocabulary) the desk now holds."""
        snapshot = await self._opener.snapshot(job.ticket_id)
        if snapshot is None:
            raise DeskError(f"ticket {job.ticket_id} is not in the local mirror", retryable=False)
        if job.kind in ("create", "update"):
            for value in self.desk.unmapped(snapshot):
                details = {"field": value.field, "chain_value": value.chain_value, "used": value.used}
                await self._auditor.record(_outbound_entry("field_unmapped", job, "defaulted", details))
        if job.kind in ("update", "status") and await self._desk_holds_already(job, snapshot):
            raise _DeskHolds()
        ref = await self._ensure_ref(snapshot)
        kept = settled = frozenset[str]()
        before: dict[str, str] | None = None  # the desk's fields as the job first read them (None: not read)
        bases = self._settings.keep_bases
        if bases and job.kind in ("update", "status"):
            kept, settled, before = await self._desk_ahead(ref, snapshot)
        leave = kept | settled
        if job.kind == "update":
            await self.desk.update_fields(ref, snapshot, only=SYNCED_FIELDS - leave)
        if job.kind in ("update", "status") and "status" not in leave:
            await self.desk.set_status(ref, snapshot.status)  # the current status: replays cannot go backwards
        if bases and job.kind in ("create", "update", "status"):
            written.update(await self._desk_holds(ref, snapshot, kept, before))
        if job.kind == "comment":
            comment = await self._opener.comment(str(job.payload.get("event_id", "")))
            if comment is None:
                raise DeskError(f"response event of job {job.id} is not in the inbox", retryable=False)
            if not await self.desk.has_comment(ref, comment.marker):
                await self.desk.add_comment(ref, comment)
        elif job.kind == "close":
            await self.desk.close(ref, "the ticket was archived on chain")

    async def _desk_holds_already(self, job: Job, snapshot: TicketSnapshot) -> bool:
        """_origin_holds, where bases are kept (inbound runs) and the sidecar signs."""
        if not self._settings.keep_bases or not self._own_senders:
            return False
        return await self._store.read("desk holds", _origin_holds, job, snapshot, self._own_senders)

    async def _desk_ahead(
        self, ref: ExternalTicket, snapshot: TicketSnapshot
    ) -> tuple[frozenset[str], frozenset[str], dict[str, str] | None]:
        """(kept, settled, shown). Kept: fields the desk changed since their base (or parked in a conflict), left as
        the desk has them: inbound sync decides them (and records any conflict), so outbound never overwrites
        an agent's change it has not seen; a re-read of the issue is queued for that. Also kept, without a
        re-read: fields whose change made at this desk is still on its way to the chain (the mirror is behind
        the desk there, and the chain's event will bring a job of its own). Settled: fields the desk already
        holds at the chain's value, not written again (the write would only race the agent's next change).
        Shown: the fields as this read found them (None: not read, there being no base to compare with)."""
        mapping = getattr(self.desk, "mapping", None)
        if not isinstance(mapping, DeskMapping):
            return frozenset(), frozenset(), None
        bases, held, on_the_way = await self._store.read(
            "field bases", bases_and_held, snapshot.ticket_id, self.desk.name
        )
        if not bases and not held and not on_the_way:
            return frozenset(), frozenset(), None
        values = {"status": snapshot.status, "priority": snapshot.priority}
        shown = await self._desk_shows(ref, snapshot, mapping, bases)
        suspect: set[str] = set()
        for name, mapped in shown.items():
            base = bases.get(name)
            if name not in held and base is not None and mapped not in (base.base, values[name]):
                suspect.add(name)
        changed = set(held) | (suspect - await self._own_writes(ref, suspect))
        kept = changed | (on_the_way & set(INBOUND_FIELDS))
        settled = {name for name, mapped in shown.items() if mapped == values[name]} - kept
        if changed:
            await self._store.write(
                "queue re-read", enqueue_issue_txn, self.desk.name, ref.external_id, "outbound", self._clock()
            )
            log.info(
                "desk changed since the last sync: left for inbound",
                extra={"desk": self.desk.name, "ticket_id": snapshot.ticket_id, "fields": sorted(changed)},
            )
        return frozenset(kept), frozenset(settled), shown

    async def _own_writes(self, ref: ExternalTicket, fields: set[str]) -> set[str]:
        """Of fields that look changed at the desk, those whose last change the sidecar made itself (a hop of
        a transition path it was walking, a write whose answer was lost): its own, not an agent's."""
        if not fields or not isinstance(self.desk, ReadsChanges):
            return set()
        me = self.desk.own_account()
        if me is None:
            return set()
        view = await self.desk.read_issue(ref)
        return {name for name in fields if (change := view.fields.get(name)) is not None and change.actor == me}

    async def _desk_shows(
        self,
        ref: ExternalTicket,
        snapshot: TicketSnapshot,
        mapping: DeskMapping,
        bases: Mapping[str, FieldState] | None = None,
    ) -> dict[str, str]:
        """Status and priority as the desk holds them now, in chain vocabulary (read from the desk; a value no
        map covers is left out). `bases` break ties where one desk value stands for several chain values."""
        state = await self.desk.fetch(ref)
        current = {"status": snapshot.status, "priority": snapshot.priority}
        shown: dict[str, str] = {}
        for name, raw in (("status", state.status), ("priority", state.priority)):
            base = (bases or {}).get(name)
            mapped = chain_value(name, raw, current[name], mapping, base=base.base if base else None).value
            if mapped is not None:
                shown[name] = mapped
        return shown

    async def _desk_holds(
        self,
        ref: ExternalTicket,
        snapshot: TicketSnapshot,
        kept: frozenset[str],
        before: Mapping[str, str] | None = None,
    ) -> dict[str, str | None]:
        """What the desk holds after the job, in chain vocabulary: the bases of the fields it synced. Read
        back, not assumed: a desk that cannot take a value (Waldur's fixed priority, a status its backend
        will not set) must not have it recorded as agreed, or inbound would send the old value back. The
        read-back is the desk's answer to the job's last write where that answer shows the issue, or the job's
        own read when it wrote nothing since (remembering_reads), else a fresh read: each is what the desk
        held after the job's writes, and an agent's change after it reaches inbound by its re-read. Only a
        field the desk now holds at the chain's value becomes a base: one that shows something else was
        changed by an agent between this job's read and its read-back (or refused), so its old base stays and
        inbound re-reads the issue and decides; recording the agent's value as agreed would make the agent's
        next change look like a conflict, or their change itself like the desk lagging behind the chain. A field
        the read-back shows as the job's first read did (`before`) was not moved during the job: the desk refused
        the value (Waldur's fixed priority) or kept it, and a re-read would find only what that read found."""
        mapping = getattr(self.desk, "mapping", None)
        if not isinstance(mapping, DeskMapping):
            return {}
        shown = await self._desk_shows(ref, snapshot, mapping)
        chain = {"status": snapshot.status, "priority": snapshot.priority}
        holds: dict[str, str | None] = {
            name: value for name, value in shown.items() if name not in kept and value == chain[name]
        }
        if any(
            name not in kept and value != chain[name] and (before is None or before.get(name) != value)
            for name, value in shown.items()
        ):
            await self._store.write(
                "queue re-read", enqueue_issue_txn, self.desk.name, ref.external_id, "outbound", self._clock()
            )
        agent = snapshot.assigned_agent
        if "assignee" not in kept and (agent is None or mapping.assignee.to_desk(agent).unmapped is None):
            holds["assignee"] = agent  # set at the desk, or nobody on either side (the chain has no unassign)
        return holds

    async def _ensure_ref(self, snapshot: TicketSnapshot) -> ExternalTicket:
        """The desk ticket for this chain ticket: stored ref, else a chain ref whose ticket carries our claim,
        else adopted by lookup (at a desk with unique creates, only once it refuses a second create), else created
        (at most once per index-lag bound, by the create mark)."""
        # One store hop for both: only this job writes this ticket's ref and mark at this desk while it runs.
        row, mark = await self._store.read("ref and create mark", _ref_and_mark, snapshot.ticket_id, self.desk.name)
        finisher = self.desk if isinstance(self.desk, FinishesCreates) and self.desk.finishes_creates else None
        if row is not None and row.verified:
            ref = ExternalTicket(
                self.desk.name, row.external_id, row.external_key or row.external_id, row.external_url or ""
            )
            if finisher is not None and mark is not None:
                # an earlier attempt recorded the create, then its follow-up failed
                await self._retry_follow_up(finisher, snapshot, ref)
            return ref
        if row is not None:
            adopted = await self._adopt_chain_ref(snapshot, row)
            if adopted is not None:
                return adopted
        if not self.desk.unique_creates:  # a desk that refuses a second create is asked only when it does
            found = await self.desk.find(snapshot)
            if found is not None:
                return await self._adopt(snapshot, found)
        now = self._clock()
        if mark is not None and now < mark.sent_at + self.desk.index_lag:
            until = min(mark.sent_at + self.desk.index_lag, now + INDEX_RECHECK)
            raise _WaitForIndex(
                f"{self.desk.name}: a create was sent {now - mark.sent_at:.0f}s ago and search does not show it "
                f"yet; searching again before any new create (index lag bound {self.desk.index_lag:.0f}s)",
                until,
            )
        # Committed before the POST: a lost answer, a timeout or a SIGKILL after this cannot lead to a
        # second create until the desk's index has had `index_lag` to show the first.
        await self._store.write("mark create sent", mark_create_txn, snapshot.ticket_id, self.desk.name, now)
        try:
            created = await self.desk.create(snapshot)
        except DeskError as exc:
            if exc.already_exists and (found := await self.desk.find(snapshot)) is not None:
                return await self._adopt(snapshot, found)  # an earlier attempt's create landed
            if exc.nothing_created:  # refused outright (e.g. 429, 400): no issue to wait for in the index
                await self._store.write("clear create mark", clear_create_mark_txn, snapshot.ticket_id, self.desk.name)
            raise
        if _after_desk_create is not None:
            _after_desk_create()
        # Recorded before any follow-up: a follow-up that fails is retried on this issue, never a new one.
        await self._store.write(
            "record ref",
            self._record_txn,
            snapshot,
            created,
            "external_ticket_created",
            self._clock(),
            finisher is not None,
        )
        if finisher is not None:
            await self._finish_create(finisher, snapshot, created)
        return created

    async def _adopt(self, snapshot: TicketSnapshot, found: ExternalTicket) -> ExternalTicket:
        """Record a desk ticket made for this chain ticket earlier (its create mark cleared with it)."""
        await self._store.write(
            "record ref", self._record_txn, snapshot, found, "external_ticket_adopted", self._clock()
        )
        return found

    async def _finish_create(self, desk: FinishesCreates, snapshot: TicketSnapshot, ref: ExternalTicket) -> None:
        """The create's follow-up; the mark, kept since the create, goes once it has landed."""
        await desk.finish_create(ref, snapshot)
        await self._store.write("clear create mark", clear_create_mark_txn, snapshot.ticket_id, self.desk.name)

    async def _retry_follow_up(self, desk: FinishesCreates, snapshot: TicketSnapshot, ref: ExternalTicket) -> None:
        """A later job finds the create's follow-up still due and tries it again. If the desk refuses it for
        good, it is given up (audited, mark cleared) so the ticket's own changes are not held hostage by it:
        the ref is recorded, so nothing depends on the labels or the claim to find this issue again."""
        try:
            await self._finish_create(desk, snapshot, ref)
        except DeskError as exc:
            if exc.retryable:
                raise
            details = {"external_id": ref.external_id, "external_key": ref.key}
            entry = _sidecar_entry("create_follow_up_failed", snapshot.ticket_id, ref.desk, "failed", details, str(exc))
            await self._store.write("give up follow-up", self._give_up_follow_up_txn, snapshot, entry, self._clock())
            log.warning("create follow-up refused by the desk: given up", extra={"desk": ref.desk, "error": str(exc)})

    def _give_up_follow_up_txn(
        self, conn: sqlite3.Connection, snapshot: TicketSnapshot, entry: AuditEntry, now: float
    ) -> None:
        clear_create_mark_txn(conn, snapshot.ticket_id, self.desk.name)
        self._audit_txn(conn, entry, now)

    async def _adopt_chain_ref(self, snapshot: TicketSnapshot, row: RefRow) -> ExternalTicket | None:
        """A ref someone registered on chain: used only when its desk ticket carries this sidecar's claim.
        Otherwise it is refused (audited, ids only), nothing is sent to that desk ticket, and it is forgotten."""
        problem = self.desk.ref_problem(row.external_id)
        ref = None
        if problem is None:
            ref = await self.desk.claimed(snapshot, row.external_id)
            if ref is None:
                problem = "the desk ticket does not exist or does not carry this sidecar's claim for the ticket"
        if ref is not None:
            await self._store.write("adopt chain ref", self._verify_txn, snapshot, row, ref, self._clock())
            return ref
        assert problem is not None
        await self._store.write("refuse chain ref", self._refuse_txn, row, problem, self._clock())
        log.warning(
            "external ref from the chain refused",
            extra={"ticket_id": row.ticket_id, "desk": row.desk, "reason": problem},
        )
        return None

    def _verify_txn(
        self, conn: sqlite3.Connection, snapshot: TicketSnapshot, row: RefRow, ext: ExternalTicket, now: float
    ) -> None:
        verify_ref_txn(conn, RefRow(row.ticket_id, row.desk, row.external_id, ext.key, ext.url, True), now)
        details = {"external_id": ext.external_id, "external_key": ext.key, "source": "chain"}
        entry = _sidecar_entry("external_ticket_adopted", snapshot.ticket_id, ext.desk, "ok", details)
        self._audit_txn(conn, entry, now)

    def _refuse_txn(self, conn: sqlite3.Connection, row: RefRow, problem: str, now: float) -> None:
        drop_ref_txn(conn, row.ticket_id, row.desk, row.external_id)
        details = {"external_id": row.external_id[:80]}
        entry = _sidecar_entry("external_ref_refused", row.ticket_id, row.desk, "refused", details, problem)
        self._audit_txn(conn, entry, now)

    def _record_txn(
        self,
        conn: sqlite3.Connection,
        snapshot: TicketSnapshot,
        ext: ExternalTicket,
        event: str,
        now: float,
        keep_mark: bool = False,
    ) -> None:
        """The desk's answer, recorded with its audit and the chain registration, and the create mark cleared
        (`keep_mark`: kept until the create's follow-up has landed, which is how a retry knows it is due)."""
        for other in evict_unverified_txn(conn, ext.desk, ext.external_id, snapshot.ticket_id):
            reason = f"the desk ticket belongs to chain ticket {snapshot.ticket_id}"
            details = {"external_id": ext.external_id}
            entry = _sidecar_entry("external_ref_refused", other, ext.desk, "refused", details, reason)
            self._audit_txn(conn, entry, now)
        row = record_ref_txn(conn, RefRow(snapshot.ticket_id, ext.desk, ext.external_id, ext.key, ext.url, False), now)
        if not keep_mark:
            clear_create_mark_txn(conn, snapshot.ticket_id, ext.desk)
        details = {"external_id": ext.external_id, "external_key": ext.key}
        self._audit_txn(conn, _sidecar_entry(event, snapshot.ticket_id, ext.desk, "ok", details), now)
        if self._register is not None and not row.registered_on_chain:
            self._register(conn, row, now)

    def _audit_txn(self, conn: sqlite3.Connection, entry: AuditEntry, now: float) -> None:
        if self._auditor.enabled:
            append_audit_txn(conn, self._auditor.clean(entry), now)


def _ref_and_mark(conn: sqlite3.Connection, ticket_id: str, desk: str) -> tuple[RefRow | None, CreateMark | None]:
    """The ticket's ref at the desk and its create mark, read together (one executor hop per job, not two)."""
    return get_ref(conn, ticket_id, desk), get_create_mark(conn, ticket_id, desk)


def _note_entries(job: Job, notes: list[DeskNote]) -> list[AuditEntry]:
    return [_outbound_entry(n.event, job, "skipped", {"job_id": job.id, "kind": job.kind, **n.details}) for n in notes]


def _outbound_entry(
    event: str, job: Job, status: str, details: Mapping[str, object], error: str | None = None
) -> AuditEntry:
    return _sidecar_entry(event, job.ticket_id, job.desk, status, details, error)


def _sidecar_entry(
    event: str, ticket_id: str, desk: str, status: str, details: Mapping[str, object], error: str | None = None
) -> AuditEntry:
    """An audit row of something the sidecar did to a desk ticket (outbound)."""
    return AuditEntry(
        event,
        ticket_id=ticket_id,
        desk=desk,
        direction="outbound",
        actor="sidecar",
        status=status,
        error=error,
        details=details,
    )
