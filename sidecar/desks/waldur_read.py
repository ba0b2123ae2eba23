"""Reading Waldur back for inbound sync: what changed, new comments and attachments, and one issue.

What the server offers (waldur-mastermind support/filters.py, serializers.py, views.py; the same in
waldur-api-client 8.1.3): the issue list has no created/modified range filter, only `o=` orderings
(`-modified`) and `customer_uuid`; django-filter ignores an unknown parameter, so a `modified_after` would
silently return everything. The client therefore pages newest first and stops at the first item older than
asked. The comment list has no range and no customer filter either: comments of every issue the token may
see come back (the inbound engine ignores issues that are not linked). A comment saves only itself, so the
issue's `modified` does not move and comments are polled. A comment answer names its issue by the `issue`
hyperlink (no `issue_uuid`) and its author by `author_uuid`, the author's Waldur user (left out with
`author_user` null when the support user has none). A non-staff token (the sidecar's usual `support` role)
is never shown other people's internal comments (CommentViewSet.get_queryset). An attachment, too, saves
only itself (views.py AttachmentViewSet.perform_create), so attachments are polled as well; their list
(AttachmentViewSet: filter_backends DjangoFilterBackend only, filters.py AttachmentFilter: `issue` and
`issue_uuid`; models.py Attachment has no Meta.ordering) offers no ordering and no created filter, so every
page is read and filtered here (a non-staff token sees only the attachments of issues it is the caller of:
managers.py AttachmentQuerySet.filter_for_user).

Every field read is type-checked: a hostile or broken answer is a DeskError for that call, ids only.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sidecar.desks import waldur_files
from sidecar.desks.base import (
    ChangedIssue,
    DeskCommentView,
    DeskIssueView,
    ExternalTicket,
    FieldChange,
    text_marker,
)
from sidecar.errors import DeskError
from sidecar.timestamps import iso_seconds
from sidecar.together import together

if TYPE_CHECKING:
    from sidecar.desks.waldur import WaldurDesk

log = logging.getLogger(__name__)
OVERLAP = 60.0  # seconds read again before `since`: clock skew between Waldur and the sidecar, and ties
CLAIM_PREFIX = "virtengine:"
NO_AUTHOR = "Waldur support"


def parse_time(value: Any) -> float | None:
    """Unix seconds of an ISO-8601 stamp with or without offset (naive is UTC); None when unparsable."""
    return iso_seconds(value)


def parse_uuid(value: str, *, link: bool = False) -> UUID | None:
    """A UUID (32 hex digits or dashed), or with `link` the one a hyperlink ends in (`.../api/<kind>/<uuid>/`)."""
    from sidecar.desks.waldur import _uuid  # waldur.py imports this module

    return _uuid(value.rstrip("/").rsplit("/", 1)[-1] if link else value)


def _bad(op: str, name: str) -> DeskError:
    return DeskError(f"waldur {op}: answer has an invalid {name!r}", retryable=False)


def _optional_uuid(answer: dict[str, Any], name: str, op: str, *, link: bool = False) -> str | None:
    """A uuid field (or hyperlink) as 32 hex digits; absent or null is None, anything else malformed an error."""
    value = answer.get(name)
    if value is None:
        return None
    found = parse_uuid(value, link=link) if isinstance(value, str) else None
    if found is None:
        raise _bad(op, name)
    return found.hex


async def read_own_account(desk: WaldurDesk) -> str:
    """The token user's uuid from GET /users/me/ (hex), remembered on the desk for echo suppression."""
    op = "read own account"
    me = desk.http.json_object(op, await desk.http.request(op, "GET", "/users/me/"))
    own = _optional_uuid(me, "uuid", op)
    if own is None:
        raise _bad(op, "uuid")
    username = me.get("username")
    if desk.config.username and isinstance(username, str) and username != desk.config.username:
        log.warning("waldur.username is not the token's user: the token's user is what counts as the sidecar")
    desk.own_uuid = own
    return own


async def _known_self(desk: WaldurDesk) -> str:
    """Inbound never reads changes while it cannot tell the sidecar's own (check() normally learnt it)."""
    return desk.own_uuid if desk.own_uuid is not None else await read_own_account(desk)


async def changed_since(desk: WaldurDesk, since: float) -> list[ChangedIssue]:
    """The organization's issues modified at or after `since - OVERLAP`, oldest first (see the module doc)."""
    await _known_self(desk)
    op = "list changed issues"
    params = {"o": "-modified"}
    if desk.config.organization_uuid:
        params["customer_uuid"] = desk.config.organization_uuid
    floor = since - OVERLAP
    found: dict[str, ChangedIssue] = {}
    async with aclosing(desk._pages(op, "/support-issues/", params)) as pages:
        async for issue in pages:
            modified = parse_time(issue.get("modified"))
            if modified is None:
                raise _bad(op, "modified")
            if modified < floor:
                break
            ref = desk._ref(issue, op)
            # An issue saved while the list is paged moves to its front: it may come twice (kept once) or be
            # missed this time, and then the next sweep (its `since` taken before this one began) finds it.
            if ref.external_id not in found or (found[ref.external_id].updated_at or 0) < modified:
                found[ref.external_id] = ChangedIssue(ref.external_id, ref.key, modified)
    return sorted(found.values(), key=lambda c: c.updated_at or 0.0)


