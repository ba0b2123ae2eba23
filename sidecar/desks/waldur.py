"""Waldur's support module behind the Desk protocol: a small typed client on the desk's DeskHttp.

Only the endpoints the sidecar uses, only the fields it reads: Waldur leaves fields out of answers
in normal cases (comment authors without a Waldur user, routing fields for non-staff), so answers are
read as raw JSON and a field the sidecar needs that is missing is a non-retryable DeskError for that
job. Issues are created with `is_reported_manually: true` (the sidecar's user is the caller: the
server refuses `false` without a `caller`). `type` must name an active request type and `priority` an
existing priority: both lists are read at start and every `catalog_refresh` (see `Catalog`). Status
moves through `set_status` where the issue's backend allows updates; elsewhere, and for priority and
type (not editable after create), the agents get an internal note, posted once per value. The issue's
`remote_id` (`virtengine:<ticket id>`) is the idempotency key.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from sidecar.config_schema import WaldurConfig
from sidecar.desks import waldur_files, waldur_read
from sidecar.desks.base import (
    SYNCED_FIELDS,
    ChangedIssue,
    DeskComment,
    DeskCommentView,
    DeskIssueView,
    DeskName,
    DeskTicketState,
    ExternalTicket,
    TicketSnapshot,
    UnmappedValue,
    comment_plain_text,
    marker_line,
    saw_issue,
    seen_issue,
    text_marker,
)
from sidecar.desks.files import DeskAttachment
from sidecar.desks.http import DeskHttp
from sidecar.desks.mapping import DeskMapping, waldur_mapping
from sidecar.digits import is_decimal
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from sidecar.recent import Recent

log = logging.getLogger(__name__)
PLACEHOLDER = "(encrypted content not available to the desk)"
PAGE_SIZE = 100
NOTES_REMEMBERED = 10_000  # issues' newest notes kept in memory (a few MB at most; the oldest go first)
MAX_PAGES = 1000  # a list that never ends (a hostile or broken server) stops here
SUMMARY_MAX = 255  # waldur-mastermind support/backend SupportBackend.summary_max_length
_UUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def remote_id(ticket_id: str) -> str:
    return f"virtengine:{ticket_id}"


@dataclass(frozen=True)
class Catalog:
    """What this Waldur accepts for `type` (active request types, in Waldur's order: the first is its
    default) and `priority` (existing priority names, matched exactly as the server does)."""

    types: tuple[str, ...]
    priorities: frozenset[str]
    read_at: float

    def problems(self, config: WaldurConfig) -> list[str]:
        """Each configured type or priority this Waldur does not have, named (for a startup warning)."""
        found = [
            f"waldur.type_map: {chain!r} -> {name!r} is not an active request type"
            for chain, name in config.type_map
            if name not in self.types
        ]
        found += [
            f"waldur.priority_map: {chain!r} -> {name!r} is not a Waldur priority"
            for chain, name in config.priority_map
            if name not in self.priorities
        ]
        if config.default_priority and config.default_priority not in self.priorities:
            found.append(f"waldur.default_priority: {config.default_priority!r} is not a Waldur priority")
        if not self.types:
            found.append("Waldur has no active request type: every create will be refused")
        return found


class WaldurDesk:
    """One Waldur deployment and organization; the engine owns its lifetime (`aclose`)."""

    name: DeskName = "waldur"

    def __init__(
        self,
        config: WaldurConfig,
        token: str,
        *,
        metrics: Metrics,
        allow_insecure_http: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.mapping: DeskMapping = waldur_mapping(config)
        self.http = DeskHttp(
            "waldur",
            config.base_url,
            timeout=config.timeout,
            metrics=metrics,
            secrets=(token,),
            headers={"Authorization": f"Token {token}"},
            allow_insecure_http=allow_insecure_http,
            requests_per_second=config.requests_per_second,
            max_connections=config.max_concurrency,  # outbound jobs and inbound re-reads share them
            transport=transport,
        )
        self.api_url = self.http.base_url  # ends in /api: hyperlinks are built on it
        self.page_size = PAGE_SIZE
        # Waldur's issue list is a query on its own database, read after write on one primary: an issue
        # it has created is found by the next lookup, so a create retried after a lost answer need
        # not wait for an index (and remote_id is unique besides: a second create is refused).
        self.index_lag = 0.0
        self.unique_creates = True  # remote_id: models.py Issue.remote_id unique=True (a 400 on a second create)
        self.catalog: Catalog | None = None
        self._clock = clock
        self._warned: tuple[str, ...] = ()
        # Tickets whose values were checked (`unmapped`) before the catalog was known: their job is
        # retried once the catalog is read, so a type or priority Waldur lacks is audited, not lost.
        self._blind: dict[str, tuple[UnmappedValue | None, ...]] = {}
        # The token user's uuid (hex), learnt by check() or the first inbound read: what counts as an echo.
        self.own_uuid: str | None = None
        # The newest note of each kind seen on an issue while this process runs (listed, or posted and
        # answered): (issue uuid hex, kind) -> its marker ("" for none). Only the sidecar writes these notes,
        # so a known issue needs no listing before the next; a post whose answer was lost is forgotten (the
        # next note of that kind lists again and finds it), and a restart starts over.
        self._notes: Recent[tuple[str, str], str] = Recent(NOTES_REMEMBERED)

    # values -----------------------------------------------------------------------------------
    def unmapped(self, ticket: TicketSnapshot) -> tuple[UnmappedValue, ...]:
        """Chain values only a default stands in for, and (once the catalog is read) mapped values this
        Waldur does not have: a type falls back to Waldur's first active type, a priority is left out."""
        found = [self.mapping.status.to_desk(ticket.status).unmapped]
        if ticket.assigned_agent:
            found.append(self.mapping.assignee.to_desk(ticket.assigned_agent).unmapped)
        values = (self._type(ticket.category)[1], self._priority(ticket.priority)[1])
        if self.catalog is None:
            self._blind[ticket.ticket_id] = values
        else:
            self._blind.pop(ticket.ticket_id, None)
        return tuple(u for u in (*found, *values) if u is not None)

    def _type(self, category: str) -> tuple[str | None, UnmappedValue | None]:
        """The request type to send and, when it is not the mapped one, why."""
        assert self.mapping.category is not None  # Waldur's mapping has a type table
        mapped = self.mapping.category.to_desk(category)
        if self.catalog is None:
            return mapped.value, mapped.unmapped
        if mapped.value is not None and mapped.value in self.catalog.types:
            return mapped.value, mapped.unmapped
        used = self.catalog.types[0] if self.catalog.types else None
        return used, UnmappedValue("waldur", "type", category, used)

    def _priority(self, priority: str) -> tuple[str | None, UnmappedValue | None]:
        """The priority to send (None: none) and, when it is not the mapped one, why. An empty
        priority_map and default_priority mean priorities are not synced: nothing is reported."""
        if not self.config.priority_map and not self.config.default_priority:
            return None, None
        mapped = self.mapping.priority.to_desk(priority)
        value = mapped.value or None
        if self.catalog is None or value is None or value in self.catalog.priorities:
            unmapped = mapped.unmapped
            if unmapped is not None and value is None:
                unmapped = UnmappedValue("waldur", "priority", priority, None)
            return value, unmapped
        return None, UnmappedValue("waldur", "priority", priority, None)

    # catalog ----------------------------------------------------------------------------------
    async def refresh_catalog(self) -> Catalog:
        """Read the active request types and the priorities; warn (once per change) about each
        configured value this Waldur does not have."""
        types: list[tuple[int, int, str]] = []
        async for item in self._pages("read request types", "/support-request-types/", {}):
            name = item.get("name")
            if isinstance(name, str) and name and item.get("is_active", True) is not False:
                order = item.get("order")
                types.append((order if isinstance(order, int) else 0, len(types), name))
        priorities: set[str] = set()
        async for item in self._pages("read priorities", "/support-priorities/", {}):
            name = item.get("name")
            if isinstance(name, str) and name:
                priorities.add(name)
        catalog = Catalog(tuple(name for _, _, name in sorted(types)), frozenset(priorities), self._clock())
        self.catalog = catalog
        problems = tuple(catalog.problems(self.config))
        if problems != self._warned:
            self._warned = problems
            for problem in problems:
                log.warning("waldur configuration does not match the server", extra={"problem": problem})
        return catalog

    async def _ensure_catalog(self, ticket: TicketSnapshot | None = None) -> None:
        """Read the catalog when missing or older than waldur.catalog_refresh. A ticket whose values were
        checked without it, and which the catalog shows lacking, is retried so the gap gets audited."""
        if self.catalog is None or self._clock() - self.catalog.read_at >= self.config.catalog_refresh:
            await self.refresh_catalog()
        if ticket is None or ticket.ticket_id not in self._blind:
            return
        reported = self._blind.pop(ticket.ticket_id)
        now = (self._type(ticket.category)[1], self._priority(ticket.priority)[1])
        late = [u for u in now if u is not None and u not in reported]
        if late:
            raise DeskError(
                "waldur: request types and priorities were read only now and this ticket's "
                f"{' and '.join(u.field for u in late)} is not among them; retried so it is audited",
                retryable=True,
                scope="issue",
            )

    # creating and finding -------------------------------------------------------------------
    async def create(self, ticket: TicketSnapshot) -> ExternalTicket:
        op = f"create issue for {ticket.ticket_number}"
        await self._ensure_catalog(ticket)
        subject = ticket.subject if ticket.content_available and ticket.subject else PLACEHOLDER
        body: dict[str, Any] = {
            "summary": " ".join(f"[{ticket.ticket_number}] {subject}".split())[:SUMMARY_MAX],
            "description": self._describe(ticket),
            "remote_id": remote_id(ticket.ticket_id),
            # The sidecar's own user is the caller; `false` needs a `caller` (support/serializers.py validate).
            "is_reported_manually": True,
        }
        kind, priority = self._type(ticket.category)[0], self._priority(ticket.priority)[0]
        if kind is not None:
            body["type"] = kind
        if priority is not None:
            body["priority"] = priority
        if self.config.organization_uuid:
            body["customer"] = f"{self.api_url}/customers/{self.config.organization_uuid}/"
        if self.config.project_uuid:
            body["project"] = f"{self.api_url}/projects/{self.config.project_uuid}/"
        try:
            response = await self.http.request(op, "POST", "/support-issues/", json_body=body)
        except DeskError as exc:
            exc.nothing_created = exc.status is not None and 400 <= exc.status < 500
            # remote_id is unique: a 400 on it means an earlier attempt landed (the caller adopts that issue).
            exc.already_exists = exc.status == 400 and "remote_id" in str(exc) and "already exists" in str(exc)
            raise
        answer = self.http.json_object(op, response)
        ref = self._ref(answer, op)
        self._saw(ref, answer)  # the create's answer is the new issue: the job's read-back (modified moves)
        return ref

    async def find(self, ticket: TicketSnapshot, known_ids: tuple[str, ...] = ()) -> ExternalTicket | None:
        """The issue whose remote_id is exactly this ticket's (Waldur's list is consistent: `known_ids` is not
        needed). The server's `remote_id` filter is `icontains` (`.../1` also matches `.../10`), newest first,
        paged: every page is read and only an exact match counts."""
        wanted = remote_id(ticket.ticket_id)
        params = {"remote_id": wanted, "o": "-created"}
        async for issue in self._pages(f"find {ticket.ticket_number}", "/support-issues/", params):
            if issue.get("remote_id") == wanted:
                return self._ref(issue, f"find {ticket.ticket_number}")
        return None

    def ref_problem(self, external_id: str) -> str | None:
        """Why an id registered on chain cannot be a Waldur issue (None: it is a UUID)."""
        return None if _uuid(external_id) is not None else "not a Waldur issue UUID"

    async def claimed(self, ticket: TicketSnapshot, external_id: str) -> ExternalTicket | None:
        """The issue behind a ref registered on chain, if its remote_id is this ticket's (the sidecar's claim)."""
        uuid = _uuid(external_id)
        if uuid is None:
            return None
        op = f"check ref of {ticket.ticket_number}"
        try:
            issue = await self._get_issue(uuid, op)
        except DeskError as exc:
            if exc.status == 404:
                return None
            raise
        return self._ref(issue, op) if issue.get("remote_id") == remote_id(ticket.ticket_id) else None

    # reading ----------------------------------------------------------------------------------
    async def fetch(self, ref: ExternalTicket) -> DeskTicketState:
        op = f"fetch {ref.key}"
        issue = await self._issue(ref, op)
        priority, modified, rid = issue.get("priority"), issue.get("modified"), issue.get("remote_id")
        return DeskTicketState(
            ref=ref,
            status=_text(issue, "status", op),
            priority=priority if isinstance(priority, str) and priority else None,
            updated=modified if isinstance(modified, str) else "",
            properties={"remote_id": rid if isinstance(rid, str) else None},
        )

    async def has_comment(self, ref: ExternalTicket, marker: str) -> bool:
        async for comment in self._comments(ref):
            if text_marker(comment) == marker:
                return True
        return False

    # writing ----------------------------------------------------------------------------------
    async def update_fields(
        self, ref: ExternalTicket, ticket: TicketSnapshot, only: frozenset[str] = SYNCED_FIELDS
    ) -> None:
        """Priority and type cannot be edited after create (protected fields): a note tells the agents,
        once per value. The assignee is set by PATCH when the chain agent is in waldur.assignee_map and
        the issue's backend allows updates (`update_is_available`); otherwise it is left (logged)."""
        await self._ensure_catalog(ticket)
        op = f"read {ref.key}"
        issue = await self._issue(ref, op)
        user = self.mapping.desk_assignee(ticket.assigned_agent) if "assignee" in only else None
        current = issue.get("assignee_uuid")
        if user and str(current or "").replace("-", "").lower() != user.replace("-", "").lower():
            if issue.get("update_is_available") is False:
                log.warning("waldur issue cannot be updated: assignee left as is", extra={"key": ref.key})
            else:
                body = {"assignee": f"{self.api_url}/support-users/{user}/"}
                saw_issue("waldur", ref.external_id, None)  # until an answer shows the updated issue
                try:
                    answer = await self.http.request(f"assign {ref.key}", "PATCH", self._path(ref), json_body=body)
                    self._saw(ref, self._answer(f"assign {ref.key}", answer))
                except DeskError as exc:
                    if exc.status != 400 or "Updating is not available" not in str(exc):
                        raise
                    log.warning("waldur issue cannot be updated: assignee left as is", extra={"key": ref.key})
        priority = self._priority(ticket.priority)[0]
        kind = self._type(ticket.category)[0]
        same_priority = priority is None or "priority" not in only or issue.get("priority") == priority
        if same_priority and issue.get("type") == kind:
            return
        shown = f"priority {ticket.priority!r}" + (f" ({priority})" if priority else "")
        await self._note_once(
            ref,
            f"fields:{priority or '-'}:{kind}",
            f"On chain this ticket is now {shown} and category {ticket.category!r} ({kind}).",
        )

    async def set_status(self, ref: ExternalTicket, chain_status: str) -> None:
        """Move the issue with `set_status` where its backend allows updates; elsewhere (or when Waldur
        refuses the move) state the chain status in an internal note, unless the issue already shows it."""
        target = self._status_target(ref, chain_status)
        issue = await self._issue(ref, f"read {ref.key}")
        if _text(issue, "status", f"read {ref.key}").lower() == target.lower():
            return
        if await self._move(ref, issue, target):
            return
        await self._note_once(
            ref, f"status:{chain_status}", f"On chain this ticket is now {chain_status!r} ({target})."
        )

    async def add_comment(self, ref: ExternalTicket, comment: DeskComment) -> None:
        await self._post(ref, comment_plain_text(comment), is_public=not comment.internal)

    async def close(self, ref: ExternalTicket, reason: str) -> None:
        """A public comment saying why (once), then the status mapped for `closed` where the backend allows."""
        if not await self.has_comment(ref, "close"):
            await self._post(
                ref, f"Closed by the VirtEngine sidecar: {reason}.\n\n{marker_line('close')}", is_public=True
            )
        target = self.mapping.status.to_desk("closed").value
        if not target:
            return  # no status mapped for `closed`: the comment is all
        issue = await self._issue(ref, f"read {ref.key}")
        if _text(issue, "status", f"read {ref.key}").lower() != target.lower():
            await self._move(ref, issue, target)  # refused: the public comment has said it

    async def check(self) -> None:
        """The organization (or one issue page) for health; the catalog too when it is due."""
        if self.config.organization_uuid:
            await self.http.request("check", "GET", f"/customers/{self.config.organization_uuid}/")
        else:
            await self.http.request("check", "GET", "/support-issues/", params={"page_size": "1"})
        try:
            await self._ensure_catalog()
        except DeskError as exc:
            # The desk answered the call above: a catalog it refuses to show (403/404 on an older Waldur or a
            # narrower role) must not make it look down and hold every job; a failure of the desk itself must.
            if exc.status is None or exc.status in (401, 429) or exc.status >= 500:
                raise
            log.warning("waldur: request types or priorities cannot be read", extra={"error": str(exc)})
        if self.own_uuid is None:
            try:
                await waldur_read.read_own_account(self)
            except DeskError as exc:  # the inbound reads learn it before they return anything
                log.warning("waldur: the sidecar's own user cannot be read yet", extra={"error": str(exc)})

    # inbound (ReadsChanges: sidecar/desks/waldur_read.py) ---------------------------------------
    def own_account(self) -> str | None:
        return self.own_uuid

    async def changed_since(self, since: float) -> list[ChangedIssue]:
        return await waldur_read.changed_since(self, since)

    async def comments_since(self, since: float) -> list[tuple[str, DeskCommentView]]:
        return await waldur_read.comments_since(self, since)

    async def attachments_since(self, since: float) -> list[str]:
        return await waldur_read.attachments_since(self, since)

    async def read_issue(self, ref: ExternalTicket) -> DeskIssueView:
        return await waldur_read.read_issue(self, ref)

    # attachments (HasAttachments: sidecar/desks/waldur_files.py) ---------------------------------
    async def list_attachments(self, ref: ExternalTicket) -> list[DeskAttachment]:
        return await waldur_files.list_attachments(self, ref)

    async def upload_attachment(
        self, ref: ExternalTicket, file_name: str, content_type: str, path: Path
    ) -> DeskAttachment:
        return await waldur_files.upload_attachment(self, ref, file_name, content_type, path)

    def download(self, attachment: DeskAttachment, max_bytes: int) -> AsyncIterator[bytes]:
        return waldur_files.download(self, attachment, max_bytes)

    async def aclose(self) -> None:
        await self.http.aclose()

    # helpers ----------------------------------------------------------------------------------
    def _status_target(self, ref: ExternalTicket, chain_status: str) -> str:
        target = self.mapping.status.to_desk(chain_status).value
        if not target:
            raise DeskError(f"waldur set status of {ref.key}: no status mapped for {chain_status!r}", retryable=False)
        return target

    async def _move(self, ref: ExternalTicket, issue: Mapping[str, Any], target: str) -> bool:
        """POST set_status when the issue says its backend allows updates; False when it does not, or when
        Waldur refuses this move (workflow, routed issue, "Updating is not available")."""
        if issue.get("update_is_available") is not True:
            return False
        offered = issue.get("available_statuses")  # where the answer lists them, a move outside is not tried
        if isinstance(offered, list) and target not in offered:
            return False
        op = f"set status of {ref.key}"
        saw_issue("waldur", ref.external_id, None)  # until an answer shows the moved issue
        try:
            answer = await self.http.request(op, "POST", self._path(ref, "set_status"), json_body={"status": target})
            self._saw(ref, self._answer(op, answer))
        except DeskError as exc:
            if exc.status != 400:
                raise
            log.warning("waldur refused the status change: a note says it", extra={"key": ref.key, "error": str(exc)})
            return False
        return True

    async def _pages(self, op: str, path: str, params: Mapping[str, str]) -> AsyncGenerator[dict[str, Any], None]:
        """Every object of a Waldur list (page/page_size, X-Result-Count); items that are not objects are skipped."""
        page = 1
        while page <= MAX_PAGES:
            query = {**params, "page": str(page), "page_size": str(self.page_size)}
            response = await self.http.request(op, "GET", path, params=query)
            items = self.http.json(op, response)
            if not isinstance(items, list):
                raise DeskError(f"waldur {op}: answer is not a JSON array", retryable=False)
            for item in items:
                if isinstance(item, dict):
                    yield item
            total = response.headers.get("x-result-count", "")
            more = page * self.page_size < int(total) if is_decimal(total) else len(items) >= self.page_size
            if not items or not more:
                return
            page += 1
        raise DeskError(f"waldur {op}: more than {MAX_PAGES} pages", retryable=False)

    async def _get_issue(self, uuid: UUID, op: str) -> dict[str, Any]:
        return self.http.json_object(op, await self.http.request(op, "GET", f"/support-issues/{uuid.hex}/"))

    async def _issue(self, ref: ExternalTicket, op: str) -> dict[str, Any]:
        """The issue as this job last saw it (its read, or the answer of its last write), else read and
        remembered (see base.remembering_reads)."""
        seen = seen_issue("waldur", ref.external_id)
        if seen is not None:
            return seen
        issue = await self._get_issue(self._ref_uuid(ref), op)
        self._saw(ref, issue)
        return issue

    def _answer(self, op: str, response: httpx.Response) -> dict[str, Any] | None:
        """A write's answer as an object: PATCH and set_status answer the serialized issue (DRF
        UpdateModelMixin.update returns serializer.data; waldur-api-client's support_issues_partial_update and
        support_issues_set_status parse an Issue); None for anything else (the write landed: only a read is lost)."""
        try:
            return self.http.json_object(op, response)
        except DeskError:
            return None

    def _saw(self, ref: ExternalTicket, issue: dict[str, Any] | None) -> None:
        """Remember the issue for this job's next read when the answer is this issue; otherwise forget it."""
        if issue is not None and _uuid(str(issue.get("uuid", ""))) == self._ref_uuid(ref):
            saw_issue("waldur", ref.external_id, issue if isinstance(issue.get("status"), str) else None)
        else:
            saw_issue("waldur", ref.external_id, None)

    def _path(self, ref: ExternalTicket, action: str = "") -> str:
        return f"/support-issues/{self._ref_uuid(ref).hex}/" + (f"{action}/" if action else "")

    @staticmethod
    def _ref_uuid(ref: ExternalTicket) -> UUID:
        uuid = _uuid(ref.external_id)
        if uuid is None:
            raise DeskError("waldur: the stored issue id is not a UUID", retryable=False)
        return uuid

    async def _comments(self, ref: ExternalTicket) -> AsyncIterator[str]:
        """The text of every comment on the issue, oldest first (a comment without text is skipped)."""
        params = {"issue_uuid": self._ref_uuid(ref).hex, "o": "created"}
        async for comment in self._pages(f"list comments of {ref.key}", "/support-comments/", params):
            text = comment.get("description")
            if isinstance(text, str):
                yield text

    async def _note_once(self, ref: ExternalTicket, marker: str, text: str) -> None:
        """An internal note, skipped when the newest note of the same kind already says this."""
        kind = marker.split(":", 1)[0] + ":"
        key = (self._ref_uuid(ref).hex, kind)
        latest = self._notes.get(key)
        if latest is None:
            latest = ""
            async for comment in self._comments(ref):
                found = text_marker(comment)
                if found is not None and found.startswith(kind):
                    latest = found
        if latest != marker:
            self._notes.forget(key)  # until the post is answered: a lost answer leaves it unknown
            await self._post(ref, f"{text}\n\n{marker_line(marker)}", is_public=False)
        self._notes.put(key, marker)

    async def _post(self, ref: ExternalTicket, text: str, *, is_public: bool) -> None:
        body = {"description": text, "is_public": is_public}
        await self.http.request(f"comment on {ref.key}", "POST", self._path(ref, "comment"), json_body=body)

    def _describe(self, ticket: TicketSnapshot) -> str:
        entity = ticket.related_entity or {}
        lines = [
            f"Ticket: {ticket.ticket_number}",
            f"Ticket ID: {ticket.ticket_id}",
            f"Category: {ticket.category}",
            f"Priority: {ticket.priority}",
            f"Submitter: {ticket.submitter}",
            "Related entity: " + (", ".join(f"{k}={v}" for k, v in sorted(entity.items())) or "-"),
            "",
        ]
        if ticket.content_available:
            lines.append(ticket.description or "(no description)")
        else:
            lines.append(f"Content not available: {ticket.content_reason or 'encrypted'}.")
        return "\n".join(lines)

    def _ref(self, issue: Mapping[str, Any], op: str) -> ExternalTicket:
        """The ref of an issue answer: its uuid is required; key and url fall back to what the uuid gives."""
        uuid = _uuid(str(issue.get("uuid", "")))
        if uuid is None:
            raise DeskError(f"waldur {op}: answer lacks a valid issue 'uuid'", retryable=False)
        key, url = issue.get("key"), issue.get("url")
        return ExternalTicket(
            "waldur",
            uuid.hex,
            key if isinstance(key, str) and key else uuid.hex,
            url if isinstance(url, str) and url else f"{self.api_url}/support-issues/{uuid.hex}/",
        )


def _text(answer: Mapping[str, Any], name: str, op: str) -> str:
    """A string field the sidecar needs; missing or of another type is a non-retryable DeskError."""
    value = answer.get(name)
    if not isinstance(value, str):
        raise DeskError(f"waldur {op}: answer lacks the {name!r} field", retryable=False)
    return value


def _uuid(value: str) -> UUID | None:
    """A UUID written as 32 hex digits or in the dashed form; None for anything else."""
    return UUID(value) if _UUID.fullmatch(value) else None
