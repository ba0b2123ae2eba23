"""The Jira simulator's attachments: addAttachment and its neighbours, multipart parsing, the media host.

`JiraAttachments` is mixed into JiraSim (state and webhooks); `attachment_routes` gives the REST routes
build_routes mounts. Atlassian's media host is not part of Jira's REST surface: JiraSim serves it from
`_media_file` before routing, on paths under MEDIA_PREFIX.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devnet.jira_hooks import changelog_item
from devnet.jira_model import Attachment, Issue, jira_time, now
from devnet.sim_core import EXEMPT_HEADER, SimRequest, SimResponse, json_response

if TYPE_CHECKING:
    from devnet.jira_sim import JiraSim
    from devnet.sim_faults import Clock
    from devnet.sim_runner import SimRunner

MEDIA_PREFIX = "/media/file/"  # the simulator's stand-in for Atlassian's media host (see JiraAttachments.media_url)
ATTACHMENT_MISSING = "The attachment does not exist or you do not have permission to see it."
ATTACHMENTS_DISABLED = "Attachments are disabled on this site."  # the simulator's sentence
REQUEST_MISSING = "The customer request does not exist."  # getAttachmentsForRequest's 404 (sentence: ours)
MAX_FILES = 60  # addAttachment's 413: "more than 60 files are requested to be uploaded" (pinned spec)
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')

Handler = Callable[[Request], Awaitable[Response]]


class JiraAttachments:
    """JiraSim's files: stored on issues, announced by webhooks, served through signed media URLs."""

    # Provided by JiraSim (and SimCore), as are _actor, _next, _touch, _emit_issue, _send, user_json, _root.
    lock: threading.RLock
    issues: dict[str, Issue]
    clock: Clock
    runner: SimRunner

    def _init_attachments(self, max_attachment_bytes: int, attachments_enabled: bool) -> None:
        # Attachment settings as GET /rest/api/3/attachment/meta reports them; the default limit is the
        # pinned spec's example answer ({"enabled":true,"uploadLimit":1000000}), a site sets its own.
        self.max_attachment_bytes = max_attachment_bytes
        self.attachments_enabled = attachments_enabled
        # Signed media URLs handed out by GET .../attachment/content/{id}: token -> (attachment id, expiry).
        self.media_tokens: dict[str, tuple[str, float]] = {}
        self.media_ttl = 60.0  # seconds a media URL works (short-lived, like Atlassian's signed URLs)
        # Fault knob: attachment id -> the size the desk claims (metadata `size`) while serving the real
        # bytes without a Content-Length (chunked), so a client that trusts a declared size is caught.
        self.declared_sizes: dict[str, int] = {}
        self.media_requests: list[bool] = []  # per media GET: did it carry an Authorization header?
        # Accounts without the project's "Create attachments" permission (addAttachment's 403, pinned spec).
        self.attach_denied: set[str] = set()
        # addAttachment's 413 also covers "the per-issue limit for attachments has been breached" (pinned
        # spec): files one issue may hold. The number is this simulator's default; a site's is not published.
        self.max_issue_attachments = 2000
        # Attachments added with an internal JSM comment: agents see them, the customer does not, and the
        # Service Desk API's request listing leaves them out (see `request_attachments`).
        self.internal_attachments: set[str] = set()
        self.request_attachment_page = 50  # getAttachmentsForRequest's largest page (its default limit)
        # attachTemporaryFile's uploads awaiting createCommentWithAttachment: id -> (name, type, bytes, expiry).
        # They expire (createCommentWithAttachment's 400: "if the temporary files have expired"); how soon
        # is not published: an hour is this simulator's choice.
        self.temporary_files: dict[str, tuple[str, str, bytes, float]] = {}
        self.temporary_ttl = 3600.0

    def add_attachment(
        self,
        issue: Issue,
        filename: str,
        mime: str,
        content: bytes,
        as_agent: bool | None = None,
        *,
        public: bool = True,
    ) -> Attachment:
        """Store one file. Jira Cloud then sends both `jira:issue_updated` with a changelog item of field
        "Attachment" (`to` = the attachment id, `toString` = the file name) and `attachment_created`,
        whose body has the attachment but no issue (jira.js AttachmentWebhookPayload; "Jira event
        attachment_created. Not enough info on issue." in malko/rocketchat-jira-hook#13). `public=False`
        is a file attached with an internal comment (see `agent_attach_internal`); the platform API's
        Attachment shows no visibility, so only the Service Desk API's listing tells them apart."""
        actor = self._actor(as_agent)
        with self.lock:
            att = Attachment(self._next("attachment"), filename, mime, content, actor.account_id, now())
            issue.attachments.append(att)
            if not public:
                self.internal_attachments.add(att.id)
            self._touch(issue)
        item = {**changelog_item("Attachment", None, filename), "to": att.id}
        self._emit_issue("jira:issue_updated", issue, actor, [item], "issue_updated")
        self._send("attachment_created", self._attachment_event("attachment_created", att))
        return att

    def attachment(self, attachment_id: str) -> tuple[Issue, Attachment]:
        """The attachment and its issue; 404 as removeAttachment/getAttachment document it."""
        from devnet.jira_sim import JiraError

        with self.lock:
            for issue in self.issues.values():
                for att in issue.attachments:
                    if att.id == attachment_id:
                        return issue, att
        raise JiraError(404, ATTACHMENT_MISSING)

    def delete_attachment(self, attachment_id: str, as_agent: bool | None = None) -> None:
        """removeAttachment: the file goes; the changelog records it (`from` = id, `fromString` = name) and
        `attachment_deleted` is sent, like the create."""
        issue, att = self.attachment(attachment_id)
        actor = self._actor(as_agent)
        with self.lock:
            issue.attachments.remove(att)
            self.internal_attachments.discard(att.id)
            self._touch(issue)
        item = {**changelog_item("Attachment", att.filename, None), "from": att.id}
        self._emit_issue("jira:issue_updated", issue, actor, [item], "issue_updated")
        self._send("attachment_deleted", self._attachment_event("attachment_deleted", att))

    def attachment_json(self, att: Attachment) -> dict[str, Any]:
        """An Attachment as addAttachment answers it and `fields.attachment` lists it (pinned spec)."""
        return {
            "id": att.id,
            "self": f"{self._root()}/rest/api/3/attachments/{att.id}",
            "filename": att.filename,
            "author": self.user_json(att.author),
            "created": jira_time(att.created),
            "size": self.declared_sizes.get(att.id, len(att.content)),
            "mimeType": att.mime_type,
            "content": f"{self._root()}/rest/api/3/attachment/content/{att.id}",
        }

    def media_url(self, att: Attachment) -> str:
        """A short-lived signed URL for the bytes. Jira Cloud answers getAttachmentContent with a 303 to
        Atlassian's media host (console-helpers/jira-api-restclient#234: "303 See Other" with the file
        URL in `Location`), whose URL carries its own token: a client follows it across hosts without
        the Jira credential (omar16100/atlassian-cli#94: reqwest strips Authorization on that hop).
        Here the other host is `localhost` (the simulator listens on 127.0.0.1), so the hop is
        cross-origin too and a client that drops the credential still gets the file."""
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.media_tokens[token] = (att.id, self.clock() + self.media_ttl)
        return f"http://localhost:{self.runner.port}{MEDIA_PREFIX}{token}/binary"

    def media_attachment(self, token: str) -> Attachment | None:
        """The attachment a media token names while it is valid (the attachment still exists)."""
        from devnet.jira_sim import JiraError

        with self.lock:
            entry = self.media_tokens.get(token)
        if entry is None or entry[1] < self.clock():
            return None
        try:
            return self.attachment(entry[0])[1]
        except JiraError:
            return None

    def _media_file(self, req: SimRequest) -> SimResponse:
        """GET on a signed media URL: the token in the path is the credential (no Basic auth is needed);
        an unknown or expired one is 401. With a declared-size fault the body goes out chunked, without a
        Content-Length (see `declared_sizes`)."""
        token = req.path[len(MEDIA_PREFIX) :].removesuffix("/binary")
        with self.lock:
            self.media_requests.append("authorization" in req.headers)
        att = self.media_attachment(token) if req.method == "GET" else None
        if att is None:
            return json_response(401, {"error": "The media token is invalid or has expired."})
        headers: list[tuple[bytes, bytes]] = [(b"content-type", att.mime_type.encode("latin-1", "replace"))]
        if att.id not in self.declared_sizes:
            headers.append((b"content-length", str(len(att.content)).encode()))
        return SimResponse(200, headers, att.content)

    def _attachment_event(self, event: str, att: Attachment) -> dict[str, Any]:
        return {"timestamp": int(time.time() * 1000), "webhookEvent": event, "attachment": self.attachment_json(att)}

    def agent_attach(self, key: str, filename: str, content: bytes, mime: str = "application/octet-stream") -> str:
        """Attach a file as the agent (a drag-and-drop in the Jira UI); returns the attachment id."""
        return self.add_attachment(self.issue(key), filename, mime, content, as_agent=True).id

    def agent_attach_internal(
        self, key: str, filename: str, content: bytes, mime: str = "application/octet-stream"
    ) -> str:
        """The agent attaches a file to an internal note of a JSM request (the agent view's "Add internal
        note" with a file): the file is stored, then an internal comment (`jsdPublic: false`) names it.
        The same as createCommentWithAttachment with `public: false` ("Controls whether the comment and
        its attachments are visible to customers", AttachmentCreateDTO.public, pinned JSM spec), which
        `request_attachment_routes` serves. Returns the attachment id."""
        issue = self.issue(key)
        att = self.add_attachment(issue, filename, mime, content, as_agent=True, public=False)
        self.add_comment(issue, _attachment_note(None, [filename]), False, True)
        return att.id

    def temporary_attachment(self, filename: str, content: bytes, mime: str = "application/octet-stream") -> str:
        """What POST /rest/servicedeskapi/servicedesk/{id}/attachTemporaryFile does (not served over HTTP
        here: see the #15 report): holds a file for createCommentWithAttachment; returns its id, shaped
        like the pinned spec's example ("temp8186986881700442965")."""
        ident = "temp" + str(secrets.randbelow(10**19))
        with self.lock:
            self.temporary_files[ident] = (filename, mime, content, self.clock() + self.temporary_ttl)
        return ident

    def is_public_attachment(self, att: Attachment) -> bool:
        with self.lock:
            return att.id not in self.internal_attachments

    def request_attachment_json(self, att: Attachment) -> dict[str, Any]:
        """An attachment as the Service Desk API's AttachmentDTO shows it (pinned JSM spec): no `id` field,
        the id is the last segment of `_links.jiraRest` (".../rest/api/2/attachment/10001" in the spec's
        example); `content` is the customer portal's download URL; `created` a DateDTO; `author` a
        UserDTO (additionalProperties false in both, so no other keys)."""
        author = self.user_json(att.author)
        created = att.created
        return {
            "filename": att.filename,
            "author": {k: author[k] for k in ("accountId", "displayName", "active", "timeZone")},
            "created": {
                "iso8601": created.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "jira": jira_time(created),
                "friendly": "Today",
                "epochMillis": int(created.timestamp() * 1000),
            },
            "size": self.declared_sizes.get(att.id, len(att.content)),
            "mimeType": att.mime_type,
            "_links": {
                "jiraRest": f"{self._root()}/rest/api/2/attachment/{att.id}",
                "content": f"{self._root()}/servicedesk/customershim/secure/attachment/{att.id}/"
                + quote(att.filename, safe=""),
            },
        }


