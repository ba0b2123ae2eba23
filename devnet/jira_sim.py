"""A stateful Jira Cloud (+ JSM) simulator: issues, workflow, comments, search, signed webhooks.

State changes go through the methods here, whether they come from HTTP or from the in-process agent
API (acting as a human agent), so both emit the same webhooks and changelog. Over HTTP a change is the
authenticated account's: the sidecar's credential, or the agent's (`agent_email` / `agent_token`), so a
person on the devnet can act as an agent with curl and the sidecar sees someone else's change.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from devnet import jira_hooks, jira_rules
from devnet.jira_files import MEDIA_PREFIX, JiraAttachments
from devnet.jira_hooks import changelog_item, sign_jira_body
from devnet.jira_model import (
    Comment,
    History,
    Issue,
    Transition,
    Workflow,
    adf_problems,
    adf_to_text,
    now,
    text_to_adf,
)
from devnet.jira_rules import (
    DEFAULT_RESOLUTIONS,
    DEFAULT_SEARCH_DELAY,
    ISSUE_SCREEN,
    JSM_CREATE_FAILED,
    REQUEST_SCREEN,
    REQUEST_TYPE_FIELDS,
    not_on_screen,
)
from devnet.jira_search import SearchLag, UpdatedIndex
from devnet.sim_core import SimCore, SimRequest, SimResponse, json_response
from devnet.sim_runner import SimRunner
from devnet.sim_webhooks import WebhookSender

DEFAULT_ISSUE_TYPES = ("Task", "Bug", "Incident", "Service Request", "[System] Service request", "Support")
DEFAULT_PRIORITIES = ("Lowest", "Low", "Medium", "High", "Highest")
ASSIGNEE_PATH = re.compile(r"^/rest/api/3/issue/[^/]+/assignee$")
# getAttachment / removeAttachment 404 ("the attachment is not found", pinned spec); the sentence is ours.


__all__ = ["JiraError", "JiraSim", "sign_jira_body"]


class JiraError(Exception):
    """A business-rule rejection that the HTTP layer turns into a Jira error body."""

    def __init__(
        self, status: int, message: str, errors: dict[str, str] | None = None, i18n: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or {}
        self.i18n = i18n or {}  # JSM's i18nErrorMessage


@dataclass
class Account:
    account_id: str
    display_name: str
    email: str = ""


class JiraSim(JiraAttachments, SimCore):
    """Jira Cloud simulator; use as `with JiraSim(...) as sim:` or `async with`."""

    def __init__(
        self,
        *,
        email: str = "sidecar@example.com",
        api_token: str = "jira-test-token",
        account_id: str = "5c0000000000000000516465",
        display_name: str = "VirtEngine Sidecar",
        agent_account_id: str = "5b10ac8d82e05b22cc7d4ef5",
        agent_name: str = "Agent Smith",
        agent_email: str = "agent@example.com",
        agent_token: str = "jira-agent-token",
        projects: tuple[str, ...] = ("VESUPPORT",),
        issue_types: tuple[str, ...] = DEFAULT_ISSUE_TYPES,
        priorities: tuple[str, ...] = DEFAULT_PRIORITIES,
        workflow: Workflow | None = None,
        resolutions: tuple[str, ...] = DEFAULT_RESOLUTIONS,
        screen: frozenset[str] = ISSUE_SCREEN,
        request_screen: frozenset[str] = REQUEST_SCREEN,
        search_delay: float = DEFAULT_SEARCH_DELAY,
        max_attachment_bytes: int = 1_000_000,
        attachments_enabled: bool = True,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhooks: WebhookSender | None = None,
        seed: int = 0,
        **core: Any,
    ) -> None:
        super().__init__(seed=seed, **core)
        self.email = email
        self.api_token: str | None = api_token
        self.me = Account(account_id, display_name, email)
        self.agent = Account(agent_account_id, agent_name, agent_email)
        self.agent_token = agent_token  # the agent's own Basic credential; `revoke_token` leaves it alone
        self.users = {a.account_id: a for a in (self.me, self.agent)}  # who can be assigned and shown
        # "agent": changes made with the sidecar's credential are attributed to the agent account (a test
        # knob); changes made with the agent's credential are the agent's whatever this says.
        self.api_actor = "self"
        self.projects = {key: str(10000 + i) for i, key in enumerate(projects)}
        self.issue_types = issue_types
        self.priorities = priorities
        self.workflow = workflow or Workflow.default()
        self.resolutions = resolutions  # ids 10000, 10001, ... in this order
        self.screen = screen  # create/edit screen of plain issues (rule 6 in devnet/jira_rules.py)
        self.request_screen = request_screen  # edit screen of issues created through a JSM request type
        self.search_lag = SearchLag(search_delay, self.clock)
        self._init_attachments(max_attachment_bytes, attachments_enabled)  # knobs: devnet/jira_files.py
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhooks = webhooks or WebhookSender(seed=seed)
        self.issues: dict[str, Issue] = {}
        # label -> keys of issues any version of which carried it: a superset that search narrows down,
        # so a label lookup costs what a real Jira index costs, not a scan of every issue.
        self.label_index: dict[str, set[str]] = {}  # keys, like self.issues
        self.keys_by_id: dict[str, str] = {}  # an issue's key by its id: a look-up by id scanned every issue
        self.updated_index = UpdatedIndex()  # keys by `updated`: a sweep's search costs what changed lately
        self.creates_by_label: Counter[str] = Counter()
        self.service_desks: dict[str, str] = {}  # service desk id -> project key
        self.request_types: dict[tuple[str, str], str] = {}  # (service desk id, request type id) -> issue type
        self.request_type_fields: dict[tuple[str, str], tuple[str, ...]] = {}  # ... -> fields on its form
        self._rng = random.Random(seed)
        self._ids = {"issue": 10000, "comment": 10000, "attachment": 10000, "changelog": 10000}
        self._numbers: Counter[str] = Counter()
        from devnet.jira_api import build_routes  # routes need this class; import late to avoid a cycle

        self.inner = build_routes(self)
        self.runner = SimRunner(self, on_start=self._start_hook, on_stop=self.webhooks.close)
        if self.validate:
            from devnet.contract_check import JiraContract

            self.contract: JiraContract | None = JiraContract()
        else:
            self.contract = None

    # lifecycle --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.runner.base_url

    # search index -----------------------------------------------------------------------------
    @property
    def search_delay(self) -> float:
        """Seconds (of `clock`) before search sees a write."""
        return self.search_lag.lag

    @search_delay.setter
    def search_delay(self, seconds: float) -> None:
        self.search_lag.lag = seconds

    def flush_index(self) -> None:
        """Index every write made so far, as if the lag had passed for them."""
        with self.lock:
            SearchLag.flush(issue.versions for issue in self.issues.values())

    # SimCore hooks ----------------------------------------------------------------------------
    def authenticate(self, req: SimRequest) -> bool:
        if req.path.startswith(MEDIA_PREFIX):
            return True  # the signed media URL carries its own token (checked by the route), no Basic auth
        return self.account_of(req.headers.get("authorization", "")) is not None

    def account_of(self, header: str) -> Account | None:
        """The account a Basic `Authorization` header authenticates (the sidecar's or the agent's), if any.
        Jira Cloud takes `email:api-token` of any user; a wrong token is 401 on every route."""
        if not header.startswith("Basic "):
            return None
        try:
            user, _, token = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:
            return None
        for account, email, secret in (
            (self.me, self.email, self.api_token),
            (self.agent, self.agent.email, self.agent_token),
        ):
            if secret is not None and hmac.compare_digest(user, email) and hmac.compare_digest(token, secret):
                return account
        return None

    def http_actor(self, header: str) -> bool | None:
        """`as_agent` for a change made over HTTP: True with the agent's credential, else None (the sidecar's
        credential, attributed as `api_actor` says)."""
        return True if self.account_of(header) is self.agent else None

    def error(self, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> SimResponse:
        """Jira's ErrorCollection. For 401 (wrong, revoked or expired token; every route, checked before
        routing in SimCore._gate) the message is Jira Cloud's "Client must be authenticated to access this
        resource." (jira-node/node-jira-client#255, atlassian/gajira-login#39); Jira words it in JSON,
        XML or plain text by Accept header, the simulator sends the JSON form the spec declares."""
        return json_response(status, {"errorMessages": [message], "errors": {}}, extra)

    def write_key(self, req: SimRequest) -> str | None:
        match = re.match(r"^/rest/(?:api/3/issue|servicedeskapi/request)/([^/]+)", req.path)
        if match is None:
            return None
        try:
            return self.issue(match.group(1)).key  # an id and a key of one issue share a budget
        except JiraError:
            return match.group(1)

    def check_request(self, req: SimRequest) -> list[str]:
        if req.path.startswith(MEDIA_PREFIX):
            return []  # Atlassian's media service (api.media.atlassian.com), not the platform API the spec covers
        return self.contract.check_request(_unassign_as_documented(req)) if self.contract else []

    def check_response(self, req: SimRequest, resp: SimResponse) -> list[str]:
        if req.path.startswith(MEDIA_PREFIX):
            return []
        return self.contract.check_response(req, resp) if self.contract else []

    # auth control -----------------------------------------------------------------------------
    def revoke_token(self) -> None:
        """Every later request fails with 401, as after revoking the API token."""
        self.api_token = None

    def set_token(self, token: str) -> None:
        self.api_token = token

    # configuration ----------------------------------------------------------------------------
    def add_user(self, account_id: str, display_name: str) -> None:
        """A Jira user issues can be assigned to."""
        with self.lock:
            self.users[account_id] = Account(account_id, display_name)

    def add_request_type(
        self,
        service_desk_id: str,
        request_type_id: str,
        issue_type: str = "Service Request",
        fields: tuple[str, ...] = REQUEST_TYPE_FIELDS,
    ) -> None:
        """A JSM request type whose form shows `fields`; its service desk is the first configured
        project, like agent-created issues."""
        if issue_type not in self.issue_types:
            raise ValueError(f"unknown issue type {issue_type!r}")
        with self.lock:
            self.service_desks.setdefault(service_desk_id, next(iter(self.projects)))
            self.request_types[(service_desk_id, request_type_id)] = issue_type
            self.request_type_fields[(service_desk_id, request_type_id)] = tuple(fields)

    def resolution_id(self, name: str) -> str:
        return str(10000 + self.resolutions.index(name))

    def screen_of(self, issue: Issue) -> frozenset[str]:
        """Fields on the issue's edit screen: a JSM request type's issue type has its own screen."""
        return self.request_screen if issue.request_type_id is not None else self.screen

    # inspection -------------------------------------------------------------------------------
    def list_issues(self) -> list[Issue]:
        with self.lock:
            return list(self.issues.values())

    def issue(self, key_or_id: str) -> Issue:
        with self.lock:
            key = key_or_id if key_or_id in self.issues else self.keys_by_id.get(key_or_id)
            if key is not None:
                return self.issues[key]
        raise JiraError(404, "Issue does not exist or you do not have permission to see it.")

    def creates_for_label(self, label: str) -> int:
        with self.lock:
            return self.creates_by_label[label]

    # mutations (shared by REST and the agent API) ---------------------------------------------
    def _actor(self, as_agent: bool | None) -> Account:
        if as_agent is None:
            as_agent = self.api_actor == "agent"
        return self.agent if as_agent else self.me

    def _next(self, kind: str) -> str:
        with self.lock:
            self._ids[kind] += 1
            return str(self._ids[kind])

    def reindex_as_is(self, issue: Issue) -> None:
        """Search sees the issue as it is now, at once and as if it always had: for a test or a benchmark that
        sets an issue's times back (call under `lock`)."""
        issue.versions = [(float("-inf"), issue.snapshot())]
        self.updated_index.reset(issue.key, issue.updated)

    def _touch(self, issue: Issue) -> None:
        """Record a new version; an issue counts once towards each label it carries, at create or
        by a later edit (a JSM request may get its labels only after it exists)."""
        issue.updated = now()
        snap = issue.snapshot()
        issue.add_version(self.search_lag.visible_at(), snap, self.search_lag.now())
        self.updated_index.note(issue.key, issue.updated)
        for label in snap["labels"]:
            self.label_index.setdefault(str(label).lower(), set()).add(issue.key)
        new = [label for label in issue.labels if label not in issue.counted_labels]
        issue.counted_labels.update(new)
        self.creates_by_label.update(new)

    def resolve_assignee(self, account_id: Any) -> str | None:
        """The account an assignment names: None unassigns; "-1" is the project default (unassigned here)."""
        if account_id is None or account_id == "-1":
            return None
        with self.lock:
            if account_id not in self.users:
                raise JiraError(400, "", {"assignee": f"User '{account_id}' does not exist."})
        return str(account_id)

    def _assignee_item(self, old: str | None, new: str | None) -> dict[str, Any]:
        names = [self.users[a].display_name if a else None for a in (old, new)]
        return {**changelog_item("assignee", names[0], names[1]), "from": old, "to": new}

    def create_issue(
        self,
        fields: dict[str, Any],
        properties: list[dict[str, Any]],
        as_agent: bool | None,
        request_type_id: str | None = None,
    ) -> Issue:
        project = (fields.get("project") or {}).get("key") or next(
            (k for k, v in self.projects.items() if v == (fields.get("project") or {}).get("id")), None
        )
        errors: dict[str, str] = {}
        if project not in self.projects:
            errors["project"] = "valid project is required"
        itype = (fields.get("issuetype") or {}).get("name")
        if itype not in self.issue_types:
            errors["issuetype"] = "valid issue type is required"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        elif _has_newline(fields["summary"]):
            errors["summary"] = jira_rules.SUMMARY_NEWLINE
        priority = (fields.get("priority") or {}).get("name", "Medium")
        if priority not in self.priorities:
            errors["priority"] = f"The priority selected is invalid: {priority}"
        description = fields.get("description")
        if description is not None and not isinstance(description, dict):
            errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        labels = fields.get("labels") or []
        if any(" " in label for label in labels):
            errors["labels"] = "The label must not contain spaces."
        assignee: str | None = None
        try:
            assignee = self.resolve_assignee(_named_account(fields.get("assignee")))
        except JiraError as exc:
            errors |= exc.errors
        # Rule 6: a field not on the create screen is refused by name, the whole create with it
        # (activepieces/activepieces#3476 quotes the body for priority). A JSM request's fields were
        # checked against its request type's form already.
        screen = ISSUE_SCREEN if request_type_id is not None else self.screen
        for name in sorted(set(fields) - screen):
            errors[name] = not_on_screen(name)
        if errors:
            raise JiraError(400, "", errors)
        assert isinstance(project, str) and isinstance(itype, str)
        actor = self._actor(as_agent)
        with self.lock:
            self._numbers[project] += 1
            issue = Issue(
                id=self._next("issue"),
                key=f"{project}-{self._numbers[project]}",
                project=project,
                issuetype=itype,
                summary=fields["summary"],
                description=description,
                labels=list(dict.fromkeys(labels)),
                priority=priority,
                status=self.workflow.initial,
                reporter=actor.account_id,
                assignee=assignee,
                request_type_id=request_type_id,
            )
            issue.properties = {p["key"]: p.get("value") for p in properties}
            self.issues[issue.key] = issue
            self.keys_by_id[issue.id] = issue.key
            self._touch(issue)
        self._emit_issue("jira:issue_created", issue, actor, [], "issue_created")
        return issue

    def edit_issue(
        self, issue: Issue, fields: dict[str, Any], update: dict[str, Any], as_agent: bool | None, screen: bool = True
    ) -> None:
        """Edit summary/description/labels/priority/assignee; `status` is ignored, as in Jira.

        Every field is checked before anything changes, so a rejected edit changes nothing: Jira validates
        the whole edit and answers 400 for it (the edit operation's 400 lists "fields that don't exist or
        aren't associated with the project and issue type", devnet/contracts/jira-platform-v3.subset.json),
        which is how a priority refused by the screen takes the label change in the same request with it.
        `screen=False` is a human agent in the UI, who is not held to the REST edit screen.
        """
        items: list[dict[str, Any]] = []
        errors: dict[str, str] = {}
        if screen:
            allowed = self.screen_of(issue) - {"project", "issuetype"}
            for name in sorted((set(fields) | set(update)) - allowed):
                errors[name] = not_on_screen(name)  # rule 6, e.g. priority on a JSM request's issue
        if "summary" in fields:
            if not isinstance(fields["summary"], str) or not fields["summary"].strip():
                errors["summary"] = "You must specify a summary of the issue."
            elif _has_newline(fields["summary"]):
                errors["summary"] = jira_rules.SUMMARY_NEWLINE  # rule 1 holds for edits too
        if "priority" in fields and "priority" not in errors:
            wanted = (fields["priority"] or {}).get("name")
            if wanted not in self.priorities:
                errors["priority"] = f"The priority selected is invalid: {wanted}"
        assignee: str | None = None
        if "assignee" in fields and "assignee" not in errors:
            try:
                assignee = self.resolve_assignee(_named_account(fields["assignee"]))
            except JiraError as exc:
                errors |= exc.errors
        if errors:
            raise JiraError(400, "", errors)
        with self.lock:
            if "summary" in fields and fields["summary"] != issue.summary:
                items.append(changelog_item("summary", issue.summary, fields["summary"]))
                issue.summary = fields["summary"]
            if "description" in fields and fields["description"] != issue.description:
                items.append(
                    changelog_item("description", adf_to_text(issue.description), adf_to_text(fields["description"]))
                )
                issue.description = fields["description"]
            if "priority" in fields and fields["priority"]["name"] != issue.priority:
                item = changelog_item("priority", issue.priority, fields["priority"]["name"])
                ids = (str(self.priorities.index(n) + 1) for n in (issue.priority, fields["priority"]["name"]))
                items.append({**item, "from": next(ids), "to": next(ids)})  # Jira's items carry priority ids
                issue.priority = fields["priority"]["name"]
            if "assignee" in fields and assignee != issue.assignee:
                items.append(self._assignee_item(issue.assignee, assignee))
                issue.assignee = assignee
            labels = list(issue.labels)
            if "labels" in fields:
                labels = list(dict.fromkeys(fields["labels"] or []))
            for op in update.get("labels", []):
                if "add" in op and op["add"] not in labels:
                    labels.append(op["add"])
                if "remove" in op and op["remove"] in labels:
                    labels.remove(op["remove"])
                if "set" in op:
                    labels = list(dict.fromkeys(op["set"]))
            if labels != issue.labels:
                items.append(changelog_item("labels", " ".join(issue.labels), " ".join(labels)))
                issue.labels = labels
            if items:
                self._touch(issue)
        if items:
            kind = "issue_assigned" if [i["field"] for i in items] == ["assignee"] else "issue_generic"
            self._emit_issue("jira:issue_updated", issue, self._actor(as_agent), items, kind)

    def assign(self, issue: Issue, account_id: str | None, as_agent: bool | None) -> None:
        """PUT .../assignee: None unassigns; an unchanged assignee changes nothing (and sends no event)."""
        assignee = self.resolve_assignee(account_id)
        with self.lock:
            if assignee == issue.assignee:
                return
            item = self._assignee_item(issue.assignee, assignee)
            issue.assignee = assignee
            self._touch(issue)
        self._emit_issue("jira:issue_updated", issue, self._actor(as_agent), [item], "issue_assigned")

    def create_request(
        self, service_desk_id: Any, request_type_id: Any, values: Any, adf: bool, as_agent: bool | None
    ) -> Issue:
        """A JSM customer request: a normal issue of the request type's issue type in the desk's project.
        The form's description is plain text unless `isAdfRequest`; either way Jira keeps it as ADF."""
        with self.lock:
            project = self.service_desks.get(str(service_desk_id))
            itype = self.request_types.get((str(service_desk_id), str(request_type_id)))
            form = self.request_type_fields.get((str(service_desk_id), str(request_type_id)), ())
        if project is None:
            raise JiraError(
                400,
                f"The service desk with ID '{service_desk_id}' does not exist.",
                i18n={"i18nKey": "sd.servicedesk.error.not.found", "parameters": [str(service_desk_id)]},
            )
        if itype is None:
            raise JiraError(
                400,
                f"The request type with ID '{request_type_id}' does not exist in service desk '{service_desk_id}'.",
                i18n={"i18nKey": "sd.requesttype.error.not.found", "parameters": [str(request_type_id)]},
            )
        if not isinstance(values, dict):
            raise JiraError(400, "requestFieldValues must be an object.")
        # Rule 7: requestFieldValues takes the request type's form fields only ("Field values are provided
        # via requestFieldValues" for "the fields ... of that particular request type", GET
        # .../requesttype/{id}/field, https://developer.atlassian.com/cloud/jira/service-desk/rest/api-group-request/);
        # a default request type's form has no Labels and no Priority. The answer starts with JSM's own
        # sentence for a refused request (a JSM integration's health check compares it verbatim); the
        # field sentence after it is Jira's field-screen error, this simulator's choice of wording.
        unknown = sorted(set(values) - set(form))
        if unknown:
            raise JiraError(
                400,
                f"{JSM_CREATE_FAILED} {' '.join(not_on_screen(name) for name in unknown)}",
                i18n={"i18nKey": "sd.request.create.error.field.not.on.form", "parameters": unknown},  # key: ours
            )
        summary, labels, description = values.get("summary"), values.get("labels") or [], values.get("description")
        if not isinstance(summary, str) or not summary.strip():
            raise JiraError(400, f"{JSM_CREATE_FAILED} Please provide a valid value for field 'Summary'")
        if _has_newline(summary):
            raise JiraError(400, f"summary: {jira_rules.SUMMARY_NEWLINE}")  # rule 1, in JSM's error shape
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise JiraError(400, "labels: the value must be a list of strings.")
        if description is not None and not isinstance(description, dict if adf else str):
            kind = "an Atlassian Document (isAdfRequest is true)" if adf else "plain text"
            raise JiraError(400, f"description: the value must be {kind}.")
        if adf and description is not None and adf_problems(description, "description"):
            raise JiraError(400, "; ".join(adf_problems(description, "description")))
        if isinstance(description, str):
            description = text_to_adf(description) if description else None
        fields = {
            "project": {"key": project},
            "issuetype": {"name": itype},
            "summary": summary,
            "description": description,
            "labels": labels,
        }
        return self.create_issue(fields, [], as_agent, request_type_id=str(request_type_id))

    def transition(
        self,
        issue: Issue,
        transition_id: str,
        as_agent: bool | None,
        fields: dict[str, Any] | None = None,
        update: dict[str, Any] | None = None,
    ) -> None:
        """Move the issue through one workflow transition, holding its screen's rules (2-5 in
        devnet/jira_rules.py). Nothing changes unless every check passes."""
        fields, update = fields or {}, update or {}
        with self.lock:
            match = [t for t in self.workflow.available(issue.status) if t.id == str(transition_id)]
            if not match:
                raise JiraError(400, f"Transition id '{transition_id}' is not valid for this issue.")
            resolution = self._screen_values(match[0], fields, update)
            old, new = self.workflow.status(issue.status), self.workflow.status(match[0].to)
            items = [{**changelog_item("status", old.name, new.name), "from": old.id, "to": new.id}]
            if new.category != "done":
                resolution = None  # Jira's reopen post-function clears the resolution
            elif resolution is None:
                resolution = issue.resolution  # a screenless move between done statuses keeps it
            if resolution != issue.resolution:
                items.append(changelog_item("resolution", issue.resolution, resolution))
            issue.status, issue.resolution = new.name, resolution
            self._touch(issue)
        self._emit_issue("jira:issue_updated", issue, self._actor(as_agent), items, "issue_generic")

    def _screen_values(self, transition: Transition, fields: dict[str, Any], update: dict[str, Any]) -> str | None:
        """The resolution a transition request sets, after checking it against the transition's screen.

        The transition operation's 400 covers "a field that isn't included on the transition screen is
        defined in `fields` or `update`" (devnet/contracts/jira-platform-v3.subset.json); Jira's text for it
        is the field-screen error (mozilla/jira-bugzilla-integration#1258, for resolution). A required
        screen field left out is "Field Resolution is required." in errorMessages
        (checkmarx-ts/checkmarx-cxflow-github-action#46, mozilla/jira-bugzilla-integration#1055).
        """
        errors = {name: not_on_screen(name) for name in sorted((set(fields) | set(update)) - set(transition.screen))}
        both = sorted(set(fields) & set(update))
        if both:
            # documented as a 400 of the transition operation; the sentence is the simulator's wording
            raise JiraError(400, f"Field '{both[0]}' cannot be specified in both 'fields' and 'update'.")
        if errors:
            raise JiraError(400, "", errors)
        missing = [name for name in transition.required if fields.get(name) is None and not update.get(name)]
        if missing:
            raise JiraError(400, jira_rules.FIELD_REQUIRED.format(name=missing[0].capitalize()))
        value = fields.get("resolution")
        if value is None:
            ops = update.get("resolution") or []
            value = next((op.get("set") for op in ops if isinstance(op, dict) and "set" in op), None)
        if value is None:
            return None
        name = value.get("name") if isinstance(value, dict) else None
        by_id = {self.resolution_id(n): n for n in self.resolutions}
        if isinstance(value, dict) and str(value.get("id")) in by_id and name is None:
            name = by_id[str(value["id"])]
        if name not in self.resolutions:
            raise JiraError(400, "", {"resolution": jira_rules.BAD_RESOLUTION})
        return str(name)

    def add_comment(self, issue: Issue, body: dict[str, Any], public: bool, as_agent: bool | None) -> Comment:
        actor = self._actor(as_agent)
        with self.lock:
            stamp = now()
            comment = Comment(self._next("comment"), actor.account_id, body, public, stamp, stamp)
            issue.comments.append(comment)
            self._touch(issue)
        self._emit_comment("comment_created", issue, comment)
        return comment

    # attachments: devnet/jira_files.py (JiraAttachments); the media host is served before routing
    def endpoint_of(self, scope: dict[str, Any]) -> str:
        """The media host is another service than the REST API: its own endpoint (and rate-limit bucket)."""
        if str(scope["path"]).startswith(MEDIA_PREFIX):
            return f"{str(scope['method']).upper()} {MEDIA_PREFIX}{{file}}"
        return super().endpoint_of(scope)

    async def _dispatch(self, scope: dict[str, Any], req: SimRequest) -> SimResponse:
        """The media host is not part of Jira's REST surface, so not of its route table either."""
        if req.path.startswith(MEDIA_PREFIX):
            return self._media_file(req)
        return await super()._dispatch(scope, req)

    # agent API (a human in the Jira UI) -------------------------------------------------------
    def agent_transition(self, key: str, status: str, resolution: str = "Done") -> None:
        """Move `key` to `status` as the agent account, through as many transitions as the workflow
        needs (a human clicks through them), filling a required resolution screen with `resolution`."""
        issue = self.issue(key)
        steps = self.workflow.path(issue.status, status)
        if not steps:
            raise JiraError(400, f"no transition path from {issue.status!r} to {status!r}")
        for step in steps:
            fields = {"resolution": {"name": resolution}} if "resolution" in step.screen else {}
            self.transition(issue, step.id, as_agent=True, fields=fields)

    def agent_comment(self, key: str, text: str, public: bool = True) -> str:
        """Add a comment (public reply or internal note) as the agent; returns its id."""
        return self.add_comment(self.issue(key), text_to_adf(text), public, as_agent=True).id

    def agent_edit_comment(self, key: str, comment_id: str, text: str) -> None:
        issue = self.issue(key)
        with self.lock:
            comment = next(c for c in issue.comments if c.id == comment_id)
            comment.body, comment.updated = text_to_adf(text), now()
            self._touch(issue)
        self._emit_comment("comment_updated", issue, comment)

    def agent_delete_comment(self, key: str, comment_id: str) -> None:
        issue = self.issue(key)
        with self.lock:
            comment = next(c for c in issue.comments if c.id == comment_id)
            issue.comments.remove(comment)
            self._touch(issue)
        self._emit_comment("comment_deleted", issue, comment)

    def agent_update(self, key: str, **fields: Any) -> None:
        """Edit fields as the agent: summary=, labels=, priority= (a name), description= (text)."""
        if "priority" in fields:
            fields["priority"] = {"name": fields["priority"]}
        if isinstance(fields.get("description"), str):
            fields["description"] = text_to_adf(fields["description"])
        self.edit_issue(self.issue(key), fields, {}, as_agent=True, screen=False)

    def agent_create_issue(self, summary: str, labels: tuple[str, ...] = (), project: str | None = None) -> str:
        fields: dict[str, Any] = {"project": {"key": project or next(iter(self.projects))}}
        fields["issuetype"] = {"name": "Task"}
        fields |= {"summary": summary, "labels": list(labels)}
        return self.create_issue(fields, [], as_agent=True).key

    def agent_delete_issue(self, key: str) -> None:
        issue = self.issue(key)
        with self.lock:
            del self.issues[issue.key]
            self.keys_by_id.pop(issue.id, None)
        self._emit_issue("jira:issue_deleted", issue, self.agent, [], "issue_deleted")

    # webhooks ---------------------------------------------------------------------------------
    def user_json(self, account_id: str) -> dict[str, Any]:
        with self.lock:
            account = self.users[account_id]
        return {
            "accountId": account.account_id,
            "accountType": "atlassian",
            "active": True,
            "displayName": account.display_name,
            "self": f"{self._root()}/rest/api/3/user?accountId={account.account_id}",
            "timeZone": "UTC",
        }

    def _root(self) -> str:
        return self.runner.base_url if self.runner.port else "http://127.0.0.1"

    def _emit_issue(self, event: str, issue: Issue, actor: Account, items: list[dict[str, Any]], kind: str) -> None:
        """Record the change in the issue's changelog (when it changed fields) and send its webhook."""
        changelog_id = self._next("changelog") if items else None
        if changelog_id is not None:
            with self.lock:
                issue.histories.append(History(changelog_id, actor.account_id, issue.updated, [dict(i) for i in items]))
        self._send(event, jira_hooks.issue_event(self, event, issue, actor, items, kind, changelog_id))

    def _emit_comment(self, event: str, issue: Issue, comment: Comment) -> None:
        self._send(event, jira_hooks.comment_event(self, event, issue, comment))

    def _send(self, event: str, payload: dict[str, Any]) -> None:
        if self.webhook_url:
            identifier = f"{self._rng.getrandbits(128):032x}"
            jira_hooks.deliver(self.webhooks, self.webhook_url, self.webhook_secret, identifier, event, payload)


def _has_newline(summary: Any) -> bool:
    """Rule 1: Jira refuses a summary with a line break (devnet/jira_rules.py SUMMARY_NEWLINE)."""
    return isinstance(summary, str) and ("\n" in summary or "\r" in summary)


def _named_account(value: Any) -> Any:
    """The accountId of a `fields.assignee` value; null unassigns."""
    if value is None:
        return None
    if not isinstance(value, dict) or "accountId" not in value:
        raise JiraError(400, "", {"assignee": "Specify the assignee as an object with an accountId."})
    return value["accountId"]


def _unassign_as_documented(req: SimRequest) -> SimRequest:
    """Known gap: assignIssue documents `{"accountId": null}` as "unassign", but its body schema (User)
    types accountId as a non-null string; check such a body as if the null were absent."""
    if req.method != "PUT" or not ASSIGNEE_PATH.match(req.path):
        return req
    try:
        body = req.json()
    except ValueError:
        return req
    if not isinstance(body, dict) or "accountId" not in body or body["accountId"] is not None:
        return req
    rest = {k: v for k, v in body.items() if k != "accountId"}
    return dataclasses.replace(req, body=json.dumps(rest).encode())
