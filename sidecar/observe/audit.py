"""The audit log as components use it: `await auditor.record(AuditEntry(...))`, plus retention and export.

What a row may hold is the rule in sidecar.observe.audit_rules, applied to every row by
`append_audit_txn` whichever path appends it; `Auditor.clean` applies it early (with this auditor's
redactor) for callers that build rows before their own write transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sidecar.durations import parse_duration
from sidecar.observe.audit_rules import clean_details as clean_details  # re-exported: the rule's entry points
from sidecar.observe.audit_rules import clean_entry
from sidecar.observe.audit_rules import is_content_key as is_content_key
from sidecar.observe.logs import Redactor, current_redactor
from sidecar.store.audit import (
    AuditEntry,
    AuditRow,
    Purge,
    append_audit_txn,
    iter_audit_rows,
    purge_audit_txn,
)
from sidecar.store.db import Store
from sidecar.store.webhooks import purge_deliveries_txn

log = logging.getLogger(__name__)
Clock = Callable[[], float]

DAY = 86400.0


class Auditor:
    """Cleans entries by the audit_rules rule and appends them to the chain through the writer thread."""

    def __init__(
        self, store: Store, *, enabled: bool = True, clock: Clock = time.time, redactor: Redactor | None = None
    ) -> None:
        self._store = store
        self.enabled = enabled
        self._clock = clock
        self._redactor = redactor

    @property
    def redact(self) -> Redactor:
        # Looked up per call: the process redactor is set up by the CLI before the app builds components.
        return self._redactor or current_redactor()

    def clean(self, entry: AuditEntry) -> AuditEntry:
        """The entry as it will be stored; for callers that append inside their own write transaction."""
        return clean_entry(entry, self.redact)

    async def record(self, entry: AuditEntry) -> int | None:
        """Append one entry; the row id, or None when audit.enabled is false."""
        if not self.enabled:
            return None
        return await self._store.write(f"audit {entry.event_type}", append_audit_txn, self.clean(entry), self._clock())


class AuditRetention:
    """Purges rows older than audit.retention_days, a batch per step, and audits each purge.

    Run as a loop step: `run_loop("audit-retention", retention.step, stop, metrics)`.
    """

    def __init__(
        self,
        store: Store,
        auditor: Auditor,
        retention_days: int,
        *,
        clock: Clock = time.time,
        interval: float = 3600.0,
        batch: int = 5000,
    ) -> None:
        self._store = store
        self._auditor = auditor
        self.retention = retention_days * DAY
        self._clock = clock
        self.interval = interval
        self.batch = batch

    async def step(self) -> float:
        now = self._clock()
        purge = await self._store.write("purge audit", self._purge_txn, now - self.retention, now)
        if purge.count:
            log.info("audit rows purged", extra={"count": purge.count, "anchor_id": purge.anchor.id})
        return 1.0 if purge.count >= self.batch else self.interval

    def _purge_txn(self, conn: sqlite3.Connection, before: float, now: float) -> Purge:
        deliveries = purge_deliveries_txn(conn, before, self.batch)  # webhook ids: kept as long as the audit
        if deliveries:
            log.info("webhook deliveries purged", extra={"count": deliveries})
        purge = purge_audit_txn(conn, before, self.batch)
        if purge.count and self._auditor.enabled:
            # Appended in the same transaction as the delete: a purge is never unrecorded.
            entry = AuditEntry(
                event_type="audit_purged",
                actor="sidecar",
                status="ok",
                details={"count": purge.count, "anchor_id": purge.anchor.id, "before": iso_time(before)},
            )
            append_audit_txn(conn, self._auditor.clean(entry), now)
        return purge


def iso_time(ts: float) -> str:
    """UTC ISO-8601 with milliseconds, e.g. 2024-01-15T10:30:00.123Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time_arg(text: str, now: float) -> float:
    """`--since/--until`: a duration back from now (24h, 7d, 90m) or an ISO-8601 time (UTC if no offset)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration such as 24h nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def export_lines(conn: sqlite3.Connection, since: float | None, until: float | None) -> Iterator[str]:
    """One JSON object per row: its columns, `time` in ISO-8601 and `details` parsed (verifiable: ts and
    details_json are kept exactly as hashed)."""
    for row in iter_audit_rows(conn, since, until):
        yield json.dumps(_export_doc(row), separators=(",", ":"))


def _export_doc(row: AuditRow) -> dict[str, Any]:
    doc = asdict(row)
    doc["time"] = iso_time(row.ts)
    doc["details"] = json.loads(row.details_json)
    return doc