async def json_object_body(request: Request) -> dict[str, Any]:
    """A request's JSON object body; 400 when it is not JSON or not an object (every JSON endpoint)."""
    from devnet.jira_sim import JiraError

    try:
        body = await request.json()
    except ValueError as exc:
        raise JiraError(400, "Unexpected character in the request body: invalid JSON.") from exc
    if not isinstance(body, dict):
        raise JiraError(400, "Request body must be a JSON object.")
    return body


def attachment_routes(
    sim: JiraSim, guarded: Callable[[Handler], Handler], actor: Callable[[Request], bool | None]
) -> list[Route]:
    """addAttachment, getAttachmentMeta, getAttachmentContent, getAttachment and removeAttachment."""
    from devnet.jira_sim import JiraError  # the simulator class needs this module: import late, no cycle

    def _errors(status: int, messages: list[str]) -> JSONResponse:
        return JSONResponse({"errorMessages": messages, "errors": {}}, status_code=status)

    async def add_attachments(request: Request) -> Response:
        """addAttachment, holding Jira's rules in the order its filters apply them (each cited):

        1. `X-Atlassian-Token: no-check` is required, else 403 with the text body "XSRF check failed"
           (pinned spec: "if not it is blocked"; Atlassian KB "XSRF check failed when calling Cloud APIs":
           HTTP/1.1 403 Forbidden ... XSRF check failed). Checked before the issue is looked up.
        2. The issue must exist and be visible: 404 (pinned spec: "the issue is not found / the user does
           not have permission to view the issue").
        3. Attachments disabled on the site, or the caller lacks "Create attachments" (`attach_denied`):
           403 (pinned spec: 403 "the user does not have the necessary permission"; getAttachmentMeta's
           `enabled`; the operation requires Browse Projects and Create attachments). Sentences: ours.
        4. The body must be multipart/form-data (the operation's only request media type): anything else
           is 415, the JAX-RS answer for a media type a resource does not consume
           (console-helpers/jira-api-restclient#14: "Error 415 Unsupported Media Type").
        5. Files come from parts named `file` (pinned spec: "The name of the multipart/form-data parameter
           that contains the attachments must be `file`"); none: 400 (the sentence is the simulator's).
        6. A file over the site's uploadLimit: 413 (pinned spec) with Jira's sentence "The field file exceeds
           its maximum permitted size of N bytes." (bobcarroll/jira-client#119); nothing is stored.
        7. More than 60 files in one request, or more than `max_issue_attachments` on the issue: 413 (pinned
           spec: "more than 60 files", "the per-issue limit for attachments has been breached").
        Answer: 200 and a JSON list of Attachment objects, one per stored file.
        """
        if request.headers.get("x-atlassian-token", "").lower() != "no-check":
            return Response("XSRF check failed", status_code=403, headers={EXEMPT_HEADER.decode(): "1"})
        issue = sim.issue(request.path_params["key"])
        if not sim.attachments_enabled:
            raise JiraError(403, ATTACHMENTS_DISABLED)
        account = sim.account_of(request.headers.get("authorization", ""))
        if account is not None and account.account_id in sim.attach_denied:
            raise JiraError(403, "You do not have permission to create attachments for this issue.")
        ctype = request.headers.get("content-type", "")
        boundary = _boundary(ctype)
        if not ctype.lower().startswith("multipart/form-data") or boundary is None:
            return Response("Unsupported Media Type", status_code=415, headers={EXEMPT_HEADER.decode(): "1"})
        try:
            parts = [p for p in _multipart_parts(await request.body(), boundary) if p.name == "file"]
        except ValueError as exc:
            unreadable = _errors(400, [f"The multipart body could not be read: {exc}"])
            unreadable.headers[EXEMPT_HEADER.decode()] = "1"
            return unreadable
        if not parts:  # an answer the spec does not declare (no 400 for addAttachment): exempt from the check
            missing = _errors(400, ["No multipart part named 'file' was found."])
            missing.headers[EXEMPT_HEADER.decode()] = "1"
            return missing
        if len(parts) > MAX_FILES:
            raise JiraError(413, f"At most {MAX_FILES} files can be uploaded in one request.")
        if len(issue.attachments) + len(parts) > sim.max_issue_attachments:
            raise JiraError(413, "The per-issue limit for attachments has been breached.")  # sentence: ours
        limit = sim.max_attachment_bytes
        if any(len(p.content) > limit for p in parts):
            raise JiraError(413, f"The field file exceeds its maximum permitted size of {limit} bytes.")
        created = [
            sim.add_attachment(issue, p.filename or "file", p.content_type, p.content, actor(request)) for p in parts
        ]
        return JSONResponse([sim.attachment_json(att) for att in created])

    async def attachment_meta(request: Request) -> Response:
        """getAttachmentMeta: AttachmentSettings {enabled, uploadLimit} (pinned spec)."""
        return JSONResponse({"enabled": sim.attachments_enabled, "uploadLimit": sim.max_attachment_bytes})

    def visible_attachment(request: Request) -> tuple[Issue, Attachment]:
        """An attachment by id; 404 when missing or when attachments are disabled (pinned spec, both)."""
        if not sim.attachments_enabled:
            raise JiraError(404, ATTACHMENTS_DISABLED)
        return sim.attachment(request.path_params["id"])

    async def get_attachment(request: Request) -> Response:
        """getAttachment: AttachmentMetadata, whose `id` is an integer there (pinned spec), unlike the
        string id of addAttachment's Attachment; additionalProperties are false, so no other keys."""
        _, att = visible_attachment(request)
        out = sim.attachment_json(att)
        out["id"] = int(att.id)
        author = out.pop("author")
        out["author"] = {k: author[k] for k in ("accountId", "accountType", "active", "displayName", "self")}
        return JSONResponse(out)

    async def remove_attachment(request: Request) -> Response:
        """removeAttachment: 204; 404 for a missing attachment (pinned spec)."""
        visible_attachment(request)
        sim.delete_attachment(request.path_params["id"], actor(request))
        return Response(status_code=204)

    async def attachment_content(request: Request) -> Response:
        """getAttachmentContent: by default a 303 to the file's signed media URL (see JiraSim.media_url);
        `redirect=false` answers 200 with the bytes (pinned spec). Range requests are not modelled."""
        _, att = visible_attachment(request)
        if request.query_params.get("redirect", "true").lower() == "false":
            return _file_response(sim, att)
        return Response(status_code=303, headers={"location": sim.media_url(att)})

    async def request_attachments(request: Request) -> Response:
        """getAttachmentsForRequest (GET /rest/servicedeskapi/request/{issueIdOrKey}/attachment), its rules:

        1. An issue that is missing, or is not a customer request (no request type: a plain Jira issue),
           is 404 (pinned JSM spec: "Returned if the customer request does not exist"; a non-JSM issue
           is a 404 there, sooperset/mcp-atlassian#1049 "Non-JSM 404"). Sentence: the simulator's.
        2. Only public attachments are listed: one added with an internal comment is not (the spec's
           200: "Returns the visible attachments from the customer request"; AttachmentCreateDTO.public:
           "Controls whether the comment and its attachments are visible to customers"). NOTE: the spec's
           "Response limitations" says "Customers will only get a list of public attachments", which
           leaves open whether an agent's call lists internal ones too; this simulator lists public ones
           for every caller, as the sidecar's client relies on (see the #15 report).
        3. Paging by `start` and `limit` (PagedDTOAttachmentDTO: size, start, limit, isLastPage, values);
           `limit` is capped at `request_attachment_page` (the spec: "up to the maximum set for these
           objects"; its default is 50), oldest first.
        """
        issue = sim.issue(request.path_params["key"])
        if issue.request_type_id is None:
            raise JiraError(404, REQUEST_MISSING)
        q = request.query_params
        try:
            start, limit = int(q.get("start", "0")), int(q.get("limit", "50"))
        except ValueError as exc:
            raise JiraError(400, "start and limit must be integers.") from exc
        start, limit = max(0, start), max(1, min(limit, sim.request_attachment_page))
        with sim.lock:
            public = [att for att in issue.attachments if att.id not in sim.internal_attachments]
        page = public[start : start + limit]
        base = f"{sim._root()}/rest/servicedeskapi"
        url = f"{base}/request/{issue.key}/attachment"
        links: dict[str, str] = {"base": base, "context": "", "self": f"{url}?start={start}&limit={limit}"}
        last = start + limit >= len(public)
        if not last:
            links["next"] = f"{url}?start={start + limit}&limit={limit}"
        if start > 0:
            links["prev"] = f"{url}?start={max(0, start - limit)}&limit={limit}"
        body = {"_expands": [], "size": len(page), "start": start, "limit": limit, "isLastPage": last}
        return JSONResponse({**body, "_links": links, "values": [sim.request_attachment_json(a) for a in page]})

    async def comment_with_attachments(request: Request) -> Response:
        """createCommentWithAttachment (POST /rest/servicedeskapi/request/{issueIdOrKey}/attachment), its rules:

        1. A missing issue or one that is not a customer request: 404 (pinned JSM spec: "Returned if the
           customer request does not exist").
        2. `public` must be a boolean and `temporaryAttachmentIds` a non-empty list, else 400 (pinned spec:
           "missing the required `public` field or list of temporary file IDs").
        3. Every id must name a temporary file still held, else 400 and nothing is attached (pinned spec:
           "or if the temporary files have expired"); an id is used once.
        4. Attachments disabled on the site: 403 (pinned spec 403; getAttachmentMeta's `enabled`).
        Answer 201 AttachmentCreateResultDTO: the files (PagedDTOAttachmentDTO) and one comment whose
        visibility is `public` with the files ("Controls whether the comment and its attachments are
        visible to customers", AttachmentCreateDTO.public); its body is additionalComment.body followed
        by a mention of each file (the spec's example answer: "... attached. !screenshot.png|thumbnail!
        [^log.txt] _(32 kB)_"). Sentences: the simulator's.
        """
        issue = sim.issue(request.path_params["key"])
        if issue.request_type_id is None:
            raise JiraError(404, REQUEST_MISSING)
        body = await json_object_body(request)
        public, temp_ids = body.get("public"), body.get("temporaryAttachmentIds")
        if not isinstance(public, bool):
            raise JiraError(400, "The 'public' field is required.")
        if not isinstance(temp_ids, list) or not temp_ids or not all(isinstance(t, str) for t in temp_ids):
            raise JiraError(400, "At least one temporary attachment id is required.")
        if not sim.attachments_enabled:
            raise JiraError(403, ATTACHMENTS_DISABLED)
        extra = body.get("additionalComment")
        text = extra.get("body") if isinstance(extra, dict) else None
        with sim.lock:
            held = [sim.temporary_files.get(t) for t in temp_ids]
            if len(set(temp_ids)) != len(temp_ids) or any(h is None or h[3] < sim.clock() for h in held):
                raise JiraError(400, "The temporary attachments do not exist or have expired.")
            for t in temp_ids:
                del sim.temporary_files[t]
        files = [h for h in held if h is not None]
        who = actor(request)
        created = [sim.add_attachment(issue, n, m, c, who, public=public) for n, m, c, _ in files]
        note = sim.add_comment(
            issue, _attachment_note(text if isinstance(text, str) else None, [f[0] for f in files]), public, who
        )
        author = sim.user_json(note.author)
        when = sim.request_attachment_json(created[0])["created"]
        base = f"{sim._root()}/rest/servicedeskapi"
        comment = {
            "id": note.id,
            "body": " ".join(([text] if isinstance(text, str) and text else []) + [f"[^{f[0]}]" for f in files]),
            "public": public,
            "author": {k: author[k] for k in ("accountId", "displayName", "active", "timeZone")},
            "created": when,
            "_links": {"self": f"{base}/request/{issue.id}/comment/{note.id}"},
        }
        page = {"_expands": [], "size": len(created), "start": 0, "limit": len(created), "isLastPage": True}
        page["values"] = [sim.request_attachment_json(a) for a in created]
        return JSONResponse({"attachments": page, "comment": comment}, status_code=201)

    issue_path = "/rest/api/3/issue/{key}"
    return [
        Route("/rest/servicedeskapi/request/{key}/attachment", guarded(comment_with_attachments), methods=["POST"]),
        Route("/rest/servicedeskapi/request/{key}/attachment", guarded(request_attachments), methods=["GET"]),
        Route(issue_path + "/attachments", guarded(add_attachments), methods=["POST"]),
        Route("/rest/api/3/attachment/meta", guarded(attachment_meta), methods=["GET"]),  # before {id}
        Route("/rest/api/3/attachment/content/{id}", guarded(attachment_content), methods=["GET"]),
        Route("/rest/api/3/attachment/{id}", guarded(get_attachment), methods=["GET"]),
        Route("/rest/api/3/attachment/{id}", guarded(remove_attachment), methods=["DELETE"]),
    ]


