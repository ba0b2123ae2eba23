"""Contract checks for the Waldur simulator against the `waldur-api-client` models, where they match the server.

The generated models describe paths, query parameters, field names and types. Where they are stricter
than the server they are relaxed here, each with its source: the server leaves some answer fields out
or null in normal cases (SERVER_OMITS, SERVER_NULLS), and it does not require `type` on create nor
limit it to IssueTypeEnum (the active request types decide; devnet/waldur_rules.py).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import inspect
import json
import re
import types
import typing
import uuid
from dataclasses import dataclass
from typing import Any

import attrs
from waldur_api_client.api.customers import customers_retrieve
from waldur_api_client.api.hooks_web import hooks_web_create, hooks_web_list
from waldur_api_client.api.media import media_retrieve
from waldur_api_client.api.projects import projects_retrieve
from waldur_api_client.api.support_attachments import (
    support_attachments_create,
    support_attachments_destroy,
    support_attachments_list,
    support_attachments_retrieve,
)
from waldur_api_client.api.support_comments import support_comments_list, support_comments_retrieve
from waldur_api_client.api.support_issues import (
    support_issues_comment,
    support_issues_create,
    support_issues_list,
    support_issues_partial_update,
    support_issues_retrieve,
    support_issues_set_status,
)
from waldur_api_client.api.support_priorities import support_priorities_list
from waldur_api_client.api.support_request_types import support_request_types_list
from waldur_api_client.api.support_users import support_users_list, support_users_retrieve
from waldur_api_client.api.users import users_me_retrieve
from waldur_api_client.models import (
    Attachment,
    Comment,
    CommentRequest,
    Customer,
    Issue,
    IssueRequest,
    PatchedIssueRequest,
    Priority,
    Project,
    RequestType,
    SetIssueStatusRequest,
    SupportUser,
    UserMe,
    WebHook,
    WebHookRequest,
)

from devnet.sim_core import SimRequest, SimResponse


@dataclass(frozen=True)
class Operation:
    """One client operation: its path, body model, answer model, and the query it may carry."""

    method: str
    pattern: re.Pattern[str]
    request: type | None
    response: type | None
    many: bool
    module: Any

    @property
    def query_names(self) -> set[str]:
        params = inspect.signature(self.module._get_kwargs).parameters
        return {name.rstrip("_") for name, p in params.items() if p.kind is p.KEYWORD_ONLY and name != "body"}


U = r"[0-9a-fA-F-]{32,36}"
OPERATIONS = [
    Operation("GET", re.compile(r"^/api/support-issues/$"), None, Issue, True, support_issues_list),
    Operation("POST", re.compile(r"^/api/support-issues/$"), IssueRequest, Issue, False, support_issues_create),
    Operation("GET", re.compile(rf"^/api/support-issues/{U}/$"), None, Issue, False, support_issues_retrieve),
    Operation(
        "PATCH",
        re.compile(rf"^/api/support-issues/{U}/$"),
        PatchedIssueRequest,
        Issue,
        False,
        support_issues_partial_update,
    ),
    Operation(
        "POST",
        re.compile(rf"^/api/support-issues/{U}/comment/$"),
        CommentRequest,
        Comment,
        False,
        support_issues_comment,
    ),
    Operation(
        "POST",
        re.compile(rf"^/api/support-issues/{U}/set_status/$"),
        SetIssueStatusRequest,
        Issue,
        False,
        support_issues_set_status,
    ),
    Operation("GET", re.compile(r"^/api/support-request-types/$"), None, RequestType, True, support_request_types_list),
    Operation("GET", re.compile(r"^/api/support-priorities/$"), None, Priority, True, support_priorities_list),
    Operation("GET", re.compile(r"^/api/support-comments/$"), None, Comment, True, support_comments_list),
    Operation("GET", re.compile(rf"^/api/support-comments/{U}/$"), None, Comment, False, support_comments_retrieve),
    Operation("POST", re.compile(r"^/api/support-attachments/$"), None, Attachment, False, support_attachments_create),
    Operation("GET", re.compile(r"^/api/support-attachments/$"), None, Attachment, True, support_attachments_list),
    Operation(
        "GET", re.compile(rf"^/api/support-attachments/{U}/$"), None, Attachment, False, support_attachments_retrieve
    ),
    Operation(
        "DELETE", re.compile(rf"^/api/support-attachments/{U}/$"), None, None, False, support_attachments_destroy
    ),
    # The file itself (media/views.py MediaView): bytes, not JSON, so no answer model.
    Operation("GET", re.compile(r"^/api/media/[0-9a-fA-F]{32}/$"), None, None, False, media_retrieve),
    Operation("GET", re.compile(r"^/api/support-users/$"), None, SupportUser, True, support_users_list),
    Operation("GET", re.compile(rf"^/api/support-users/{U}/$"), None, SupportUser, False, support_users_retrieve),
    Operation("GET", re.compile(rf"^/api/customers/{U}/$"), None, Customer, False, customers_retrieve),
    Operation("GET", re.compile(rf"^/api/projects/{U}/$"), None, Project, False, projects_retrieve),
    Operation("POST", re.compile(r"^/api/hooks-web/$"), WebHookRequest, WebHook, False, hooks_web_create),
    Operation("GET", re.compile(r"^/api/hooks-web/$"), None, WebHook, True, hooks_web_list),
    Operation("GET", re.compile(r"^/api/users/me/$"), None, UserMe, False, users_me_retrieve),
]


# serializers.py IssueSerializer.get_fields / to_representation: what a user who is neither staff nor
# support does not get.
STAFF_ONLY_ISSUE_FIELDS = (
    "link",
    "processing_log",
    "is_routed",
    "provider_ticket_info",
    "provider_helpdesk",
    "parent_issue",
)

# serializers.py IssueSerializer: `<link>_uuid`/`<link>_name` and resource_name drop out over a null link
# (AugmentedSerializerMixin related_paths, DRF SkipField); get_fields/to_representation drop the
# staff-only fields for other users. CommentSerializer drops author_uuid/author_email/author_image when
# the author support user has no Waldur user.
SERVER_OMITS: dict[type, frozenset[str]] = {
    Issue: frozenset(
        {
            "reporter_uuid",
            "reporter_name",
            "assignee_uuid",
            "assignee_name",
            "customer_uuid",
            "customer_name",
            "project_uuid",
            "project_name",
            "resource_name",
            *STAFF_ONLY_ISSUE_FIELDS,
        }
    ),
    Comment: frozenset({"author_uuid", "author_email", "author_image"}),
    IssueRequest: frozenset({"type"}),  # get_fields: defaults to the first active request type
}
# Read-only hyperlinks and images over a null value render as null (DRF to_representation).
SERVER_NULLS: dict[type, frozenset[str]] = {
    Issue: frozenset({"reporter", "resource", "parent_issue", "provider_helpdesk"}),
    Comment: frozenset({"author_user", "author_image"}),
}
_PLACEHOLDERS: dict[Any, Any] = {
    str: "",
    bool: False,
    int: 0,
    float: 0.0,
    uuid.UUID: "00000000-0000-4000-8000-000000000000",
    datetime.datetime: "2026-01-01T00:00:00Z",
}


def _placeholder(ann: Any) -> Any:
    """A value `from_dict` accepts for a field the server left out (only to parse the rest)."""
    args = typing.get_args(ann)
    if type(None) in args or isinstance(ann, (str, typing.ForwardRef)):
        return None
    if typing.get_origin(ann) is list:
        return []
    for arg in args or (ann,):
        if arg in _PLACEHOLDERS:
            return _PLACEHOLDERS[arg]
    return None


def find_operation(method: str, path: str) -> Operation | None:
    return next((op for op in OPERATIONS if op.method == method and op.pattern.match(path)), None)


def _type_ok(value: Any, ann: Any) -> bool:
    """Whether a parsed attribute value fits the model's annotation (nested models: shallow)."""
    if ann is Any or isinstance(ann, (str, typing.ForwardRef)):
        return True
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(ann))
    if ann is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(ann) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(ann, type):
        return isinstance(value, ann)
    return True


