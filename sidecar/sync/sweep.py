"""The inbound sweep: every `sync.sync_interval`, ask each desk what changed since the last sweep.

Webhooks get lost (outages, a sidecar down for an hour, Waldur never sends comment events), so the
sweep is what makes inbound complete: each hit that is a linked issue is queued for a re-read, and the
desk's high-water mark is stored in the same transaction, so a restart resumes from it and misses
nothing. A hit is an issue the desk says changed, or one with a new comment or attachment (Waldur's issue
`modified` moves for neither, so those listings are asked too). The mark is the time the sweep began,
taken before any listing, and is stored only when every listing was read: what a listing could not show
yet is after it. The query reaches back OVERLAP seconds before the mark (desk clocks, index lag, minute
precision of JQL); a re-read of an unchanged issue decides nothing new, so the overlap costs requests,
never duplicates. Still, it would list an issue changed once in several sweeps: a changed-issue hit whose
desk change time is not after the one inbound's last completed re-read found is not queued again
(sidecar/store/desk_reads.py; comment and attachment hits carry no issue time and are always queued).
A store with refs but no mark starts from its oldest ref: nothing linked is skipped.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence

from sidecar.desks.base import ReadsChanges
from sidecar.errors import DeskError
from sidecar.store.db import Store
from sidecar.store.desk_reads import already_read
from sidecar.store.inbound import (
    earliest_ref_time,
    enqueue_issue_txn,
    linked_ref,
    normal_external_id,
    set_sweep_mark_txn,
    sweep_mark,
)
from sidecar.store.pauses import PauseBook

log = logging.getLogger(__name__)
OVERLAP = 120.0  # seconds the sweep reaches back before its mark
PAUSE_RECHECK = 2.0  # seconds between looks at an operator's pause, so a resumed desk is swept at once


def reach_back(desk: ReadsChanges) -> float:
    """Seconds a sweep asks for before its mark: OVERLAP, or more where the desk's search index lags (Jira's
    index may show an issue's old `updated` for up to its index lag)."""
    return max(OVERLAP, float(getattr(desk, "index_lag", 0.0)) + 60.0)


class Sweeper:
    def __init__(
        self,
        desks: Sequence[ReadsChanges],
        store: Store,
        interval: float,
        clock: Callable[[], float] = time.time,
        pauses: PauseBook | None = None,
    ) -> None:
        self._desks = list(desks)
        self._store = store
        self._interval = interval
        self._clock = clock
        self._pauses = pauses  # a desk paused inbound is not swept: its mark stays, so nothing is skipped
        self._due: dict[str, float] = {}  # desk -> when its next sweep is due (absent: now)

    async def step(self) -> float:
        now = self._clock()
        wait = self._interval
        for desk in self._desks:
            if self._pauses is not None and self._pauses.is_paused("inbound", desk.name):
                self._due.pop(desk.name, None)
                wait = min(wait, PAUSE_RECHECK)
                continue
            due = self._due.get(desk.name)
            if due is not None and now < due:
                wait = min(wait, due - now)
                continue
            try:
                await self.sweep(desk)
            except DeskError as exc:
                log.warning(
                    "inbound sync failed: sweep retried next interval", extra={"desk": desk.name, "error": str(exc)}
                )
            self._due[desk.name] = now + self._interval
        return wait

    async def sweep(self, desk: ReadsChanges) -> int:
        """One sweep of one desk; returns the issues queued for a re-read."""
        started = self._clock()
        mark = await self._store.read("sweep mark", sweep_mark, desk.name)
        if mark is None:
            oldest = await self._store.read("oldest ref", earliest_ref_time, desk.name)
            mark = oldest if oldest is not None else started
        since = mark - reach_back(desk)
        # A listing that fails raises before the write: the mark stays and the next sweep asks again.
        hits: list[tuple[str, float | None]] = [(i.external_id, i.updated_at) for i in await desk.changed_since(since)]
        hits += [(issue, None) for issue, _ in await desk.comments_since(since)]
        hits += [(issue, None) for issue in await desk.attachments_since(since)]
        queued = await self._store.write("queue sweep hits", self._queue_txn, desk.name, hits, started)
        if queued:
            log.info(
                "inbound sweep queued re-reads", extra={"desk": desk.name, "issues": queued, "since": round(since)}
            )
        return queued

    @staticmethod
    def _queue_txn(conn: sqlite3.Connection, desk: str, hits: list[tuple[str, float | None]], started: float) -> int:
        latest: dict[str, float] = {}  # a changed-issue hit's newest desk time
        untimed: set[str] = set()  # a comment or attachment hit: always re-read
        for external_id, at in hits:
            normal = normal_external_id(desk, external_id)
            if at is None:
                untimed.add(normal)
            else:
                latest[normal] = max(at, latest.get(normal, at))
        ids = (latest.keys() - already_read(conn, desk, latest.items())) | untimed
        queued = 0
        for external_id in sorted(ids):
            if linked_ref(conn, desk, external_id) is not None:
                enqueue_issue_txn(conn, desk, external_id, "sweep", started)
                queued += 1
        set_sweep_mark_txn(conn, desk, started)
        return queued
