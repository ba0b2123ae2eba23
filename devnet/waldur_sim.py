"""A stateful Waldur (support module) simulator: issues with unique remote_id, comments,
attachments, customers/projects, and unsigned web hooks for the support events.

Changes made over HTTP act as the token's user; the agent API acts as a human support agent.
Waldur has no comment events, so agent comments change state silently (the sidecar must poll).
"""

from __future__ import annotations

import hmac
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from devnet.jira_model import now
from devnet.sim_core import SimCore, SimRequest, SimResponse, json_response
from devnet.sim_runner import SimRunner
from devnet.sim_webhooks import WebhookSender
from devnet.waldur_contract import WaldurContract, new_uuid, waldur_time

ISSUE_TYPES = ("INCIDENT", "CHANGE_REQUEST", "SERVICE_REQUEST", "INFORMATIONAL")
PRIORITIES = ("low", "normal", "high", "critical")
STATUSES = ("new", "in_progress", "waiting", "resolved", "closed")


class WaldurError(Exception):
    """A DRF-style rejection: `detail` string or {field: [messages]}."""

    def __init__(self, status: int, detail: str | dict[str, list[str]]) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass
class User:
    uuid: UUID
    username: str
    full_name: str
    email: str


@dataclass
class SupportUser:
    """A support user (Waldur's `support.SupportUser`): what an issue's assignee links to."""

    uuid: UUID
    name: str
    is_active: bool = True


@dataclass
class WIssue:
    uuid: UUID
    key: str
    type: str
    summary: str
    description: str
    priority: str
    remote_id: str | None
    customer: UUID | None
    project: UUID | None
    reporter: User
    status: str = "new"
    resolution: str = ""
    assignee: SupportUser | None = None
    created: datetime = field(default_factory=now)
    modified: datetime = field(default_factory=now)

    @property
    def assignee_uuid(self) -> UUID | None:
        return self.assignee.uuid if self.assignee else None


@dataclass
class WComment:
    uuid: UUID
    issue: UUID
    description: str
    is_public: bool
    author: User
    created: datetime = field(default_factory=now)


@dataclass
class WAttachment:
    uuid: UUID
    issue: UUID
    file_name: str
    mime_type: str
    content: bytes
    created: datetime = field(default_factory=now)