class _Part:
    """One part of a multipart/form-data body."""

    def __init__(self, name: str | None, filename: str | None, content_type: str, content: bytes) -> None:
        self.name, self.filename, self.content_type, self.content = name, filename, content_type, content


def _params(header: str) -> dict[str, str]:
    """Parameters of a Content-Type / Content-Disposition value, quotes and backslash escapes undone."""
    out: dict[str, str] = {}
    for name, raw in _PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[name.lower()] = value
    return out


def _boundary(content_type: str) -> str | None:
    boundary = _params(content_type).get("boundary")
    return boundary if boundary and len(boundary) <= 70 else None  # RFC 2046: 1-70 characters


def _file_name(disposition: dict[str, str]) -> str | None:
    """The part's file name as Jira keeps it. RFC 7578 section 4.2: a UTF-8 `filename` is sent as is (what
    browsers and httpx do, with `"` as %22); `filename*` (RFC 5987) is read where a client sends it. Jira keeps
    the uploaded name, non-ASCII included; a client-side path is cut to its last segment, as RFC 7578 4.2
    says a receiver may ("do not use directory path information"): whether Jira Cloud does exactly this is
    not documented, so a client must normalise names itself."""
    starred = disposition.get("filename*")
    if starred and "''" in starred:
        charset, _, encoded = starred.partition("''")
        name = unquote(encoded, encoding=charset or "utf-8", errors="replace")
    elif "filename" in disposition:
        name = disposition["filename"].replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
    else:
        return None
    return re.split(r"[/\\]", name)[-1] or None


