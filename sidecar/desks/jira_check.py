"""The Jira half of `desk check`: credentials, permissions, project, issue or request type, priorities,
statuses and the transition paths to them, read-only.

Jira shows a workflow's transitions to a non-admin only as those out of an existing issue's status, so
paths are walked over one sample issue per status; a status no sample reaches is "not verified"
(usable), one a complete walk cannot reach fails, with the transitions refused on the way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from sidecar.config_schema import ServiceDeskConfig
from sidecar.desks.check import Check, guarded, items, listing, unmatched
from sidecar.desks.jira import JiraDesk
from sidecar.desks.jira_workflow import MAX_STEPS, Hop, parse_hops
from sidecar.digits import is_decimal
from sidecar.errors import DeskError

JIRA_EVENTS = (
    "jira:issue_created",
    "jira:issue_updated",
    "jira:issue_deleted",
    "comment_created",
    "comment_updated",
    "comment_deleted",
)
MAX_STATUSES = 40  # workflow statuses sampled for transitions (two reads each)
MAX_PAGES = 20
AUTH_HINT_JIRA = (
    "check jira.username (the account's email) and the jira_api_token secret; create a new API token at "
    "https://id.atlassian.com/manage-profile/security/api-tokens if it expired or was revoked"
)


class JiraCheck:
    """The Jira checks in order; each later one needs what the earlier ones found."""

    def __init__(self, desk: JiraDesk, settings: ServiceDeskConfig) -> None:
        self.desk = desk
        self.config = settings.jira
        self.settings = settings
        self.account = ""
        self.project_id = ""
        self.issue_types: dict[str, str] = {}  # id -> name
        self.issue_type = ""  # the issue type created issues get
        self.statuses: dict[str, str] = {}  # lower-case name -> category key
        self.status_names: dict[str, str] = {}  # lower-case name -> name as Jira spells it

    async def get(self, op: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.desk.http.json(op, await self.desk.http.request(op, "GET", path, params=params))

    async def run(self) -> list[Check]:
        auth = await guarded("jira.auth", AUTH_HINT_JIRA, self.auth)
        if not auth.ok:
            return [auth]
        checks = [auth, self.account_id(), await guarded("jira.permissions", "", self.permissions)]
        project = await guarded(
            "jira.project", "set jira.project_key to a project this account can browse", self.project
        )
        checks.append(project)
        if not project.ok:
            return checks
        name = "jira.request_type" if self.config.request_type_id else "jira.issue_type"
        kind = await guarded(name, "", self.kind)
        checks += [kind, await guarded("jira.priorities", "", self.priorities)]
        if kind.ok:
            statuses = await guarded("jira.statuses", "", self.read_statuses)
            checks.append(statuses)
            if statuses.ok:
                checks.append(await guarded("jira.status_paths", "", self.paths))
        return checks

    async def auth(self) -> Check:
        me = await self.get("check: who am I", "/rest/api/3/myself")
        self.account = str(me.get("accountId", "")) if isinstance(me, dict) else ""
        return Check("jira.auth", True, f"authenticated as accountId {self.account}")

    def account_id(self) -> Check:
        """The sidecar recognises its own changes (echoes) by jira.account_id."""
        configured, account = self.config.account_id, self.account
        if configured == account:
            return Check("jira.account_id", True, "jira.account_id is the token's account")
        detail = f"jira.account_id is {configured}, not the token's account" if configured else "not set"
        return Check(
            "jira.account_id",
            False,
            detail,
            f"set jira.account_id to {account}, so the sidecar's own changes are not taken for an agent's",
        )

    async def permissions(self) -> Check:
        wanted = ["BROWSE_PROJECTS", "CREATE_ISSUES", "EDIT_ISSUES", "TRANSITION_ISSUES", "ADD_COMMENTS"]
        if self.config.assignee_map:
            wanted.append("ASSIGN_ISSUES")
        if self.settings.sync.sync_attachments:
            wanted.append("CREATE_ATTACHMENTS")
        params = {"projectKey": self.config.project_key, "permissions": ",".join(wanted)}
        answer = await self.get("check permissions", "/rest/api/3/mypermissions", params)
        held = answer.get("permissions") if isinstance(answer, dict) else None
        held = held if isinstance(held, dict) else {}
        lacking = [p for p in wanted if not (isinstance(held.get(p), dict) and held[p].get("havePermission") is True)]
        if lacking:
            return Check(
                "jira.permissions",
                False,
                f"the account lacks {', '.join(lacking)} in project {self.config.project_key}",
                "give the account a project role that grants them (e.g. Service Desk Team / Agent, or Member)",
            )
        return Check("jira.permissions", True, f"the account may {', '.join(wanted)} in {self.config.project_key}")

    async def project(self) -> Check:
        key = self.config.project_key
        answer = await self.get("check project", f"/rest/api/3/project/{quote(key, safe='')}")
        if not isinstance(answer, dict):
            raise DeskError("jira check project: answer is not a JSON object", retryable=False)
        self.project_id = str(answer.get("id", ""))
        for item in items(answer.get("issueTypes")):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                self.issue_types[str(item.get("id", ""))] = item["name"]
        return Check("jira.project", True, f"project {key} (id {self.project_id}), {len(self.issue_types)} issue types")

    async def kind(self) -> Check:
        if not self.config.request_type_id:
            self.issue_type = self.config.issue_type
            if self.issue_type not in self.issue_types.values():
                return Check(
                    "jira.issue_type",
                    False,
                    f"jira.issue_type {self.issue_type!r} is not an issue type of project {self.config.project_key}",
                    f"use one of: {listing(tuple(self.issue_types.values()))}",
                )
            return Check("jira.issue_type", True, f"issues are created as {self.issue_type!r}")
        desk, rtype = self.config.service_desk_id, self.config.request_type_id
        path = f"/rest/servicedeskapi/servicedesk/{quote(desk, safe='')}/requesttype/{quote(rtype, safe='')}"
        hint = "set jira.service_desk_id and jira.request_type_id to a request type of the project's service desk"
        try:
            answer = await self.get("check request type", path)
        except DeskError as exc:
            if exc.status != 404:
                raise
            return Check("jira.request_type", False, f"no request type {rtype} in service desk {desk}", hint)
        type_id = str(answer.get("issueTypeId", "")) if isinstance(answer, dict) else ""
        if type_id not in self.issue_types:
            detail = f"request type {rtype} creates issue type id {type_id or '?'}, not one of project " + (
                self.config.project_key
            )
            return Check("jira.request_type", False, detail, hint)
        self.issue_type = self.issue_types[type_id]
        return Check("jira.request_type", True, f"requests of type {rtype} become {self.issue_type!r} issues")

    async def priorities(self) -> Check:
        names: set[str] = set()
        start = 0
        for _ in range(MAX_PAGES):
            params = {"projectId": self.project_id, "startAt": str(start), "maxResults": "50"}
            page = await self.get("check priorities", "/rest/api/3/priority/search", params)
            values = [v for v in items(page.get("values")) if isinstance(v, dict)] if isinstance(page, dict) else []
            names |= {str(v["name"]) for v in values if isinstance(v.get("name"), str)}
            start += len(values)
            if not values or not isinstance(page, dict) or page.get("isLast", True):
                break
        pairs = [(f"jira.priority_map: {k}", v) for k, v in self.config.priority_map]
        pairs.append(("jira.default_priority", self.config.default_priority))
        unknown = unmatched(pairs, names)
        if unknown:
            return Check(
                "jira.priorities",
                False,
                f"not a priority of project {self.config.project_key}: {'; '.join(unknown)}",
                f"map to one of: {listing(names)}",
            )
        return Check("jira.priorities", True, f"every mapped priority exists ({len(names)} in the project)")

    async def read_statuses(self) -> Check:
        path = f"/rest/api/3/project/{quote(self.config.project_key, safe='')}/statuses"
        answer = await self.get("check statuses", path)
        for entry in items(answer):
            if isinstance(entry, dict) and str(entry.get("name", "")).lower() == self.issue_type.lower():
                for status in items(entry.get("statuses")):
                    if isinstance(status, dict) and isinstance(status.get("name"), str):
                        category = status.get("statusCategory")
                        key = str(category.get("key", "")) if isinstance(category, dict) else ""
                        self.statuses[status["name"].lower()] = key
                        self.status_names[status["name"].lower()] = status["name"]
        unknown = unmatched([(f"jira.status_map: {k}", v) for k, v in self.config.status_map], set(self.statuses), True)
        if unknown:
            return Check(
                "jira.statuses",
                False,
                f"not a status of {self.issue_type!r} issues in {self.config.project_key}: {'; '.join(unknown)}",
                f"map to one of: {listing(list(self.status_names.values()))}",
            )
        return Check("jira.statuses", True, f"every mapped status is in the {self.issue_type!r} workflow")

    async def paths(self) -> Check:
        """From the initial status, a path of at most MAX_STEPS transitions the sidecar can take (their
        required screen fields fillable) to every mapped status, over the transitions of sample issues."""
        graph: dict[str, list[Hop]] = {}
        refused: dict[str, list[str]] = {}  # why a transition cannot be taken -> the statuses it leaves
        for status in list(self.status_names.values())[:MAX_STATUSES]:
            hops = await self.sample(status)
            if hops is None:
                continue
            usable, problems = self.desk._fillable(hops)  # the rule set_status walks by
            graph[status.lower()] = usable
            for problem in problems:
                refused.setdefault(problem, []).append(status)
        initial = self.initial()
        targets = list(dict.fromkeys(v for _, v in self.config.status_map))
        found, unverified, unreachable = [], [], []
        for target in targets:
            path, complete = _path(graph, initial, target.lower())
            if path is not None:
                steps = " -> ".join([self.status_names.get(initial, initial), *(h.to for h in path)])
                found.append(steps if path else f"{target} (initial)")
            elif complete:
                unreachable.append(target)
            else:
                unverified.append(target)
        why = "".join(f"; {problem} (from {listing(sources)})" for problem, sources in list(refused.items())[:5])
        if unreachable:
            return Check(
                "jira.status_paths",
                False,
                f"no path of at most {MAX_STEPS} transitions from {self.status_names.get(initial, initial)!r} "
                f"to {listing(unreachable)}{why}",
                "map those chain statuses to statuses the workflow reaches, set jira.resolution to a resolution "
                "the Resolve/Close screens offer, or add the transitions to the workflow",
            )
        detail = "; ".join(found) or "no path checked"
        if unverified:
            detail += f"; not verified (no {self.issue_type!r} issue in a status on the way): {listing(unverified)}"
        return Check("jira.status_paths", True, detail, "")

    async def sample(self, status: str) -> list[Hop] | None:
        """The transitions out of `status`, read from one issue in it (None: no such issue)."""
        jql = (
            f'project = "{_jql(self.config.project_key)}" AND issuetype = "{_jql(self.issue_type)}" '
            f'AND status = "{_jql(status)}"'
        )
        body = {"jql": jql, "fields": ["status"], "maxResults": 1}
        op = "check transitions"
        page = self.desk.http.json_object(
            op, await self.desk.http.request(op, "POST", "/rest/api/3/search/jql", json_body=body)
        )
        issues = [i for i in items(page.get("issues")) if isinstance(i, dict) and is_decimal(str(i.get("id", "")))]
        if not issues:
            return None
        path = f"/rest/api/3/issue/{issues[0]['id']}/transitions"
        answer = await self.get(op, path, {"expand": "transitions.fields"})
        return parse_hops(answer) if isinstance(answer, dict) else []

    def initial(self) -> str:
        """Jira does not name a workflow's initial status to non-admins: the To Do (`new`) status, the one
        `open` maps to when several are."""
        new = [name for name, category in self.statuses.items() if category == "new"]
        opened = dict(self.config.status_map).get("open", "").lower()
        if opened in new or (not new and opened in self.statuses):
            return opened
        return new[0] if new else next(iter(self.statuses), "")


def _path(graph: dict[str, list[Hop]], start: str, goal: str) -> tuple[list[Hop] | None, bool]:
    """The shortest hop list from `start` to `goal` within MAX_STEPS, and whether the search saw every
    status it could enter (False: a status without a sample issue was on the way)."""
    if start == goal:
        return [], True
    queue: deque[tuple[str, list[Hop]]] = deque([(start, [])])
    seen = {start}
    complete = True
    while queue:
        status, steps = queue.popleft()
        if len(steps) >= MAX_STEPS:
            continue  # the sidecar goes no further either
        if status not in graph:
            complete = False
            continue
        for hop in graph[status]:
            to = hop.to.lower()
            if to == goal:
                return [*steps, hop], True
            if to not in seen:
                seen.add(to)
                queue.append((to, [*steps, hop]))
    return None, complete


def _jql(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def jira_webhook(settings: ServiceDeskConfig, has_secret: bool, url: str) -> Check:
    if not settings.webhook.enabled:
        return Check("jira.webhook", True, "webhook receivers are off (webhook.enabled is false)")
    secret = "jira_webhook_secret is set" if has_secret else "no jira_webhook_secret: unsigned deliveries accepted"
    return Check(
        "jira.webhook",
        True,
        f"register {url}; {secret}",
        f"as a Jira administrator add a WebHook (System > WebHooks) with URL {url}, the same secret as "
        f"jira_webhook_secret, JQL `project = {settings.jira.project_key}`, events {', '.join(JIRA_EVENTS)}",
    )
