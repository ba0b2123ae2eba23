"""Contract checks for the Jira simulator: openapi-core against the project's Jira contract, plus ADF.

Every request the simulator receives and every response it sends goes through here in validate
mode, so a client that drifts from Jira's published contract fails its tests instead of production.
The contract is devnet/contracts/: the operations the project uses, extracted from the pinned
Atlassian specs by devnet/contract_extract.py. A request for any other operation is a violation.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from devnet.contract_extract import CONTRACTS_DIR, JSM, PLATFORM
from devnet.jira_model import adf_problems
from devnet.sim_core import SimRequest, SimResponse

PLATFORM_SPEC = CONTRACTS_DIR / PLATFORM.subset
JSM_SPEC = CONTRACTS_DIR / JSM.subset
SPEC_HOST = "https://your-domain.atlassian.net"  # the specs' only server; requests are mapped onto it
_load_lock = threading.Lock()


def _strip_security(node: Any) -> Any:
    """Drop `security` requirements: we check Basic auth ourselves, and openapi-core warns on OAuth2."""
    if isinstance(node, dict):
        return {k: _strip_security(v) for k, v in node.items() if k != "security"}
    if isinstance(node, list):
        return [_strip_security(v) for v in node]
    return node


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[OpenAPI, dict[str, Any]]:
    raw = json.loads(Path(path).read_bytes())
    spec = _strip_security(raw)
    spec.get("components", {}).pop("securitySchemes", None)
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None)), spec


def load_spec(path: Path) -> tuple[OpenAPI, dict[str, Any]]:
    """The OpenAPI object and the dict behind it, loaded once per process, spec validation off."""
    with _load_lock:
        return _load(str(path))


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip() or "application/json"


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    errors = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if errors:
        parts.append("; ".join(str(getattr(e, "message", e)) for e in errors))
    elif cause is not None:
        parts.append(str(cause))
    return " - ".join(parts)


JIRA_TIME = re.compile(r"'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}' is not a 'date-time'")


def _only_jira_timestamps(exc: BaseException) -> bool:
    """Known gap: Jira sends `2026-11-26T10:03:20.000+0000`, which the spec's `date-time` rejects."""
    cause = exc.__cause__
    errors = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if not errors:
        return False
    return all(JIRA_TIME.fullmatch(str(getattr(e, "message", e))) for e in errors)


