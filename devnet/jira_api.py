"""HTTP routes of the Jira simulator (the REST surface in DESKS.md), mapped onto JiraSim state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devnet import jira_search
from devnet.jira_files import attachment_routes, json_object_body
from devnet.jira_model import (
    CATEGORIES,
    Comment,
    History,
    Issue,
    Transition,
    adf_to_text,
    jira_time,
    text_to_adf,
)
from devnet.sim_core import EXEMPT_HEADER

if TYPE_CHECKING:
    from devnet.jira_sim import JiraSim

Handler = Callable[[Request], Awaitable[Response]]
CHANGELOG_PAGE = 100  # histories under expand=changelog: Jira Cloud's most recent 100
COMMENT_PAGE = 5000  # getComments' largest page here (Jira Cloud caps it; the sidecar asks for less)


def _errors(status: int, messages: list[str], errors: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errorMessages": messages, "errors": errors or {}}, status_code=status)


def build_routes(sim: JiraSim) -> Starlette:
    """The Starlette app; every handler turns JiraError into Jira's error body."""
    from devnet.jira_sim import JiraError

    def guarded(fn: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except JiraError as exc:
                if request.url.path.startswith("/rest/servicedeskapi/"):
                    message = str(exc) or "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
                    return JSONResponse({"errorMessage": message, "i18nErrorMessage": exc.i18n}, status_code=exc.status)
                return _errors(exc.status, [str(exc)] if str(exc) else [], exc.errors)

        return run

    root = sim._root

    def actor(request: Request) -> bool | None:
        """Who a change over HTTP is attributed to: the account the request authenticated as."""
        return sim.http_actor(request.headers.get("authorization", ""))

    def status_json(name: str) -> dict[str, Any]:
        status = sim.workflow.status(name)
        cat = CATEGORIES[status.category]
        return {
            "self": f"{root()}/rest/api/3/status/{status.id}",
            "id": status.id,
            "name": status.name,
            "description": "",
            "iconUrl": f"{root()}/images/icons/statuses/generic.png",
            "statusCategory": {**cat, "self": f"{root()}/rest/api/3/statuscategory/{cat['id']}"},
        }

    def comment_json(issue: Issue, c: Comment) -> dict[str, Any]:
        out = {
            "id": c.id,
            "self": f"{root()}/rest/api/3/issue/{issue.id}/comment/{c.id}",
            "author": sim.user_json(c.author),
            "updateAuthor": sim.user_json(c.author),
            "body": c.body,
            "created": jira_time(c.created),
            "updated": jira_time(c.updated),
            "jsdPublic": c.public,
        }
        if not c.public:
            out["properties"] = [{"key": "sd.public.comment", "value": {"internal": True}}]
        return out

    def fields_json(snap: dict[str, Any], issue: Issue, wanted: set[str] | None) -> dict[str, Any]:
        full: dict[str, Any] = {
            "summary": snap["summary"],
            "description": snap["description"],
            "labels": snap["labels"],
            "status": status_json(snap["status"]),
            "priority": {
                "self": f"{root()}/rest/api/3/priority/{snap['priority']}",
                "name": snap["priority"],
                "id": str(sim.priorities.index(snap["priority"]) + 1),
            },
            "issuetype": {"self": f"{root()}/rest/api/3/issuetype/1", "id": "1", "name": snap["issuetype"]},
            "project": {
                "self": f"{root()}/rest/api/3/project/{snap['project']}",
                "key": snap["project"],
                "id": sim.projects[snap["project"]],
                "name": snap["project"],
            },
            "created": jira_time(snap["created"]),
            "updated": jira_time(snap["updated"]),
            "reporter": sim.user_json(issue.reporter),
            "assignee": sim.user_json(snap["assignee"]) if snap["assignee"] else None,
            "comment": {
                "comments": [comment_json(issue, c) for c in issue.comments],
                "maxResults": 5000,
                "total": len(issue.comments),
                "startAt": 0,
            },
            "attachment": [sim.attachment_json(att) for att in issue.attachments],
            "resolution": resolution_json(snap["resolution"]) if snap.get("resolution") else None,
        }
        if wanted is None:
            return full
        return {name: value for name, value in full.items() if name in wanted}

    def wanted_fields(names: list[str]) -> set[str] | None:
        if not names or any(n in ("*all", "*navigable") for n in names):
            excluded = {n[1:] for n in names if n.startswith("-")}
            return (
                None
                if not excluded
                else {
                    "summary",
                    "description",
                    "labels",
                    "status",
                    "priority",
                    "issuetype",
                    "project",
                    "created",
                    "updated",
                    "reporter",
                    "assignee",
                    "comment",
                    "attachment",
                    "resolution",
                }
                - excluded
            )
        return {n for n in names if not n.startswith("-")}

    def issue_json(issue: Issue, snap: dict[str, Any], wanted: set[str] | None, props: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": issue.id,
            "key": issue.key,
            "self": f"{root()}/rest/api/3/issue/{issue.id}",
            "fields": fields_json(snap, issue, wanted),
        }
        if props:
            out["properties"] = {k: issue.properties[k] for k in props if k in issue.properties}
        return out

    def changelog_json(issue: Issue) -> dict[str, Any]:
        """`changelog` under expand=changelog (PageOfChangelogs): Jira Cloud returns the most recent
        CHANGELOG_PAGE histories there, oldest first within them, and `total` counts them all; the rest
        are read through the paged changelog operation, `get_changelogs`. The pinned spec's `expand`
        describes changelog as "a list of recent updates to an issue"; JRACLOUD-96459 reports the same
        cut (40 histories) for search, with getChangeLogs as the way to the rest. An item's `from`/`to`
        may be null in Jira's answers; the spec types them as strings (ChangeDetails), so a null one is
        left out here, which the spec allows (every key is optional)."""
        shown = issue.histories[-CHANGELOG_PAGE:]
        start = len(issue.histories) - len(shown)
        return {
            "startAt": start,
            "maxResults": CHANGELOG_PAGE,
            "total": len(issue.histories),
            "histories": [history_json(h) for h in shown],
        }

    def history_json(h: History) -> dict[str, Any]:
        return {
            "id": h.id,
            "author": sim.user_json(h.author),
            "created": jira_time(h.created),
            "items": [{k: v for k, v in item.items() if v is not None} for item in h.items],
        }

    async def get_changelogs(request: Request) -> Response:
        """getChangeLogs: every history, oldest first, startAt/maxResults paging (at most 100 a page),
        as PageBeanChangelog (pinned spec)."""
        issue = sim.issue(request.path_params["key"])
        q = request.query_params
        try:
            start, size = int(q.get("startAt", 0)), int(q.get("maxResults", CHANGELOG_PAGE))
        except ValueError as exc:
            raise JiraError(400, "startAt and maxResults must be integers.") from exc
        start, size = max(0, start), max(1, min(size, CHANGELOG_PAGE))
        with sim.lock:
            page = [history_json(h) for h in issue.histories[start : start + size]]
            total = len(issue.histories)
        url = f"{root()}/rest/api/3/issue/{issue.id}/changelog"
        out: dict[str, Any] = {"self": f"{url}?startAt={start}&maxResults={size}", "startAt": start}
        out |= {"maxResults": size, "total": total, "isLast": start + size >= total, "values": page}
        if not out["isLast"]:
            out["nextPage"] = f"{url}?startAt={start + size}&maxResults={size}"
        return JSONResponse(out)

    def date_dto(moment: datetime) -> dict[str, Any]:
        """JSM's DateDTO."""
        return {
            "iso8601": moment.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "jira": jira_time(moment),
            "friendly": "Today",
            "epochMillis": int(moment.timestamp() * 1000),
        }

    # issues ------------------------------------------------------------------------------------
    async def create_issue(request: Request) -> Response:
        body = await json_object_body(request)
        issue = sim.create_issue(body.get("fields") or {}, body.get("properties") or [], actor(request))
        return JSONResponse(
            {"id": issue.id, "key": issue.key, "self": f"{root()}/rest/api/3/issue/{issue.id}"}, status_code=201
        )

    async def get_issue(request: Request) -> Response:
        issue = sim.issue(request.path_params["key"])
        names = [n.strip() for n in request.query_params.get("fields", "").split(",") if n.strip()]
        props = [p for p in request.query_params.get("properties", "").split(",") if p]
        expand = {e.strip() for e in request.query_params.get("expand", "").split(",")}
        with sim.lock:
            out = issue_json(issue, issue.snapshot(), wanted_fields(names), props)
            if "changelog" in expand:
                out["changelog"] = changelog_json(issue)
            return JSONResponse(out)

    async def edit_issue(request: Request) -> Response:
        """editIssue: 204, or with `returnIssue=true` 200 and the issue "with the same format as in the Get
        issue API" (pinned spec, devnet/contracts/jira-platform-v3.subset.json: returnIssue, and `expand`
        "to use in the response"): every field, as a Get issue without `fields` answers, read under the
        same hold of the lock as the edit, so the answer is the state the edit left (no agent in between)."""
        body = await json_object_body(request)
        issue = sim.issue(request.path_params["key"])
        fields = {k: v for k, v in (body.get("fields") or {}).items() if k != "status"}
        returned = request.query_params.get("returnIssue", "false").lower() == "true"
        expand = {e.strip() for e in request.query_params.get("expand", "").split(",")}
        with sim.lock:
            sim.edit_issue(issue, fields, body.get("update") or {}, actor(request))
            for prop in body.get("properties") or []:
                issue.properties[prop["key"]] = prop.get("value")
            if not returned:
                return Response(status_code=204)
            out = issue_json(issue, issue.snapshot(), None, [])
            if "changelog" in expand:
                out["changelog"] = changelog_json(issue)
            return JSONResponse(out)

    async def assign(request: Request) -> Response:
        body = await json_object_body(request)
        issue = sim.issue(request.path_params["key"])
        if "accountId" not in body:
            raise JiraError(400, "", {"accountId": "accountId is required; null unassigns the issue."})
        sim.assign(issue, body["accountId"], actor(request))
        return Response(status_code=204)

    def resolution_json(name: str) -> dict[str, Any]:
        rid = sim.resolution_id(name)
        return {"self": f"{root()}/rest/api/3/resolution/{rid}", "id": rid, "name": name, "description": ""}

    def screen_fields(t: Transition) -> dict[str, Any]:
        """`fields` of a transition under expand=transitions.fields: the FieldMetadata of its screen,
        `required` and, for resolution, the site's resolutions as `allowedValues` (getTransitions:
        https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-transitions-get)."""
        out: dict[str, Any] = {}
        for name in t.screen:
            meta: dict[str, Any] = {
                "required": name in t.required,
                "schema": {"type": name, "system": name},
                "name": name.capitalize(),
                "key": name,
                "operations": ["set"],
            }
            if name == "resolution":
                meta["allowedValues"] = [resolution_json(r) for r in sim.resolutions]
            out[name] = meta
        return out

    async def get_transitions(request: Request) -> Response:
        issue = sim.issue(request.path_params["key"])
        expand = {e.strip() for e in request.query_params.get("expand", "").split(",")}
        out = []
        for t in sim.workflow.available(issue.status):
            item: dict[str, Any] = {
                "id": t.id,
                "name": t.name,
                "to": status_json(t.to),
                "hasScreen": bool(t.screen),
                "isGlobal": t.sources is None,
                "isInitial": False,
                "isAvailable": True,
                "isConditional": False,
                "isLooped": False,
            }
            if "transitions.fields" in expand:
                item["fields"] = screen_fields(t)
            out.append(item)
        return JSONResponse({"transitions": out})

    async def do_transition(request: Request) -> Response:
        body = await json_object_body(request)
        issue = sim.issue(request.path_params["key"])
        transition = body.get("transition") or {}
        if "id" not in transition:
            raise JiraError(400, "Missing 'transition' identifier")
        fields, update = body.get("fields") or {}, body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise JiraError(400, "'fields' and 'update' must be objects.")
        sim.transition(issue, str(transition["id"]), actor(request), fields, update)
        return Response(status_code=204)

    # comments ---------------------------------------------------------------------------------
    async def add_comment(request: Request) -> Response:
        body = await json_object_body(request)
        issue = sim.issue(request.path_params["key"])
        if not isinstance(body.get("body"), dict):
            raise JiraError(400, "", {"comment": "Comment body can not be empty!"})
        internal = any(
            p.get("key") == "sd.public.comment" and (p.get("value") or {}).get("internal")
            for p in body.get("properties") or []
        )
        comment = sim.add_comment(issue, body["body"], not internal, actor(request))
        with sim.lock:
            return JSONResponse(comment_json(issue, comment), status_code=201)

    async def list_comments(request: Request) -> Response:
        """getComments: startAt/maxResults paging; `orderBy` takes created, +created or -created, and
        anything else is a 400 ("Returned if `orderBy` is set to a value other than *created*", pinned
        spec; the sentence is the simulator's). Comments are kept in creation order."""
        issue = sim.issue(request.path_params["key"])
        q = request.query_params
        order = q.get("orderBy", "created")
        if order not in ("created", "+created", "-created"):
            raise JiraError(400, f"The value '{order}' is not valid for orderBy: use created or -created.")
        try:
            start, size = int(q.get("startAt", 0)), int(q.get("maxResults", COMMENT_PAGE))
        except ValueError as exc:
            raise JiraError(400, "startAt and maxResults must be integers.") from exc
        start, size = max(0, start), max(1, min(size, COMMENT_PAGE))
        with sim.lock:
            ordered = issue.comments if order != "-created" else list(reversed(issue.comments))
            page = [comment_json(issue, c) for c in ordered[start : start + size]]
            total = len(issue.comments)
        return JSONResponse({"comments": page, "startAt": start, "maxResults": size, "total": total})

    async def jsm_comment(request: Request) -> Response:
        body = await json_object_body(request)
        issue = sim.issue(request.path_params["key"])
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise JiraError(400, "The comment body is required.")
        comment = sim.add_comment(issue, text_to_adf(body["body"]), bool(body.get("public", True)), actor(request))
        created = comment.created
        author = sim.user_json(comment.author)
        return JSONResponse(
            {
                "id": comment.id,
                "body": adf_to_text(comment.body),
                "public": comment.public,
                "author": {k: author[k] for k in ("accountId", "displayName", "active", "timeZone")},
                "created": date_dto(created),
                "_links": {"self": f"{root()}/rest/servicedeskapi/request/{issue.id}/comment/{comment.id}"},
            },
            status_code=201,
        )

    async def create_request(request: Request) -> Response:
        body = await json_object_body(request)
        desk, rtype = body.get("serviceDeskId"), body.get("requestTypeId")
        values = body.get("requestFieldValues") or {}
        issue = sim.create_request(desk, rtype, values, bool(body.get("isAdfRequest")), actor(request))
        with sim.lock:
            reporter = sim.user_json(issue.reporter)
            status = sim.workflow.status(issue.status)
            shown = [("summary", "Summary", issue.summary), ("description", "Description", values.get("description"))]
            if issue.labels:
                shown.append(("labels", "Labels", issue.labels))
            out = {
                "_expands": ["participant", "status", "sla", "requestType", "serviceDesk", "attachment", "comment"],
                "issueId": issue.id,
                "issueKey": issue.key,
                "requestTypeId": issue.request_type_id,
                "serviceDeskId": str(desk),
                "createdDate": date_dto(issue.created),
                "reporter": {k: reporter[k] for k in ("accountId", "displayName", "active", "timeZone")},
                "requestFieldValues": [
                    {"fieldId": f, "label": label, "value": v} for f, label, v in shown if v is not None
                ],
                "currentStatus": {
                    "status": status.name,
                    "statusCategory": status.category.upper(),
                    "statusDate": date_dto(issue.created),
                },
                "_links": {
                    "jiraRest": f"{root()}/rest/api/2/issue/{issue.id}",
                    "web": f"{root()}/servicedesk/customer/portal/{desk}/{issue.key}",
                    "self": f"{root()}/rest/servicedeskapi/request/{issue.id}",
                    "agent": f"{root()}/browse/{issue.key}",
                },
            }
        return JSONResponse(out, status_code=201)

    # properties -------------------------------------------------------------------------------
    async def get_property(request: Request) -> Response:
        issue = sim.issue(request.path_params["key"])
        name = request.path_params["prop"]
        if name not in issue.properties:
            raise JiraError(404, f"The property with key '{name}' does not exist.")
        return JSONResponse({"key": name, "value": issue.properties[name]})

    async def put_property(request: Request) -> Response:
        issue = sim.issue(request.path_params["key"])
        try:
            value = await request.json()
        except ValueError as exc:
            raise JiraError(400, "The property value must be valid JSON.") from exc
        existed = request.path_params["prop"] in issue.properties
        issue.properties[request.path_params["prop"]] = value
        return Response(status_code=200 if existed else 201)

    # search -----------------------------------------------------------------------------------
    async def search(request: Request) -> Response:
        if request.method == "GET":
            q = request.query_params
            body: dict[str, Any] = {k: q[k] for k in ("jql", "nextPageToken") if k in q}
            if "maxResults" in q:
                body["maxResults"] = int(q["maxResults"])
            body["fields"] = [f for f in q.get("fields", "").split(",") if f]
            body["reconcileIssues"] = [int(i) for i in q.get("reconcileIssues", "").split(",") if i]
            if "startAt" in q:
                body["startAt"] = q["startAt"]
        else:
            body = await json_object_body(request)
        if "startAt" in body:
            raise JiraError(400, 'Unrecognized field "startAt": use nextPageToken for paging.')
        jql = body.get("jql") or ""
        try:
            query = jira_search.parse(jql)
            offset = jira_search.read_token(jql, body["nextPageToken"]) if body.get("nextPageToken") else 0
        except jira_search.JqlError as exc:
            raise JiraError(400, str(exc)) from exc
        names = list(body.get("fields") or [])
        wanted = wanted_fields(names) if names and names != ["id"] else set()
        limit = 5000 if not wanted else 100
        size = max(1, min(int(body.get("maxResults", 50)), limit))
        reconcile = {str(i) for i in body.get("reconcileIssues") or []}
        with sim.lock:  # the search's moment under the lock: a write's pruning of versions (add_version) is too
            stamp, moment = sim.search_lag.now(), datetime.now().astimezone()
            try:
                candidates = search_candidates(sim, query, reconcile, moment)
            except jira_search.JqlError as exc:
                raise JiraError(400, str(exc)) from exc
            views = []
            for issue in candidates:
                snap = issue.snapshot() if issue.id in reconcile else issue.indexed(stamp)
                if snap is not None:
                    views.append((snap, issue))
            by_id = {snap["id"]: issue for snap, issue in views}
            try:
                hits = jira_search.sort(query, [s for s, _ in views if jira_search.matches(query, s, moment)])
            except jira_search.JqlError as exc:
                raise JiraError(400, str(exc)) from exc
            page = hits[offset : offset + size]
            issues = [
                {"id": s["id"]} if not wanted else issue_json(by_id[s["id"]], s, wanted or None, []) for s in page
            ]
        out: dict[str, Any] = {"issues": issues, "isLast": offset + size >= len(hits)}
        if not out["isLast"]:
            out["nextPageToken"] = jira_search.make_token(jql, offset + size)
        return JSONResponse(out)

    async def old_search(request: Request) -> Response:
        return JSONResponse(
            {"errorMessages": ["The requested API has been removed. Please migrate to /rest/api/3/search/jql."]},
            status_code=410,
            headers={EXEMPT_HEADER.decode(): "1"},
        )

    async def myself(request: Request) -> Response:
        account = sim.account_of(request.headers.get("authorization", "")) or sim.me
        return JSONResponse({**sim.user_json(account.account_id), "emailAddress": account.email})

    # project configuration, read by `servicedesk-sidecar desk check` ----------------------------
    def issue_type_json(name: str) -> dict[str, Any]:
        tid = str(10001 + sim.issue_types.index(name))  # ids: this simulator's choice
        return {"self": f"{root()}/rest/api/3/issuetype/{tid}", "id": tid, "name": name, "subtask": False}

    def project_key(ident: str) -> str:
        """A project by key or id. getProject's 404 is "Returned if the project is not found or the user
        does not have permission to view it" (pinned spec); the sentence is Jira Cloud's."""
        for key, pid in sim.projects.items():
            if ident in (key, pid):
                return key
        raise JiraError(404, f"No project could be found with key '{ident}'.")

    async def get_project(request: Request) -> Response:
        key = project_key(request.path_params["project"])
        return JSONResponse(
            {
                "self": f"{root()}/rest/api/3/project/{sim.projects[key]}",
                "id": sim.projects[key],
                "key": key,
                "name": key.title(),
                "projectTypeKey": "service_desk",
                "simplified": False,
                "issueTypes": [issue_type_json(name) for name in sim.issue_types],
            }
        )

    async def project_statuses(request: Request) -> Response:
        """getAllStatuses: each issue type with its workflow's statuses (one workflow here)."""
        project_key(request.path_params["project"])
        statuses = [status_json(s.name) for s in sim.workflow.statuses]
        return JSONResponse([{**issue_type_json(name), "statuses": statuses} for name in sim.issue_types])

    async def search_priorities(request: Request) -> Response:
        """searchPriorities: a page of priorities; `projectId` limits them to the project's scheme and an
        invalid one is ignored (pinned spec). Every priority is in every project's scheme here."""
        q = request.query_params
        start, size = int(q.get("startAt", "0")), max(1, min(int(q.get("maxResults", "50")), 50))
        values = [
            {"self": f"{root()}/rest/api/3/priority/{n + 1}", "id": str(n + 1), "name": name, "isDefault": False}
            for n, name in enumerate(sim.priorities)
        ]
        page = values[start : start + size]
        body = {"startAt": start, "maxResults": size, "total": len(values), "isLast": start + size >= len(values)}
        return JSONResponse({**body, "values": page})

    async def my_permissions(request: Request) -> Response:
        """getMyPermissions: `permissions` is required, 400 when empty, 404 for a project the account cannot
        see (pinned spec; change notice "get my permissions requires permissions query parameter", 2019).
        The simulator's account holds every permission of the projects it can see."""
        q = request.query_params
        if "projectKey" in q:
            project_key(q["projectKey"])
        names = [n for n in q.get("permissions", "").split(",") if n]
        if not names:
            raise JiraError(400, "The 'permissions' query parameter is required.")
        granted = {
            n: {"id": str(i + 1), "key": n, "name": n.title(), "type": "PROJECT", "havePermission": True}
            for i, n in enumerate(names)
        }
        return JSONResponse({"permissions": granted})

    async def get_request_type(request: Request) -> Response:
        """getRequestTypeById: 404 for a request type not in the service desk (pinned JSM spec); the
        sentence is the one this simulator's create_request already uses."""
        desk, rtype = request.path_params["desk"], request.path_params["rtype"]
        with sim.lock:
            itype = sim.request_types.get((desk, rtype))
        if itype is None:
            raise JiraError(404, f"The request type with ID '{rtype}' does not exist in service desk '{desk}'.")
        body = {
            "id": rtype,
            "name": itype,
            "serviceDeskId": desk,
            "issueTypeId": issue_type_json(itype)["id"],
            "groupIds": [],
        }
        return JSONResponse(body)

    issue_path = "/rest/api/3/issue/{key}"
    routes = [
        Route("/rest/api/3/issue", guarded(create_issue), methods=["POST"]),
        Route(issue_path, guarded(get_issue), methods=["GET"]),
        Route(issue_path, guarded(edit_issue), methods=["PUT"]),
        Route(issue_path + "/assignee", guarded(assign), methods=["PUT"]),
        Route(issue_path + "/transitions", guarded(get_transitions), methods=["GET"]),
        Route(issue_path + "/transitions", guarded(do_transition), methods=["POST"]),
        Route(issue_path + "/comment", guarded(add_comment), methods=["POST"]),
        Route(issue_path + "/comment", guarded(list_comments), methods=["GET"]),
        Route(issue_path + "/changelog", guarded(get_changelogs), methods=["GET"]),
        Route("/rest/servicedeskapi/request", guarded(create_request), methods=["POST"]),
        Route("/rest/servicedeskapi/request/{key}/comment", guarded(jsm_comment), methods=["POST"]),
        *attachment_routes(sim, guarded, actor),
        Route(issue_path + "/properties/{prop}", guarded(get_property), methods=["GET"]),
        Route(issue_path + "/properties/{prop}", guarded(put_property), methods=["PUT"]),
        Route("/rest/api/3/search/jql", guarded(search), methods=["GET", "POST"]),
        Route("/rest/api/3/search", old_search, methods=["GET", "POST"]),
        Route("/rest/api/3/myself", myself, methods=["GET"]),
        Route("/rest/api/3/mypermissions", guarded(my_permissions), methods=["GET"]),
        Route("/rest/api/3/project/{project}", guarded(get_project), methods=["GET"]),
        Route("/rest/api/3/project/{project}/statuses", guarded(project_statuses), methods=["GET"]),
        Route("/rest/api/3/priority/search", guarded(search_priorities), methods=["GET"]),
        Route(
            "/rest/servicedeskapi/servicedesk/{desk}/requesttype/{rtype}", guarded(get_request_type), methods=["GET"]
        ),
    ]
    return Starlette(routes=routes)


def search_candidates(sim: Any, query: jira_search.Query, reconcile: set[str], moment: datetime) -> list[Any]:
    """Issues a query can match: those the label index and the `updated` index find for its clauses (both
    when it has both), else every issue; and the issues to reconcile. A search costs its hits, as in a real
    Jira's index, not every issue the simulator holds."""
    found: set[str] | None = None
    for clause in query.clauses:
        keys: set[str] | None = None
        if clause.field == "labels" and clause.op in ("=", "in"):
            keys = set().union(*(sim.label_index.get(value.lower(), set()) for value in clause.values))
        elif (bound := jira_search.indexed_since(clause, moment)) is not None:
            keys = sim.updated_index.since(bound)
        if keys is not None:
            found = keys if found is None else found & keys
    if found is None:
        return list(sim.issues.values())
    # In no particular order: the search sorts its hits (jira_search.sort, by id first).
    keys = found | {key for key in map(sim.keys_by_id.get, reconcile) if key is not None}
    return [sim.issues[key] for key in keys if key in sim.issues]
