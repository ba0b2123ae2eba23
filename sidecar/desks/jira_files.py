"""Jira attachments (#15): list, upload (streamed multipart) and download (streamed, bounded).

JiraDesk's methods of HasAttachments call these with its DeskHttp. File names and bytes are ticket
content: errors and logs carry the issue key, the attachment id, statuses and sizes only.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from sidecar.desks.base import ExternalTicket
from sidecar.desks.files import DISABLED, TOO_LARGE, AttachmentRefused, DeskAttachment
from sidecar.desks.http import DeskHttp
from sidecar.desks.jira_read import ISSUE_ID, MAX_ID, MAX_NAME, MAX_PAGES, parse_time
from sidecar.errors import DeskError

MAX_ATTACHMENTS = 10_000  # attachments of one issue read back (Jira Cloud allows 2,000 an issue)
MAX_FILE_NAME = 1024  # characters of a listed file name kept
MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer read while streaming
REQUEST_PAGE = 50  # attachments asked for a page of the Service Desk API's listing (its default limit)
# `_links.jiraRest` of the Service Desk API's AttachmentDTO: the platform attachment, /rest/api/<v>/attachment/<id>.
_ATTACHMENT_URL = re.compile(r"/rest/api/[0-9]+/attachment/([0-9]{1,18})/?$")
# Jira's file routes take this header or refuse the upload as an XSRF attempt (403 "XSRF check failed").
NO_CHECK = {"X-Atlassian-Token": "no-check"}


def _path(ref: ExternalTicket, tail: str = "") -> str:
    ident = ref.external_id if ISSUE_ID.fullmatch(ref.external_id) else ref.key
    return f"/rest/api/3/issue/{ident}" + (f"/{tail}" if tail else "")


def parse_attachment(op: str, item: Any, *, public: bool = True) -> DeskAttachment:
    """One Attachment object of `fields.attachment` or of the upload answer. Jira's platform API tells
    nothing about JSM visibility (an attachment added on an internal comment shows no restriction there):
    the caller says whether it is `public` (see `with_visibility`)."""
    if not isinstance(item, dict):
        raise DeskError(f"jira {op}: an attachment is not an object", retryable=False)
    ident, url = item.get("id"), item.get("content")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if not isinstance(ident, str) or not ISSUE_ID.fullmatch(ident):
        raise DeskError(f"jira {op}: an attachment without a numeric id", retryable=False)
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise DeskError(f"jira {op}: attachment {ident} has no content URL", retryable=False)
    name, size, mime = item.get("filename"), item.get("size"), item.get("mimeType")
    author = item.get("author")
    account = author.get("accountId") if isinstance(author, dict) else None
    shown = author.get("displayName") if isinstance(author, dict) else None  # an email address is never read
    return DeskAttachment(
        id=ident,
        file_name=name[:MAX_FILE_NAME] if isinstance(name, str) else "",
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        content_type=mime[:255] if isinstance(mime, str) and mime else None,
        created_at=parse_time(item.get("created")),
        author=account[:MAX_ID] if isinstance(account, str) and account else None,
        public=public,
        content_url=url,
        author_name=shown[:MAX_NAME] if isinstance(shown, str) and shown.strip() else None,
    )


async def list_attachments(http: DeskHttp, ref: ExternalTicket, *, jsm: bool = False) -> list[DeskAttachment]:
    """Every attachment of the issue, as `fields.attachment` lists them (oldest first); at a JSM desk
    (`jsm`) only those the Service Desk API lists are public (see `with_visibility`)."""
    op = f"list attachments of {ref.key}"
    answer = http.json_object(op, await http.request(op, "GET", _path(ref), params={"fields": "attachment"}))
    fields = answer.get("fields")
    items = fields.get("attachment") if isinstance(fields, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise DeskError(f"jira {op}: fields.attachment is not a list", retryable=False)
    return list(await with_visibility(http, ref, [parse_attachment(op, item) for item in items[:MAX_ATTACHMENTS]], jsm))


async def with_visibility(
    http: DeskHttp, ref: ExternalTicket, attachments: Sequence[DeskAttachment], jsm: bool
) -> tuple[DeskAttachment, ...]:
    """The attachments with `public` set as the customer sees them. A plain Jira desk has no customer
    visibility: every file stays public. At a JSM desk a file is public only when the Service Desk API
    lists it for the request ("Returns the visible attachments from the customer request", pinned JSM
    spec); one attached with an internal comment is in `fields.attachment` but not there. One paged GET,
    none when the issue has no attachments."""
    if not jsm or not attachments:
        return tuple(attachments)
    visible = await public_attachment_ids(http, ref)
    return tuple(replace(att, public=att.id in visible) for att in attachments)


async def public_attachment_ids(http: DeskHttp, ref: ExternalTicket) -> set[str]:
    """Ids of the request's customer-visible attachments: GET /rest/servicedeskapi/request/{issueIdOrKey}/
    attachment, `start`/`limit` paging until `isLastPage`. Its AttachmentDTO has no id field: the id is
    the last segment of `_links.jiraRest` (".../rest/api/2/attachment/10001"). Any failure is a retryable
    error for this issue: an unknown visibility never defaults to public (an internal file would reach
    the chain). A 401 stays as it is (the credential, desk-wide)."""
    op = f"list request attachments of {ref.key}"
    try:
        return await _request_attachment_ids(http, op, ref)
    except DeskError as exc:
        if exc.retryable or exc.status == 401:
            raise
        raise DeskError(str(exc), retryable=True, status=exc.status, scope="issue") from exc


async def _request_attachment_ids(http: DeskHttp, op: str, ref: ExternalTicket) -> set[str]:
    ident = ref.external_id if ISSUE_ID.fullmatch(ref.external_id) else ref.key
    url = f"/rest/servicedeskapi/request/{quote(ident, safe='')}/attachment"
    ids: set[str] = set()
    start = 0
    for _ in range(MAX_PAGES):
        params = {"start": str(start), "limit": str(REQUEST_PAGE)}
        page = http.json_object(op, await http.request(op, "GET", url, params=params))
        values = page.get("values")
        if not isinstance(values, list):
            raise DeskError(f"jira {op}: malformed answer: no values list", retryable=False)
        found = [_request_attachment_id(op, item) for item in values]
        if found and all(ident in ids for ident in found):
            raise DeskError(f"jira {op}: malformed answer: pages repeat attachments", retryable=False)
        ids.update(found)
        if len(ids) > MAX_ATTACHMENTS:
            raise DeskError(f"jira {op}: more than {MAX_ATTACHMENTS} attachments", retryable=False)
        start += len(values)
        if not values or page.get("isLastPage", True) is not False:
            return ids
    raise DeskError(f"jira {op}: the listing did not end within {MAX_PAGES} pages", retryable=False)


def _request_attachment_id(op: str, item: Any) -> str:
    """The attachment id of one AttachmentDTO, from `_links.jiraRest` (the platform attachment's URL)."""
    links = item.get("_links") if isinstance(item, dict) else None
    rest = links.get("jiraRest") if isinstance(links, dict) else None
    match = _ATTACHMENT_URL.search(urlsplit(rest).path) if isinstance(rest, str) and len(rest) <= 2048 else None
    if match is None:
        raise DeskError(f"jira {op}: malformed answer: an attachment without a jiraRest link", retryable=False)
    return match.group(1)


async def upload_attachment(
    http: DeskHttp, ref: ExternalTicket, file_name: str, content_type: str, path: Path
) -> DeskAttachment:
    """POST the file as multipart part `file`. httpx streams a file object in 64 KiB reads and sends its
    Content-Length from the file's size, so the file is never held whole. 413 (over the site's limit)
    raises AttachmentRefused("too_large"), which no retry changes."""
    op = f"upload attachment to {ref.key}"
    with path.open("rb") as handle:
        await _check_site_allows(http, op, os.fstat(handle.fileno()).st_size)
        files = {"file": (file_name, handle, content_type)}
        response = await http.call(op, http.client.post(_path(ref, "attachments"), files=files, headers=NO_CHECK))
    if response.status_code == 413:
        raise AttachmentRefused(f"jira {op}: HTTP 413: over the site's attachment limit", reason=TOO_LARGE, status=413)
    http.raise_for_status(op, response.status_code, response.headers, response.content)
    answer = http.json(op, response)
    if not isinstance(answer, list) or len(answer) != 1:
        raise DeskError(f"jira {op}: the answer is not a list of one attachment", retryable=False)
    return parse_attachment(op, answer[0])


async def _check_site_allows(http: DeskHttp, op: str, size: int) -> None:
    """Refuse before sending when the site's settings (GET /rest/api/3/attachment/meta) already say no: a
    server may cut a too-large upload off mid-body, which looks like a network failure and would be
    retried, where this is a final `too_large` (or `disabled`) refusal."""
    meta = http.json_object(op, await http.request(op, "GET", "/rest/api/3/attachment/meta"))
    if meta.get("enabled") is False:
        raise AttachmentRefused(f"jira {op}: attachments are disabled on the site", reason=DISABLED)
    limit = meta.get("uploadLimit")
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < size:
        raise AttachmentRefused(f"jira {op}: {size} bytes over the site's limit of {limit}", reason=TOO_LARGE)


async def download(http: DeskHttp, attachment: DeskAttachment, max_bytes: int) -> AsyncIterator[bytes]:
    """The file's bytes as they arrive. Jira answers the content URL with a 303 to a signed media URL on
    another host, which is followed without the Jira credential (the URL carries its own token). The
    count is ours: past `max_bytes` raises AttachmentRefused("too_large") whatever `size` or
    Content-Length said. The first URL is built from the id on the desk's own site, never taken from
    `content_url` (a desk answer: a hostile one could name another host and collect the credential)."""
    op = f"download attachment {attachment.id}"
    if not ISSUE_ID.fullmatch(attachment.id):
        raise DeskError(f"jira {op}: not a Jira attachment id", retryable=False)
    url, with_auth = f"{http.base_url}/rest/api/3/attachment/content/{attachment.id}", True
    for _ in range(3):  # the content URL, then the media URL; a third hop would be a loop
        async with http.stream(op, url, with_auth=with_auth) as response:
            if response.status_code in (301, 302, 303, 307, 308):
                target = response.headers.get("location", "")
                if not target:
                    raise DeskError(f"jira {op}: redirect without a Location", retryable=False)
                following = urljoin(url, target)
                if urlsplit(following).scheme not in ("https", "http"):
                    raise DeskError(f"jira {op}: redirect to a non-HTTP URL", retryable=False)
                with_auth = with_auth and _same_origin(url, following)
                url = following
                continue
            if not with_auth and response.status_code in (401, 403):
                # The signed media URL expired or was refused: not the desk credential (a desk-wide 401
                # would stop every job), so this file's job retries and asks Jira for a fresh URL.
                raise DeskError(f"jira {op}: the media URL was refused", retryable=True, scope="issue")
            if not 200 <= response.status_code < 300:
                body = await _bounded(http, op, response)
                http.raise_for_status(op, response.status_code, response.headers, body)
            seen = 0
            async for chunk in http.body_chunks(op, response):
                seen += len(chunk)
                if seen > max_bytes:
                    raise AttachmentRefused(f"jira {op}: more than {max_bytes} bytes", reason=TOO_LARGE)
                yield chunk
            return
    raise DeskError(f"jira {op}: too many redirects", retryable=False)


def _same_origin(a: str, b: str) -> bool:
    one, two = urlsplit(a), urlsplit(b)
    return (one.scheme, one.hostname, one.port) == (two.scheme, two.hostname, two.port)


async def _bounded(http: DeskHttp, op: str, response: Any) -> bytes:
    """At most MAX_ERROR_BODY bytes of an error answer (for its message), never the whole of a hostile one."""
    out = b""
    async for chunk in http.body_chunks(op, response):
        out += chunk[: MAX_ERROR_BODY - len(out)]
        if len(out) >= MAX_ERROR_BODY:
            break
    return out