class JiraContract:
    """Validates simulator traffic against the platform spec (and JSM for /rest/servicedeskapi)."""

    def __init__(self, platform: Path = PLATFORM_SPEC, jsm: Path = JSM_SPEC) -> None:
        self.platform = load_spec(platform)
        self.jsm = load_spec(jsm)
        self._files = {id(self.platform[1]): platform, id(self.jsm[1]): jsm}
        self._templates: dict[int, list[tuple[re.Pattern[str], str]]] = {}

    def _pick(self, path: str) -> tuple[OpenAPI, dict[str, Any]]:
        return self.jsm if path.startswith("/rest/servicedeskapi/") else self.platform

    def _operation(self, spec: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
        """The contract's operation for this method and concrete path, or None when it has none."""
        key = id(spec)
        if key not in self._templates:
            self._templates[key] = [(_template_regex(t), t) for t in spec["paths"]]
        for regex, template in self._templates[key]:
            if regex.match(path):
                op = spec["paths"][template].get(method.lower())
                if isinstance(op, dict):
                    return op
        return None

    def _declared(self, spec: dict[str, Any], method: str, path: str, status: int) -> Any:
        op = self._operation(spec, method, path) or {}
        return op.get("responses", {}).get(str(status))

    def _unknown(self, spec: dict[str, Any], req: SimRequest) -> list[str]:
        """A request outside the extracted contract is refused by name, never waved through."""
        if self._operation(spec, req.method, req.path) is not None:
            return []
        return [
            f"{req.method} {req.path} is not an operation of the project's Jira contract "
            f"({self._files[id(spec)].name}); if the project now uses it, add it to the operations in "
            "devnet/contract_extract.py and regenerate devnet/contracts/"
        ]

    def _mock_request(self, req: SimRequest) -> MockRequest:
        return MockRequest(
            SPEC_HOST,
            req.method,
            req.path,
            args=req.params,  # type: ignore[arg-type]
            headers=dict(req.headers),
            data=req.body,
            content_type=_media(req.content_type) if req.body else None,  # type: ignore[arg-type]
        )

    def check_request(self, req: SimRequest) -> list[str]:
        api, spec = self._pick(req.path)
        unknown = self._unknown(spec, req)
        if unknown:
            return unknown
        multipart = req.path.endswith("/attachments")
        mock = self._mock_request(req)
        if multipart:  # known gap: the spec types the multipart body as an array; checked in the route
            mock.body, mock.content_type = b"", "application/json"
        problems: list[str] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                api.validate_request(mock)
            except Exception as exc:
                if not (multipart and type(exc).__name__ in ("MissingRequestBody", "MissingRequiredRequestBody")):
                    problems.append(_describe(exc))
        return problems + self._semantic(req)

    def check_response(self, req: SimRequest, resp: SimResponse) -> list[str]:
        api, spec = self._pick(req.path)
        declared = self._declared(spec, req.method, req.path, resp.status)
        empty_schema = isinstance(declared, dict) and declared.get("content", {}).get("application/json", {}).get(
            "schema", None
        ) in ({}, None)
        if not resp.body and empty_schema:
            return []  # the spec declares an empty JSON schema for bodiless 204/201 answers
        mock = MockResponse(resp.body, status_code=resp.status, content_type=_media(resp.content_type))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                api.validate_response(self._mock_request(req), mock)
            except Exception as exc:
                if _only_jira_timestamps(exc):
                    return []
                return [f"status {resp.status}: {_describe(exc)}"]
        return []

    # what the spec leaves free-form ---------------------------------------------------------------
    def _semantic(self, req: SimRequest) -> list[str]:
        if "json" not in req.content_type or not req.body:
            return []
        try:
            body = req.json()
        except ValueError:
            return ["body is not valid JSON"]
        if not isinstance(body, dict):
            return []
        path, method = req.path, req.method
        if method == "POST" and path == "/rest/api/3/issue":
            return issue_fields_problems(body, create=True)
        if method == "PUT" and re.fullmatch(r"/rest/api/3/issue/[^/]+", path):
            return issue_fields_problems(body, create=False)
        if re.fullmatch(r"/rest/api/3/issue/[^/]+/comment(/[^/]+)?", path) and method in ("POST", "PUT"):
            return adf_problems(body.get("body"), "body")
        return []


def issue_fields_problems(body: dict[str, Any], *, create: bool) -> list[str]:
    """Types of the issue fields a sync client sets; the spec types `fields` as a free-form map."""
    fields = body.get("fields")
    problems: list[str] = []
    if fields is None:
        return ["fields: required to create an issue"] if create else []
    if not isinstance(fields, dict):
        return ["fields: must be an object"]
    if create:
        problems += [f"fields.{name}: required" for name in ("project", "issuetype", "summary") if name not in fields]
    if "summary" in fields and not isinstance(fields["summary"], str):
        problems.append("fields.summary: must be a string")
    for name in ("description", "environment"):
        if fields.get(name) is not None:
            problems += adf_problems(fields[name], f"fields.{name}")
    labels = fields.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        problems.append("fields.labels: must be a list of strings")
    for name, keys in (("project", ("key", "id")), ("issuetype", ("name", "id")), ("priority", ("name", "id"))):
        value = fields.get(name)
        if value is not None and (not isinstance(value, dict) or not any(isinstance(value.get(k), str) for k in keys)):
            problems.append(f"fields.{name}: must be an object with a string {' or '.join(keys)}")
    update = body.get("update") or {}
    for op in update.get("labels", []) if isinstance(update, dict) else []:
        if not isinstance(op, dict) or not set(op) <= {"add", "remove", "set"}:
            problems.append("update.labels: each operation must be one of add/remove/set")
    props = body.get("properties")
    if props is not None and (
        not isinstance(props, list) or not all(isinstance(p, dict) and "key" in p for p in props)
    ):
        problems.append("properties: must be a list of {key, value}")
    return problems
