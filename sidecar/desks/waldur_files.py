"""Waldur attachments (#15): list, streamed multipart upload and streamed, size-capped download.

What the server does (waldur-mastermind support/serializers.py AttachmentSerializer, views.py
AttachmentViewSet, managers.py AttachmentQuerySet.filter_for_user, waldur_core media/views.py MediaView and
media/storage.py DatabaseStorage; the simulator's rules are in devnet/waldur_rules.py):
- `POST /api/support-attachments/` multipart, parts `issue` (the issue's URL) and `file`. Django stores the
  file under a valid name (spaces to "_", only letters, digits, "-", "_", "." kept) and adds a random
  suffix when the name is taken, so the answer's `file_name` may differ from what was sent; the name is
  normalised here first so that it only differs on a clash. A name without an extension is refused by a
  stock server (the excluded-extension test is a substring test on an empty string), so one is added.
- Only staff and the issue's caller (or the customer's owner) may attach or even see attachments; a
  support-role token sees those of the issues it created. There is no author and no public/internal flag
  in an answer: every attachment is `public`, `author` is None (echoes are recognised by id and hash).
- The bytes are served at `file`, an absolute `/api/media/<uuid>/` URL that needs the same token. The URL
  must be on the desk's own origin, so the token is never sent elsewhere.
File names and bytes never reach a log or an error message: ids, sizes and statuses only.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx

from sidecar.desks.base import ExternalTicket
from sidecar.desks.files import TOO_LARGE, AttachmentRefused, DeskAttachment
from sidecar.digits import is_decimal
from sidecar.errors import DeskError
from sidecar.timestamps import iso_seconds

if TYPE_CHECKING:
    from sidecar.desks.waldur import WaldurDesk

MAX_ERROR_BODY = 64 * 1024  # an error answer is read this far, never whole
_EXTENSIONS = {
    "application/json": ".json",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "image/gif": ".gif",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "text/plain": ".txt",
}


def waldur_file_name(file_name: str, content_type: str) -> str:
    """The name Waldur stores for an upload (unless it is taken): Django's get_valid_filename over the
    basename, with an extension added when there is none (a stock server refuses names without one)."""
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip().replace(" ", "_")
    base = re.sub(r"[^-\w.]", "", base)
    if base in ("", ".", ".."):
        base = "attachment"
    if not os.path.splitext(base)[1]:
        base += _EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), ".bin")
    return base


async def list_attachments(desk: WaldurDesk, ref: ExternalTicket) -> list[DeskAttachment]:
    """Every attachment of the issue the token may see (filters.py AttachmentFilter.issue_uuid)."""
    op = f"list attachments of {ref.key}"
    params = {"issue_uuid": desk._ref_uuid(ref).hex}
    return [attachment(desk, item, op) async for item in desk._pages(op, "/support-attachments/", params)]


async def upload_attachment(
    desk: WaldurDesk, ref: ExternalTicket, file_name: str, content_type: str, path: Path
) -> DeskAttachment:
    """Stream `path` as the `file` part (httpx reads an open file in chunks and sends its length)."""
    op = f"upload attachment to {ref.key}"
    issue_url = f"{desk.api_url}/support-issues/{desk._ref_uuid(ref).hex}/"
    name = waldur_file_name(file_name, content_type)
    with path.open("rb") as handle:
        pending = desk.http.client.post(
            "/support-attachments/",
            data={"issue": issue_url},
            files={"file": (name, handle, content_type)},
        )
        response = await desk.http.call(op, pending)
    if response.status_code == 413:  # a fronting proxy's body limit (Waldur itself sets none)
        raise AttachmentRefused(f"waldur {op}: HTTP 413", reason=TOO_LARGE, status=413)
    if response.status_code == 400:
        reason = _refusal_reason(response.content)
        if reason is not None:
            raise AttachmentRefused(f"waldur {op}: HTTP 400 ({reason})", reason=reason, status=400)
    desk.http.raise_for_status(op, response.status_code, response.headers, response.content)
    return attachment(desk, desk.http.json_object(op, response), op)


async def download(desk: WaldurDesk, att: DeskAttachment, max_bytes: int) -> AsyncIterator[bytes]:
    """The file's bytes as they arrive; past `max_bytes` (counted, whatever Content-Length says) raises
    AttachmentRefused(too_large). A declared length over the limit refuses before any byte is read.
    DeskHttp.stream sends the desk's token (a request header) and skips the JSON answer hook, so a
    .json file streams like any other."""
    op = f"download attachment {att.id}"
    url = _own_origin(desk, att.content_url, op)
    async with desk.http.stream(op, url) as response:
        if not 200 <= response.status_code < 300:
            body = await _head(desk, op, response)
            desk.http.raise_for_status(op, response.status_code, response.headers, body)
        declared = response.headers.get("content-length", "")
        if is_decimal(declared) and int(declared) > max_bytes:
            raise AttachmentRefused(f"waldur {op}: declares {declared} bytes, over {max_bytes}", reason=TOO_LARGE)
        seen = 0
        async for chunk in desk.http.body_chunks(op, response):
            seen += len(chunk)
            if seen > max_bytes:
                raise AttachmentRefused(f"waldur {op}: more than {max_bytes} bytes", reason=TOO_LARGE)
            yield chunk


def attachment(desk: WaldurDesk, item: Mapping[str, Any], op: str) -> DeskAttachment:
    """An attachment answer (serializers.py AttachmentSerializer), type-checked; ids only in errors."""
    raw_uuid = item.get("uuid")
    try:
        ident = UUID(raw_uuid) if isinstance(raw_uuid, str) else None
    except ValueError:
        ident = None
    file_url, file_name = item.get("file"), item.get("file_name")
    if ident is None or not isinstance(file_url, str) or not isinstance(file_name, str):
        raise DeskError(f"waldur {op}: an attachment answer lacks uuid, file or file_name", retryable=False)
    size, mime = item.get("file_size"), item.get("mime_type")
    return DeskAttachment(
        id=ident.hex,
        file_name=file_name,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        content_type=mime if isinstance(mime, str) and mime else None,
        created_at=iso_seconds(item.get("created")),
        author=None,  # Waldur's answer names no author
        public=True,  # Waldur has no internal attachments
        content_url=_own_origin(desk, file_url, op),
    )


def _own_origin(desk: WaldurDesk, url: str, op: str) -> str:
    """`url` when it is on the desk's own scheme, host and port (the token goes with it), else a DeskError."""
    mine, theirs = urlsplit(desk.http.base_url), urlsplit(url)
    if (theirs.scheme, theirs.netloc) != (mine.scheme, mine.netloc) or not theirs.path.startswith("/"):
        raise DeskError(f"waldur {op}: the file URL is not on the desk's origin", retryable=False)
    return url


def _refusal_reason(content: bytes) -> str | None:
    """A 400 no retry or other file changes: Waldur's own texts (AttachmentSerializer.validate)."""
    text = content[:MAX_ERROR_BODY].decode("utf-8", "replace")
    if "Invalid file extension" in text:
        return "type_not_allowed"
    if "Adding attachments is not available." in text:
        return "disabled"
    if "The submitted file is empty." in text:
        return "empty"
    return None


async def _head(desk: WaldurDesk, op: str, response: httpx.Response) -> bytes:
    """At most MAX_ERROR_BODY bytes of an error answer."""
    body = b""
    async for chunk in desk.http.body_chunks(op, response):
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return body[:MAX_ERROR_BODY]
