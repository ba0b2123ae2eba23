"""Outbound attachments (#15): files listed by on-chain requests and responses, copied to a desk once.

A create or comment job that succeeded queues one `attachment` job per listed file (same transaction).
The job: a file already recorded is done; one the desk already shows (same normalised name, same size, and
the same sha256 when downloaded back) is adopted, which is how a crash between upload and record never
uploads twice; otherwise the sealed object is read twice from the artifact store: a first pass decrypts,
counts and hashes it and keeps nothing but the first bytes for the type check, a second pass decrypts it into
a 0600 temporary file in the spool directory that the desk client streams from and that is removed when the
job ends (the desk clients take a path: they send a known Content-Length). Anything no retry can change
(limits, types, a hash or size mismatch, a missing or corrupt object, the desk's refusal) withholds the file:
one note at the desk, an audit row, the job finished. An unreachable store or desk is retried like any job.
File names are ticket content: they reach the desk and nothing else (ids, sizes and sha256 elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sidecar.artifacts.base import ArtifactCorrupt, ArtifactError, ArtifactMissing, ArtifactStore, ref_hex
from sidecar.artifacts.content import Counted, Refused, allowed, safe_file_name, sniff
from sidecar.artifacts.sealed import MAX_CHUNK_SIZE, SealedError, open_object
from sidecar.chain.envelope import EnvelopeError, EnvelopeKey
from sidecar.desks.base import Desk, ExternalTicket
from sidecar.desks.files import AttachmentRefused, DeskAttachment, HasAttachments
from sidecar.desks.waldur_files import waldur_file_name
from sidecar.errors import DeskError
from sidecar.observe.audit import Auditor
from sidecar.store.attachments import (
    AttachmentRow,
    add_outbound_txn,
    attachment_by_id,
    count_attempt_txn,
    known_desk_attachment,
    mark_done_txn,
    mark_withheld_txn,
)
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store
from sidecar.store.jobs import Job, finish_job_txn, inbox_payload, queue_attachment_job_txn
from sidecar.sync.spool import OUTBOUND_PREFIX
from sidecar.sync.withheld import withheld_note

log = logging.getLogger(__name__)
DIRECTION = "outbound"
MAX_LISTED = 100  # files one request or response may list; more are not copied (and not queued)
MAX_NAME_CHARS = 4096  # a listed file name longer than this is malformed
MAX_SIZE = 2**53  # a listed size beyond this is malformed (not a number any client means)
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# Types `sniff` can name; a declared type among these must agree with the bytes (text and JSON are kin).
_SNIFFABLE = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "application/zip"}
    | {"text/plain", "application/json"}
)
_TEXT_KIN = frozenset({"text/plain", "application/json"})
# Test seam: run after the desk accepted an upload and before the row records it (tests/sidecar/seamed.py
# installs a SIGKILL there for the crash test). Nothing in the product sets it.
_after_upload: Callable[[], None] | None = None


def install_upload_crash_hook(hook: Callable[[], None] | None) -> None:
    """Install (or remove) the test seam run right after a desk accepted an attachment upload."""
    global _after_upload
    _after_upload = hook


@dataclass(frozen=True)
class OutboundFile:
    """One `attachments` entry of a request or response plaintext, checked for shape (not yet for content)."""

    file_name: str
    content_type: str
    size: int
    sha256: str  # lowercase hex of the plaintext
    ref: str  # "sha256:<hex>" of the sealed object


def parse_entry(raw: object) -> OutboundFile | None:
    """An entry from chain input (anyone's): None when any field has the wrong type, size or shape."""
    if not isinstance(raw, dict):
        return None
    name, ctype, size, digest, ref = (raw.get(k) for k in ("file_name", "content_type", "size", "sha256", "ref"))
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        return None
    if not isinstance(ctype, str) or not _TYPE.fullmatch(ctype.split(";", 1)[0].strip()):
        return None
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        return None
    if not isinstance(digest, str) or not _HEX.fullmatch(digest):
        return None
    try:
        ref_hex(ref) if isinstance(ref, str) else ref_hex("")
    except ArtifactError:
        return None
    assert isinstance(ref, str)
    return OutboundFile(name, ctype.split(";", 1)[0].strip().lower(), size, digest.lower(), ref)


def listed_files(plain: Mapping[str, Any] | None) -> list[OutboundFile | None]:
    """The entries a plaintext lists (None for each malformed one); a non-list `attachments` is one malformed
    entry; at most MAX_LISTED are considered."""
    if not plain or "attachments" not in plain or plain["attachments"] is None:
        return []
    items = plain["attachments"]
    if not isinstance(items, list):
        return [None]
    return [parse_entry(item) for item in items[:MAX_LISTED]]


@dataclass(frozen=True)
class PlannedFile:
    """A file to queue after a create/comment job: where it is listed and what it is (None: malformed)."""

    event_id: str
    index: int
    file: OutboundFile | None


@dataclass(frozen=True)
class AttachmentSettings:
    max_bytes: int
    allowed_types: tuple[str, ...]
    spool_dir: Path  # decrypted files live here (0600) for the length of one upload


class _Withhold(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AttachmentSync:
    """Queues and runs a desk's outbound attachment jobs (DeskWorker calls plan/queue_txn/run)."""

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        key: EnvelopeKey,
        auditor: Auditor,
        settings: AttachmentSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._key = key
        self._auditor = auditor
        self.settings = settings
        self._clock = clock

    # queueing ---------------------------------------------------------------------------------------------
    async def plan(self, job: Job) -> list[PlannedFile]:
        """The files the job's event lists (create: the request; comment: the response). [] when the event
        cannot be opened: the job itself already reported what the desk could not be told."""
        event_id = job.payload.get("event_id")
        if not isinstance(event_id, str) or job.kind not in ("create", "comment"):
            return []
        plain = await self._plaintext(event_id)
        items = plain.get("attachments") if plain else None
        if isinstance(items, list) and len(items) > MAX_LISTED:
            log.warning(
                "an event lists more attachments than are copied",
                extra={"job_id": job.id, "desk": job.desk, "listed": len(items), "copied_at_most": MAX_LISTED},
            )
        return [PlannedFile(event_id, i, f) for i, f in enumerate(listed_files(plain))]

    def queue_txn(self, conn: sqlite3.Connection, job: Job, planned: Sequence[PlannedFile], now: float) -> int:
        """Inside the transaction that finishes `job`: a pending row and an attachment job per planned file,
        once per (desk, ticket, sha256) (a malformed entry: once per event and position). Returns jobs queued."""
        queued = 0
        for item in planned:
            f = item.file
            if f is not None:
                dedupe = f"attach:{job.desk}:{job.ticket_id}:{f.sha256}"
            else:
                dedupe = f"attach:{job.desk}:{job.ticket_id}:{item.event_id}#{item.index}"
            if conn.execute("SELECT 1 FROM jobs WHERE dedupe_key = ?", (dedupe,)).fetchone() is not None:
                continue
            row_id, _ = add_outbound_txn(
                conn,
                job.desk,
                job.ticket_id,
                f.sha256 if f else None,
                f.size if f else None,
                f.content_type if f else None,
                f.ref if f else None,
                now,
            )
            payload = {"event_id": item.event_id, "index": item.index, "row_id": row_id}
            queued += queue_attachment_job_txn(conn, dedupe, job.desk, job.ticket_id, job.inbox_id, payload, now)
        return queued

    # running ----------------------------------------------------------------------------------------------
    async def run(self, job: Job, desk: Desk, ref: ExternalTicket) -> str:
        """Run one attachment job to its end (done or withheld, recorded with the job finished) and return
        the outcome ("done", "adopted", "withheld:<reason>", "gone"). Raises DeskError for what a retry may
        fix (the store unreachable, the desk down): the worker's normal retry path."""
        if not isinstance(desk, HasAttachments):
            raise DeskError(f"{desk.name} takes no attachments", retryable=False)
        row_id = job.payload.get("row_id")
        row = await self._store.read("attachment row", attachment_by_id, row_id) if isinstance(row_id, int) else None
        if row is None or row.direction != DIRECTION:
            await self._store.write("finish attachment job", finish_job_txn, job.id, self._clock(), "skipped")
            return "gone"
        await self._store.write("count attempt", count_attempt_txn, row.id, self._clock())
        file = await self._entry(job)
        if file is not None and file.sha256 != row.sha256:  # the listing is not the file the row was made for
            file = None
        if row.state == "done":
            await self._store.write("finish attachment job", finish_job_txn, job.id, self._clock())
            return "done"
        if row.desk_attachment_id:  # inbound intake recognised the upload as our echo (adopt_echo_txn)
            await self._store.write("record attachment", self._done_txn, job, row, row.desk_attachment_id, True)
            return "adopted"
        if row.state == "withheld":  # recorded before its note: make sure the note is there, then finish
            await self._note(desk, ref, row, row.reason or "malformed", file)
            await self._store.write("finish attachment job", finish_job_txn, job.id, self._clock())
            return f"withheld:{row.reason}"
        try:
            if file is None:
                raise _Withhold("malformed")
            adopted = await self._adopt(desk, ref, file)
            if adopted is not None:
                await self._store.write("record attachment", self._done_txn, job, row, adopted.id, True)
                return "adopted"
            uploaded = await self._copy(desk, ref, file)
        except _Withhold as why:
            return await self._withhold(job, desk, ref, row, file, why.reason)
        except AttachmentRefused as refused:
            return await self._withhold(job, desk, ref, row, file, refused.reason)
        await self._store.write("record attachment", self._done_txn, job, row, uploaded.id, False)
        return "done"

    async def _entry(self, job: Job) -> OutboundFile | None:
        event_id, index = job.payload.get("event_id"), job.payload.get("index")
        if not isinstance(event_id, str) or isinstance(index, bool) or not isinstance(index, int):
            return None
        files = listed_files(await self._plaintext(event_id))
        return files[index] if 0 <= index < len(files) else None

    async def _plaintext(self, event_id: str) -> dict[str, Any] | None:
        """The event's decrypted payload, read as ContentOpener reads it (inbox row, support key)."""
        try:
            event = await self._store.read("attachment event", inbox_payload, event_id)
        except ValueError:  # a stored payload beyond bounds
            return None
        envelope = ((event or {}).get("payload") or {}).get("envelope")
        if not envelope:
            return None
        try:
            return self._key.open(envelope)
        except EnvelopeError:
            return None

    async def _adopt(self, desk: HasAttachments, ref: ExternalTicket, file: OutboundFile) -> DeskAttachment | None:
        """The desk's copy of this file when an earlier attempt uploaded it and could not record it: same
        normalised name and size, not recorded for another row, and the same sha256 when read back."""
        names = _desk_names(file)
        for att in await desk.list_attachments(ref):
            if att.size != file.size or safe_file_name(att.file_name) not in names:
                continue
            if await self._store.read("desk attachment", known_desk_attachment, desk.name, att.id) is not None:
                continue
            if await self._desk_sha256(desk, att) == file.sha256:
                return att
        return None

    async def _desk_sha256(self, desk: HasAttachments, att: DeskAttachment) -> str | None:
        counted = Counted(desk.download(att, self.settings.max_bytes), self.settings.max_bytes)
        try:
            async for _ in counted:
                pass
        except AttachmentRefused:
            return None
        finally:
            await counted.aclose()
        return counted.sha256

    def _check_declared(self, file: OutboundFile) -> None:
        if file.size > self.settings.max_bytes:
            raise _Withhold("too_large")
        reason = allowed(file.content_type, safe_file_name(file.file_name), self.settings.allowed_types)
        if reason is not None:
            raise _Withhold(reason)

    def _plain(self, file: OutboundFile) -> Counted:
        """The object's plaintext, counted and hashed as it streams (the limit enforced on the bytes)."""
        limit = self.settings.max_bytes
        sealed = self._artifacts.open(file.ref)
        return Counted(open_object(self._key, sealed, max_plain=limit + MAX_CHUNK_SIZE), limit)

    async def _drain(self, counted: Counted, file: OutboundFile, sink: IO[bytes] | None) -> None:
        """Stream the plaintext to its end (into `sink`, or nowhere), then check it against the listing."""
        try:
            async for piece in counted:
                if sink is not None:
                    await asyncio.to_thread(sink.write, piece)
        except Refused as refused:
            raise _Withhold(refused.reason) from None
        except ArtifactMissing:
            raise _Withhold("missing") from None
        except ArtifactCorrupt:
            raise _Withhold("corrupt") from None
        except SealedError as exc:
            raise _Withhold("not_a_recipient" if "not a recipient" in str(exc) else "corrupt") from None
        except ArtifactError as exc:
            if exc.retryable:
                raise DeskError(f"artifact store: {exc}", retryable=True, scope="issue") from None
            raise _Withhold("corrupt") from None
        finally:
            await counted.aclose()
        try:
            counted.verify(file.size, file.sha256)
        except Refused as refused:
            raise _Withhold(refused.reason) from None

    async def _copy(self, desk: HasAttachments, ref: ExternalTicket, file: OutboundFile) -> DeskAttachment:
        """Check, then upload: pass one verifies without keeping anything, pass two spools and uploads."""
        self._check_declared(file)
        first = self._plain(file)
        await self._drain(first, file, None)
        content_type = sniff(first.head, file.file_name)
        name = safe_file_name(file.file_name)
        reason = allowed(content_type, name, self.settings.allowed_types)
        if reason is None and _contradicts(file.content_type, content_type):
            reason = "type_mismatch"
        if reason is not None:
            raise _Withhold(reason)
        self.settings.spool_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=self.settings.spool_dir, prefix=OUTBOUND_PREFIX, delete=False)  # noqa: SIM115
        path = Path(handle.name)
        try:
            try:
                await self._drain(self._plain(file), file, handle)
            finally:
                handle.close()
            uploaded = await desk.upload_attachment(ref, name, content_type, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if _after_upload is not None:
            _after_upload()
        return uploaded

    async def _withhold(
        self,
        job: Job,
        desk: Desk,
        ref: ExternalTicket,
        row: AttachmentRow,
        file: OutboundFile | None,
        reason: str,
    ) -> str:
        """Recorded and audited first (so a failing note is never a second audit), then the note, then done."""
        await self._store.write("withhold attachment", self._withheld_txn, job, row, reason)
        await self._note(desk, ref, row, reason, file)
        await self._store.write("finish attachment job", finish_job_txn, job.id, self._clock())
        log.info(
            "attachment withheld",
            extra={"desk": job.desk, "ticket_id": job.ticket_id, "row_id": row.id, "reason": reason},
        )
        return f"withheld:{reason}"

    async def _note(
        self, desk: Desk, ref: ExternalTicket, row: AttachmentRow, reason: str, file: OutboundFile | None
    ) -> None:
        name = safe_file_name(file.file_name) if file is not None else ""
        note = withheld_note(DIRECTION, reason, name, self.settings.max_bytes, row.id)
        if not await desk.has_comment(ref, note.marker):
            await desk.add_comment(ref, note)

    def _withheld_txn(self, conn: sqlite3.Connection, job: Job, row: AttachmentRow, reason: str) -> None:
        now = self._clock()
        mark_withheld_txn(conn, row.id, reason, now)
        details = {"direction": DIRECTION, "job_id": job.id, "row_id": row.id, "reason": reason}
        details.update(_ids(row))
        self._audit_txn(conn, _entry("attachment_withheld", job, "withheld", details, reason), now)

    def _done_txn(
        self,
        conn: sqlite3.Connection,
        job: Job,
        row: AttachmentRow,
        desk_attachment_id: str,
        adopted: bool,
    ) -> None:
        now = self._clock()
        mark_done_txn(conn, row.id, desk_attachment_id, now)
        finish_job_txn(conn, job.id, now)
        details: dict[str, object] = {"direction": DIRECTION, "job_id": job.id, "row_id": row.id}
        details.update({"desk_attachment_id": desk_attachment_id, "adopted": adopted, **_ids(row)})
        self._audit_txn(conn, _entry("attachment_synced", job, "ok", details), now)

    def _audit_txn(self, conn: sqlite3.Connection, entry: AuditEntry, now: float) -> None:
        if self._auditor.enabled:
            append_audit_txn(conn, self._auditor.clean(entry), now)


def _contradicts(declared: str, sniffed: str) -> bool:
    """A declared type the bytes are not (only types `sniff` can name are judged; text and JSON are kin)."""
    if declared not in _SNIFFABLE or declared == sniffed:
        return False
    return not {declared, sniffed} <= _TEXT_KIN


def _desk_names(file: OutboundFile) -> set[str]:
    """The names a desk may show for this file: ours, and Waldur's rewrite of it (waldur_file_name)."""
    name = safe_file_name(file.file_name)
    return {name, safe_file_name(waldur_file_name(name, file.content_type))}


def _ids(row: AttachmentRow) -> dict[str, object]:
    return {"sha256": row.sha256, "size": row.size} if row.sha256 else {}


def _entry(event: str, job: Job, status: str, details: Mapping[str, object], error: str | None = None) -> AuditEntry:
    return AuditEntry(
        event,
        ticket_id=job.ticket_id,
        desk=job.desk,
        direction=DIRECTION,
        actor="sidecar",
        status=status,
        error=error,
        details=details,
    )
