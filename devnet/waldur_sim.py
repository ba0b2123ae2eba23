"""A stateful Waldur (support module) simulator that refuses what the real server refuses.

Issues with unique remote_id, comments, attachments, customers/projects, request types, priorities,
backend-dependent status changes and unsigned web hooks for the support events. The rules, their
sources and the knobs that configure them are listed in devnet/waldur_rules.py.

Changes made over HTTP act as the token's user: the sidecar's token (`token`, role `role`) or the
agent's (`agent_token`, "Agent Smith", role `agent_role`, a support user linked to a Waldur user), so a
person can act as an agent with curl and the sidecar can tell its own changes from an agent's. The
in-process agent API acts as a human support agent (or the remote desk behind a non-basic backend).
Waldur has no comment events and a comment does not save its issue, so agent comments change state
silently (the sidecar must poll the comment list).
"""

from __future__ import annotations

import hmac
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from devnet import waldur_rules as rules
from devnet.jira_model import now
from devnet.sim_core import SimCore, SimRequest, SimResponse, json_response
from devnet.sim_runner import SimRunner
from devnet.sim_webhooks import WebhookSender, waldur_hook_body
from devnet.waldur_contract import WaldurContract, new_uuid

# Kept for callers of the old simulator: the generated client's IssueTypeEnum. A stock server refuses them.
ISSUE_TYPES = ("INCIDENT", "CHANGE_REQUEST", "SERVICE_REQUEST", "INFORMATIONAL")
# The remote desks' own first status (the remote desk owns it; Waldur only mirrors it).
REMOTE_INITIAL_STATUS = {"atlassian": "Waiting for support", "zammad": "new", "smax": "Ready"}


class WaldurError(Exception):
    """A DRF-style rejection: `detail` string, a list of messages, or {field: [messages]}."""

    def __init__(self, status: int, detail: str | list[str] | dict[str, list[str]]) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass
class User:
    """A Waldur user; `linked` False models a support user that has no Waldur user (e.g. a Jira agent)."""

    uuid: UUID
    username: str
    full_name: str
    email: str
    linked: bool = True


@dataclass
class SupportUser:
    """A support user (Waldur's `support.SupportUser`): what an issue's assignee links to; `user` is its
    Waldur user when it has one (models.py SupportUser.user)."""

    uuid: UUID
    name: str
    is_active: bool = True
    user: User | None = None


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
    caller: User
    status: str = rules.BASIC_DEFAULT_STATUS
    resolution: str = ""
    assignee: SupportUser | None = None
    created: datetime = field(default_factory=now)
    modified: datetime = field(default_factory=now)

    @property
    def reporter(self) -> User:
        """Kept for older callers: the caller (Waldur's `reporter` support user stays null here)."""
        return self.caller

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

    @property
    def modified(self) -> datetime:
        """models.py Comment is a TimeStampedModel; the sim never edits a comment, so it is `created`."""
        return self.created


@dataclass
class WAttachment:
    """models.py Attachment over a waldur_core media File (`file_uuid` is the File's uuid: the media URL)."""

    uuid: UUID
    issue: UUID
    file_name: str
    mime_type: str
    content: bytes
    file_uuid: UUID
    author: User | None = None
    created: datetime = field(default_factory=now)


