"""Attachments at a desk: the values and the protocol both desks implement (#15).

Sync code reads and writes desk attachments only through `HasAttachments`. File names and bytes are
ticket content: they never reach logs, metrics or error messages (ids, sizes and sha256 only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sidecar.desks.base import DeskName, ExternalTicket
from sidecar.errors import DeskError

TOO_LARGE = "too_large"  # AttachmentRefused.reason: over a limit (the desk's or ours)
DISABLED = "disabled"  # AttachmentRefused.reason: the desk takes no attachments at all


@dataclass(frozen=True)
class DeskAttachment:
    """One attachment as a desk lists it."""

    id: str  # the desk's attachment id (Jira attachment id, Waldur attachment uuid hex)
    file_name: str
    size: int | None
    content_type: str | None
    created_at: float | None
    author: str | None  # desk account (Jira accountId, Waldur user uuid): echo detection
    public: bool  # False: internal-only, stays at the desk
    content_url: str  # where download() reads it
    # Who attached it, as the desk names them (Jira author.displayName; never an email address): ticket
    # content, shown in the on-chain response's author line, never logged. None where the desk names no one.
    author_name: str | None = None


class AttachmentRefused(DeskError):
    """The desk (or our own limit while streaming) refused a file for a reason no retry changes.

    `reason` is a short code ("too_large", "disabled"); never retryable."""

    def __init__(self, message: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message, retryable=False, status=status)
        self.reason = reason


@runtime_checkable
class HasAttachments(Protocol):
    """What attachment sync asks of a desk (JiraDesk and WaldurDesk implement it)."""

    name: DeskName

    async def list_attachments(self, ref: ExternalTicket) -> list[DeskAttachment]: ...

    async def upload_attachment(
        self, ref: ExternalTicket, file_name: str, content_type: str, path: Path
    ) -> DeskAttachment:
        """Stream the file as multipart (Jira: POST /rest/api/3/issue/{key}/attachments, part `file`,
        header X-Atlassian-Token: no-check; Waldur: POST /api/support-attachments/ with the issue URL).
        A 413 / size refusal raises AttachmentRefused(reason="too_large") (a non-retryable DeskError)."""
        ...

    def download(self, attachment: DeskAttachment, max_bytes: int) -> AsyncIterator[bytes]:
        """Stream the bytes; never trusts a declared size: past max_bytes raises
        AttachmentRefused(reason="too_large")."""
        ...