def comment_view(item: dict[str, Any], op: str) -> DeskCommentView:
    """One comment answer as inbound sees it; a field of the wrong type is a DeskError."""
    ident = _optional_uuid(item, "uuid", op)
    text, public, name = item.get("description"), item.get("is_public"), item.get("author_name")
    if ident is None:
        raise _bad(op, "uuid")
    if not isinstance(text, str):
        raise _bad(op, "description")
    if not isinstance(public, bool):  # never guess that a comment is public
        raise _bad(op, "is_public")
    if name is not None and not isinstance(name, str):
        raise _bad(op, "author_name")
    author = _optional_uuid(item, "author_uuid", op) or _optional_uuid(item, "author_user", op, link=True)
    return DeskCommentView(
        comment_id=ident,
        author_id=author,
        author_name=name or NO_AUTHOR,
        public=public,
        text=text,
        created_at=parse_time(item.get("created")),
        marker=text_marker(text),
    )


async def comments_since(desk: WaldurDesk, since: float) -> list[tuple[str, DeskCommentView]]:
    """(issue uuid hex, comment) for comments created at or after `since - OVERLAP`, oldest first; the sidecar's
    own (its account's, or carrying its marker) are left out: inbound takes them for echoes, so a re-read they
    queued would find nothing (the sidecar's notes and mirrored replies queued one each, every sweep)."""
    own = await _known_self(desk)
    op = "list new comments"
    floor = since - OVERLAP
    found: dict[str, tuple[str, DeskCommentView]] = {}
    async with aclosing(desk._pages(op, "/support-comments/", {"o": "-created"})) as pages:
        async for item in pages:
            view = comment_view(item, op)
            if view.created_at is None:
                raise _bad(op, "created")
            if view.created_at < floor:
                break
            issue = _optional_uuid(item, "issue", op, link=True) or _optional_uuid(item, "issue_uuid", op)
            if issue is None:
                raise _bad(op, "issue")
            if view.marker is None and view.author_id != own:
                found.setdefault(view.comment_id, (issue, view))
    return sorted(found.values(), key=lambda pair: pair[1].created_at or 0.0)


async def attachments_since(desk: WaldurDesk, since: float) -> list[str]:
    """Issue uuids (hex) with an attachment created at or after `since - OVERLAP`. With no server-side order
    every page is read (an early stop could skip a new file): the cost grows with the attachments visible."""
    op = "list new attachments"
    floor = since - OVERLAP
    found: set[str] = set()
    async with aclosing(desk._pages(op, "/support-attachments/", {})) as pages:
        async for item in pages:
            created = parse_time(item.get("created"))
            if created is None:
                raise _bad(op, "created")
            if created < floor:
                continue
            issue = _optional_uuid(item, "issue", op, link=True)
            if issue is None:
                raise _bad(op, "issue")
            found.add(issue)
    return sorted(found)


async def read_issue(desk: WaldurDesk, ref: ExternalTicket) -> DeskIssueView:
    """The issue's status, priority and assignee (their change: the issue's `modified`, Waldur keeping no
    changelog) and all its comments, oldest first."""
    await _known_self(desk)
    op = f"read {ref.key}"
    uuid = desk._ref_uuid(ref)
    # The issue (always asked: never a job's earlier view), its comments and its files at once: three answers
    # in one round trip's time, not three.
    issue, comments, attachments = await together(
        desk._get_issue(uuid, op), _comments(desk, uuid.hex, ref.key), waldur_files.list_attachments(desk, ref)
    )
    fresh = desk._ref(issue, op)
    if fresh.external_id != uuid.hex:
        raise _bad(op, "uuid")
    stamp, status, priority = issue.get("modified"), issue.get("status"), issue.get("priority")
    if not isinstance(stamp, str) or not stamp:
        raise _bad(op, "modified")
    if not isinstance(status, str):
        raise _bad(op, "status")
    if priority is not None and not isinstance(priority, str):
        raise _bad(op, "priority")
    assignee = _optional_uuid(issue, "assignee_uuid", op)
    if assignee is None:  # assignee_uuid is left out over a null link; the hyperlink says the same
        assignee = _optional_uuid(issue, "assignee", op, link=True)
    changed_at = parse_time(stamp)
    fields = {
        "status": FieldChange(status, stamp, changed_at),
        "priority": FieldChange(priority or None, stamp, changed_at),
        "assignee": FieldChange(assignee, stamp, changed_at),
    }
    rid = issue.get("remote_id")
    if rid is not None and not isinstance(rid, str):
        raise _bad(op, "remote_id")
    # Only the sidecar's own claim counts: a remote_id some other integration set names no chain ticket.
    claim = rid[len(CLAIM_PREFIX) :] if rid and rid.startswith(CLAIM_PREFIX) else None
    return DeskIssueView(
        ref=fresh,
        updated_at=changed_at,
        fields=fields,
        comments=tuple(comments),
        claim=claim or None,
        attachments=tuple(attachments),  # AttachmentFilter.issue_uuid; Waldur has no internal attachments
    )


async def _comments(desk: WaldurDesk, issue_uuid: str, key: str) -> list[DeskCommentView]:
    """All the issue's comments, oldest first."""
    op = f"list comments of {key}"
    params = {"issue_uuid": issue_uuid, "o": "created"}
    return [comment_view(item, op) async for item in desk._pages(op, "/support-comments/", params)]