def model_problems(model: type, data: Any, where: str) -> list[str]:
    """Round-trip `data` through `model.from_dict` and check required fields, types and extras,
    tolerating what the server itself leaves out or sends as null (SERVER_OMITS, SERVER_NULLS)."""
    if not isinstance(data, dict):
        return [f"{where}: expected an object for {model.__name__}, got {type(data).__name__}"]
    tolerated: set[str] = set()
    fields_by_key = {f.name.rstrip("_"): f for f in attrs.fields(model)}
    data = dict(data)
    for key in SERVER_OMITS.get(model, frozenset()):
        if key not in data and key in fields_by_key and fields_by_key[key].default is attrs.NOTHING:
            data[key] = _placeholder(fields_by_key[key].type)
            tolerated.add(key)
    tolerated |= {k for k in SERVER_NULLS.get(model, frozenset()) if k in data and data[k] is None}
    try:
        parsed = model.from_dict(data)  # type: ignore[attr-defined]
    except KeyError as exc:
        return [f"{where}: {model.__name__} requires field {exc}"]
    except (ValueError, TypeError, AttributeError) as exc:
        return [f"{where}: {model.__name__} cannot parse: {exc!r}"]
    problems: list[str] = []
    for field in attrs.fields(model):
        if field.name == "additional_properties":
            continue
        value = getattr(parsed, field.name)
        if field.name.rstrip("_") in tolerated:
            continue
        if not _type_ok(value, field.type):
            key = field.name.rstrip("_")
            problems.append(f"{where}: {model.__name__}.{key} has the wrong type ({type(value).__name__})")
    extra = sorted(parsed.additional_properties)
    if extra:
        problems.append(f"{where}: {model.__name__} has no field(s) {', '.join(extra)}")
    return problems


