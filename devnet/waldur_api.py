"""HTTP routes of the Waldur simulator, shaped like Waldur's DRF views (rules: devnet/waldur_rules.py)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from itertools import islice
from operator import attrgetter
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import parse_qsl, quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devnet import waldur_rules as rules
from devnet.sim_core import SimRequest
from devnet.waldur_contract import STAFF_ONLY_ISSUE_FIELDS, multipart_fields, new_uuid, waldur_time

# A comment's `modified` is its `created` (the simulator never edits one): one key, read in C.
CREATED = attrgetter("created")
NEWEST_FIRST = ([], ["-created"], ["-modified"])  # comment orderings that are the default's

if TYPE_CHECKING:
    from devnet.waldur_sim import SupportUser, User, WaldurSim, WAttachment, WComment, WIssue


class NewestComments(Sequence["WComment"]):
    """Every comment a user may see, newest first, as the pagination slices it: the count comes from the
    simulator's running tallies and a page walks the newest comments only until it is full, so the listing a
    client repeats all day costs its page, not the desk's whole history (over 100,000 comments 0.9 ms a page,
    where filtering them all took 14). Valid while the simulator's lock is held and the comments are in created
    order (the listing checks `comments_in_order`)."""

    def __init__(self, sim: WaldurSim, user: User) -> None:
        self.pool = sim.comments
        self.keep = sim.comment_filter(user)
        self.count = sim.visible_comment_count(user)

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> WComment: ...
    @overload
    def __getitem__(self, index: slice) -> list[WComment]: ...
    def __getitem__(self, index: int | slice) -> WComment | list[WComment]:
        """Non-negative indices and slices only (what the pagination asks)."""
        newest = reversed(self.pool)
        visible = newest if self.keep is None else filter(self.keep, newest)
        if isinstance(index, slice):
            return list(islice(visible, index.start, index.stop, index.step))
        for row in islice(visible, index, None):
            return row
        raise IndexError(index)


Handler = Callable[[Request], Awaitable[Response]]
HOOK_EVENTS = {
    "issue_creation_succeeded",
    "issue_update_succeeded",
    "issue_deletion_succeeded",
    "attachment_created",
    "attachment_updated",
    "attachment_deleted",
}
PAGE_SIZE, MAX_PAGE_SIZE = 10, 300  # waldur_core pagination.py LinkHeaderPagination; settings PAGE_SIZE
# The `o=` values the lists accept (django-filter OrderingFilter choices, each also with a leading "-"):
# support/filters.py IssueFilter.o (a KeyOrderingFilter: `key` sorts by the key's first number) and
# CommentFilter.o; the same enums are in waldur-api-client IssueOEnum and CommentOEnum.
ISSUE_ORDERING = (
    "created",
    "modified",
    "type",
    "status",
    "priority",
    "summary",
    "customer_name",
    "project_name",
    "caller_first_name",
    "caller_last_name",
    "reporter_name",
    "assignee_name",
    "remote_id",
    "key",
)
COMMENT_ORDERING = ("created", "modified")


def build_routes(sim: WaldurSim) -> Starlette:
    from devnet.waldur_sim import WaldurError

    def guarded(fn: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except WaldurError as exc:
                # DRF: a ValidationError("text") answers ["text"], a field error {field: [...]},
                # everything else (404, 403, paging) {"detail": "..."}.
                detail = exc.detail if isinstance(exc.detail, (dict, list)) else {"detail": exc.detail}
                return JSONResponse(detail, status_code=exc.status)

        return run

    def user_url(user: User) -> str:
        return sim.url("users", user.uuid)

    def caller(request: Request) -> User:
        """The token's user (SimCore has authenticated the request before the routes run)."""
        user = sim.user_for(request.headers.get("authorization", ""))
        if user is None:  # the token was revoked between the gate and here
            raise WaldurError(401, "Invalid token.")
        return user

    def issue_json(i: WIssue, user: User) -> dict[str, Any]:
        """serializers.py IssueSerializer as the token's role sees it (see devnet/waldur_rules.py)."""
        data: dict[str, Any] = {
            "url": sim.url("support-issues", i.uuid),
            "uuid": str(i.uuid),
            "type": i.type,
            "key": i.key,
            "backend_id": i.key,
            "backend_name": sim.backend,
            "remote_id": i.remote_id,
            "link": "",  # backend/basic.py never sets it; a remote desk's browse URL otherwise
            "summary": i.summary,
            "description": i.description,
            "status": i.status,
            "resolution": i.resolution,
            "priority": i.priority,
            "caller": user_url(i.caller),
            "caller_uuid": str(i.caller.uuid),
            "caller_full_name": i.caller.full_name,
            "reporter": None,  # the reporter support user is only set when users map to desk agents
            "assignee": sim.url("support-users", i.assignee.uuid) if i.assignee else None,
            "customer": sim.url("customers", i.customer) if i.customer else None,
            "project": sim.url("projects", i.project) if i.project else None,
            "resource": None,
            "resource_type": "",
            "created": waldur_time(i.created),
            "modified": waldur_time(i.modified),
            "template": None,
            "feedback": None,
            "resolved": sim.resolved(i),
            "update_is_available": sim.update_is_available,
            "destroy_is_available": sim.update_is_available,
            "available_statuses": sim.available_statuses(i),
            "add_comment_is_available": True,
            "add_attachment_is_available": True,
            "processing_log": {},
            "order_uuid": None,
            "order_project_uuid": None,
            "order_customer_uuid": None,
            "order_resource_name": None,
            "first_response_deadline": None,
            "resolution_deadline": None,
            "first_response_at": None,
            "sla_breached": False,
            "sla_status": "on_track",
            "parent_issue": None,
            "provider_helpdesk": None,
            "is_escalated": False,
            "escalated_at": None,
            "escalation_reason": "",
            "is_routed": False,
            "provider_ticket_info": None,
        }
        # waldur_core AugmentedSerializerMixin related_paths: `<link>_uuid`/`<link>_name` are
        # ReadOnlyFields over a dotted source, so a null link drops them (DRF SkipField). The same
        # holds for resource_name (source "resource.name"). `reporter` is always null here.
        if i.assignee:
            data |= {"assignee_uuid": str(i.assignee.uuid), "assignee_name": i.assignee.name}
        if i.customer:
            data |= {"customer_uuid": str(i.customer), "customer_name": sim.customers[i.customer]}
        if i.project:
            data |= {"project_uuid": str(i.project), "project_name": sim.projects[i.project][0]}
        if not sim.is_staff_or_support(user):
            for name in STAFF_ONLY_ISSUE_FIELDS:
                data.pop(name, None)
        return data

    def support_user_json(u: SupportUser) -> dict[str, Any]:
        return {
            "url": sim.url("support-users", u.uuid),
            "uuid": str(u.uuid),
            "name": u.name,
            "user_full_name": None,  # not linked to a Waldur user account
            "user_email": None,
            "reported_issues_count": 0,
            "assigned_issues_count": sum(1 for i in sim.issues.values() if i.assignee is u),
            "comments_count": 0,
            "attachments_count": 0,
            "backend_id": None,
            "backend_name": sim.backend,
            "is_active": u.is_active,
            "user": user_url(u.user) if u.user else None,
        } | ({"user_full_name": u.user.full_name, "user_email": u.user.email} if u.user else {})

    def comment_json(c: WComment) -> dict[str, Any]:
        """serializers.py CommentSerializer: author_uuid/author_email/author_image have dotted sources
        over author.user, so a support user without a Waldur user drops them; author_user is null."""
        issue = sim.issues.get(c.issue)
        data: dict[str, Any] = {
            "url": sim.url("support-comments", c.uuid),
            "uuid": str(c.uuid),
            "issue": sim.url("support-issues", c.issue),
            "issue_key": issue.key if issue else "",
            "description": c.description,
            "is_public": c.is_public,
            "author_name": c.author.full_name,
            "author_user": user_url(c.author) if c.author.linked else None,
            "backend_id": f"WLD-C-{c.uuid.hex[:8].upper()}" if sim.backend == "basic" else None,
            "remote_id": None,
            "created": waldur_time(c.created),
            "update_is_available": True,
            "destroy_is_available": True,
        }
        if c.author.linked:
            data |= {"author_uuid": str(c.author.uuid), "author_email": c.author.email, "author_image": None}
        return data

    def attachment_json(a: WAttachment) -> dict[str, Any]:
        """serializers.py AttachmentSerializer.Meta.fields. `file` is the media URL (waldur_core
        media/storage.py DatabaseStorage.url: /api/media/<File uuid hex>/, made absolute by DRF's
        FileField); mime_type/file_size come from media File (models.py Attachment properties);
        file_name is the stored name's basename (get_file_name). No author, no public flag."""
        issue = sim.issues.get(a.issue)
        return {
            "url": sim.url("support-attachments", a.uuid),
            "uuid": str(a.uuid),
            "issue": sim.url("support-issues", a.issue),
            "issue_key": issue.key if issue else "",
            "created": waldur_time(a.created),
            "file": f"{sim.api_url}/media/{a.file_uuid.hex}/",
            "mime_type": a.mime_type,
            "file_size": len(a.content),
            "file_name": a.file_name,
            "backend_id": "",
            "destroy_is_available": sim.attachment_destroy_is_available(a),
        }

    def paged(request: Request, items: Sequence[Any], render: Callable[[Any], Any]) -> Response:
        """waldur_core pagination.py LinkHeaderPagination over DRF's PageNumberPagination: page and
        page_size (default 10, at most 300; a bad page_size falls back to the default), a Link header
        (first, prev, next, last; the page parameter is dropped for page 1) and X-Result-Count. Only the
        page's rows are rendered (rendering every row made a long run's listings slower with each issue)."""
        raw_size = request.query_params.get("page_size", "")
        size = int(raw_size) if raw_size.isdigit() and int(raw_size) > 0 else PAGE_SIZE
        size = min(size, MAX_PAGE_SIZE)
        last = max(1, -(-len(items) // size))
        raw_page = request.query_params.get("page", "1")
        page = last if raw_page == "last" else int(raw_page) if raw_page.isdigit() else 0
        if page < 1 or page > last:
            raise WaldurError(404, rules.INVALID_PAGE)
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))

        def link(n: int) -> str:
            params = {k: v for k, v in query.items() if k != "page"} | ({"page": str(n)} if n > 1 else {})
            encoded = urlencode(sorted(params.items()))
            return f"{sim.runner.base_url}{request.url.path}" + (f"?{encoded}" if encoded else "")

        rels = [
            ("first", 1),
            ("prev", page - 1 if page > 1 else None),
            ("next", page + 1 if page < last else None),
            ("last", last),
        ]
        header = ", ".join(f'<{link(n)}>; rel="{rel}"' for rel, n in rels if n is not None)
        body = [render(item) for item in items[(page - 1) * size : page * size]]
        return JSONResponse(body, headers={"Link": header, "X-Result-Count": str(len(items))})

    def ordering(request: Request, keys: dict[str, Callable[[Any], Any]]) -> list[str]:
        """django-filter OrderingFilter: `o` is a comma-separated list of choices; a value outside them is
        refused by the filterset's form (DjangoFilterBackend raises its errors: 400, ChoiceField's
        invalid_choice text)."""
        names = [o for raw in request.query_params.getlist("o") for o in raw.split(",") if o]
        for name in names:
            if name.lstrip("-") not in keys:
                raise WaldurError(400, {"o": [f"Select a valid choice. {name} is not one of the available choices."]})
        return names

    def ordered(request: Request, rows: list[Any], keys: dict[str, Callable[[Any], Any]]) -> list[Any]:
        """The rows in `o`'s order (see ordering); Python's stable sort applied last-key-first gives the
        multi-key order."""
        for name in reversed(ordering(request, keys)):
            rows.sort(key=keys[name.lstrip("-")], reverse=name.startswith("-"))
        return rows

    def uuid_filter(request: Request, name: str) -> str | None:
        """A django-filter UUIDFilter value as 32 hex digits; a malformed one is refused (forms.UUIDField)."""
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return uuid.UUID(raw).hex
        except ValueError as exc:
            raise WaldurError(400, {name: ["Enter a valid UUID."]}) from exc

    def parse_uuid(raw: str, what: str) -> uuid.UUID:
        try:
            return uuid.UUID(raw)
        except ValueError as exc:
            raise WaldurError(404, f"No {what} matches the given query.") from exc

    def visible(i: WIssue, user: User) -> bool:
        """filters.py IssueCallerOrRoleFilterBackend: staff and support see every issue, others their own."""
        return sim.is_staff_or_support(user) or i.caller is user

    def visible_comments(pool: Iterable[WComment], user: User) -> list[WComment]:
        """The comments of `pool` that `user` sees (WaldurSim.comment_filter): the role is asked once per
        listing, not per comment, as a long run's listing of every comment walks a hundred thousand."""
        keep = sim.comment_filter(user)
        return list(pool) if keep is None else list(filter(keep, pool))

    def visible_issue(ident: str, user: User) -> WIssue:
        issue = sim.get_issue(ident)
        if not visible(issue, user):
            raise WaldurError(404, "No Issue matches the given query.")
        return issue

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise WaldurError(400, "JSON parse error.") from exc
        if not isinstance(body, dict):
            kind = type(body).__name__
            raise WaldurError(400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]})
        return body

    # issues ------------------------------------------------------------------------------------
    async def list_issues(request: Request) -> Response:
        q = request.query_params
        user = caller(request)
        # filters.py IssueFilter has no created/modified range filter (nor has waldur-api-client's
        # support_issues_list): a client finds changes by `o=-modified`. django-filter ignores unknown
        # parameters, so `modified_after` would silently return everything (the contract check refuses it).
        wanted = {name: uuid_filter(request, name) for name in ("customer_uuid", "project_uuid")}
        with sim.lock:
            # models.py Issue.Meta.ordering = ["-created"]: newest first unless `o` says otherwise.
            rows = sorted((i for i in sim.issues.values() if visible(i, user)), key=lambda i: i.created, reverse=True)
            # filters.py IssueFilter: remote_id and summary are `icontains`; key, type and status exact.
            if "remote_id" in q:
                rows = [i for i in rows if q["remote_id"].lower() in (i.remote_id or "").lower()]
            for name in ("key", "status", "type"):
                if name in q:
                    rows = [i for i in rows if getattr(i, name) == q[name]]
            if "summary" in q:
                rows = [i for i in rows if q["summary"].lower() in i.summary.lower()]
            for name, hexed in wanted.items():
                if hexed is not None:
                    rows = [i for i in rows if getattr(i, name[:-5]) and getattr(i, name[:-5]).hex == hexed]
            rows = ordered(request, rows, issue_sort_keys())
            return paged(request, rows, lambda i: issue_json(i, user))

    def issue_sort_keys() -> dict[str, Callable[[WIssue], Any]]:
        """A key per ISSUE_ORDERING choice; `key` by the key's first number (KeyOrderingFilter, 0 without)."""

        def number(key: str) -> int:
            found = re.search(r"\d+", key)
            return int(found.group()) if found else 0

        keys: dict[str, Callable[[WIssue], Any]] = {
            "created": lambda i: i.created,
            "modified": lambda i: i.modified,
            "type": lambda i: i.type,
            "status": lambda i: i.status,
            "priority": lambda i: i.priority,
            "summary": lambda i: i.summary,
            "customer_name": lambda i: sim.customers.get(i.customer, "") if i.customer else "",
            "project_name": lambda i: sim.projects[i.project][0] if i.project in sim.projects else "",
            "caller_first_name": lambda i: i.caller.full_name.split(" ")[0],
            "caller_last_name": lambda i: i.caller.full_name.rsplit(" ", 1)[-1],
            "reporter_name": lambda i: "",
            "assignee_name": lambda i: i.assignee.name if i.assignee else "",
            "remote_id": lambda i: i.remote_id or "",
            "key": lambda i: number(i.key),
        }
        assert set(keys) == set(ISSUE_ORDERING)
        return keys

    async def create_issue(request: Request) -> Response:
        user = caller(request)
        issue = sim.create_issue(await json_body(request), user)
        with sim.lock:
            return JSONResponse(issue_json(issue, user), status_code=201)

    async def get_issue(request: Request) -> Response:
        user = caller(request)
        issue = visible_issue(request.path_params["uuid"], user)
        with sim.lock:
            return JSONResponse(issue_json(issue, user))

    async def patch_issue(request: Request) -> Response:
        user = caller(request)
        issue = visible_issue(request.path_params["uuid"], user)
        # views.py: partial_update_permissions (staff or support, 403), then the validators
        # (_update_is_available_validator, 400), and only then the body.
        sim.require_staff_or_support(user)
        sim.require_update_available()
        body = await json_body(request)
        # serializers.py Meta: status/key/... are read-only and protected_fields (type, priority,
        # caller, customer, project, remote_id, ...) read-only on PATCH: DRF ignores them silently.
        changes = {k: v for k, v in body.items() if k in ("summary", "description")}
        if "assignee" in body:
            assignee = sim.resolve_link("support-users", body["assignee"], "assignee")
            changes["assignee"] = sim.support_users[assignee] if assignee else None
        sim.update_issue(issue, changes, actor=user, saved=True)
        with sim.lock:
            return JSONResponse(issue_json(issue, user))

    async def set_status(request: Request) -> Response:
        user = caller(request)
        issue = visible_issue(request.path_params["uuid"], user)
        sim.require_staff_or_support(user)
        sim.require_update_available()
        sim.set_status(issue, await json_body(request), user)
        with sim.lock:
            return JSONResponse(issue_json(issue, user))

    async def comment(request: Request) -> Response:
        user = caller(request)
        issue = visible_issue(request.path_params["uuid"], user)
        # views.py IssueViewSet._comment_permission: staff/support, or the caller of a personal issue.
        if not sim.is_staff_or_support(user) and (issue.customer or issue.project or issue.caller is not user):
            raise WaldurError(403, rules.PERMISSION_DENIED)
        body = await json_body(request)
        if "description" not in body:
            raise WaldurError(400, {"description": ["This field is required."]})
        if not isinstance(body["description"], str) or not body["description"].strip():
            raise WaldurError(400, {"description": ["This field may not be blank."]})
        # models.py Comment.is_public defaults to True.
        # serializers.py CommentSerializer.create: the author is the token user's support user.
        created = sim.add_comment(issue, body["description"], bool(body.get("is_public", True)), user)
        with sim.lock:
            return JSONResponse(comment_json(created), status_code=201)

    # request types and priorities --------------------------------------------------------------
    async def list_request_types(request: Request) -> Response:
        """views.py RequestTypeViewSet: the active request types, ordered by `order` then name."""
        rows = [
            {
                "url": sim.url("support-request-types", ident),
                "uuid": str(ident),
                "name": name,
                "issue_type_name": name,
                "order": n,
            }
            for n, (name, ident) in enumerate(sim.request_type_ids.items())
        ]
        return paged(request, rows, dict)

    async def list_priorities(request: Request) -> Response:
        """views.py PriorityViewSet ordered by name; filters.py PriorityFilter name (icontains), name_exact."""
        q = request.query_params
        rows = sorted(sim.priority_ids.items())
        if "name" in q:
            rows = [r for r in rows if q["name"].lower() in r[0].lower()]
        if "name_exact" in q:
            rows = [r for r in rows if r[0] == q["name_exact"]]
        data = [
            {
                "url": sim.url("support-priorities", ident),
                "uuid": str(ident),
                "name": name,
                "description": "",
                "icon_url": "",
            }
            for name, ident in rows
        ]
        return paged(request, data, dict)

    # comments and attachments -----------------------------------------------------------------
    async def list_comments(request: Request) -> Response:
        q = request.query_params
        user = caller(request)
        # filters.py CommentFilter: description, issue, issue_uuid, author_name, author_user, is_public,
        # remote_id_is_set and `o` (created, modified); no created range and no customer/project filter
        # (likewise waldur-api-client support_comments_list): a client pages `o=-created` and stops.
        issue_hex = uuid_filter(request, "issue_uuid")
        keys: dict[str, Callable[[Any], Any]] = {"created": CREATED, "modified": CREATED}  # modified is created
        with sim.lock:
            # models.py Comment.Meta.ordering = ["-created"]. Both lists are kept in creation order (add_comment
            # appends under the lock), so newest first is the list reversed.
            default_order = "is_public" not in q and ordering(request, keys) in NEWEST_FIRST
            if issue_hex is None and default_order and sim.comments_in_order:
                return paged(request, NewestComments(sim, user), comment_json)  # walked only as far as the page
            # One issue's comments are taken from its own list (the same rows, in the same order, as filtering
            # them all). The stable sort is linear on rows already in order, and puts right a wall clock that
            # stepped back.
            pool = sim.comments if issue_hex is None else sim.comments_by_issue.get(issue_hex, [])
            rows = visible_comments(reversed(pool), user)
            if not sim.comments_in_order:
                rows.sort(key=CREATED, reverse=True)
            if "is_public" in q:
                rows = [c for c in rows if c.is_public == (q["is_public"].lower() == "true")]
            return paged(request, ordered(request, rows, keys), comment_json)

    async def get_comment(request: Request) -> Response:
        user = caller(request)
        with sim.lock:
            wanted = request.path_params["uuid"].replace("-", "")
            found = visible_comments([c for c in sim.comments if c.uuid.hex == wanted], user)
            if not found:
                raise WaldurError(404, "No Comment matches the given query.")
            return JSONResponse(comment_json(found[0]))

    def attachment_visible(a: WAttachment, user: User) -> bool:
        """managers.py AttachmentQuerySet.filter_for_user: staff see all; anyone else (support too) only
        attachments of issues they are the caller of (or whose customer they own: not modelled)."""
        issue = sim.issues.get(a.issue)
        return sim.role_of(user) == "staff" or (issue is not None and issue.caller is user)

    def visible_attachment(raw: str, user: User) -> WAttachment:
        """views.py AttachmentViewSet (lookup_field uuid) over get_queryset: 404 when not visible."""
        hexed = raw.replace("-", "").lower()
        with sim.lock:
            found = [a for a in sim.attachments if a.uuid.hex == hexed and attachment_visible(a, user)]
        if not found:
            raise WaldurError(404, "No Attachment matches the given query.")
        return found[0]

    async def add_attachment(request: Request) -> Response:
        # Not Waldur's code: a fronting proxy's body limit (nginx client_max_body_size), knob upload_limit.
        declared = request.headers.get("content-length", "")
        if sim.upload_limit is not None and declared.isdigit() and int(declared) > sim.upload_limit:
            return Response(rules.NGINX_413, status_code=413, media_type="text/html")
        raw = await request.body()
        if sim.upload_limit is not None and len(raw) > sim.upload_limit:
            return Response(rules.NGINX_413, status_code=413, media_type="text/html")
        fields = multipart_fields(
            SimRequest("POST", "", "", {"content-type": request.headers.get("content-type", "")}, raw)
        )
        user = caller(request)
        # DRF field validation first, every field's errors together (serializers.py AttachmentSerializer:
        # `issue` HyperlinkedRelatedField over Issue.objects.all(), `file` FileField, allow_empty_file False).
        errors: dict[str, list[str]] = {}
        issue: WIssue | None = None
        if "issue" not in fields:
            errors["issue"] = [rules.FIELD_REQUIRED]
        else:
            link = fields["issue"][1].decode("utf-8", "replace")
            match = re.fullmatch(r"https?://[^/]+/api/support-issues/([^/]+)/?", link)
            if match is None:
                errors["issue"] = [rules.NO_URL_MATCH]
            else:
                try:
                    issue = sim.get_issue(match.group(1))
                except WaldurError:
                    errors["issue"] = [rules.OBJECT_DOES_NOT_EXIST]
        if "file" not in fields:
            errors["file"] = [rules.NO_FILE]
        elif fields["file"][0] is None:
            errors["file"] = [rules.NOT_A_FILE]
        elif not fields["file"][0]:  # Django MultiPartParser skips a file part without a name
            errors["file"] = [rules.NO_FILE]
        elif not fields["file"][1]:
            errors["file"] = [rules.EMPTY_FILE]
        if errors or issue is None:
            raise WaldurError(400, errors)
        name = str(fields["file"][0])
        # AttachmentSerializer.validate: the extension test is a substring test on the constance string
        # ATLASSIAN_EXCLUDED_ATTACHMENT_TYPES (default ""), so a name without an extension is refused too.
        if os.path.splitext(name)[1] in sim.excluded_attachment_types:
            raise WaldurError(400, {"non_field_errors": [rules.INVALID_EXTENSION]})
        if not sim.attachment_create_is_available(issue):
            raise WaldurError(400, {"non_field_errors": [rules.ATTACH_NOT_AVAILABLE]})
        # Then: staff, the customer's owner (not modelled) or the issue's caller; else PermissionDenied.
        if sim.role_of(user) != "staff" and issue.caller is not user:
            raise WaldurError(403, rules.PERMISSION_DENIED)
        att = sim.add_attachment(issue, name, None, fields["file"][1], user)
        with sim.lock:
            return JSONResponse(attachment_json(att), status_code=201)

    async def list_attachments(request: Request) -> Response:
        """filters.py AttachmentFilter: `issue` (URL) and `issue_uuid` only; no Meta.ordering (creation order)."""
        user = caller(request)
        issue_hex = uuid_filter(request, "issue_uuid")
        link = request.query_params.get("issue")
        with sim.lock:
            rows = [a for a in sim.attachments if attachment_visible(a, user)]
            if issue_hex is not None:
                rows = [a for a in rows if a.issue.hex == issue_hex]
            if link:  # waldur_core core_filters.URLFilter: the uuid of a matching URL, else no row
                match = re.fullmatch(r"https?://[^/]+/api/support-issues/([0-9a-fA-F-]{32,36})/?", link)
                wanted = match.group(1).replace("-", "").lower() if match else None
                rows = [a for a in rows if a.issue.hex == wanted]
            return paged(request, rows, attachment_json)

    async def get_attachment(request: Request) -> Response:
        user = caller(request)
        att = visible_attachment(request.path_params["uuid"], user)
        with sim.lock:
            return JSONResponse(attachment_json(att))

    async def delete_attachment(request: Request) -> Response:
        """views.py AttachmentViewSet: get_object (404 when not visible), destroy_validators
        (_destroy_is_available_validator: 400 ["Destroying is not available."]), perform_destroy."""
        user = caller(request)
        att = visible_attachment(request.path_params["uuid"], user)
        if not sim.attachment_destroy_is_available(att):
            raise WaldurError(400, [rules.DESTROY_NOT_AVAILABLE])
        sim.delete_attachment(att, user)
        return Response(status_code=204)

    async def get_media(request: Request) -> Response:
        """waldur_core media/views.py MediaView.get: 404 unless the token's user may see the attachment
        (check_file_permissions: filter_for_user; anonymous 404); the whole file with Content-Length,
        Content-Type (the stored mime type, else octet-stream) and Content-Disposition attachment."""
        user = caller(request)
        hexed = request.path_params["uuid"].replace("-", "").lower()
        with sim.lock:
            found = [a for a in sim.attachments if a.file_uuid.hex == hexed]
        if not found or not attachment_visible(found[0], user):
            raise WaldurError(404, "Not found.")
        att = found[0]
        disposition = "attachment; filename*=utf-8''" + quote(att.file_name)
        if att.file_name.isascii():
            disposition = f'attachment; filename="{att.file_name}"'
        return Response(
            att.content,
            media_type=att.mime_type or "application/octet-stream",
            headers={"Content-Disposition": disposition},
        )

    # structure ----------------------------------------------------------------------------------
    async def get_customer(request: Request) -> Response:
        ident = parse_uuid(request.path_params["uuid"], "Customer")
        if ident not in sim.customers:
            raise WaldurError(404, "No Customer matches the given query.")
        name = sim.customers[ident]
        return JSONResponse(
            {
                "url": sim.url("customers", ident),
                "uuid": str(ident),
                "name": name,
                "display_name": name,
                "abbreviation": name[:8],
                "created": waldur_time(sim_created),
            }
        )

    async def get_project(request: Request) -> Response:
        ident = parse_uuid(request.path_params["uuid"], "Project")
        if ident not in sim.projects:
            raise WaldurError(404, "No Project matches the given query.")
        name, cid = sim.projects[ident]
        return JSONResponse(
            {
                "url": sim.url("projects", ident),
                "uuid": str(ident),
                "name": name,
                "customer": sim.url("customers", cid),
                "customer_uuid": str(cid),
                "customer_name": sim.customers[cid],
                "created": waldur_time(sim_created),
            }
        )

    async def list_support_users(request: Request) -> Response:
        q = request.query_params
        with sim.lock:
            rows = list(sim.support_users.values())
            if "name" in q:
                rows = [u for u in rows if q["name"].lower() in u.name.lower()]
            if "is_active" in q:
                rows = [u for u in rows if u.is_active == (q["is_active"].lower() == "true")]
            return paged(request, rows, support_user_json)

    async def get_support_user(request: Request) -> Response:
        ident = parse_uuid(request.path_params["uuid"], "SupportUser")
        with sim.lock:
            if ident not in sim.support_users:
                raise WaldurError(404, "No SupportUser matches the given query.")
            return JSONResponse(support_user_json(sim.support_users[ident]))

    async def get_me(request: Request) -> Response:
        """waldur_core structure/views.py UserViewSet.me: the token's user, with its global roles
        (`is_staff`, `is_support`) and the email and full name support/views.py can_create_user needs."""
        me = caller(request)
        role = sim.role_of(me)
        return JSONResponse(
            {
                "url": user_url(me),
                "uuid": str(me.uuid),
                "username": me.username,
                "full_name": me.full_name,
                "email": me.email,
                "is_active": True,
                "is_staff": role == "staff",
                "is_support": role == "support",
            }
        )

    # hooks --------------------------------------------------------------------------------------
    def hook_json(h: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": sim.url("hooks-web", h["uuid"]),
            "uuid": str(h["uuid"]),
            "author_uuid": str(sim.me.uuid),
            "created": waldur_time(h["created"]),
            "modified": waldur_time(h["created"]),
            "hook_type": "webhook",
            "author_fullname": sim.me.full_name,
            "author_username": sim.me.username,
            "author_email": sim.me.email,
            "destination_url": h["destination_url"],
            "is_active": h["is_active"],
            "event_types": h["event_types"],
            "event_groups": [],
            "content_type": h["content_type"],
        }

    async def create_hook(request: Request) -> Response:
        """waldur_core logging: content_type is optional and the model's default is JSON."""
        body = await json_body(request)
        events = body.get("event_types") or []
        bad = [e for e in events if e not in HOOK_EVENTS]
        if not isinstance(body.get("destination_url"), str) or not body["destination_url"].startswith("http"):
            raise WaldurError(400, {"destination_url": ["Enter a valid URL."]})
        if bad:
            raise WaldurError(400, {"event_types": [f'"{e}" is not a valid choice.' for e in bad]})
        if body.get("content_type", "json") not in ("json", "form"):
            raise WaldurError(400, {"content_type": [f'"{body["content_type"]}" is not a valid choice.']})
        with sim.lock:
            hook = {
                "uuid": new_uuid(sim._rng),
                "destination_url": body["destination_url"],
                "event_types": events,
                "content_type": body.get("content_type", "json"),
                "is_active": body.get("is_active", True),
                "created": sim_created,
            }
            sim.hooks[hook["uuid"]] = hook
            return JSONResponse(hook_json(hook), status_code=201)

    async def list_hooks(request: Request) -> Response:
        with sim.lock:
            return paged(request, list(sim.hooks.values()), hook_json)

    from devnet.jira_model import now

    sim_created = now()
    u = "{uuid}"
    routes = [
        Route("/api/support-issues/", guarded(list_issues), methods=["GET"]),
        Route("/api/support-issues/", guarded(create_issue), methods=["POST"]),
        Route(f"/api/support-issues/{u}/", guarded(get_issue), methods=["GET"]),
        Route(f"/api/support-issues/{u}/", guarded(patch_issue), methods=["PATCH"]),
        Route(f"/api/support-issues/{u}/comment/", guarded(comment), methods=["POST"]),
        Route(f"/api/support-issues/{u}/set_status/", guarded(set_status), methods=["POST"]),
        Route("/api/support-request-types/", guarded(list_request_types), methods=["GET"]),
        Route("/api/support-priorities/", guarded(list_priorities), methods=["GET"]),
        Route("/api/support-comments/", guarded(list_comments), methods=["GET"]),
        Route(f"/api/support-comments/{u}/", guarded(get_comment), methods=["GET"]),
        Route("/api/support-attachments/", guarded(add_attachment), methods=["POST"]),
        Route("/api/support-attachments/", guarded(list_attachments), methods=["GET"]),
        Route(f"/api/support-attachments/{u}/", guarded(get_attachment), methods=["GET"]),
        Route(f"/api/support-attachments/{u}/", guarded(delete_attachment), methods=["DELETE"]),
        Route(f"/api/media/{u}/", guarded(get_media), methods=["GET"]),
        Route("/api/support-users/", guarded(list_support_users), methods=["GET"]),
        Route(f"/api/support-users/{u}/", guarded(get_support_user), methods=["GET"]),
        Route(f"/api/customers/{u}/", guarded(get_customer), methods=["GET"]),
        Route(f"/api/projects/{u}/", guarded(get_project), methods=["GET"]),
        Route("/api/hooks-web/", guarded(create_hook), methods=["POST"]),
        Route("/api/hooks-web/", guarded(list_hooks), methods=["GET"]),
        Route("/api/users/me/", guarded(get_me), methods=["GET"]),
    ]
    return Starlette(routes=routes)
