"""Reading Jira back for inbound sync: the sweep's JQL on `updated` (it finds new comments and attachments
too), and one issue's fields, comments and attachments.

Jira's answers are untrusted input: every value taken from them is type-checked and bounded here, and an
answer that does not have the shape Jira documents is a DeskError for that call (never a KeyError or a
TypeError out of the engine). Nothing read here (comment text, names) goes into a log line or an error.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from sidecar.desks import jira_adf
from sidecar.desks.base import INBOUND_FIELDS, ChangedIssue, DeskCommentView, DeskIssueView, ExternalTicket, FieldChange
from sidecar.desks.files import DeskAttachment
from sidecar.desks.http import DeskHttp
from sidecar.digits import is_decimal
from sidecar.errors import DeskError

log = logging.getLogger(__name__)
PROPERTY_KEY = "virtengine"
ISSUE_ID = re.compile(r"[0-9]{1,18}")
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,254}-[0-9]{1,18}")
MAX_PAGES = 1000  # of one listing: a desk that never says "last page" cannot keep a call going for ever
MAX_HISTORIES = 20_000  # changelog entries of one issue read
MAX_COMMENTS = 5000  # Jira Cloud's own cap of comments on one issue
MAX_ID = 128  # characters of an id or accountId (UserDetails.accountId: maxLength 128)
MAX_MARKER = 256  # characters of a marker read back
MAX_NAME = 255  # characters of a display name or status/priority name kept
# Fields asked for; `created` is the change time of a field no changelog entry has touched, `attachment`
# the issue's files (inbound attachments, #15), `comment` its comments (a page of them; read_issue pages the
# comment listing only when that page is not all of them).
READ_FIELDS = "status,priority,assignee,updated,created,attachment,comment"
# Jira timestamps: "2024-01-01T12:00:00.000+0000" (REST), or ISO-8601 with "Z" or a "+00:00" offset.
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?\s?(Z|[+-]\d\d(?::?\d\d)?)")


def parse_time(value: Any) -> float | None:
    """Unix seconds of a Jira timestamp; None for anything else (never raises)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        offset = timedelta(0)
        if zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            offset = -offset if zone[0] == "-" else offset
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=timezone(offset)
        )
    except ValueError:
        return None
    return moment.astimezone(UTC).timestamp() + (float("0." + fraction) if fraction else 0.0)


def _bad(op: str, what: str) -> DeskError:
    """An answer without the shape Jira documents: not retried (the same answer would come back)."""
    return DeskError(f"jira {op}: malformed answer: {what}", retryable=False)


def _text(value: Any, limit: int) -> str | None:
    """A string of at most `limit` characters, or None."""
    return value if isinstance(value, str) and len(value) <= limit else None


def _path(ref: ExternalTicket, tail: str = "") -> str:
    """The issue's path by id (stable when the key moves), by key when the id is not Jira's."""
    ident = ref.external_id if ISSUE_ID.fullmatch(ref.external_id) else ref.key
    return f"/rest/api/3/issue/{quote(ident, safe='')}" + (f"/{tail}" if tail else "")


