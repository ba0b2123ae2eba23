"""Jira Cloud (platform REST v3, JSM for internal notes) behind the Desk protocol.

Idempotency: every issue carries the label `ve-<ticket number>` (JQL can search labels, not the
properties a REST client sets) and the issue property `virtengine` holding the ticket id, which
`find` checks so a label clash (a reset devnet, a hand-made label) is never adopted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from sidecar.config_schema import CATEGORIES, JiraConfig
from sidecar.desks import jira_adf, jira_files, jira_read
from sidecar.desks.base import (
    SYNCED_FIELDS,
    ChangedIssue,
    DeskComment,
    DeskCommentView,
    DeskIssueView,
    DeskName,
    DeskNote,
    DeskOutcome,
    DeskTicketState,
    ExternalTicket,
    TicketSnapshot,
    UnmappedValue,
    note,
    saw_issue,
    seen_issue,
)
from sidecar.desks.files import DeskAttachment
from sidecar.desks.http import DeskHttp
from sidecar.desks.jira_workflow import DONE, MAX_STEPS, Hop, WorkflowMap, describe, parse_hops
from sidecar.desks.mapping import DeskMapping, jira_mapping
from sidecar.digits import is_decimal
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from sidecar.recent import Recent

log = logging.getLogger(__name__)
PROPERTY_KEY = "virtengine"
PLACEHOLDER = "(encrypted content not available to the desk)"
CLOSE_MARKER = "close"
PAGE_SIZE = 100
_RECENT_MAX = 1024
_ISSUE_ID = jira_read.ISSUE_ID
# What an outbound job reads of an issue (fetch: status, priority, updated, labels; set_status: status and
# issue type), asked for in one GET so that one read serves the whole job (see base.remembering_reads).
JOB_FIELDS = ("status", "priority", "updated", "labels", "issuetype")
# Jira refuses a summary with a line break ("The summary is invalid because it contains newline
# characters."); other control characters and Unicode line/paragraph separators go with it.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_SUMMARY = 255


def one_line(value: str) -> str:
    """Text as one summary line: every run of control characters becomes one space."""
    return " ".join(_BREAKS.sub(" ", value).split())


def _not_on_screen(exc: DeskError, name: str) -> bool:
    """Jira's 400 for a field the operation's screen does not show (the edit changed nothing)."""
    return exc.status == 400 and f"Field '{name}' cannot be set" in str(exc)


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock  # wall-clock unix seconds: "now" of the inbound sweep
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
            max_connections=config.max_concurrency,  # outbound jobs and inbound re-reads share them
            transport=transport,
        )
        # Issues created by this process, by label: search is eventually consistent, so a retried
        # create right after a lost answer passes these as reconcileIssues.
        self._recent: Recent[str, str] = Recent(_RECENT_MAX)
        self._me = ""  # the token's accountId, once `check` has asked
        self.page_size = PAGE_SIZE
        # How long after a create Jira's search may still miss the issue: the worker searches again
        # and waits this long after a create it sent before it sends another.
        self.index_lag = config.index_lag
        self.unique_creates = False  # nothing stops a second issue for the same ticket: look first
        self._own_key = re.compile(re.escape(config.project_key) + r"-[0-9]{1,18}")
        self.workflow = WorkflowMap()
        self._mapped_statuses = {status.lower() for status in self.mapping.status.desk_values()}
        # JSM request forms take no labels, priority or properties: those follow the create by one edit.
        self.finishes_creates = bool(config.request_type_id)
        # JSM requests have customer visibility: only the files the Service Desk API lists are public.
        self.jsm_requests = bool(config.request_type_id and config.service_desk_id)

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
            "summary": one_line(f"[{ticket.ticket_number}] {subject}")[:MAX_SUMMARY],
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
        op = f"create issue for {ticket.ticket_number}"
        while True:
            try:
                response = await self._create_call(op, "/rest/api/3/issue", body)
                break
            except DeskError as exc:  # a 400 made nothing: without a priority the screen lacks, send it again
                if "priority" not in fields or not _not_on_screen(exc, "priority"):
                    raise
            del fields["priority"]
            note(DeskNote("field_skipped", {"field": "priority", "reason": "not on the issue's create screen"}))
        answer = self.http.json_object(op, response)
        issue_id, key = self._ids(answer, "id", "key", op)
        self._recent.put(label, issue_id)
        return self._ref(issue_id, key)

    async def _create_request(self, ticket: TicketSnapshot, fields: dict[str, Any]) -> ExternalTicket:
        """A JSM customer request of the configured type. A default request type's form has only summary
        and description (`requestFieldValues` refuses any other field), so the labels, the claim and the
        priority follow in `finish_create`, after the caller has recorded this answer."""
        op = f"create request for {ticket.ticket_number}"
        body = {
            "serviceDeskId": self.config.service_desk_id,
            "requestTypeId": self.config.request_type_id,
            "requestFieldValues": {
                "summary": fields["summary"],
                "description": jira_adf.describe_ticket_text(ticket, fields["priority"]["name"]),
            },
        }
        answer = self.http.json_object(op, await self._create_call(op, "/rest/servicedeskapi/request", body))
        issue_id, key = self._ids(answer, "issueId", "issueKey", op)
        self._recent.put(fields["labels"][0], issue_id)
        return self._ref(issue_id, key)

    async def finish_create(self, ref: ExternalTicket, ticket: TicketSnapshot) -> None:
        """JSM: one edit adding the labels, the claim property and the priority (a priority off the edit
        screen is skipped and noted). Idempotent, so a retry after a failure sends it again."""
        if not self.finishes_creates:
            return
        claim = {"ticket_id": ticket.ticket_id, "ticket_number": ticket.ticket_number}
        labels = [{"add": ticket_label(ticket.ticket_number)}, {"add": category_label(ticket.category)}]
        body: dict[str, Any] = {
            "fields": {"priority": {"name": self._priority(ticket)}},
            "update": {"labels": labels},
            "properties": [{"key": PROPERTY_KEY, "value": claim}],
        }
        await self._edit(ref, body)

    async def _create_call(self, op: str, path: str, body: dict[str, Any]) -> httpx.Response:
        """The POST that creates: a 4xx answer to it means Jira made nothing (marked on the error)."""
        try:
            return await self.http.request(op, "POST", path, json_body=body)
        except DeskError as exc:
            exc.nothing_created = exc.status is not None and 400 <= exc.status < 500
            raise

    async def _claim(self, ticket: TicketSnapshot, key: str) -> None:
        """Set the issue property that says which chain ticket this issue belongs to."""
        claim = {"ticket_id": ticket.ticket_id, "ticket_number": ticket.ticket_number}
        await self.http.request(f"claim {key}", "PUT", _issue_path(key, f"properties/{PROPERTY_KEY}"), json_body=claim)

    async def find(self, ticket: TicketSnapshot, known_ids: tuple[str, ...] = ()) -> ExternalTicket | None:
        """Label search (all pages, read-after-write for known ids), then the property must hold the ticket id."""
        label = ticket_label(ticket.ticket_number)
        created = self._recent.get(label)  # an issue this process created: searched read-after-write
        ids = (*known_ids, created) if created is not None else known_ids
        reconcile = [int(i) for i in ids if is_decimal(str(i))]
        jql = f'project = "{self.config.project_key}" AND labels = "{label}" ORDER BY key ASC'
        hits = await self._search(ticket, jql, reconcile)
        term = _summary_term(ticket.ticket_number)
        if not hits and self.finishes_creates and term:
            # A JSM request gets its label only by the edit after the create: one whose answer was lost
            # has none yet, so look for its summary too (checked below: our prefix, no one else's claim).
            jql = f'project = "{self.config.project_key}" AND summary ~ "{term}" ORDER BY key ASC'
            hits = await self._search(ticket, jql, reconcile)
        unclaimed: ExternalTicket | None = None
        prefix = f"[{ticket.ticket_number}]"
        for hit in hits:
            op = f"confirm {ticket.ticket_number}"
            hit_id = str(hit.get("id", ""))
            if not _ISSUE_ID.fullmatch(hit_id):
                raise DeskError(f"jira {op}: search answered an issue without a numeric id", retryable=False)
            issue = await self._get(hit_id, "labels,summary,reporter", op)
            ref = self._ref(*self._ids(issue, "id", "key", op))
            claim = _claim_of(issue)
            if isinstance(claim, dict) and claim.get("ticket_id") == ticket.ticket_id:
                return ref
            fields = _object(issue.get("fields"))
            labelled = label in (fields.get("labels") or [])
            ours = str(fields.get("summary", "")).startswith(prefix) and self._reported_by_me(fields)
            if claim is None and unclaimed is None and (labelled or ours):
                unclaimed = ref  # labelled by hand, or a JSM create whose follow-up did not land: adopt it
        if unclaimed is not None:
            # adopted: from now on the issue says whose it is (and a JSM request gets its labels)
            if self.finishes_creates:
                await self.finish_create(unclaimed, ticket)
            else:
                await self._claim(ticket, unclaimed.key)
        return unclaimed

    def _reported_by_me(self, fields: dict[str, Any]) -> bool:
        """Whether the sidecar's account reported the issue: jira.account_id, else the token's own account
        (learnt by `check`). Unknown: False, so a request someone else titled `[SUP-…]` is never adopted."""
        me = self.config.account_id or self._me
        reporter = _object(fields.get("reporter")).get("accountId")
        return bool(me) and reporter == me

    async def _search(self, ticket: TicketSnapshot, jql: str, reconcile: list[int]) -> list[dict[str, Any]]:
        """Every page of a JQL search (ids only), with read-after-write for `reconcile`."""
        body: dict[str, Any] = {"jql": jql, "fields": ["labels"], "maxResults": self.page_size}
        if reconcile:
            body["reconcileIssues"] = sorted(set(reconcile))
        return await jira_read.search_all(self.http, f"search {ticket.ticket_number}", body)

    def ref_problem(self, external_id: str) -> str | None:
        """Why an id registered on chain cannot be a Jira issue of this project (None: it can)."""
        if _ISSUE_ID.fullmatch(external_id) or self._own_key.fullmatch(external_id):
            return None
        return f"not a Jira issue id or a key of project {self.config.project_key}"

    async def claimed(self, ticket: TicketSnapshot, external_id: str) -> ExternalTicket | None:
        """The issue behind a ref registered on chain, if it is in this project and carries this ticket's claim."""
        if self.ref_problem(external_id) is not None:
            return None
        op = f"check ref of {ticket.ticket_number}"
        try:
            issue = await self._get(external_id, "labels", op)
        except DeskError as exc:
            if exc.status == 404:  # no such issue, or one this account cannot see
                return None
            raise
        issue_id, key = self._ids(issue, "id", "key", op)
        claim = _claim_of(issue)
        if not self._own_key.fullmatch(key) or not isinstance(claim, dict):
            return None
        return self._ref(issue_id, key) if claim.get("ticket_id") == ticket.ticket_id else None

    # reading ----------------------------------------------------------------------------------
    async def fetch(self, ref: ExternalTicket) -> DeskTicketState:
        issue = await self._job_read(ref, ("status", "priority", "updated", "labels"), f"fetch {ref.key}")
        fields = _object(issue.get("fields"))
        priority = _object(fields.get("priority")).get("name")
        labels = fields.get("labels")
        return DeskTicketState(
            ref=ref,
            status=str(_object(fields.get("status")).get("name", "")),
            priority=priority if isinstance(priority, str) else None,
            updated=str(fields.get("updated", "")),
            labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
            properties=_object(issue.get("properties")),
        )

    async def has_comment(self, ref: ExternalTicket, marker: str) -> bool:
        """Whether one of the sidecar's own comments ends with this marker."""
        start = 0
        while True:
            params = {"startAt": str(start), "maxResults": str(self.page_size)}
            op = f"list comments of {ref.key}"
            page = self.http.json_object(
                op, await self.http.request(op, "GET", _issue_path(ref.key, "comment"), params=params)
            )
            comments = _objects(page.get("comments"))
            for comment in comments:
                author = _object(comment.get("author")).get("accountId")
                mine = not self.config.account_id or author == self.config.account_id
                if mine and jira_adf.footer_marker(comment.get("body")) == marker:
                    return True
            start += len(comments)
            total = page.get("total", start)
            if not comments or not isinstance(total, int) or start >= total:
                return False

    # inbound (ReadsChanges; the reading is in jira_read) ----------------------------------------
    def own_account(self) -> str | None:
        """jira.account_id, else the token's accountId once `check` has asked, else None."""
        return self.config.account_id or self._me or None

    async def changed_since(self, since: float) -> list[ChangedIssue]:
        return await jira_read.changed_since(
            self.http, self.config.project_key, since, page_size=self.page_size, now=self.clock
        )

    async def comments_since(self, since: float) -> list[tuple[str, DeskCommentView]]:
        """Always []: a Jira comment bumps its issue's `updated`, so `changed_since` finds the issue and
        `read_issue` reads the comment."""
        return []

    async def attachments_since(self, since: float) -> list[str]:
        """Always []: an attachment bumps its issue's `updated` (see jira_read.attachments_since)."""
        return await jira_read.attachments_since(since)

    async def read_issue(self, ref: ExternalTicket) -> DeskIssueView:
        return await jira_read.read_issue(self.http, ref, page_size=self.page_size, jsm=self.jsm_requests)

    # writing ----------------------------------------------------------------------------------
    async def update_fields(
        self, ref: ExternalTicket, ticket: TicketSnapshot, only: frozenset[str] = SYNCED_FIELDS
    ) -> None:
        """The category label, and of `only`: priority, and the assignee when the chain agent is in
        jira.assignee_map. Where this job has already seen the issue holding the label and the priority, the
        edit is not sent (it would change nothing)."""
        wanted = category_label(ticket.category)
        others = [category_label(c) for c in CATEGORIES if category_label(c) != wanted]
        labels = [{"add": wanted}] + [{"remove": label} for label in others]
        fields = {"priority": {"name": self._priority(ticket)}} if "priority" in only else {}
        seen = self._seen_fields(ref, ("labels", "priority"))
        if seen is not None:
            held = seen.get("labels")
            held = set(held) if isinstance(held, list) else set()
            if fields and _object(seen.get("priority")).get("name") == fields["priority"]["name"]:
                fields = {}
            if wanted in held and not held & set(others):
                labels = []
        if fields or labels:
            await self._edit(ref, {"fields": fields, "update": {"labels": labels} if labels else {}})
        account_id = self.mapping.desk_assignee(ticket.assigned_agent) if "assignee" in only else None
        if account_id:
            await self.http.request(
                f"assign {ref.key}", "PUT", _issue_path(ref.key, "assignee"), json_body={"accountId": account_id}
            )
            saw_issue("jira", ref.external_id, None)  # answered 204: the next read asks Jira

    async def set_status(self, ref: ExternalTicket, chain_status: str) -> None:
        """Walk transitions (at most MAX_STEPS) to the mapped status, filling required screen fields;
        a status no path reaches is a DeskOutcome naming where the issue is and what it could do."""
        op = f"set status of {ref.key}"
        target = self.mapping.status.to_desk(chain_status).value
        if target is None:
            raise DeskError(f"jira {op}: no Jira status is mapped for chain status {chain_status!r}", retryable=False)
        fields = _object((await self._job_read(ref, ("status", "issuetype"), op)).get("fields"))
        current = str(_object(fields.get("status")).get("name", ""))
        issue_type = str(_object(fields.get("issuetype")).get("name", ""))
        visited: set[str] = set()
        url = _issue_path(ref.key, "transitions")
        params = {"expand": "transitions.fields"}
        for step in range(MAX_STEPS + 1):
            if current.lower() == target.lower():
                return
            hops = parse_hops(self.http.json_object(op, await self.http.request(op, "GET", url, params=params)))
            self.workflow.learn(issue_type, current, hops)
            usable, problems = self._fillable(hops)
            hop = None
            if step < MAX_STEPS:
                hop = self.workflow.next_hop(issue_type, current, target, usable, visited, self._mapped_statuses)
            if hop is None:
                raise self._unreachable(op, chain_status, current, target, hops, problems)
            body: dict[str, Any] = {"transition": {"id": hop.id}}
            screen = self._screen_values(hop)
            if screen:
                body["fields"] = screen
            saw_issue("jira", ref.external_id, None)  # a transition answers 204: the next read asks Jira
            await self.http.request(op, "POST", url, json_body=body)
            visited.add(current.lower())
            current = hop.to

    def _screen_values(self, hop: Hop) -> dict[str, Any]:
        """The transition screen's values the sidecar fills: the configured resolution where the screen
        requires one, or offers one on the way into a done status (nothing on a screen-less transition)."""
        resolution = hop.fields.get("resolution")
        if resolution is None or not (resolution.get("required") or hop.category == DONE):
            return {}
        return {"resolution": {"name": self.config.resolution}}

    def _fillable(self, hops: list[Hop]) -> tuple[list[Hop], list[str]]:
        """The hops whose required screen fields the sidecar can fill, and why the others cannot be taken."""
        usable: list[Hop] = []
        problems: list[str] = []
        for hop in hops:
            missing = [
                name
                for name, spec in hop.fields.items()
                if spec.get("required") and not spec.get("hasDefaultValue") and name != "resolution"
            ]
            resolution = hop.fields.get("resolution")
            allowed = [str(v.get("name")) for v in _objects((resolution or {}).get("allowedValues"))]
            wanted = resolution is not None and (resolution.get("required") or hop.category == DONE)
            if wanted and allowed and self.config.resolution not in allowed:
                missing.append(f"resolution ({self.config.resolution!r} is not one of {', '.join(allowed)})")
            if missing:
                problems.append(f"{hop.name!r} requires {', '.join(missing)}")
            else:
                usable.append(hop)
        return usable, problems

    def _unreachable(
        self, op: str, chain_status: str, current: str, target: str, hops: list[Hop], problems: list[str]
    ) -> DeskOutcome:
        why = f"; {'; '.join(problems)}" if problems else ""
        message = (
            f"jira {op}: no transition from {current!r} to {target!r} (chain status {chain_status!r}) within "
            f"{MAX_STEPS} steps; available: {describe(hops)}{why}"
        )
        details = {
            "chain_status": chain_status,
            "current_status": current[:80],
            "target_status": target[:80],
            "available_transitions": [f"{h.name} -> {h.to}"[:120] for h in hops[:20]],
        }
        return DeskOutcome(message, event="status_unreachable", details=details)

    async def add_comment(self, ref: ExternalTicket, comment: DeskComment) -> None:
        """Public comments as ADF; internal notes through JSM (`public: false`), which takes plain text."""
        op = f"comment on {ref.key}"
        saw_issue("jira", ref.external_id, None)  # a comment moves the issue's `updated`
        if comment.internal:
            body: dict[str, Any] = {"body": jira_adf.comment_text(comment), "public": False}
            url = f"/rest/servicedeskapi/request/{quote(ref.key, safe='')}/comment"
            await self.http.request(op, "POST", url, json_body=body)
            return
        document = jira_adf.comment_doc(comment)
        self._check_adf(document, op)
        await self.http.request(op, "POST", _issue_path(ref.key, "comment"), json_body={"body": document})

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
        """The cheapest authenticated call; it also tells whose token this is."""
        answer = self.http.json_object("check", await self.http.request("check", "GET", "/rest/api/3/myself"))
        account = answer.get("accountId")
        self._me = account if isinstance(account, str) else self._me

    async def aclose(self) -> None:
        await self.http.aclose()

    # attachments (HasAttachments, sidecar/desks/jira_files.py) ---------------------------------
    async def list_attachments(self, ref: ExternalTicket) -> list[DeskAttachment]:
        return await jira_files.list_attachments(self.http, ref, jsm=self.jsm_requests)

    async def upload_attachment(
        self, ref: ExternalTicket, file_name: str, content_type: str, path: Path
    ) -> DeskAttachment:
        return await jira_files.upload_attachment(self.http, ref, file_name, content_type, path)

    def download(self, attachment: DeskAttachment, max_bytes: int) -> AsyncIterator[bytes]:
        return jira_files.download(self.http, attachment, max_bytes)

    # helpers ----------------------------------------------------------------------------------
    async def _edit(self, ref: ExternalTicket, body: dict[str, Any]) -> None:
        """PUT an edit. A field Jira says is not on the edit screen (the whole edit was refused) is left
        out, noted as `field_skipped`, and the rest of the edit sent again, so the labels are not lost.
        Sent with returnIssue: Jira answers 200 with the issue as Get issue shows it right after the edit
        (pinned spec, editIssue), which the job remembers as its read-back instead of reading again."""
        key = ref.key
        op = f"edit {key}"
        fields, update = dict(body.get("fields") or {}), dict(body.get("update") or {})
        rest = {k: v for k, v in body.items() if k not in ("fields", "update")}
        while True:
            sent = {**rest, **({"fields": fields} if fields else {}), **({"update": update} if update else {})}
            if not sent:
                return
            saw_issue("jira", ref.external_id, None)  # until an answer shows the edited issue
            try:
                response = await self.http.request(
                    op, "PUT", _issue_path(key), json_body=sent, params={"returnIssue": "true"}
                )
            except DeskError as exc:
                refused = [(part, name) for part in (fields, update) for name in part if _not_on_screen(exc, name)]
                if not refused:
                    raise
            else:
                self._saw(ref, op, response)
                return
            for part, name in refused:
                del part[name]
                details = {"field": name, "external_key": key, "reason": "not on the issue's edit screen"}
                note(DeskNote("field_skipped", details))
                log.info("field not on the edit screen: left out", extra={"desk": "jira", "field": name})

    def _priority(self, ticket: TicketSnapshot) -> str:
        mapped = self.mapping.priority.to_desk(ticket.priority)
        if mapped.unmapped is not None:
            log.warning(
                "unmapped chain value",
                extra={"desk": "jira", "field": "priority", "value": ticket.priority, "used": mapped.value},
            )
        assert mapped.value is not None  # priority always has a default
        return mapped.value

    def _seen_fields(self, ref: ExternalTicket, names: tuple[str, ...]) -> dict[str, Any] | None:
        """The issue's fields as this job last saw them, when that view has every one of `names`."""
        issue = seen_issue("jira", ref.external_id)
        fields = _object(issue.get("fields")) if issue is not None else {}
        return fields if issue is not None and all(name in fields for name in names) else None

    async def _job_read(self, ref: ExternalTicket, names: tuple[str, ...], op: str) -> dict[str, Any]:
        """The issue with at least the fields `names`: as this job last saw it, else read (JOB_FIELDS) and
        remembered for the job's next read."""
        if (fields := self._seen_fields(ref, names)) is not None:
            return {"fields": fields}
        issue = await self._get(ref.key, ",".join(JOB_FIELDS), op)
        if issue.get("id") == ref.external_id:
            saw_issue("jira", ref.external_id, issue)
        return issue

    def _saw(self, ref: ExternalTicket, op: str, response: httpx.Response) -> None:
        """Remember an edit's answer when it is this issue (200 with returnIssue); otherwise (204 from a Jira
        that ignores the parameter, an answer that is not the issue) the next read asks Jira."""
        if response.status_code != 200 or not response.content:
            return
        try:
            issue = self.http.json_object(op, response)
        except DeskError:  # the edit landed; an answer too large or malformed only costs a read
            return
        if issue.get("id") == ref.external_id and isinstance(issue.get("fields"), dict):
            saw_issue("jira", ref.external_id, issue)

    async def _get(self, key: str, fields: str, op: str) -> dict[str, Any]:
        params = {"fields": fields, "properties": PROPERTY_KEY}
        return self.http.json_object(op, await self.http.request(op, "GET", _issue_path(key), params=params))

    def _ids(self, answer: dict[str, Any], id_field: str, key_field: str, op: str) -> tuple[str, str]:
        """An issue's id and key from a desk answer; both must look like Jira's (they become URL paths)."""
        issue_id, key = str(answer.get(id_field, "")), str(answer.get(key_field, ""))
        if not _ISSUE_ID.fullmatch(issue_id) or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,254}-[0-9]{1,18}", key):
            raise DeskError(f"jira {op}: answer lacks a valid {id_field!r} and {key_field!r}", retryable=False)
        return issue_id, key

    def _ref(self, issue_id: str, key: str) -> ExternalTicket:
        return ExternalTicket("jira", issue_id, key, f"{self.http.base_url}/browse/{key}")

    def _check_adf(self, document: dict[str, Any], op: str) -> None:
        problems = jira_adf.check(document)
        if problems:
            raise DeskError(f"jira {op}: invalid ADF built: {'; '.join(problems[:3])}", retryable=False)


def _issue_path(key: str, tail: str = "") -> str:
    """`/rest/api/3/issue/<key>[/<tail>]` with the key quoted as one path segment, whatever it holds."""
    return f"/rest/api/3/issue/{quote(key, safe='')}" + (f"/{tail}" if tail else "")


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from an answer, or an empty one where the desk sent something else."""
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array from an answer (anything else is skipped)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _summary_term(ticket_number: str) -> str | None:
    """A word of the ticket number JQL text search can match without escaping (`SUP-000123` -> `000123`)."""
    words = re.findall(r"[A-Za-z0-9]+", ticket_number)
    return words[-1] if words else None


def _claim_of(issue: dict[str, Any]) -> Any:
    return _object(issue.get("properties")).get(PROPERTY_KEY)
