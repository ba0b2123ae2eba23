"""Inbound attachments: a file an agent attached at the desk reaches the chain once, sealed, or is withheld.

The inbound engine's re-read records each new public desk attachment as a pending row (inbound_apply.py);
this intake does the network part outside any transaction: it downloads the file with the limit enforced
while it streams (never the declared size), judges its type by its bytes and its name, seals it for every
recipient of the ticket into a 0600 spool file, stores the sealed object, and queues one
MsgAddSupportResponse whose sealed payload lists it. A refusal (too large, a type not allowed, ...) is final:
the row is withheld and ONE agents-only note at the desk says why. A desk or store outage is retried with
backoff, at most the retry policy's attempts. File names and bytes never reach logs, audit or errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sidecar.artifacts.base import ArtifactStore, ArtifactUnavailable, StoredObject
from sidecar.artifacts.content import SNIFF_BYTES, Counted, Refused, allowed, safe_file_name, sniff
from sidecar.artifacts.sealed import Sealed, seal_file
from sidecar.chain.envelope import EnvelopeKey
from sidecar.chain.txbuild import encode_msg
from sidecar.config_schema import RetryConfig, SyncConfig
from sidecar.desks.base import Desk, ExternalTicket
from sidecar.desks.files import AttachmentRefused, DeskAttachment, HasAttachments
from sidecar.errors import DeskError
from sidecar.observe.audit import Auditor
from sidecar.store.attachments import (
    AttachmentRow,
    adopt_echo_txn,
    finish_inbound_txn,
    outbound_by_hash,
    pending_inbound,
    retry_inbound_txn,
)
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store
from sidecar.store.inbound import record_inbound_intent_txn, record_origin_txn, ticket_envelopes
from sidecar.store.intents import queue_intent_txn
from sidecar.store.refs import RefRow, get_ref
from sidecar.store.tickets import Ticket, get_ticket
from sidecar.sync.failures import is_store_failure, job_failure_reason
from sidecar.sync.outbound import backoff
from sidecar.sync.replies import (
    MissingKeys,
    TicketRecipients,
    gather_recipients,
    payload_hash_of,
    response_msg,
    seal_payload,
)
from sidecar.sync.spool import INBOUND_PREFIX
from sidecar.sync.withheld import withheld_note

log = logging.getLogger(__name__)

MAX_RESPONSES = 200  # the chain's cap per ticket (CHAIN_CONTRACT.md), as for replies
MAX_AUTHOR_CHARS = 100
# Outcomes no retry changes: the row is withheld and the desk gets one note. While the note is still owed
# (the desk did not take it), the pending row keeps the code in `reason` and the next attempt only posts it.
REFUSALS = frozenset(
    {
        "too_large",
        "type_not_allowed",
        "type_mismatch",
        "disabled",
        "recipient_key_unknown",
        "response_cap_reached",
    }
)
_DESK_LABELS = {"jira": "Jira", "waldur": "Waldur"}
_DEFAULTS = SyncConfig()  # the configuration's defaults, declared once in config_schema


class IntakeDesk(Desk, HasAttachments, Protocol):
    """A desk the intake reads files from and posts withheld notes to."""


@dataclass(frozen=True)
class IntakeSettings:
    max_bytes: int = _DEFAULTS.max_attachment_bytes  # sync.max_attachment_bytes
    allowed_types: tuple[str, ...] = _DEFAULTS.allowed_content_types  # sync.allowed_content_types
    batch: int = 4  # rows taken per step, one at a time (one download in memory-bounded flight)


@dataclass(frozen=True)
class _Snapshot:
    ticket: Ticket | None
    ref: RefRow | None
    envelopes: list[dict[str, Any]]


class _Retry(Exception):
    """An attempt that may succeed later (desk or store outage); `code` is what the row keeps."""

    def __init__(self, code: str, retry_after: float | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after


class AttachmentIntake:
    """One step: due pending inbound rows are taken in, each to done, withheld, failed or a later retry.
    Nothing one row does stops the step: an unexpected exception fails that row (audited); only a failing
    database and cancellation propagate."""

    def __init__(
        self,
        desks: Sequence[IntakeDesk],
        store: Store,
        artifacts: ArtifactStore,
        auditor: Auditor,
        retry: RetryConfig,
        settings: IntakeSettings,
        *,
        sender: str,
        key: EnvelopeKey,
        spool_dir: Path,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.desks: dict[str, IntakeDesk] = {d.name: d for d in desks}
        self._store = store
        self._artifacts = artifacts
        self._retry = retry
        self._settings = settings
        self._sender = sender
        self._key = key
        self._spool = spool_dir
        self._auditor = auditor
        self._rng = rng or random.Random()
        self._clock = clock
        self._not_before: dict[int, float] = {}  # row id -> earliest next attempt (jitter and Retry-After)

    async def step(self, skip: Collection[str] = ()) -> int:
        """Take the due rows of the desks not in `skip` (paused); the number taken."""
        desks = [name for name in self.desks if name not in skip]
        rows = await self._store.read("pending inbound attachments", pending_inbound, desks, self._settings.batch * 8)
        now = self._clock()
        due = [row for row in rows if self._due(row, now)][: self._settings.batch]
        for row in due:
            await self._take(row)
        return len(due)

    def _due(self, row: AttachmentRow, now: float) -> bool:
        if row.attempts == 0:
            return True
        # After a restart only the row is known: the un-jittered delay of its attempt count from its last try.
        delay = min(
            self._retry.max_backoff, self._retry.initial_backoff * self._retry.backoff_multiplier ** (row.attempts - 1)
        )
        return now >= max(row.updated_at + delay, self._not_before.get(row.id, 0.0))

    async def _take(self, row: AttachmentRow) -> None:
        try:
            await self._attempt(row)
        except _Retry as exc:
            await self._again(row, exc.code, exc.retry_after)
        except DeskError as exc:  # not retryable: the desk refused the listing or the download for good
            reason = f"desk_http_{exc.status}" if exc.status else "desk_refused"
            await self._finish(row, "failed", "attachment_failed", reason=reason)
        except Exception as exc:
            if is_store_failure(exc):
                raise
            await self._finish(row, "failed", "attachment_failed", reason=job_failure_reason(exc))

    async def _attempt(self, row: AttachmentRow) -> None:
        snap = await self._store.read("attachment context", _snapshot, row.ticket_id, row.desk)
        desk = self.desks[row.desk]
        ticket, ref = snap.ticket, snap.ref
        if ticket is None or ticket.archived or ticket.purged or ref is None or row.desk_attachment_id is None:
            await self._finish(row, "failed", "attachment_failed", reason="ticket_gone")
            return
        issue = ExternalTicket(desk.name, ref.external_id, ref.external_key or ref.external_id, ref.external_url or "")
        att = await self._find(desk, issue, row.desk_attachment_id)
        if row.reason in REFUSALS:  # decided before; only the desk note is still owed
            await self._refuse(row, desk, issue, row.reason, att.file_name if att else "")
            return
        if att is None:  # deleted at the desk before it was copied: nothing left to copy
            await self._finish(row, "failed", "attachment_failed", reason="deleted_at_desk")
            return
        recipients = gather_recipients(ticket.recipients, snap.envelopes, self._key)
        if isinstance(recipients, MissingKeys):
            await self._refuse(row, desk, issue, "recipient_key_unknown", att.file_name)
            return
        if ticket.response_count >= MAX_RESPONSES:
            await self._refuse(row, desk, issue, "response_cap_reached", att.file_name)
            return
        name = safe_file_name(att.file_name)
        try:
            sealed, content_type, stored = await self._copy(row, desk, att, name, recipients)
        except (Refused, AttachmentRefused) as exc:
            await self._refuse(row, desk, issue, exc.reason, att.file_name)
            return
        if stored is None:  # the sidecar's own upload, recognised by its hash
            return
        plain = _plaintext(_who(att, desk.name), name, content_type, sealed, stored)
        queued = await self._store.write(
            "queue inbound attachment", self._queue_txn, row, issue, att, plain, recipients, self._clock()
        )
        if queued == "response_cap_reached":
            await self._refuse(row, desk, issue, queued, att.file_name)
            return
        self._not_before.pop(row.id, None)
        log.info(
            "attachment synced",
            extra={"desk": row.desk, "ticket_id": row.ticket_id, "size": sealed.size_plain, "outcome": queued},
        )

    async def _find(self, desk: IntakeDesk, issue: ExternalTicket, attachment_id: str) -> DeskAttachment | None:
        """The attachment as the desk lists it now (its name is content: it is never stored by the sidecar)."""
        try:
            listing = await desk.list_attachments(issue)
        except DeskError as exc:
            raise _retry_or_fail(exc) from None
        return next((a for a in listing if a.id == attachment_id), None)

    async def _copy(
        self, row: AttachmentRow, desk: IntakeDesk, att: DeskAttachment, name: str, recipients: TicketRecipients
    ) -> tuple[Sealed, str, StoredObject | None]:
        """Download, judge and seal into a spool file, then store it: (sealed, content type, stored object),
        stored None when the file is the sidecar's own upload (recognised by hash; nothing is stored)."""
        path = _spool_file(self._spool)
        try:
            counted = Counted(desk.download(att, self._settings.max_bytes), self._settings.max_bytes)
            judged: list[str] = []
            try:
                sealed = await seal_file(self._key, recipients.ordered(), self._judged(counted, name, judged), path)
            except DeskError as exc:
                if isinstance(exc, AttachmentRefused):
                    raise
                raise _retry_or_fail(exc) from None
            finally:
                await counted.aclose()
            echo = await self._store.read(
                "echo by hash", outbound_by_hash, row.desk, row.ticket_id, sealed.sha256_plain
            )
            if echo is not None:  # a crash between the sidecar's upload and its record: its own file
                await self._echo(row, sealed.sha256_plain)
                return sealed, judged[0], None
            try:
                stored = await self._artifacts.put_file(path)
            except ArtifactUnavailable:
                raise _Retry("artifact_unavailable") from None
            return sealed, judged[0], stored
        finally:
            _remove(path)

    async def _judged(self, counted: Counted, name: str, judged: list[str]) -> AsyncIterator[bytes]:
        """The stream, its type judged once the head is known (SNIFF_BYTES in, or the end): a refused type
        stops the download there rather than after the whole file."""
        async for piece in counted:
            if not judged and len(counted.head) >= SNIFF_BYTES:
                judged.append(self._judge(counted.head, name))
            yield piece
        if not judged:
            judged.append(self._judge(counted.head, name))

    def _judge(self, head: bytes, name: str) -> str:
        content_type = sniff(head, name)
        reason = allowed(content_type, name, self._settings.allowed_types)
        if reason is not None:
            raise Refused(reason)
        return content_type

    # outcomes -----------------------------------------------------------------------------------------
    def _queue_txn(
        self,
        conn: sqlite3.Connection,
        row: AttachmentRow,
        issue: ExternalTicket,
        att: DeskAttachment,
        plain: dict[str, Any],
        recipients: TicketRecipients,
        now: float,
    ) -> str:
        """The response Msg, the row's outcome and its audit, together; the dedupe key makes it once."""
        ticket = get_ticket(conn, row.ticket_id)
        if ticket is not None and ticket.response_count >= MAX_RESPONSES:
            return "response_cap_reached"
        payload = seal_payload(self._key, recipients, plain)
        msg_type, data = encode_msg(response_msg(self._sender, row.ticket_id, payload))
        key = f"inbound:{row.desk}:{issue.external_id}:attachment:{att.id}"
        intent = queue_intent_txn(conn, key[:400], msg_type, row.ticket_id, data, now)
        item = f"attachment:{att.id}"[:200]
        record_inbound_intent_txn(conn, intent, row.desk, row.ticket_id, item, att.created_at)
        record_origin_txn(conn, payload_hash_of(payload), row.desk, row.ticket_id)
        [entry] = plain["attachments"]
        finish_inbound_txn(
            conn,
            row.id,
            "done",
            now,
            sha256=entry["sha256"],
            size=entry["size"],
            content_type=entry["content_type"],
            ref=entry["ref"],
        )
        details = {"sha256": entry["sha256"], "size": entry["size"], "intent_id": intent}
        self._audit(conn, _entry("attachment_synced", row, "queued", details), now)
        return "queued"

    async def _refuse(
        self, row: AttachmentRow, desk: IntakeDesk, issue: ExternalTicket, reason: str, name: str
    ) -> None:
        """Withheld for good: one note at the desk (its marker checked first), then the row and its audit."""
        note = withheld_note("inbound", reason, safe_file_name(name) if name else "", self._settings.max_bytes, row.id)
        try:
            if not await desk.has_comment(issue, note.marker):
                await desk.add_comment(issue, note)
        except DeskError as exc:
            if not exc.retryable or row.attempts + 1 >= self._retry.max_retries:
                # The file stays withheld; only the note could not be posted (said in the audit).
                await self._finish(row, "withheld", "attachment_withheld", reason=reason, note=False)
                return
            await self._again(row, reason, exc.retry_after)
            return
        await self._finish(row, "withheld", "attachment_withheld", reason=reason, note=True)
        log.warning("attachment withheld", extra={"desk": row.desk, "ticket_id": row.ticket_id, "reason": reason})

    async def _again(self, row: AttachmentRow, code: str, retry_after: float | None) -> None:
        """One more attempt later, or `failed` once the retry policy's attempts are spent."""
        if code not in REFUSALS and row.attempts + 1 >= self._retry.max_retries:
            await self._finish(row, "failed", "attachment_failed", reason=code, spent=True)
            return
        now = self._clock()
        self._not_before[row.id] = now + backoff(self._retry, row.attempts, retry_after, self._rng)
        await self._store.write("retry inbound attachment", retry_inbound_txn, row.id, code, now)
        log.info(
            "attachment retried",
            extra={"desk": row.desk, "ticket_id": row.ticket_id, "reason": code, "attempts": row.attempts + 1},
        )

    async def _finish(
        self,
        row: AttachmentRow,
        state: str,
        event: str,
        *,
        reason: str,
        note: bool | None = None,
        spent: bool = False,
    ) -> None:
        """The row's final state and its audit; `spent`: this attempt counts (the last one the policy allows)."""
        details: dict[str, object] = {"reason": reason[:240], "attempts": row.attempts + 1}
        if note is not None:
            details["note"] = note
        entry = _entry(event, row, state, details)

        def txn(conn: sqlite3.Connection, now: float) -> None:
            if spent:
                retry_inbound_txn(conn, row.id, reason[:240], now)
            finish_inbound_txn(conn, row.id, state, now, reason=reason[:240])
            self._audit(conn, entry, now)

        await self._store.write(f"inbound attachment {state}", txn, self._clock())
        self._not_before.pop(row.id, None)
        if state == "failed":
            log.error("attachment sync failed", extra={"desk": row.desk, "ticket_id": row.ticket_id, "reason": reason})

    async def _echo(self, row: AttachmentRow, sha256: str) -> None:
        def txn(conn: sqlite3.Connection) -> None:
            own = outbound_by_hash(conn, row.desk, row.ticket_id, sha256)
            if own is not None and own.desk_attachment_id is None and row.desk_attachment_id is not None:
                adopt_echo_txn(conn, row.id, own.id, row.desk_attachment_id)
            else:
                finish_inbound_txn(conn, row.id, "done", self._clock(), reason="echo", sha256=sha256)

        await self._store.write("inbound attachment echo", txn)

    def _audit(self, conn: sqlite3.Connection, entry: AuditEntry, now: float) -> None:
        if self._auditor.enabled:
            append_audit_txn(conn, self._auditor.clean(entry), now)


