"""Waldur's support module behind the Desk protocol, through waldur-api-client's asyncio API.

The generated client runs on the desk's own pooled httpx client (DeskHttp), so every call is
counted and translated at the same edge as Jira's. Waldur's API cannot change an issue's status,
priority or type after creation (PatchedIssueRequest has summary/description/assignee only; the
status belongs to Waldur's backend), so those chain changes reach the agents as internal notes,
posted once per value; the issue's `remote_id` (`virtengine:<ticket id>`) is the idempotency key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar
from uuid import UUID

import httpx
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.customers import customers_retrieve
from waldur_api_client.api.support_comments import support_comments_list
from waldur_api_client.api.support_issues import (
    support_issues_comment,
    support_issues_create,
    support_issues_list,
    support_issues_partial_update,
    support_issues_retrieve,
)
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models import (
    Comment,
    CommentOEnum,
    CommentRequest,
    Issue,
    IssueRequest,
    PatchedIssueRequest,
)
from waldur_api_client.types import Response

from sidecar.config_schema import WaldurConfig
from sidecar.desks.base import (
    DeskComment,
    DeskName,
    DeskTicketState,
    ExternalTicket,
    TicketSnapshot,
    UnmappedValue,
    comment_plain_text,
    marker_line,
    text_marker,
)
from sidecar.desks.http import DeskHttp
from sidecar.desks.mapping import DeskMapping, FieldMap, waldur_mapping
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
PLACEHOLDER = "(encrypted content not available to the desk)"
PAGE_SIZE = 100


def remote_id(ticket_id: str) -> str:
    return f"virtengine:{ticket_id}"


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
    ) -> None:
        self.config = config
        self.mapping: DeskMapping = waldur_mapping(config)
        self.api_url = config.base_url.rstrip("/")
        # The generated client's paths start with /api/, so it wants the server root.
        root = self.api_url[: -len("/api")] if self.api_url.endswith("/api") else self.api_url
        self.http = DeskHttp(
            "waldur",
            root,
            timeout=config.timeout,
            metrics=metrics,
            secrets=(token,),
            headers={"Authorization": f"Token {token}"},
            allow_insecure_http=allow_insecure_http,
            requests_per_second=config.requests_per_second,
            transport=transport,
        )
        self.api = AuthenticatedClient(base_url=self.http.base_url, token=token, prefix="Token")
        self.api.set_async_httpx_client(self.http.client)
        self.page_size = PAGE_SIZE
        # Waldur's issue list is a query on its own database, read after write on one primary: an issue
        # it has created is found by the next lookup, so a create retried after a lost answer need
        # not wait for an index (and remote_id is unique besides: a second create is refused).
        self.index_lag = 0.0

    def unmapped(self, ticket: TicketSnapshot) -> tuple[UnmappedValue, ...]:
        return self.mapping.unmapped(ticket.priority, ticket.status, ticket.category, ticket.assigned_agent)

    # creating and finding -------------------------------------------------------------------
    async def create(self, ticket: TicketSnapshot) -> ExternalTicket:
        op = f"create issue for {ticket.ticket_number}"
        subject = ticket.subject if ticket.content_available and ticket.subject else PLACEHOLDER
        body = IssueRequest(
            type_=self._value(self.mapping.category, ticket.category, "type"),
            summary=f"[{ticket.ticket_number}] {subject}"[:255],
            remote_id=remote_id(ticket.ticket_id),
            description=self._describe(ticket),
            priority=self._value(self.mapping.priority, ticket.priority, "priority"),
        )
        if self.config.organization_uuid:
            body.customer = f"{self.api_url}/customers/{self.config.organization_uuid}/"
        if self.config.project_uuid:
            body.project = f"{self.api_url}/projects/{self.config.project_uuid}/"
        try:
            issue = await self._run(op, support_issues_create.asyncio_detailed(client=self.api, body=body))
        except DeskError as exc:
            # remote_id is unique: a 400 on it means an earlier attempt landed; adopt that issue.
            if exc.status == 400 and "remote_id" in str(exc):
                found = await self.find(ticket)
                if found is not None:
                    return found
            raise
        return self._ref(issue)

    async def find(self, ticket: TicketSnapshot, known_ids: tuple[str, ...] = ()) -> ExternalTicket | None:
        """The issue whose remote_id is exactly this ticket's (Waldur's list is consistent: `known_ids` is not
        needed). The server's `remote_id` filter is `icontains`, newest first, paged: page through, match exactly."""
        wanted = remote_id(ticket.ticket_id)
        page = 1
        while True:
            pending = support_issues_list.asyncio_detailed(
                client=self.api, remote_id=wanted, page=page, page_size=self.page_size
            )
            box: list[httpx.Headers] = []
            issues: list[Issue] = await self._run(f"find {ticket.ticket_number}", pending, box)
            for issue in issues:
                if issue.remote_id == wanted:
                    return self._ref(issue)
            total = int(box[0].get("x-result-count", "0") if box else 0)
            if not issues or page * self.page_size >= total:
                return None
            page += 1

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
            issue: Issue = await self._run(op, support_issues_retrieve.asyncio_detailed(uuid, client=self.api))
        except DeskError as exc:
            if exc.status == 404:
                return None
            raise
        return self._ref(issue) if issue.remote_id == remote_id(ticket.ticket_id) else None

    # reading ----------------------------------------------------------------------------------
    async def fetch(self, ref: ExternalTicket) -> DeskTicketState:
        issue = await self._issue(ref, f"fetch {ref.key}")
        priority = issue.priority if isinstance(issue.priority, str) else None
        return DeskTicketState(
            ref=ref,
            status=issue.status,
            priority=priority,
            updated=issue.modified.isoformat(),
            properties={"remote_id": issue.remote_id if isinstance(issue.remote_id, str) else None},
        )

    async def has_comment(self, ref: ExternalTicket, marker: str) -> bool:
        async for comment in self._comments(ref):
            if text_marker(comment.description) == marker:
                return True
        return False

    # writing ----------------------------------------------------------------------------------
    async def update_fields(self, ref: ExternalTicket, ticket: TicketSnapshot) -> None:
        """Priority and type cannot be edited over the API: a note tells the agents, once per value.
        The assignee can: it is set when the chain agent is in waldur.assignee_map."""
        issue = await self._issue(ref, f"read {ref.key}")
        user = self.mapping.desk_assignee(ticket.assigned_agent)
        if user and str(issue.assignee_uuid or "").replace("-", "") != user.replace("-", ""):
            body = PatchedIssueRequest(assignee=f"{self.api_url}/support-users/{user}/")
            op = f"assign {ref.key}"
            await self._run(
                op, support_issues_partial_update.asyncio_detailed(self._ref_uuid(ref), client=self.api, body=body)
            )
        priority = self._value(self.mapping.priority, ticket.priority, "priority")
        kind = self._value(self.mapping.category, ticket.category, "type")
        if issue.priority == priority and issue.type_ == kind:
            return
        await self._note_once(
            ref,
            f"fields:{priority}:{kind}",
            f"On chain this ticket is now priority {ticket.priority!r} ({priority}) and category "
            f"{ticket.category!r} ({kind}).",
        )

    async def set_status(self, ref: ExternalTicket, chain_status: str) -> None:
        """Waldur's backend owns the status: state the chain status in a note unless the issue already shows it."""
        target = self.mapping.status.to_desk(chain_status).value
        if target is None:
            raise DeskError(f"waldur set status of {ref.key}: no status mapped for {chain_status!r}", retryable=False)
        issue = await self._issue(ref, f"read {ref.key}")
        if issue.status.lower() == target.lower():
            return
        await self._note_once(
            ref, f"status:{chain_status}", f"On chain this ticket is now {chain_status!r} ({target})."
        )

    async def add_comment(self, ref: ExternalTicket, comment: DeskComment) -> None:
        await self._post(ref, comment_plain_text(comment), is_public=not comment.internal)

    async def close(self, ref: ExternalTicket, reason: str) -> None:
        """A public comment saying why (once); Waldur's API cannot close the issue itself."""
        if not await self.has_comment(ref, "close"):
            await self._post(
                ref, f"Closed by the VirtEngine sidecar: {reason}.\n\n{marker_line('close')}", is_public=True
            )

    async def check(self) -> None:
        if self.config.organization_uuid:
            pending = customers_retrieve.asyncio_detailed(UUID(self.config.organization_uuid), client=self.api)
            await self._run("check", pending)
        else:
            await self._run("check", support_issues_list.asyncio_detailed(client=self.api, page_size=1))

    async def aclose(self) -> None:
        await self.http.aclose()

    # helpers ----------------------------------------------------------------------------------
    async def _run(self, op: str, pending: Any, box: list[httpx.Headers] | None = None) -> Any:
        """Await a generated-client call: transport errors and non-2xx become DeskError; the parsed model returns."""
        box = [] if box is None else box
        try:
            response: Response[Any] = await self.http.call(op, pending, box)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # The generated models index the answer's fields: one missing or of the wrong type is a bad answer.
            raise DeskError(f"waldur {op}: malformed answer ({type(exc).__name__})", retryable=False) from exc
        except UnexpectedStatus as exc:  # this client version raises on any status it has no model for
            headers = box[0] if box else httpx.Headers()
            self.http.raise_for_status(op, exc.status_code, headers, exc.content)
            raise DeskError(f"waldur {op}: unexpected HTTP {exc.status_code}", retryable=False) from exc
        self.http.raise_for_status(op, int(response.status_code), response.headers, response.content)
        if response.parsed is None:
            raise DeskError(f"waldur {op}: unexpected answer (HTTP {int(response.status_code)})", retryable=False)
        return response.parsed

    async def _issue(self, ref: ExternalTicket, op: str) -> Issue:
        issue: Issue = await self._run(
            op, support_issues_retrieve.asyncio_detailed(self._ref_uuid(ref), client=self.api)
        )
        return issue

    @staticmethod
    def _ref_uuid(ref: ExternalTicket) -> UUID:
        uuid = _uuid(ref.external_id)
        if uuid is None:
            raise DeskError("waldur: the stored issue id is not a UUID", retryable=False)
        return uuid

    async def _comments(self, ref: ExternalTicket) -> AsyncIterator[Comment]:
        page = 1
        while True:
            pending = support_comments_list.asyncio_detailed(
                client=self.api,
                issue_uuid=self._ref_uuid(ref),
                o=[CommentOEnum.CREATED],
                page=page,
                page_size=self.page_size,
            )
            box: list[httpx.Headers] = []
            comments: list[Comment] = await self._run(f"list comments of {ref.key}", pending, box)
            for comment in comments:
                yield comment
            total = int(box[0].get("x-result-count", "0") if box else 0)
            if page * self.page_size >= total:
                return
            page += 1

    async def _note_once(self, ref: ExternalTicket, marker: str, text: str) -> None:
        """An internal note, skipped when the newest note of the same kind already says this."""
        kind = marker.split(":", 1)[0] + ":"
        latest = None
        async for comment in self._comments(ref):
            found = text_marker(comment.description)
            if found is not None and found.startswith(kind):
                latest = found
        if latest != marker:
            await self._post(ref, f"{text}\n\n{marker_line(marker)}", is_public=False)

    async def _post(self, ref: ExternalTicket, text: str, *, is_public: bool) -> None:
        body = CommentRequest(description=text, is_public=is_public)
        op = f"comment on {ref.key}"
        await self._run(op, support_issues_comment.asyncio_detailed(self._ref_uuid(ref), client=self.api, body=body))

    def _value(self, table: FieldMap | None, chain_value: str, field: str) -> str:
        assert table is not None  # Waldur's mapping has every table
        mapped = table.to_desk(chain_value)
        if mapped.unmapped is not None:
            log.warning(
                "unmapped chain value",
                extra={"desk": "waldur", "field": field, "value": chain_value, "used": mapped.value},
            )
        return str(mapped.value)

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

    def _ref(self, issue: Issue) -> ExternalTicket:
        return ExternalTicket("waldur", issue.uuid.hex, issue.key, issue.url)


def _uuid(value: str) -> UUID | None:
    """A UUID written as 32 hex digits or in the dashed form; None for anything else."""
    if not re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value):
        return None
    return UUID(value)
