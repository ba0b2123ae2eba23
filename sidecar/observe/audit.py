"""The audit log as components use it: `await auditor.record(AuditEntry(...))`, plus retention and export.

What may be stored (so ticket content and secrets never are):
  * detail values are ids, hashes, counts, flags or short labels: None, bool, int, float, or a
    string of at most 200 characters without line breaks, or a list of up to 50 of those;
  * a detail key whose words include subject, description, message, body, content, text,
    comment, title, summary, payload, plaintext, token, secret, password, authorization, auth or
    mnemonic, or that names a private, signing, api or secret key, is refused, unless its last
    word marks an identifier (id, ids, hash, sha256, count, len, bytes, name, names):
    `body_sha256` and `external_key` are fine, `body` and `api_key` are not;
  * every string (details, error, and the other columns) passes the log redactor, so a configured
    secret or an Authorization header value is masked; `error` is cut to 500 characters.
A refused detail is dropped, its key is listed under `dropped`, and a warning names the key.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from sidecar.config import parse_duration
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

MAX_VALUE_CHARS = 200
MAX_LIST_ITEMS = 50
MAX_ERROR_CHARS = 500
CONTENT_WORDS = frozenset(
    {
        *("subject", "description", "message", "body", "content", "text", "comment", "comments", "title"),
        *("summary", "payload", "plaintext", "token", "tokens", "secret", "password", "passphrase"),
        *("authorization", "auth", "mnemonic"),
    }
)
_KEY_NAMES = re.compile(r"(private|signing|api|secret)[^a-z0-9]*key")
ID_WORDS = frozenset({"id", "ids", "hash", "sha256", "count", "len", "bytes", "name", "names"})
DAY = 86400.0


def is_content_key(key: str) -> bool:
    """True when a detail key names content or a credential rather than an identifier."""
    words = [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]
    if not words:
        return True
    if words[-1] in ID_WORDS:
        return False
    return any(w in CONTENT_WORDS for w in words) or bool(_KEY_NAMES.search(key.lower()))


def _scalar_ok(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and len(value) <= MAX_VALUE_CHARS and "\n" not in value and "\r" not in value


def clean_details(details: Mapping[str, Any], redact: Redactor) -> tuple[dict[str, Any], list[str]]:
    """Apply the module's rule: return the details that may be stored and the keys dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in details.items():
        ok = not is_content_key(str(key))
        if ok and isinstance(value, (list, tuple)):
            ok = len(value) <= MAX_LIST_ITEMS and all(_scalar_ok(v) for v in value)
        elif ok:
            ok = _scalar_ok(value)
        if not ok:
            dropped.append(str(key)[:MAX_VALUE_CHARS])
            continue
        kept[str(key)] = _redact_value(value, redact)
    return kept, sorted(dropped)


def _redact_value(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [redact(v) if isinstance(v, str) else v for v in value]
    return value


class Auditor:
    """Cleans entries by the module's rule and appends them to the chain through the writer thread."""

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
        redact = self.redact
        details, dropped = clean_details(entry.details, redact)
        if dropped:
            log.warning("audit details dropped", extra={"event_type": entry.event_type, "keys": dropped})
            details["dropped"] = dropped
        columns: dict[str, Any] = {
            name: redact(value)[:MAX_VALUE_CHARS]
            for name, value in asdict(entry).items()
            if isinstance(value, str) and name != "error"
        }
        error = redact(entry.error)[:MAX_ERROR_CHARS] if entry.error is not None else None
        return replace(entry, **columns, error=error, details=details)

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