def _multipart_parts(body: bytes, boundary: str) -> list[_Part]:
    """Split a multipart/form-data body (RFC 7578 / RFC 2046 section 5.1.1); ValueError when malformed."""
    delimiter = b"--" + boundary.encode("latin-1")
    if not body.startswith(delimiter):
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise ValueError("no boundary delimiter")
        body = body[start + 2 :]
    chunks = body.split(b"\r\n" + delimiter)
    chunks[0] = chunks[0][len(delimiter) :]
    parts: list[_Part] = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            return parts  # the close delimiter
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part without a header block")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        disposition = _params(headers.get("content-disposition", ""))
        name = disposition.get("name")
        filename = _file_name(disposition)
        if filename is not None:
            filename = filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        ctype = headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        parts.append(_Part(name, filename, ctype or "application/octet-stream", content))
    raise ValueError("no close delimiter")


def _file_response(sim: Any, att: Attachment) -> Response:
    """The bytes with the stored media type. With a declared-size fault on the attachment the answer
    carries no Content-Length (chunked): HTTP framing cannot deliver more bytes than a Content-Length
    declares (h11 refuses to send them and a client stops reading there), so the lie a client can meet
    is a small `size` in the metadata followed by a body that goes on."""
    response = Response(att.content, media_type=att.mime_type or "application/octet-stream")
    if att.id in sim.declared_sizes:
        response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
    return response


def _attachment_note(text: str | None, names: list[str]) -> dict[str, Any]:
    """The comment that carries attached files, as ADF: the agent's text, then a wiki-style mention of each
    file ("!screenshot.png|thumbnail! [^log.txt]" in createCommentWithAttachment's example answer)."""
    parts = ([text] if text else []) + [f"[^{name}]" for name in names]
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": " ".join(parts)}]}],
    }
