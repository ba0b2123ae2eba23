"""Inbound sync: what agents do at the desks reaches the chain, once, conflict-checked, never echoed.

Webhooks are hints: an accepted delivery only queues a re-read of its issue, and the sweep
(sidecar/sync/sweep.py) queues every issue the desk says changed, so a lost webhook is caught up.
A re-read fetches the issue over the desk's API (fields and comments) and decides, in one transaction
(sidecar/sync/inbound_apply.py), which signed Msgs it needs; the signer lands them exactly once.
Intents reaching a final state are reported here: metrics (events and desk-to-chain latency), audit,
and the log line `external callback synced`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast, get_args

from sidecar.chain.envelope import EnvelopeKey
from sidecar.config_schema import ConflictStrategy, RetryConfig
from sidecar.desks.base import Desk, DeskIssueView, ExternalTicket, ReadsChanges
from sidecar.desks.mapping import DeskMapping
from sidecar.errors import DeskError
from sidecar.observe.activity import ActivityFeed
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import ConflictRule, Metrics, Service, SyncField
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store
from sidecar.store.desk_reads import record_desk_read_txn
from sidecar.store.inbound import (
    LandedIntent,
    QueuedIssue,
    claim_issues_txn,
    dead_issue_txn,
    finish_issue_txn,
    linked_ref,
    mark_reported_txn,
    retry_issue_txn,
    take_deliveries_txn,
    unreported_intents,
)
from sidecar.store.jobs import desk_written_since, queue_update_job_txn
from sidecar.store.pauses import PauseBook
from sidecar.store.refs import RefRow
from sidecar.sync.attach_in import AttachmentIntake
from sidecar.sync.failures import is_store_failure, job_failure_reason
from sidecar.sync.inbound_apply import Applied, Context, apply_issue_txn, audit_with
from sidecar.sync.outbound import backoff
from sidecar.sync.window import Work, run_window
from sidecar.together import together

log = logging.getLogger(__name__)

# A field the agent changed again while its previous change is still on its way to the chain is decided once
# the mirror holds that change: the issue is read again after this long (not spending an attempt).
IN_FLIGHT_RECHECK_SECONDS = 2.0
IN_FLIGHT_WAIT_REASON = "waiting for this issue's previous change to reach the chain"
# A re-read that overlapped an outbound job's writes to the issue is read again this much later.
OUTBOUND_WRITE_RECHECK_SECONDS = 1.0
OUTBOUND_WRITE_REASON = "the sidecar was writing this issue while it was read"
SET_BACK_FIELDS = frozenset({"status", "priority", "assignee"})  # items a refused intent sets back at the desk


class InboundDesk(Desk, ReadsChanges, Protocol):
    """A desk inbound sync can read back from, with its mapping tables."""

    mapping: DeskMapping


@dataclass(frozen=True)
class InboundSettings:
    strategy: ConflictStrategy = "on_chain_wins"
    concurrency: int = 4  # re-reads at once per desk, for a desk `desk_concurrency` does not name
    desk_concurrency: Mapping[str, int] = dataclasses.field(default_factory=dict)  # the desk's max_concurrency
    idle_wait: float = 0.5
    batch: int = 200
    # Seconds one step keeps refilling the slots finished re-reads free (taking new webhook hints as it does)
    # before it lets the last ones finish, reports landed intents and looks at the chain's progress again.
    step_span: float = 1.0


class InboundEngine:
    """One step: hints from webhooks become re-reads, due re-reads run (per desk, bounded), final intents
    are reported. Any exception of one re-read stays with it (dead-lettered re-read, audited); cancellation
    and a failing database stop the loop, as in outbound."""

    def __init__(
        self,
        desks: Sequence[InboundDesk],
        store: Store,
        auditor: Auditor,
        metrics: Metrics,
        retry: RetryConfig,
        settings: InboundSettings,
        *,
        sender: str,
        key: EnvelopeKey | None,
        outbound_desks: Sequence[str] = (),
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        pauses: PauseBook | None = None,
        activity: ActivityFeed | None = None,
        attachments: AttachmentIntake | None = None,
    ) -> None:
        self.desks = {d.name: d for d in desks}
        self._store = store
        self._auditor = auditor
        self._metrics = metrics
        self._retry = retry
        self._settings = settings
        self._sender = sender
        self._key = key
        self._outbound = set(outbound_desks)
        self._rng = rng or random.Random()
        self._clock = clock
        self._pauses = pauses  # an operator's pause: no re-read of that desk is claimed (hints still queue)
        self._activity = activity
        self._paused_until: dict[str, float] = {}
        self._outages: dict[str, int] = {}  # desk-wide failures in a row, per desk
        self._audit = audit_with(auditor.enabled, auditor.clean)
        # New desk attachments are recorded by re-reads only when an intake takes them in (sync_attachments).
        self._attachments = attachments
        self.worked = 0  # re-reads and attachment intakes run so far (they queue intents)
        self.on_worked: Callable[[], None] = lambda: None  # app.py: wakes the signer for those intents
        # Whether the mirror is current (the follower near the chain's head; app.py sets it). A re-read decides
        # against the mirror: one run while the follower is behind (at start, after an outage) would take a
        # chain change it has not read yet for "the chain did not move", send the desk's value over it and lose
        # the conflict. Until then hints are still taken and queued, and nothing is lost.
        self.chain_ready: Callable[[], bool] = lambda: True
        self._waiting_for_chain = False

    def desk_paused(self, desk: str, now: float | None = None) -> bool:
        """Whether the desk's re-reads wait for a desk-wide outage or rate limit to pass (not an operator's pause)."""
        return (self._clock() if now is None else now) < self._paused_until.get(desk, 0.0)

    @property
    def idle_wait(self) -> float:
        """Seconds between looks for hints, re-reads and reports when there were none."""
        return self._settings.idle_wait

    async def step(self) -> float:
        now = self._clock()
        queued = self._noted(await self._store.write("take webhook hints", self._take_hints_txn, now))
        reported = await self._report()
        if not self._chain_current():
            return self._settings.idle_wait
        held = {name for name in self.desks if self._held(name, now)}
        # The desks' windows side by side: one slow desk delays no other.
        ran = sum(await together(*(self._window(n, d) for n, d in self.desks.items() if n not in held)))
        if self._attachments is not None:  # after the re-reads, so the rows they recorded are taken at once
            intaken = await self._attachments.step(skip=held)
            self._worked(intaken)
            ran += intaken
        return 0.0 if ran or queued or reported else self._settings.idle_wait

    def _held(self, desk: str, now: float) -> bool:
        """Whether the desk's re-reads wait: a desk-wide outage or rate limit, or an operator's pause."""
        paused = self._pauses is not None and self._pauses.is_paused("inbound", desk)
        return paused or self.desk_paused(desk, now)

    async def _window(self, name: str, desk: InboundDesk) -> int:
        """The desk's due re-reads, its max_concurrency at a time, a freed slot refilled at once (with the
        webhook hints come meanwhile) for up to step_span seconds. Returns how many ran."""
        slots = self._settings.desk_concurrency.get(name, self._settings.concurrency)
        items = await self._store.write("claim re-reads", claim_issues_txn, name, self._clock(), slots)
        if not items:
            return 0
        ran = 0

        def finished(n: int) -> None:
            nonlocal ran
            ran += n
            self._worked(n)

        async def refill(free: int) -> list[Work]:
            now = self._clock()
            if self._held(name, now) or not self.chain_ready():  # the follower fell behind: decide later
                return []
            taken, more = await self._store.write("claim re-reads", self._refill_txn, name, now, free)
            self._noted(taken)
            return [self._run(desk, item) for item in more]

        await run_window([self._run(desk, item) for item in items], refill, slots, self._settings.step_span, finished)
        return ran

    def _take_hints_txn(self, conn: sqlite3.Connection, now: float) -> tuple[int, int]:
        return take_deliveries_txn(conn, list(self.desks), now, self._settings.batch)

    def _refill_txn(
        self, conn: sqlite3.Connection, desk: str, now: float, limit: int
    ) -> tuple[tuple[int, int], list[QueuedIssue]]:
        return self._take_hints_txn(conn, now), claim_issues_txn(conn, desk, now, limit)

    @staticmethod
    def _noted(taken: tuple[int, int]) -> int:
        queued, ignored = taken
        if queued or ignored:
            log.info("external callback hints taken", extra={"queued": queued, "ignored": ignored})
        return queued

    def _worked(self, n: int) -> None:
        """Count finished work and wake the signer at once: its intents need not wait for the step's end."""
        if n:
            self.worked += n
            self.on_worked()

    def _chain_current(self) -> bool:
        ready = self.chain_ready()
        if ready == self._waiting_for_chain:  # a change either way: said once
            self._waiting_for_chain = not ready
            if ready:
                log.info("inbound sync resumed: the follower has caught up with the chain")
            else:
                log.info("inbound sync waits for the follower to catch up with the chain (hints are kept)")
        return ready

    async def _run(self, desk: InboundDesk, item: QueuedIssue) -> None:
        try:
            await self._reread(desk, item)
        except DeskError as exc:
            await self._failed(desk, item, exc)
        except Exception as exc:
            if is_store_failure(exc):
                raise
            await self._dead(item, job_failure_reason(exc))

    async def _reread(self, desk: InboundDesk, item: QueuedIssue) -> None:
        ref = await self._store.read("linked ref", linked_ref, item.desk, item.external_id)
        if ref is None:  # unlinked since it was queued (a removed or refused ref): nothing to sync
            await self._store.write("finish re-read", finish_issue_txn, item, self._clock())
            return
        read_at = self._clock()
        view = await desk.read_issue(
            ExternalTicket(desk.name, ref.external_id, ref.external_key or ref.external_id, ref.external_url or "")
        )
        if view.claim is not None and view.claim != ref.ticket_id:
            reason = "the desk issue claims another chain ticket"
            await self._store.write("refuse re-read", self._refuse_txn, item, ref, reason, self._clock())
            log.warning(
                "external callback refused", extra={"desk": desk.name, "external_id": ref.external_id, "reason": reason}
            )
            return
        ctx = Context(
            desk=desk.name,
            sender=self._sender,
            mapping=desk.mapping,
            strategy=self._settings.strategy,
            own_account=desk.own_account(),
            key=self._key,
            audit=self._audit,
            outbound=desk.name in self._outbound,
            attachments=self._attachments is not None and desk.name in self._attachments.desks,
        )
        self._outages.pop(desk.name, None)  # the desk answered
        applied = await self._store.write(
            "apply desk issue", self._apply_txn, ctx, item, ref, view, read_at, self._clock()
        )
        self._count(desk.name, applied)
        if self._activity is not None:
            for field, rule in applied.conflicts:
                self._activity.publish(
                    "conflict",
                    "detected",
                    ticket_id=ref.ticket_id,
                    desk=desk.name,
                    direction="inbound",
                    detail=f"{_field_label(field)}: {_rule_label(rule)}",
                )
        log.info(
            "external callback processed",
            extra={
                "desk": desk.name,
                "ticket_id": ref.ticket_id,
                "external_id": ref.external_id,
                "reason": item.reason,
                "intents": applied.intents,
                "comments": applied.comments,
                "attachments": applied.attachments,
                "conflicts": len(applied.conflicts),
                "ignored": applied.ignored,
            },
        )

    @staticmethod
    def _apply_txn(
        conn: sqlite3.Connection,
        ctx: Context,
        item: QueuedIssue,
        ref: RefRow,
        view: DeskIssueView,
        read_at: float,
        now: float,
    ) -> Applied:
        if desk_written_since(conn, ref.ticket_id, item.desk, read_at):
            # An outbound job wrote this issue while it was read: the view may hold one of its hops. Read again
            # once it is done (its read-back records what the desk then holds).
            retry_issue_txn(conn, item, OUTBOUND_WRITE_REASON, now + OUTBOUND_WRITE_RECHECK_SECONDS, now, spend=False)
            return Applied(ignored=OUTBOUND_WRITE_REASON, deferred=True)
        applied = apply_issue_txn(conn, ctx, ref, view, now)
        if applied.deferred:
            retry_issue_txn(conn, item, IN_FLIGHT_WAIT_REASON, now + IN_FLIGHT_RECHECK_SECONDS, now, spend=False)
        else:
            finish_issue_txn(conn, item, now)
            record_desk_read_txn(conn, item.desk, item.external_id, view.updated_at, now)
        return applied

    def _refuse_txn(self, conn: sqlite3.Connection, item: QueuedIssue, ref: RefRow, reason: str, now: float) -> None:
        finish_issue_txn(conn, item, now)
        entry = AuditEntry(
            "inbound_refused",
            ticket_id=ref.ticket_id,
            desk=ref.desk,
            direction="inbound",
            actor=ref.desk,
            status="refused",
            error=reason,
            details={"external_id": ref.external_id},
        )
        self._audit(conn, entry, now)

    def _count(self, desk: str, applied: Applied) -> None:
        for field, rule in applied.conflicts:
            self._metrics.count_conflict(_service(desk), _field_label(field), _rule_label(rule))
        if applied.skipped:
            for _ in range(applied.skipped):
                self._metrics.count_sync("inbound", "skipped")

    async def _failed(self, desk: InboundDesk, item: QueuedIssue, exc: DeskError) -> None:
        now = self._clock()
        error = str(exc)
        if exc.retryable and exc.scope == "desk" and exc.retry_after:
            self._paused_until[desk.name] = max(self._paused_until.get(desk.name, 0.0), now + exc.retry_after)
        if exc.retryable and exc.status == 429 and exc.scope == "endpoint":
            # One endpoint's limit (DeskHttp holds that endpoint back): this re-read waits out the Retry-After
            # without spending an attempt; the desk's other re-reads go on.
            wait = now + (exc.retry_after or 1.0)
            await self._store.write("defer re-read", retry_issue_txn, item, error, wait, now, spend=False)
            return
        if (exc.retryable and exc.status in (429, None)) or (exc.retryable and exc.scope == "desk"):
            # A rate limit or an outage is not the issue's fault: it waits without spending an attempt, and the
            # whole desk pauses, longer with each failure in a row, so a desk that is down is not hammered.
            outages = self._outages.get(desk.name, 0)
            self._outages[desk.name] = outages + 1
            delay = backoff(self._retry, outages, exc.retry_after, self._rng)
            self._paused_until[desk.name] = max(self._paused_until.get(desk.name, 0.0), now + delay)
            await self._store.write("defer re-read", retry_issue_txn, item, error, now + delay, now, spend=False)
            return
        if not exc.retryable or item.attempts + 1 >= self._retry.max_retries:
            await self._dead(item, error)
            return
        delay = backoff(self._retry, item.attempts, exc.retry_after, self._rng)
        await self._store.write("retry re-read", retry_issue_txn, item, error, now + delay, now, spend=True)

    async def _dead(self, item: QueuedIssue, error: str) -> None:
        now = self._clock()
        await self._store.write("dead re-read", self._dead_txn, item, error, now)
        self._metrics.count_sync("inbound", "failed")
        log.error(
            "external callback sync failed", extra={"desk": item.desk, "external_id": item.external_id, "error": error}
        )

    def _dead_txn(self, conn: sqlite3.Connection, item: QueuedIssue, error: str, now: float) -> None:
        dead_issue_txn(conn, item, error, now)
        entry = AuditEntry(
            "inbound_failed",
            desk=item.desk,
            direction="inbound",
            actor=item.desk,
            status="dead",
            error=error,
            details={"external_id": item.external_id, "attempts": item.attempts + 1},
        )
        self._audit(conn, entry, now)

    # reporting intents that reached the chain (or never will) -------------------------------------
    async def _report(self) -> int:
        landed = await self._store.read("landed inbound intents", unreported_intents, self._settings.batch)
        if not landed:
            return 0
        await self._store.write("report inbound intents", self._report_txn, landed, self._clock())
        for intent in landed:
            if self._activity is not None:
                self._activity.publish(
                    "inbound",
                    "synced" if intent.state == "included" else "failed",
                    ticket_id=intent.ticket_id,
                    desk=intent.desk,
                    direction="inbound",
                    height=intent.height or 0,
                    id=intent.intent_id,
                    detail=intent.item,
                )
            if intent.state == "included":
                self._metrics.count_sync("inbound", "success")
                if intent.desk_changed_at is not None and intent.included_at is not None:
                    latency = max(0.0, intent.included_at - intent.desk_changed_at)
                    self._metrics.observe_sync_latency("inbound", _service(intent.desk), latency)
                log.info(
                    "external callback synced",
                    extra={
                        "desk": intent.desk,
                        "ticket_id": intent.ticket_id,
                        "item": intent.item,
                        "tx_hash": intent.tx_hash,
                    },
                )
            else:
                self._metrics.count_sync("inbound", "failed")
                log.error(
                    "external callback sync failed: not accepted by the chain",
                    extra={
                        "desk": intent.desk,
                        "ticket_id": intent.ticket_id,
                        "item": intent.item,
                        "error": intent.error,
                    },
                )
        return len(landed)

    def _report_txn(self, conn: sqlite3.Connection, landed: list[LandedIntent], now: float) -> None:
        for intent in landed:
            mark_reported_txn(conn, intent.intent_id)
            included = intent.state == "included"
            entry = AuditEntry(
                "inbound_synced" if included else "inbound_failed",
                ticket_id=intent.ticket_id,
                desk=intent.desk,
                direction="inbound",
                actor="sidecar",
                status="ok" if included else "dead",
                error=None if included else (intent.error or "the chain refused the transaction")[:240],
                block_height=intent.height,
                tx_hash=intent.tx_hash,
                details={"intent_id": intent.intent_id, "item": intent.item},
            )
            if self._auditor.enabled:
                append_audit_txn(conn, self._auditor.clean(entry), now)
            if not included and intent.item in SET_BACK_FIELDS and intent.desk in self._outbound:
                # The chain refused the desk's value for good (a dead intent is the chain's own refusal,
                # repeated; outages spend no attempt). The chain's value stands, so the desk is set back to
                # it: its field base moved with the intent, and outbound, no longer holding the field, sees
                # the chain differ from it. Without this the two sides disagree until someone changes it again.
                key = f"inbound-refused:{intent.intent_id}"
                queue_update_job_txn(conn, key, intent.desk, intent.ticket_id, "inbound_refused", now)


def _service(desk: str) -> Service:
    return "jira" if desk == "jira" else "waldur"


def _field_label(field: str) -> SyncField:
    return "status" if field == "status" else "priority" if field == "priority" else "assignee"


def _rule_label(rule: str) -> ConflictRule:
    """A bounded label value for a conflict's rule (never the values it compared)."""
    for known in get_args(ConflictRule):
        if rule.startswith(known):
            return cast(ConflictRule, known)
    return "other"
