"""Jira Cloud (platform REST v3, JSM for internal notes) behind the Desk protocol.

Idempotency: every issue carries the label `ve-<ticket number>` (JQL can search labels, not the
properties a REST client sets) and the issue property `virtengine` holding the ticket id, which
`find` checks so a label clash (a reset devnet, a hand-made label) is never adopted.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

import httpx

from sidecar.config_schema import CATEGORIES, JiraConfig
from sidecar.desks import jira_adf
from sidecar.desks.base import (
    DeskComment,
    DeskName,
    DeskTicketState,
    ExternalTicket,
    TicketSnapshot,
    UnmappedValue,
)
from sidecar.desks.http import DeskHttp
from sidecar.desks.mapping import DeskMapping, jira_mapping
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics

log = logging.getLogger(__name__)
PROPERTY_KEY = "virtengine"
PLACEHOLDER = "(encrypted content not available to the desk)"
CLOSE_MARKER = "close"
PAGE_SIZE = 100
_RECENT_MAX = 1024


def ticket_label(ticket_number: str) -> str:
    """`SUP-000123` -> `ve-sup-000123`: the searchable idempotency key."""
    return "ve-" + _label_safe(ticket_number)


def category_label(category: str) -> str:
    return "ve-category-" + _label_safe(category)


def _label_safe(value: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", value.lower()).strip("-") or "unknown"


class JiraDesk:
    """One Jira site and project; the engine owns its lifetime (`aclose`)."""

    name: DeskName = "jira"

    def __init__(
        self,
        config: JiraConfig,
        api_token: str,
        *,
        metrics: Metrics,
        allow_insecure_http: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.mapping: DeskMapping = jira_mapping(config)
        self.http = DeskHttp(
            "jira",
            config.base_url,
            timeout=config.timeout,
            metrics=metrics,
            secrets=(api_token,),
            auth=(config.username, api_token),
            allow_insecure_http=allow_insecure_http,
            requests_per_second=config.requests_per_second,
            transport=transport,
        )
        # Issues created by this process, by label: search is eventually consistent, so a retried
        # create right after a lost answer passes these as reconcileIssues.
        self._recent: OrderedDict[str, str] = OrderedDict()
        self.page_size = PAGE_SIZE

    # creating and finding -------------------------------------------------------------------
    def unmapped(self, ticket: TicketSnapshot) -> tuple[UnmappedValue, ...]:
        return self.mapping.unmapped(ticket.priority, ticket.status, ticket.category, ticket.assigned_agent)

    async def create(self, ticket: TicketSnapshot) -> ExternalTicket:
        priority = self._priority(ticket)
        description = jira_adf.describe_ticket(ticket, priority)
        self._check_adf(description, f"create issue for {ticket.ticket_number}")
        subject = ticket.subject if ticket.content_available and ticket.subject else PLACEHOLDER
        label = ticket_label(ticket.ticket_number)
        fields: dict[str, Any] = {
            "project": {"key": self.config.project_key},
            "issuetype": {"name": self.config.issue_type},
            "summary": f"[{ticket.ticket_number}] {subject}"[:255],
            "description": description,
            "labels": [label, category_label(ticket.category)],
            "priority": {"name": priority},
        }
        if self.config.request_type_id:
            return await self._create_request(ticket, fields)
        body = {
            "fields": fields,
            "properties": [
                {"key": PROPERTY_KEY, "value": {"ticket_id": ticket.ticket_id, "ticket_number": ticket.ticket_number}}
            ],
        }
        resp = await self.http.request(
            f"create issue for {ticket.ticket_number}", "POST", "/rest/api/3/issue", json_body=body
        )
        answer = resp.json()
        issue_id, key = str(answer["id"]), str(answer["key"])
        self._remember(label, issue_id)
        return self._ref(issue_id, key)

    async def _create_request(self, ticket: TicketSnapshot, fields: dict[str, Any]) -> ExternalTicket:
        """A JSM customer request of the configured type. Its form takes plain text and no priority or
        properties: the labels go in the request (so a retried create finds it), the rest follows by edit."""
        op = f"create request for {ticket.ticket_number}"
        body = {
            "serviceDeskId": self.config.service_desk_id,
            "requestTypeId": self.config.request_type_id,
            "requestFieldValues": {
                "summary": fields["summary"],
                "description": jira_adf.describe_ticket_text(ticket, fields["priority"]["name"]),
                "labels": fields["labels"],
            },
        }
        answer = (await self.http.request(op, "POST", "/rest/servicedeskapi/request", json_body=body)).json()
        issue_id, key = str(answer["issueId"]), str(answer["issueKey"])
        self._remember(fields["labels"][0], issue_id)
        claim = {"ticket_id": ticket.ticket_id, "ticket_number": ticket.ticket_number}
        await self.http.request(
            f"claim {key}", "PUT", f"/rest/api/3/issue/{key}/properties/{PROPERTY_KEY}", json_body=claim
        )
        edit = {"fields": {"priority": fields["priority"]}}
        await self.http.request(f"edit {key}", "PUT", f"/rest/api/3/issue/{key}", json_body=edit)
        return self._ref(issue_id, key)

    async def find(self, ticket: TicketSnapshot, known_ids: tuple[str, ...] = ()) -> ExternalTicket | None:
        """Label search (all pages, read-after-write for known ids), then the property must hold the ticket id."""
        label = ticket_label(ticket.ticket_number)
        reconcile = [
            int(i) for i in (*known_ids, *([self._recent[label]] if label in self._recent else [])) if str(i).isdigit()
        ]
        jql = f'project = "{self.config.project_key}" AND labels = "{label}" ORDER BY key ASC'
        hits: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"jql": jql, "fields": ["labels"], "maxResults": self.page_size}
            if reconcile:
                body["reconcileIssues"] = sorted(set(reconcile))
            if token:
                body["nextPageToken"] = token
            page = (
                await self.http.request(
                    f"search {ticket.ticket_number}", "POST", "/rest/api/3/search/jql", json_body=body
                )
            ).json()
            hits += page.get("issues") or []
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                break
        unclaimed: ExternalTicket | None = None
        for hit in hits:
            issue = await self._get(str(hit["id"]), "labels", f"confirm {ticket.ticket_number}")
            claim = (issue.get("properties") or {}).get(PROPERTY_KEY)
            ref = self._ref(str(issue["id"]), str(issue["key"]))
            if isinstance(claim, dict) and claim.get("ticket_id") == ticket.ticket_id:
                return ref
            if claim is None and unclaimed is None:
                unclaimed = ref  # labelled by hand or before properties existed: adopt if nothing better
        return unclaimed

    # reading ----------------------------------------------------------------------------------
    async def fetch(self, ref: ExternalTicket) -> DeskTicketState:
        issue = await self._get(ref.key, "status,priority,updated,labels", f"fetch {ref.key}")
        fields = issue.get("fields") or {}
        return DeskTicketState(
            ref=ref,
            status=str((fields.get("status") or {}).get("name", "")),
            priority=(fields.get("priority") or {}).get("name"),
            updated=str(fields.get("updated", "")),
            labels=tuple(fields.get("labels") or ()),
            properties=dict(issue.get("properties") or {}),
        )

    async def has_comment(self, ref: ExternalTicket, marker: str) -> bool:
        """Whether one of the sidecar's own comments ends with this marker."""
        start = 0
        while True:
            params = {"startAt": str(start), "maxResults": str(self.page_size)}
            page = (
                await self.http.request(
                    f"list comments of {ref.key}", "GET", f"/rest/api/3/issue/{ref.key}/comment", params=params
                )
            ).json()
            comments = page.get("comments") or []
            for comment in comments:
                author = (comment.get("author") or {}).get("accountId")
                mine = not self.config.account_id or author == self.config.account_id
                if mine and jira_adf.footer_marker(comment.get("body")) == marker:
                    return True
            start += len(comments)
            if not comments or start >= int(page.get("total", start)):
                return False

    # writing ----------------------------------------------------------------------------------
    async def update_fields(self, ref: ExternalTicket, ticket: TicketSnapshot) -> None:
        """Priority, the category label, and the assignee when the chain agent is in jira.assignee_map."""
        wanted = category_label(ticket.category)
        labels = [{"add": wanted}] + [{"remove": category_label(c)} for c in CATEGORIES if category_label(c) != wanted]
        body = {"fields": {"priority": {"name": self._priority(ticket)}}, "update": {"labels": labels}}
        await self.http.request(f"edit {ref.key}", "PUT", f"/rest/api/3/issue/{ref.key}", json_body=body)
        account_id = self.mapping.desk_assignee(ticket.assigned_agent)
        if account_id:
            await self.http.request(
                f"assign {ref.key}", "PUT", f"/rest/api/3/issue/{ref.key}/assignee", json_body={"accountId": account_id}
            )

    async def set_status(self, ref: ExternalTicket, chain_status: str) -> None:
        """The transition whose target is the mapped status; none available is a non-retryable error."""
        op = f"set status of {ref.key}"
        target = self.mapping.status.to_desk(chain_status).value
        if target is None:
            raise DeskError(f"jira {op}: no Jira status is mapped for chain status {chain_status!r}", retryable=False)
        issue = await self._get(ref.key, "status", op)
        current = str(((issue.get("fields") or {}).get("status") or {}).get("name", ""))
        if current.lower() == target.lower():
            return
        url = f"/rest/api/3/issue/{ref.key}/transitions"
        options = (await self.http.request(op, "GET", url)).json().get("transitions") or []
        usable = [t for t in options if t.get("isAvailable", True)]
        match = [t for t in usable if str((t.get("to") or {}).get("name", "")).lower() == target.lower()]
        if not match:
            available = ", ".join(f"{t.get('name')!r} -> {(t.get('to') or {}).get('name')!r}" for t in usable)
            raise DeskError(
                f"jira {op}: no transition from {current!r} to {target!r} (chain status {chain_status!r}); "
                f"available: {available or 'none'}",
                retryable=False,
            )
        await self.http.request(op, "POST", url, json_body={"transition": {"id": str(match[0]["id"])}})

    async def add_comment(self, ref: ExternalTicket, comment: DeskComment) -> None:
        """Public comments as ADF; internal notes through JSM (`public: false`), which takes plain text."""
        op = f"comment on {ref.key}"
        if comment.internal:
            body: dict[str, Any] = {"body": jira_adf.comment_text(comment), "public": False}
            await self.http.request(op, "POST", f"/rest/servicedeskapi/request/{ref.key}/comment", json_body=body)
            return
        document = jira_adf.comment_doc(comment)
        self._check_adf(document, op)
        await self.http.request(op, "POST", f"/rest/api/3/issue/{ref.key}/comment", json_body={"body": document})

    async def close(self, ref: ExternalTicket, reason: str) -> None:
        """A comment saying why (once), then the transition to the status mapped for `closed`."""
        if not await self.has_comment(ref, CLOSE_MARKER):
            note = DeskComment(
                marker=CLOSE_MARKER,
                author="VirtEngine",
                is_agent=True,
                body=f"Closed by the VirtEngine sidecar: {reason}.",
            )
            await self.add_comment(ref, note)
        await self.set_status(ref, "closed")

    async def check(self) -> None:
        await self.http.request("check", "GET", "/rest/api/3/myself")

    async def aclose(self) -> None:
        await self.http.aclose()

    # helpers ----------------------------------------------------------------------------------
    def _priority(self, ticket: TicketSnapshot) -> str:
        mapped = self.mapping.priority.to_desk(ticket.priority)
        if mapped.unmapped is not None:
            log.warning(
                "unmapped chain value",
                extra={"desk": "jira", "field": "priority", "value": ticket.priority, "used": mapped.value},
            )
        assert mapped.value is not None  # priority always has a default
        return mapped.value

    async def _get(self, key: str, fields: str, op: str) -> dict[str, Any]:
        params = {"fields": fields, "properties": PROPERTY_KEY}
        answer: dict[str, Any] = (await self.http.request(op, "GET", f"/rest/api/3/issue/{key}", params=params)).json()
        return answer

    def _ref(self, issue_id: str, key: str) -> ExternalTicket:
        return ExternalTicket("jira", issue_id, key, f"{self.http.base_url}/browse/{key}")

    def _remember(self, label: str, issue_id: str) -> None:
        self._recent[label] = issue_id
        self._recent.move_to_end(label)
        while len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)

    def _check_adf(self, document: dict[str, Any], op: str) -> None:
        problems = jira_adf.check(document)
        if problems:
            raise DeskError(f"jira {op}: invalid ADF built: {'; '.join(problems[:3])}", retryable=False)