def _spool_file(directory: Path) -> Path:
    """A fresh 0600 file in the spool directory (the sidecar's data dir), for one sealed object."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=INBOUND_PREFIX, suffix=".part")
    os.close(fd)
    return Path(temp)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _snapshot(conn: sqlite3.Connection, ticket_id: str, desk: str) -> _Snapshot:
    return _Snapshot(get_ticket(conn, ticket_id), get_ref(conn, ticket_id, desk), ticket_envelopes(conn, ticket_id))


def _retry_or_fail(exc: DeskError) -> Exception:
    """A retryable desk error becomes a later attempt; any other stays a DeskError (the row fails)."""
    if exc.retryable:
        return _Retry(
            "desk_unavailable" if exc.status is None or exc.status >= 500 else f"desk_http_{exc.status}",
            exc.retry_after,
        )
    return exc


def _who(att: DeskAttachment, desk: str) -> str:
    """`<display name> (<Desk> agent)`, or `<Desk> agent` where the desk names no one (Waldur never does)."""
    label = _DESK_LABELS.get(desk, desk.capitalize())
    name = getattr(att, "author_name", None)  # a DeskAttachment field once the desks read it (see report)
    if isinstance(name, str):
        flat = " ".join("".join(c if c.isprintable() else " " for c in name).split())[:MAX_AUTHOR_CHARS]
        if flat:
            return f"{flat} ({label} agent)"
    return f"{label} agent"


def _plaintext(who: str, name: str, content_type: str, sealed: Sealed, stored: StoredObject) -> dict[str, Any]:
    entry = {
        "file_name": name,
        "content_type": content_type,
        "size": sealed.size_plain,
        "sha256": sealed.sha256_plain,
        "ref": stored.ref,
    }
    return {"message": f"{who} attached {name}", "attachments": [entry]}


def _entry(event: str, row: AttachmentRow, status: str, details: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        event,
        ticket_id=row.ticket_id,
        desk=row.desk,
        direction="inbound",
        actor=row.desk,
        status=status,
        details={"desk_attachment_id": row.desk_attachment_id, **details},
    )