class WaldurSim(SimCore):
    """Waldur simulator; `with WaldurSim(...) as sim:`; the API root is `sim.api_url` (ends in /api)."""

    burst_reason = None
    per_issue_reason = None

    def __init__(
        self,
        *,
        token: str = "waldur-test-token",
        orgs: dict[str, list[str]] | None = None,
        priorities: tuple[str, ...] = PRIORITIES,
        hook_secret: str | None = None,
        webhooks: WebhookSender | None = None,
        seed: int = 0,
        **core: Any,
    ) -> None:
        super().__init__(seed=seed, **core)
        self.token: str | None = token
        self.priorities = priorities
        self.hook_secret = hook_secret
        self.webhooks = webhooks or WebhookSender(seed=seed, max_retries=0)
        self._rng = random.Random(seed)
        self.me = User(new_uuid(self._rng), "virtengine-sidecar", "VirtEngine Sidecar", "sidecar@example.com")
        self.agent = User(new_uuid(self._rng), "support-agent", "Support Agent", "agent@example.com")
        self.customers: dict[UUID, str] = {}
        self.projects: dict[UUID, tuple[str, UUID]] = {}
        for customer, projects in (orgs or {"VirtEngine Customer": ["VirtEngine Project"]}).items():
            cid = new_uuid(self._rng)
            self.customers[cid] = customer
            for name in projects:
                self.projects[new_uuid(self._rng)] = (name, cid)
        self.support_users: dict[UUID, SupportUser] = {}
        self.issues: dict[UUID, WIssue] = {}
        self.comments: list[WComment] = []
        self.attachments: list[WAttachment] = []
        self.hooks: dict[UUID, dict[str, Any]] = {}
        self.hook_deliveries = self.webhooks.attempts
        self._number = 0
        from devnet.waldur_api import build_routes

        self.inner = build_routes(self)
        self.runner = SimRunner(self, on_start=self._start_hook, on_stop=self.webhooks.close)
        self.contract = WaldurContract() if self.validate else None

    # lifecycle --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Server root: what waldur-api-client wants as base_url (its paths start with /api/)."""
        return self.runner.base_url

    @property
    def api_url(self) -> str:
        """The API root as Waldur documents it (ends in /api)."""
        return self.runner.base_url + "/api"

    def url(self, kind: str, ident: UUID) -> str:
        return f"{self.api_url}/{kind}/{ident.hex}/"

    def customer_url(self, name: str | None = None) -> str:
        """Hyperlink of a configured customer (the first one by default)."""
        cid = next(c for c, n in self.customers.items() if name is None or n == name)
        return self.url("customers", cid)

    def project_url(self, name: str | None = None) -> str:
        pid = next(p for p, (n, _) in self.projects.items() if name is None or n == name)
        return self.url("projects", pid)

    def add_support_user(self, name: str) -> UUID:
        """A support user issues can be assigned to; link it as `url("support-users", uuid)`."""
        with self.lock:
            user = SupportUser(new_uuid(self._rng), name)
            self.support_users[user.uuid] = user
        return user.uuid

    # SimCore hooks ----------------------------------------------------------------------------
    def authenticate(self, req: SimRequest) -> bool:
        header = req.headers.get("authorization", "")
        return self.token is not None and header.startswith("Token ") and hmac.compare_digest(header[6:], self.token)

    def error(self, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> SimResponse:
        if status == 401:
            message = "Invalid token."
        return json_response(status, {"detail": message}, extra)

    def write_key(self, req: SimRequest) -> str | None:
        match = re.match(r"^/api/support-issues/([0-9a-fA-F-]+)/", req.path)
        return match.group(1).replace("-", "") if match else None

    def check_request(self, req: SimRequest) -> list[str]:
        return self.contract.check_request(req) if self.contract else []

    def check_response(self, req: SimRequest, resp: SimResponse) -> list[str]:
        return self.contract.check_response(req, resp) if self.contract else []

    def revoke_token(self) -> None:
        self.token = None

    # state changes ----------------------------------------------------------------------------
    def resolve_link(self, kind: str, value: Any, field_name: str) -> UUID | None:
        """A hyperlink to a customer/project/support user, as DRF's HyperlinkedRelatedField checks it."""
        if value in (None, ""):
            return None
        match = re.fullmatch(rf"https?://[^/]+/api/{kind}/([0-9a-fA-F-]{{32,36}})/", str(value))
        if match is None:
            raise WaldurError(400, {field_name: ["Invalid hyperlink - No URL match."]})
        ident = UUID(match.group(1))
        known: dict[str, dict[UUID, Any]] = {
            "customers": self.customers,
            "projects": self.projects,
            "support-users": self.support_users,
        }
        if ident not in known[kind]:
            raise WaldurError(400, {field_name: ["Invalid hyperlink - Object does not exist."]})
        return ident

    def create_issue(self, data: dict[str, Any], user: User) -> WIssue:
        errors: dict[str, list[str]] = {}
        if data.get("type") not in ISSUE_TYPES:
            errors["type"] = [f'"{data.get("type")}" is not a valid choice.']
        if not isinstance(data.get("summary"), str) or not data["summary"].strip():
            errors["summary"] = ["This field is required."]
        priority = data.get("priority") or "normal"
        if priority not in self.priorities:
            errors["priority"] = [f'Priority with name "{priority}" does not exist.']
        remote_id = data.get("remote_id")
        with self.lock:
            if remote_id and any(i.remote_id == remote_id for i in self.issues.values()):
                errors["remote_id"] = ["issue with this remote id already exists."]
            customer = self.resolve_link("customers", data.get("customer"), "customer")
            project = self.resolve_link("projects", data.get("project"), "project")
            assignee = self.resolve_link("support-users", data.get("assignee"), "assignee")
            if errors:
                raise WaldurError(400, errors)
            if project is not None and customer is None:
                customer = self.projects[project][1]
            self._number += 1
            issue = WIssue(
                new_uuid(self._rng),
                f"WAL-{self._number}",
                data["type"],
                data["summary"],
                data.get("description") or "",
                priority,
                remote_id,
                customer,
                project,
                user,
                assignee=self.support_users[assignee] if assignee else None,
            )
            self.issues[issue.uuid] = issue
        self.emit("issue_creation_succeeded", issue, f"Issue {issue.key} has been created.")
        return issue

    def get_issue(self, ident: str) -> WIssue:
        try:
            issue = self.issues.get(UUID(ident))
        except ValueError:
            issue = None
        if issue is None:
            raise WaldurError(404, "No Issue matches the given query.")
        return issue

    def update_issue(self, issue: WIssue, changes: dict[str, Any]) -> None:
        with self.lock:
            changed = False
            for name in ("summary", "description", "priority", "status", "resolution", "assignee"):
                if name in changes and getattr(issue, name) != changes[name]:
                    setattr(issue, name, changes[name])
                    changed = True
            if changed:
                issue.modified = now()
        if changed:
            self.emit("issue_update_succeeded", issue, f"Issue {issue.key} has been updated.")

    def add_comment(self, issue: WIssue, text: str, is_public: bool, user: User) -> WComment:
        with self.lock:
            comment = WComment(new_uuid(self._rng), issue.uuid, text, is_public, user)
            self.comments.append(comment)
            issue.modified = now()
        return comment

    def add_attachment(self, issue: WIssue, name: str, mime: str, content: bytes) -> WAttachment:
        with self.lock:
            att = WAttachment(new_uuid(self._rng), issue.uuid, name, mime, content)
            self.attachments.append(att)
        self.emit("attachment_created", issue, f"Attachment {name} has been added.", attachment=att)
        return att

    # agent API --------------------------------------------------------------------------------
    def agent_set_status(self, ident: UUID | str, status: str, resolution: str = "") -> None:
        """A human (or the backend) moves the issue; status is free text owned by Waldur."""
        self.update_issue(self.get_issue(str(ident)), {"status": status, "resolution": resolution})

    def agent_comment(self, ident: UUID | str, text: str, is_public: bool = True) -> str:
        """A comment by the support agent; Waldur sends no hook for it."""
        return self.add_comment(self.get_issue(str(ident)), text, is_public, self.agent).uuid.hex

    def agent_update(self, ident: UUID | str, **changes: Any) -> None:
        self.update_issue(self.get_issue(str(ident)), changes)

    def agent_delete_issue(self, ident: UUID | str) -> None:
        issue = self.get_issue(str(ident))
        with self.lock:
            del self.issues[issue.uuid]
        self.emit("issue_deletion_succeeded", issue, f"Issue {issue.key} has been deleted.")

    def agent_attach(self, ident: UUID | str, name: str, content: bytes, mime: str = "text/plain") -> str:
        return self.add_attachment(self.get_issue(str(ident)), name, mime, content).uuid.hex

    # inspection -------------------------------------------------------------------------------
    def list_issues(self) -> list[WIssue]:
        with self.lock:
            return list(self.issues.values())

    def by_remote_id(self, remote_id: str) -> list[WIssue]:
        with self.lock:
            return [i for i in self.issues.values() if i.remote_id == remote_id]

    def comments_of(self, ident: UUID | str) -> list[WComment]:
        issue = self.get_issue(str(ident))
        with self.lock:
            return [c for c in self.comments if c.issue == issue.uuid]

    # hooks ------------------------------------------------------------------------------------
    def emit(self, event: str, issue: WIssue, message: str, attachment: WAttachment | None = None) -> None:
        """Deliver `event` to every active hook subscribed to it (unsigned, as Waldur does)."""
        context: dict[str, Any] = {
            "issue_uuid": issue.uuid.hex,
            "issue_key": issue.key,
            "issue_url": self.url("support-issues", issue.uuid) if self.runner.port else "",
            "issue_status": issue.status,
            "issue_remote_id": issue.remote_id,
        }
        if attachment is not None:
            context |= {"attachment_uuid": attachment.uuid.hex, "attachment_file_name": attachment.file_name}
        payload = {"created": waldur_time(now()), "message": message, "type": event, "context": context}
        with self.lock:
            hooks = [h for h in self.hooks.values() if h["is_active"] and event in h["event_types"]]
        for hook in hooks:
            if hook["content_type"] == "form":
                form = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in payload.items()}
                body, ctype = urlencode(form).encode(), "application/x-www-form-urlencoded"
            else:
                body, ctype = json.dumps(payload).encode(), "application/json"
            headers = {"Content-Type": ctype}
            if self.hook_secret:
                headers["X-Webhook-Secret"] = self.hook_secret
            ident = f"{hook['uuid'].hex}:{time.monotonic_ns()}"
            self.webhooks.submit(hook["destination_url"], ident, event, body, _fixed_headers(headers))


def _fixed_headers(headers: dict[str, str]) -> Callable[[int], dict[str, str]]:
    """Waldur sends the same headers on every attempt (no delivery id, no signature)."""

    def headers_for(_retry: int) -> dict[str, str]:
        return dict(headers)

    return headers_for