class WaldurSim(SimCore):
    """Waldur simulator; `with WaldurSim(...) as sim:`; the API root is `sim.api_url` (ends in /api)."""

    burst_reason = None
    per_issue_reason = None
    # Waldur throttles no support endpoint (devnet/waldur_rules.py, row `throttle`): no limit unless a test passes
    # `rate_per_second=` (then one bucket for every request, answered 429 without a RateLimit-Reason).
    per_endpoint_limit = False

    def __init__(
        self,
        *,
        token: str = "waldur-test-token",
        orgs: dict[str, list[str]] | None = None,
        request_types: tuple[str, ...] = rules.STOCK_REQUEST_TYPES,
        priorities: tuple[str, ...] = rules.STOCK_PRIORITIES,
        backend: str = "basic",
        role: str = "support",
        user_email: str = "sidecar@example.com",
        user_full_name: str = "VirtEngine Sidecar",
        statuses: tuple[str, ...] = rules.STOCK_TERMINAL_STATUSES,
        status_transitions: dict[str, set[str]] | None = None,
        agent_linked: bool = False,
        agent_token: str | None = "waldur-agent-token",
        agent_full_name: str = "Agent Smith",
        agent_role: str = "support",
        hook_secret: str | None = None,
        webhooks: WebhookSender | None = None,
        upload_limit: int | None = None,
        excluded_attachment_types: str = "",
        seed: int = 0,
        **core: Any,
    ) -> None:
        super().__init__(seed=seed, **core)
        if backend not in rules.BACKENDS:
            raise ValueError(f"backend must be one of {rules.BACKENDS}")
        if role not in rules.ROLES:
            raise ValueError(f"role must be one of {rules.ROLES}")
        if agent_role not in ("staff", "support"):
            raise ValueError("agent_role must be 'staff' or 'support'")
        self.token: str | None = token
        self.request_types = request_types
        self.priorities = priorities
        self.backend = backend
        self.role = role
        self.statuses = statuses
        self.status_transitions = status_transitions
        self.hook_secret = hook_secret
        self.webhooks = webhooks or WebhookSender(seed=seed, max_retries=0)
        self._rng = random.Random(seed)
        self.me = User(new_uuid(self._rng), "virtengine-sidecar", user_full_name, user_email)
        self.agent = User(new_uuid(self._rng), "support-agent", "Support Agent", "agent@example.com", agent_linked)
        self.users: dict[UUID, User] = {self.me.uuid: self.me, self.agent.uuid: self.agent}
        self.customers: dict[UUID, str] = {}
        self.projects: dict[UUID, tuple[str, UUID]] = {}
        for customer, projects in (orgs or {"VirtEngine Customer": ["VirtEngine Project"]}).items():
            cid = new_uuid(self._rng)
            self.customers[cid] = customer
            for name in projects:
                self.projects[new_uuid(self._rng)] = (name, cid)
        self.support_users: dict[UUID, SupportUser] = {}
        # The agent behind `agent_token`: a Waldur user with a linked support user (what an assignee names).
        # Its own RNG, so the seeded ids of everything else stay what they were before it existed.
        agent_rng = random.Random(f"agent:{seed}")
        self.agent_token = agent_token
        self.agent_role = agent_role
        self.http_agent = User(new_uuid(agent_rng), "agent-smith", agent_full_name, "agent.smith@example.com")
        self.http_agent_support = SupportUser(new_uuid(agent_rng), agent_full_name, user=self.http_agent)
        self.users[self.http_agent.uuid] = self.http_agent
        self.support_users[self.http_agent_support.uuid] = self.http_agent_support
        self.request_type_ids = {name: new_uuid(self._rng) for name in request_types}
        self.priority_ids = {name: new_uuid(self._rng) for name in priorities}
        self.issues: dict[UUID, WIssue] = {}
        # Each remote_id in use (it is unique and read-only once set): the create check looks it up instead of
        # scanning every issue, which made the soak's simulator slower with each issue it held.
        self.remote_ids: dict[str, UUID] = {}
        self.comments: list[WComment] = []
        # The comments of each issue (by its uuid's hex), in creation order: a desk's comment list asks for one
        # issue's, and a scan of every comment would make the simulator slower the longer it runs.
        self.comments_by_issue: dict[str, list[WComment]] = {}
        # What a listing of every comment needs to cost its page, not every comment: whether `comments` is still
        # in `created` order (a wall clock that steps back breaks it), and how many comments each user may see
        # (public ones, and each author's own internal notes).
        self.comments_in_order = True
        self.wall_clock: Callable[[], datetime] = now  # when a comment is made (a test may step it back)
        self.public_comments = 0
        self.internal_comments: Counter[UUID] = Counter()  # by author uuid
        self.attachments: list[WAttachment] = []
        self.upload_limit = upload_limit
        self.excluded_attachment_types = excluded_attachment_types
        self._files_rng = random.Random(f"files:{seed}")  # its own RNG: other seeded ids stay put
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

    def user_url(self, user: User | None = None) -> str:
        """Hyperlink of a Waldur user (the token's user by default): what `caller` takes."""
        return self.url("users", (user or self.me).uuid)

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

    # roles and backend -------------------------------------------------------------------------
    @property
    def staff_or_support(self) -> bool:
        """The sidecar's token user is staff or support."""
        return self.role in ("staff", "support")

    def role_of(self, user: User | None) -> str:
        """The global role of a token's user: the sidecar's `role`, the HTTP agent's `agent_role`, else "user"."""
        if user is None or user is self.me:
            return self.role
        return self.agent_role if user is self.http_agent else "user"

    def comment_filter(self, user: User) -> Callable[[WComment], bool] | None:
        """views.py CommentViewSet.get_queryset: anyone but staff (support too) sees public comments and their
        own only, so a support-role sidecar never sees an agent's internal note. None: `user` sees every one."""
        if self.role_of(user) == "staff":
            return None
        return lambda c: c.is_public or c.author is user

    def visible_comment_count(self, user: User) -> int:
        """How many comments `user` sees (comment_filter), from the running tallies, not by counting them."""
        if self.role_of(user) == "staff":
            return len(self.comments)
        return self.public_comments + self.internal_comments[user.uuid]

    def is_staff_or_support(self, user: User | None) -> bool:
        return self.role_of(user) in ("staff", "support")

    def user_for(self, header: str) -> User | None:
        """The user an `Authorization: Token <key>` header authenticates (DRF TokenAuthentication), if any."""
        if not header.startswith("Token "):
            return None
        given = header[6:].encode("utf-8", "surrogateescape")
        for key, user in ((self.token, self.me), (self.agent_token, self.http_agent)):
            if key is not None and hmac.compare_digest(given, key.encode()):
                return user
        return None

    @property
    def update_is_available(self) -> bool:
        """backend/__init__.py SupportBackend.update_is_available is False; only BasicBackend says True."""
        return self.backend in rules.UPDATABLE_BACKENDS

    def registered_statuses(self) -> set[str]:
        """backend/basic.py BasicBackend._registered_statuses: the default status plus IssueStatus names."""
        return {rules.BASIC_DEFAULT_STATUS, *self.statuses}

    def available_statuses(self, issue: WIssue) -> list[str]:
        """backend/basic.py BasicBackend.get_available_statuses; remote backends offer none
        (backend/__init__.py SupportBackend.get_available_statuses)."""
        if not self.update_is_available:
            return []
        if self.status_transitions is not None:
            candidates = set(self.status_transitions.get(issue.status, set()))
        else:
            candidates = self.registered_statuses()
        return sorted(candidates - {issue.status})

    def resolved(self, issue: WIssue) -> bool | None:
        """models.py Issue.resolved -> IssueStatus.check_success_status: True for the RESOLVED type,
        False for CANCELED, None while open (the seeded names are "Resolved" and "Canceled")."""
        if issue.status == "Resolved":
            return True
        if issue.status == "Canceled":
            return False
        return None

    def require_staff_or_support(self, user: User | None = None) -> None:
        """waldur_core structure/permissions.py is_staff_or_support: DRF's PermissionDenied (403)."""
        if not self.is_staff_or_support(user):
            raise WaldurError(403, rules.PERMISSION_DENIED)

    def require_update_available(self) -> None:
        """views.py IssueViewSet._update_is_available_validator / validate_status_change_allowed."""
        if not self.update_is_available:
            raise WaldurError(400, [rules.UPDATE_NOT_AVAILABLE])

    # SimCore hooks ----------------------------------------------------------------------------
    def authenticate(self, req: SimRequest) -> bool:
        return self.user_for(req.headers.get("authorization", "")) is not None

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
        """Revoke the sidecar's token (the agent's keeps working)."""
        self.token = None

    # state changes ----------------------------------------------------------------------------
    def resolve_link(self, kind: str, value: Any, field_name: str) -> UUID | None:
        """A hyperlink to a customer/project/user/support user, as DRF's HyperlinkedRelatedField checks it."""
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
            "users": self.users,
        }
        if ident not in known[kind]:
            raise WaldurError(400, {field_name: ["Invalid hyperlink - Object does not exist."]})
        return ident

    def _link_field(self, errors: dict[str, list[str]], kind: str, data: dict[str, Any], name: str) -> UUID | None:
        """Field-level validation collects every field's error before any is raised (DRF to_internal_value)."""
        try:
            return self.resolve_link(kind, data.get(name), name)
        except WaldurError as exc:
            assert isinstance(exc.detail, dict)
            errors.update(exc.detail)
            return None

    def create_issue(self, data: dict[str, Any], user: User) -> WIssue:
        """POST /api/support-issues/ in the server's order: create permission, fields, then validate()."""
        # views.py IssueViewSet.can_create_user (create_permissions run before the serializer).
        if not user.email:
            raise WaldurError(400, [rules.NO_EMAIL])
        if not user.full_name:
            raise WaldurError(400, [rules.NO_FULL_NAME])
        errors: dict[str, list[str]] = {}
        # serializers.py IssueSerializer.get_fields: `type` is a ChoiceField of the active request
        # types' names, defaulting to the first one; a value outside it fails as DRF's invalid_choice.
        issue_type = data.get("type", self.request_types[0] if self.request_types else "")
        if issue_type not in self.request_types:
            errors["type"] = [rules.invalid_choice(issue_type)]
        # IssueSerializer.validate_summary strips; the model's summary is required and not blank.
        summary = data.get("summary")
        if "summary" not in data:
            errors["summary"] = ["This field is required."]
        elif not isinstance(summary, str):
            errors["summary"] = ["Not a valid string."]
        elif not summary.strip():
            errors["summary"] = ["This field may not be blank."]
        elif len(summary.strip()) > 255:
            errors["summary"] = ["The length of the summary field exceeds the allowed limit of 255."]
        # IssueSerializer.validate_priority runs for any value sent: role first, then an exact name.
        priority = ""
        if "priority" in data:
            if not self.is_staff_or_support(user):
                errors["priority"] = [rules.PRIORITY_ROLE]
            elif data["priority"] not in self.priorities:
                errors["priority"] = [rules.PRIORITY_MISSING]
            else:
                priority = data["priority"]
        manual = data.get("is_reported_manually", False)
        if manual not in (True, False, "true", "false", "True", "False", 1, 0, "1", "0"):
            errors["is_reported_manually"] = ["Must be a valid boolean."]
        manual = manual in (True, "true", "True", 1, "1")
        remote_id = data.get("remote_id")
        with self.lock:
            # models.py Issue.remote_id unique=True -> DRF UniqueValidator (a field error).
            if remote_id and remote_id in self.remote_ids:
                errors["remote_id"] = ["issue with this remote id already exists."]
            customer = self._link_field(errors, "customers", data, "customer")
            project = self._link_field(errors, "projects", data, "project")
            assignee = self._link_field(errors, "support-users", data, "assignee")
            caller_id = self._link_field(errors, "users", data, "caller")
            if errors:
                raise WaldurError(400, errors)
            # serializers.py IssueSerializer.validate (only reached once every field is valid).
            description = data.get("description") or ""
            if manual:
                caller = user
                if assignee:
                    raise WaldurError(400, {"assignee": [rules.MANUAL_ASSIGNEE]})
            else:
                if caller_id is None:
                    raise WaldurError(400, {"caller": [rules.CALLER_REQUIRED]})
                caller = self.users[caller_id]
                # ATLASSIAN_MAP_WALDUR_USERS_TO_SERVICEDESK_AGENTS off (the default): a mark in the description.
                description = f"Reported by {user.full_name}.\n\n" + description
            if project is not None:
                customer = self.projects[project][1]  # IssueSerializer.create: the project's customer wins
            self._number += 1
            ident = new_uuid(self._rng)
            issue = WIssue(
                ident,
                self._new_key(ident),
                issue_type,
                summary.strip() if isinstance(summary, str) else "",
                description,
                priority,
                remote_id,
                customer,
                project,
                caller,
                status=REMOTE_INITIAL_STATUS.get(self.backend, rules.BASIC_DEFAULT_STATUS),
                assignee=self.support_users[assignee] if assignee else None,
            )
            self.issues[issue.uuid] = issue
            if issue.remote_id:
                self.remote_ids[issue.remote_id] = issue.uuid
        self.emit("issue_creation_succeeded", issue, f"Issue {issue.key} has been created.", actor=user)
        return issue

    def _new_key(self, ident: UUID) -> str:
        """backend/basic.py create_issue: `WLD-` and the uuid's first 8 hex digits; a remote desk keys its own."""
        if self.backend == "basic":
            return f"WLD-{ident.hex[:8].upper()}"
        return f"SD-{self._number}" if self.backend == "atlassian" else str(self._number)

    def get_issue(self, ident: str) -> WIssue:
        try:
            issue = self.issues.get(UUID(ident))
        except ValueError:
            issue = None
        if issue is None:
            raise WaldurError(404, "No Issue matches the given query.")
        return issue

    def update_issue(
        self, issue: WIssue, changes: dict[str, Any], *, actor: User | None = None, saved: bool = False
    ) -> None:
        """Apply changes. `modified` (model_utils TimeStampedModel, auto_now) moves on every save: on any
        change, and on a PATCH even when nothing changed (`saved`: views.py perform_update always saves).
        The hook fires only when a field changed (handlers.py log_issue_save drops `modified`)."""
        with self.lock:
            changed = False
            for name in ("summary", "description", "priority", "status", "resolution", "assignee"):
                if name in changes and getattr(issue, name) != changes[name]:
                    setattr(issue, name, changes[name])
                    changed = True
            if changed or saved:
                issue.modified = max(now(), issue.modified)
        if changed:
            self.emit("issue_update_succeeded", issue, f"Issue {issue.key} has been updated.", actor=actor)

    def set_status(self, issue: WIssue, data: dict[str, Any], user: User | None = None) -> None:
        """views.py IssueViewSet.set_status: permission, then validate_status_change_allowed, then the body."""
        self.require_staff_or_support(user)
        self.require_update_available()
        status = data.get("status")
        if "status" not in data:
            raise WaldurError(400, {"status": ["This field is required."]})
        if not isinstance(status, str) or not status:
            raise WaldurError(400, {"status": ["This field may not be blank."]})
        # INFERRED (SetIssueStatusSerializer is not in the stored sources): a status outside the
        # backend's get_available_statuses is refused, worded as views.py bulk_update words it.
        if status not in self.available_statuses(issue):
            raise WaldurError(400, {"status": [rules.cannot_move(issue.status, status)]})
        self.update_issue(issue, {"status": status}, actor=user)

    def add_comment(self, issue: WIssue, text: str, is_public: bool, user: User) -> WComment:
        """views.py IssueViewSet.comment saves the comment only: the issue is not saved, so its `modified`
        stays (backend/basic.py create_comment does nothing; no handler touches the issue)."""
        with self.lock:
            comment = WComment(new_uuid(self._rng), issue.uuid, text, is_public, user, self.wall_clock())
            if self.comments and comment.created < self.comments[-1].created:
                self.comments_in_order = False
            if is_public:
                self.public_comments += 1
            else:
                self.internal_comments[user.uuid] += 1
            self.comments.append(comment)
            self.comments_by_issue.setdefault(issue.uuid.hex, []).append(comment)
        return comment

    def add_attachment(
        self, issue: WIssue, name: str, mime: str | None, content: bytes, user: User | None = None
    ) -> WAttachment:
        """views.py perform_create (backend create_attachment does nothing on basic); the file is stored
        through media/storage.py DatabaseStorage: the name made valid and unique, the type sniffed."""
        with self.lock:
            stored = self._stored_name(name)
            att = WAttachment(
                new_uuid(self._rng),
                issue.uuid,
                stored,
                mime or sniff_mime(content),
                content,
                new_uuid(self._files_rng),
                user,
            )
            self.attachments.append(att)
        # handlers.py log_attachment_save: "Attachment for issue {issue_key} has been created."
        self.emit("attachment_created", issue, f"Attachment for issue {issue.key} has been created.", att, user)
        return att

    def delete_attachment(self, att: WAttachment, user: User | None = None) -> None:
        with self.lock:
            self.attachments.remove(att)
            issue = self.issues.get(att.issue)
        if issue is not None:  # handlers.py log_attachment_delete
            self.emit("attachment_deleted", issue, f"Attachment for issue {issue.key} has been deleted.", att, user)

    def _stored_name(self, name: str) -> str:
        """Django FileField: the upload's basename, storage.get_valid_name (django.utils.text
        get_valid_filename: spaces to "_", drop all but [-\\w.]), then get_available_name: a taken name
        gets "_" and 7 random letters/digits before its extension (DatabaseStorage.exists)."""
        base = re.sub(r"(?u)[^-\w.]", "", name.replace("\\", "/").rsplit("/", 1)[-1].strip().replace(" ", "_"))
        if base in ("", ".", ".."):
            base = "file"
        taken = {a.file_name for a in self.attachments}
        root, ext = os.path.splitext(base)
        while base in taken:
            alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            base = f"{root}_{''.join(self._files_rng.choice(alphabet) for _ in range(7))}{ext}"
        return base

    def attachment_create_is_available(self, issue: WIssue) -> bool:
        """backend/__init__.py SupportBackend: True; backend/smax.py: only while the issue is active."""
        return self.backend != "smax" or self.resolved(issue) is None

    def attachment_destroy_is_available(self, att: WAttachment) -> bool:
        """backend/__init__.py SupportBackend (basic, atlassian): False; zammad.py: True without a
        backend_id (the simulator never has one); smax.py: while the issue is active."""
        if self.backend == "zammad":
            return True
        issue = self.issues.get(att.issue)
        return self.backend == "smax" and issue is not None and self.resolved(issue) is None

    # agent API --------------------------------------------------------------------------------
    def agent_set_status(self, ident: UUID | str, status: str, resolution: str = "") -> None:
        """A human (or the remote desk) moves the issue; no rule applies to them."""
        self.update_issue(self.get_issue(str(ident)), {"status": status, "resolution": resolution}, actor=self.agent)

    def agent_comment(self, ident: UUID | str, text: str, is_public: bool = True) -> str:
        """A comment by the support agent; Waldur sends no hook for it."""
        return self.add_comment(self.get_issue(str(ident)), text, is_public, self.agent).uuid.hex

    def agent_update(self, ident: UUID | str, **changes: Any) -> None:
        """Any field, priority included (which the API keeps read-only after create): a remote desk or the
        admin at work."""
        self.update_issue(self.get_issue(str(ident)), changes, actor=self.agent)

    def agent_delete_issue(self, ident: UUID | str) -> None:
        issue = self.get_issue(str(ident))
        with self.lock:
            del self.issues[issue.uuid]
            if issue.remote_id:
                self.remote_ids.pop(issue.remote_id, None)
        self.emit("issue_deletion_succeeded", issue, f"Issue {issue.key} has been deleted.")

    def agent_attach(self, ident: UUID | str, name: str, content: bytes, mime: str | None = None) -> str:
        """An attachment added at the desk by the agent (no API rule applies); the type is sniffed."""
        return self.add_attachment(self.get_issue(str(ident)), name, mime, content, self.agent).uuid.hex

    # inspection -------------------------------------------------------------------------------
    def list_issues(self) -> list[WIssue]:
        with self.lock:
            return list(self.issues.values())

    def by_remote_id(self, remote_id: str) -> list[WIssue]:
        with self.lock:
            found = self.remote_ids.get(remote_id)
            return [self.issues[found]] if found is not None else []

    def comments_of(self, ident: UUID | str) -> list[WComment]:
        issue = self.get_issue(str(ident))
        with self.lock:
            return list(self.comments_by_issue.get(issue.uuid.hex, []))

    # hooks ------------------------------------------------------------------------------------
    def event_context(
        self, issue: WIssue, attachment: WAttachment | None = None, actor: User | None = None
    ) -> dict[str, Any]:
        """waldur_core logging/loggers.py compile_context over models.py Issue.get_log_fields: `issue_`
        prefixed scalars (a null link becomes the string "None"), linked objects' own fields unprefixed,
        plus the acting user's. There is no remote_id and no URL in it: look the issue up by uuid."""
        user = actor or self.me
        context: dict[str, Any] = {
            "user_uuid": user.uuid.hex,
            "user_username": user.username,
            "user_full_name": user.full_name,
        }
        if attachment is not None:  # models.py Attachment.get_log_fields: uuid, issue, author, backend_id
            context["attachment_uuid"] = attachment.uuid.hex
            context["attachment_backend_id"] = ""
        context |= {
            "issue_uuid": issue.uuid.hex,
            "issue_type": issue.type,
            "issue_key": issue.key,
            "issue_status": issue.status,
            "issue_link": "",
            "issue_summary": issue.summary,
            "issue_reporter": "None",
            "caller_uuid": issue.caller.uuid.hex,
            "caller_username": issue.caller.username,
            "caller_full_name": issue.caller.full_name,
            "issue_resource": "None",
        }
        if issue.customer is not None:
            context |= {"customer_uuid": issue.customer.hex, "customer_name": self.customers[issue.customer]}
        else:
            context["issue_customer"] = "None"
        if issue.project is not None:
            context |= {"project_uuid": issue.project.hex, "project_name": self.projects[issue.project][0]}
        else:
            context["issue_project"] = "None"
        return context

    def emit(
        self,
        event: str,
        issue: WIssue,
        message: str,
        attachment: WAttachment | None = None,
        actor: User | None = None,
    ) -> None:
        """Deliver `event` to every active hook subscribed to it (unsigned, as Waldur does)."""
        payload = {
            "created": now().isoformat(),  # logging/models.py WebHook.process: event.created.isoformat()
            "message": message,
            "context": self.event_context(issue, attachment, actor),
            "event_type": event,
        }
        with self.lock:
            hooks = [h for h in self.hooks.values() if h["is_active"] and event in h["event_types"]]
        for hook in hooks:
            body, ctype = waldur_hook_body(payload, hook["content_type"])
            headers = {"Content-Type": ctype}
            if self.hook_secret:
                headers["X-Webhook-Secret"] = self.hook_secret  # not Waldur's: a devnet proxy may add it
            ident = f"{hook['uuid'].hex}:{time.monotonic_ns()}"
            self.webhooks.submit(hook["destination_url"], ident, event, body, _fixed_headers(headers))


def _fixed_headers(headers: dict[str, str]) -> Callable[[int], dict[str, str]]:
    """Waldur sends the same headers on every attempt (no delivery id, no signature)."""

    def headers_for(_retry: int) -> dict[str, str]:
        return dict(headers)

    return headers_for


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
)


def sniff_mime(content: bytes) -> str:
    """media/storage.py DatabaseStorage._save: libmagic over the first 1024 bytes. This is a small
    stand-in for the common types (libmagic itself is not a dependency here): magic numbers, else
    text/plain for UTF-8 text, else application/octet-stream."""
    head = content[:1024]
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:12].startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a character cut at 1024 bytes is still text
            return "application/octet-stream"
    return "text/plain"