# searching ----------------------------------------------------------------------------------------
async def search_all(http: DeskHttp, op: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of an enhanced JQL search (POST /rest/api/3/search/jql), following nextPageToken until
    isLast. A token that repeats or more than MAX_PAGES pages is a DeskError: the desk is not paging."""
    hits: list[dict[str, Any]] = []
    seen: set[str] = set()
    request = dict(body)
    for _ in range(MAX_PAGES):
        answer = await http.request(op, "POST", "/rest/api/3/search/jql", json_body=request)
        page = http.json_object(op, answer)
        issues = page.get("issues")
        if isinstance(issues, list):
            hits += [item for item in issues if isinstance(item, dict)]
        token = page.get("nextPageToken")
        if page.get("isLast", True) is not False or not isinstance(token, str) or not token:
            return hits
        if token in seen:
            raise _bad(op, "a search page token repeated")
        seen.add(token)
        request["nextPageToken"] = token
    raise _bad(op, f"the search did not end within {MAX_PAGES} pages")


def sweep_jql(project_key: str, since: float, now: float) -> str:
    """Issues of the project updated since `since`, oldest change first. A relative date ("-Nm") needs no
    time zone (an absolute one is read in the account's zone); N rounds up and adds one minute of overlap."""
    minutes = max(1, math.ceil((now - since) / 60) + 1)
    project = project_key.replace("\\", "\\\\").replace('"', '\\"')
    return f'project = "{project}" AND updated >= "-{minutes}m" ORDER BY updated ASC'


async def changed_since(
    http: DeskHttp, project_key: str, since: float, *, page_size: int, now: Callable[[], float]
) -> list[ChangedIssue]:
    """Every issue of the project changed at or after `since`, each once (its latest `updated`), oldest
    first. Hits without a Jira id and a key of this project are skipped and counted in the log."""
    op = "sweep changed issues"
    body = {"jql": sweep_jql(project_key, since, now()), "fields": ["updated"], "maxResults": page_size}
    found: dict[str, ChangedIssue] = {}
    skipped = 0
    prefix = project_key + "-"
    for hit in await search_all(http, op, body):
        issue_id, key = hit.get("id"), hit.get("key")
        fields = hit.get("fields")
        if (
            not isinstance(issue_id, str)
            or not ISSUE_ID.fullmatch(issue_id)
            or not isinstance(key, str)
            or not ISSUE_KEY.fullmatch(key)
            or not key.startswith(prefix)
        ):
            skipped += 1
            continue
        updated = parse_time(fields.get("updated")) if isinstance(fields, dict) else None
        old = found.get(issue_id)
        if old is None or (updated or 0.0) >= (old.updated_at or 0.0):
            found[issue_id] = ChangedIssue(issue_id, key, updated)
    if skipped:
        log.warning("jira sweep: malformed search hits skipped", extra={"desk": "jira", "skipped": skipped})
    return sorted(found.values(), key=lambda c: (c.updated_at is not None, c.updated_at or 0.0, int(c.external_id)))


async def attachments_since(since: float) -> list[str]:
    """Always []: attaching a file is an issue update in Jira (Cloud sends `jira:issue_updated` with a
    changelog item of field "Attachment" beside `attachment_created`; the issue's `updated` moves with it,
    as devnet/jira_files.py add_attachment models), so changed_since finds the issue and read_issue lists
    the file. `since` is unused: nothing has to be polled."""
    return []


# one issue ----------------------------------------------------------------------------------------
async def read_issue(http: DeskHttp, ref: ExternalTicket, *, page_size: int, jsm: bool = False) -> DeskIssueView:
    """The issue's inbound fields with their last change (from the changelog), its claim, every comment
    oldest first and its attachments (one GET of the issue, whose `comment` field usually holds every comment,
    else the comment pages; at a JSM desk, `jsm`, one more paged GET for the attachments customers see, when
    there are attachments)."""
    op = f"read {ref.key}"
    params = {"fields": READ_FIELDS, "properties": PROPERTY_KEY, "expand": "changelog"}
    issue = http.json_object(op, await http.request(op, "GET", _path(ref), params=params))
    if ISSUE_ID.fullmatch(ref.external_id) and issue.get("id") != ref.external_id:
        raise _bad(op, "the answer is another issue")
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise _bad(op, "no fields object")
    values = _values(op, fields)
    created = parse_time(fields.get("created"))
    histories, truncated = _histories(op, issue.get("changelog"))
    latest = _latest_changes(op, histories)
    if truncated and set(INBOUND_FIELDS) - set(latest):
        # Jira put only its most recent histories under expand=changelog; a field none of them touched
        # changed (if ever) before them, so read the whole changelog, oldest first, page by page.
        latest = _latest_changes(op, await read_changelog(http, ref))
    changes: dict[str, FieldChange] = {}
    for name in INBOUND_FIELDS:
        value = values[name]
        if name in latest:
            change_id, changed_at, actor = latest[name]
            changes[name] = FieldChange(value, change_id, changed_at, actor)
        else:
            changes[name] = FieldChange(value, "created", created, None)
    properties = issue.get("properties")
    claim_value = properties.get(PROPERTY_KEY) if isinstance(properties, dict) else None
    claim = _text(claim_value.get("ticket_id"), MAX_ID) if isinstance(claim_value, dict) else None
    comments = _embedded_comments(op, fields.get("comment"), jsm)
    if comments is None:
        comments = await read_comments(http, ref, page_size=page_size)
    attachments = await _visible(http, ref, _attachments(op, fields.get("attachment")), jsm)
    return DeskIssueView(ref, parse_time(fields.get("updated")), changes, comments, claim, attachments)


async def _visible(
    http: DeskHttp, ref: ExternalTicket, attachments: tuple[DeskAttachment, ...], jsm: bool
) -> tuple[DeskAttachment, ...]:
    """`public` as the customer sees each file (jira_files.with_visibility; plain Jira: all public)."""
    from sidecar.desks.jira_files import with_visibility  # jira_files imports this module

    return await with_visibility(http, ref, attachments, jsm)


def _attachments(op: str, items: Any) -> tuple[DeskAttachment, ...]:
    """`fields.attachment` (absent or null: none), all public until `_visible` says otherwise."""
    from sidecar.desks.jira_files import MAX_ATTACHMENTS, parse_attachment  # jira_files imports this module

    if items is None:
        return ()
    if not isinstance(items, list):
        raise _bad(op, "fields.attachment is not a list")
    return tuple(parse_attachment(op, item) for item in items[:MAX_ATTACHMENTS])


def _values(op: str, fields: dict[str, Any]) -> dict[str, str | None]:
    """Status name, priority name (None: the issue has none) and assignee accountId (None: unassigned)."""
    status = fields.get("status")
    status_name = _text(status.get("name"), MAX_NAME) if isinstance(status, dict) else None
    if not status_name:
        raise _bad(op, "no status name")
    priority = fields.get("priority")
    priority_name: str | None = None
    if priority is not None:
        priority_name = _text(priority.get("name"), MAX_NAME) if isinstance(priority, dict) else None
        if not priority_name:
            raise _bad(op, "a priority without a name")
    assignee = fields.get("assignee")
    account: str | None = None
    if assignee is not None:
        account = _text(assignee.get("accountId"), MAX_ID) if isinstance(assignee, dict) else None
        if not account:
            raise _bad(op, "an assignee without an accountId")
    return {"status": status_name, "priority": priority_name, "assignee": account}


def _histories(op: str, changelog: Any) -> tuple[list[Any], bool]:
    """The histories under expand=changelog, and whether Jira left older ones out."""
    if not isinstance(changelog, dict) or not isinstance(changelog.get("histories"), list):
        raise _bad(op, "no changelog")
    histories = changelog["histories"]
    if len(histories) > MAX_HISTORIES:
        raise _bad(op, "too many changelog entries")
    total, start = changelog.get("total"), changelog.get("startAt", 0)
    truncated = (isinstance(start, int) and start > 0) or (isinstance(total, int) and total > len(histories))
    return histories, truncated


async def read_changelog(http: DeskHttp, ref: ExternalTicket) -> list[Any]:
    """Every history of the issue (GET .../changelog, startAt paging until isLast), at most MAX_HISTORIES."""
    op = f"read changelog of {ref.key}"
    histories: list[Any] = []
    seen: set[Any] = set()
    for _ in range(MAX_PAGES):
        params = {"startAt": str(len(histories)), "maxResults": "100"}
        page = http.json_object(op, await http.request(op, "GET", _path(ref, "changelog"), params=params))
        values = page.get("values")
        if not isinstance(values, list):
            raise _bad(op, "no values list")
        ids = {h.get("id") for h in values if isinstance(h, dict)}
        if ids & seen:  # a desk that pages over the same entries again would never end
            raise _bad(op, "changelog pages repeat entries")
        seen |= ids
        histories += values
        if len(histories) > MAX_HISTORIES:
            raise _bad(op, f"more than {MAX_HISTORIES} changelog entries")
        if not values or page.get("isLast", True) is not False:
            return histories
    raise _bad(op, f"the changelog did not end within {MAX_PAGES} pages")


def _latest_changes(op: str, histories: list[Any]) -> dict[str, tuple[str, float | None, str | None]]:
    """Per inbound field, (history id, created, author accountId) of the newest history changing it:
    newest by `created`, then by id, whatever order they come in."""
    latest: dict[str, tuple[str, float | None, str | None]] = {}
    order: dict[str, tuple[float, int]] = {}
    for history in histories:
        if not isinstance(history, dict) or not isinstance(history.get("items"), list):
            raise _bad(op, "a changelog entry without items")
        history_id = _text(history.get("id"), MAX_ID)
        if not history_id:
            raise _bad(op, "a changelog entry without an id")
        created = parse_time(history.get("created"))
        author = history.get("author")
        actor = _text(author.get("accountId"), MAX_ID) if isinstance(author, dict) else None
        rank = (created if created is not None else -math.inf, int(history_id) if is_decimal(history_id) else -1)
        for item in history["items"]:
            if not isinstance(item, dict):
                raise _bad(op, "a changelog item that is not an object")
            names = {str(item.get(k)).lower() for k in ("field", "fieldId") if isinstance(item.get(k), str)}
            for name in names & set(INBOUND_FIELDS):
                if name not in order or rank >= order[name]:
                    order[name] = rank
                    latest[name] = (history_id, created, actor)
    return latest


async def read_comments(http: DeskHttp, ref: ExternalTicket, *, page_size: int) -> tuple[DeskCommentView, ...]:
    """Every comment of the issue, oldest first (orderBy=created, startAt paging)."""
    op = f"read comments of {ref.key}"
    comments: dict[str, DeskCommentView] = {}
    start = 0
    for _ in range(MAX_PAGES):
        params = {"orderBy": "created", "startAt": str(start), "maxResults": str(page_size)}
        page = http.json_object(op, await http.request(op, "GET", _path(ref, "comment"), params=params))
        items = page.get("comments")
        if not isinstance(items, list):
            raise _bad(op, "no comments list")
        views = [_comment(op, item) for item in items]
        if views and all(view.comment_id in comments for view in views):
            raise _bad(op, "comment pages repeat comments")  # a desk paging over the same ones would never end
        for view in views:
            comments.setdefault(view.comment_id, view)
        if len(comments) > MAX_COMMENTS:
            raise _bad(op, f"more than {MAX_COMMENTS} comments")
        start += len(items)
        total = page.get("total")
        if not items or not isinstance(total, int) or start >= total:
            return tuple(sorted(comments.values(), key=_comment_order))
    raise _bad(op, f"the comment listing did not end within {MAX_PAGES} pages")


def _embedded_comments(op: str, page: Any, jsm: bool) -> tuple[DeskCommentView, ...] | None:
    """Every comment, oldest first, from the issue's `comment` field when that page holds them all (startAt 0,
    as many as its `total`), else None (the listing is read). At a JSM desk every comment must say whether
    customers see it (`jsdPublic`): one that does not sends the read to the listing, never guessed public."""
    if not isinstance(page, dict):
        return None
    items, total, start = page.get("comments"), page.get("total"), page.get("startAt", 0)
    if not isinstance(items, list) or not isinstance(total, int) or start != 0 or len(items) != total:
        return None
    if total > MAX_COMMENTS:
        raise _bad(op, f"more than {MAX_COMMENTS} comments")
    if jsm and not all(isinstance(item, dict) and isinstance(item.get("jsdPublic"), bool) for item in items):
        return None
    views: dict[str, DeskCommentView] = {}
    for item in items:
        view = _comment(op, item)
        views.setdefault(view.comment_id, view)
    return tuple(sorted(views.values(), key=_comment_order))


def _comment_order(view: DeskCommentView) -> tuple[float, int]:
    return (view.created_at if view.created_at is not None else -math.inf, int(view.comment_id))


def _comment(op: str, item: Any) -> DeskCommentView:
    if not isinstance(item, dict):
        raise _bad(op, "a comment that is not an object")
    comment_id = item.get("id")
    if not isinstance(comment_id, str) or not ISSUE_ID.fullmatch(comment_id):
        raise _bad(op, "a comment without a numeric id")
    public = item.get("jsdPublic", True)
    if not isinstance(public, bool):
        raise _bad(op, "a comment whose jsdPublic is not a boolean")
    author = item.get("author")
    author_id = name = None
    if isinstance(author, dict):  # absent for an anonymous comment; an email address is never read
        author_id = _text(author.get("accountId"), MAX_ID)
        name = author.get("displayName")
    body = item.get("body")
    return DeskCommentView(
        comment_id=comment_id,
        author_id=author_id,
        author_name=name[:MAX_NAME] if isinstance(name, str) else "",
        public=public,
        text=jira_adf.plain_text(body),
        created_at=parse_time(item.get("created")),
        marker=_marker(jira_adf.footer_marker(body)),
    )


def _marker(value: str | None) -> str | None:
    """The sidecar's marker (a response id) when it is one; a longer string is not a marker it wrote."""
    return value if value is not None and len(value) <= MAX_MARKER else None