def multipart_fields(req: SimRequest) -> dict[str, tuple[str | None, bytes]]:
    """{name: (filename, payload)} of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + req.content_type.encode() + b"\r\n\r\n" + req.body
    )
    if not message.is_multipart():
        return {}
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return out


class WaldurContract:
    """Checks requests and 2xx answers against the client's operations and models."""

    def check_request(self, req: SimRequest) -> list[str]:
        op = find_operation(req.method, req.path)
        if op is None:
            return [f"waldur-api-client has no operation {req.method} {req.path}"]
        problems = [
            f"query parameter {name!r} is not accepted by {op.module.__name__.rsplit('.', 1)[-1]}"
            for name, _ in req.params
            if name not in op.query_names
        ]
        if not req.headers.get("authorization", "").startswith("Token "):
            problems.append("Authorization must be 'Token <token>'")
        if op.module is support_attachments_create:
            fields = multipart_fields(req)
            if set(fields) != {"issue", "file"} or fields["file"][0] is None:
                problems.append("attachment upload needs multipart parts 'issue' (URL) and 'file' (a file)")
        elif op.request is not None:
            try:
                body = req.json()
            except ValueError:
                return [*problems, "body is not valid JSON"]
            problems += model_problems(op.request, body, "request")
        return problems

    def check_response(self, req: SimRequest, resp: SimResponse) -> list[str]:
        op = find_operation(req.method, req.path)
        if op is None or op.response is None or not 200 <= resp.status < 300:
            return []
        try:
            data = json.loads(resp.body)
        except ValueError:
            return [f"status {resp.status}: body is not JSON"]
        if op.many:
            if not isinstance(data, list):
                return [f"status {resp.status}: a list of {op.response.__name__} expected"]
            return [p for i, item in enumerate(data) for p in model_problems(op.response, item, f"response[{i}]")]
        return model_problems(op.response, data, "response")


def waldur_time(moment: datetime.datetime) -> str:
    """DRF's ISO 8601 rendering with a Z suffix."""
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def new_uuid(rng: Any) -> uuid.UUID:
    """A v4 UUID from a seeded RNG, so simulator runs are reproducible."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


__all__ = ["OPERATIONS", "WaldurContract", "model_problems", "multipart_fields", "new_uuid", "waldur_time"]
