"""Rejected webhook requests, summed up: one log line and one audit row per desk and outcome per interval.

A rejected request is anyone's to send, as many times as they like, so it must cost nothing durable:
it is counted in metrics at once and noted here in memory (a count, the first and last time, a few
source addresses and reasons); `flush` writes what was noted, all rows in one transaction, every
`SUMMARY_INTERVAL` seconds and at shutdown. Memory is bounded: two desks times a fixed set of
outcomes, each with at most `SAMPLE` sources and reasons.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sidecar.observe.audit import Auditor, iso_time
from sidecar.observe.metrics import Service, WebhookOutcome
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store

log = logging.getLogger(__name__)
SUMMARY_INTERVAL = 60.0
SAMPLE = 5


@dataclass
class Tally:
    count: int
    first: float
    last: float
    sources: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class RejectionSummary:
    """`note` per rejected request (no I/O); `step` as a loop step, and `flush` once more at shutdown."""

    def __init__(
        self,
        store: Store,
        auditor: Auditor,
        *,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._auditor = auditor
        self.interval = interval
        self._clock = clock
        self._tallies: dict[tuple[Service, WebhookOutcome], Tally] = {}

    def note(self, desk: Service, outcome: WebhookOutcome, source: str, reason: str) -> None:
        now = self._clock()
        tally = self._tallies.get((desk, outcome))
        if tally is None:
            tally = self._tallies[(desk, outcome)] = Tally(0, now, now)
        tally.count += 1
        tally.last = now
        _sample(tally.sources, source)
        _sample(tally.reasons, reason)

    async def step(self) -> float:
        await self.flush()
        return self.interval

    async def flush(self) -> int:
        """Log and audit what was noted since the last flush; the number of summaries written."""
        tallies, self._tallies = self._tallies, {}
        if not tallies:
            return 0
        entries = [self._entry(desk, outcome, tally) for (desk, outcome), tally in sorted(tallies.items())]
        for entry in entries:
            log.warning("webhook rejections", extra={"desk": entry.desk, **entry.details})
        if self._auditor.enabled:
            cleaned = [self._auditor.clean(entry) for entry in entries]
            await self._store.write("audit webhook rejections", _append_all_txn, cleaned, self._clock())
        return len(entries)

    @staticmethod
    def _entry(desk: Service, outcome: WebhookOutcome, tally: Tally) -> AuditEntry:
        return AuditEntry(
            "webhook_rejections",
            desk=desk,
            direction="inbound",
            status=outcome,
            details={
                "outcome": outcome,
                "count": tally.count,
                "first": iso_time(tally.first),
                "last": iso_time(tally.last),
                "sources": list(tally.sources),
                "reasons": list(tally.reasons),
            },
        )


def _sample(values: list[str], value: str) -> None:
    if len(values) < SAMPLE and value not in values:
        values.append(value)


def _append_all_txn(conn: sqlite3.Connection, entries: Sequence[AuditEntry], now: float) -> None:
    for entry in entries:
        append_audit_txn(conn, entry, now)
