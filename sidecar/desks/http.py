"""The one edge where desk HTTP traffic becomes DeskError: transport, metrics and error translation.

Each desk owns one long-lived `DeskHttp` (pooled, with the configured timeout). Every request is
counted in `servicedesk_api_requests` by a transport wrapper, so calls made by a generated client
(waldur-api-client) through the same httpx client are counted too, and so are the waits of the
desk's rate limits (`servicedesk_desk_rate_limit_wait_seconds`): the sidecar's own pacing and a
429's Retry-After. Error messages carry the desk, the operation and the desk's own error text with
secrets removed, never request bodies.

Pacing follows the desk's own limit: Jira Cloud's burst limit is per endpoint and HTTP method ("Slow
down requests to that endpoint only", RateLimit-Reason jira-burst-based), so a Jira desk paces each
endpoint with its own bucket at `jira.requests_per_second`, and a burst 429 holds back that endpoint
only (DeskError scope "endpoint"). Waldur throttles no support endpoint; its one bucket is the
operator's protection of their own server.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, cast, get_args

import httpx

from sidecar import boundedjson
from sidecar.boundedjson import JsonLimitError
from sidecar.digits import is_decimal
from sidecar.errors import ConfigError, DeskError
from sidecar.http_transport import CookielessClient, pooled_transport
from sidecar.observe.logs import Redactor, current_redactor
from sidecar.observe.metrics import HttpMethod, Metrics, Service
from sidecar.ratelimit import TokenBucket

T = TypeVar("T")
RETRYABLE = frozenset({408, 409, 425, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
PER_ISSUE_REASON = "jira-per-issue-on-write"
BURST_REASON = "jira-burst-based"  # Jira's per-endpoint burst limit: one tenant, one endpoint, one HTTP method
# Endpoint buckets one desk keeps at most; the sidecar calls about twenty Jira endpoints. Past the cap (only a
# template rule gone wrong could get there) every new endpoint shares one bucket: memory stays bounded.
MAX_ENDPOINTS = 64
OTHER_ENDPOINTS = "(other)"
MAX_ERROR_TEXT = 300
# Desk answers are outside input: bounded before any parser sees them. A page of 100 comments with
# rich text is a few MB; ADF nests two JSON levels per node and agents nest lists, hence 128 levels.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_ANSWER_DEPTH = 128
# A credential echoed without its header name (the logs' redactor needs "Authorization:" before it).
_CREDENTIAL = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{16,}")
# A path segment that names a resource, not one of its instances (see endpoint_template).
_RESOURCE = re.compile(r"[a-z][a-z_-]*\Z")
# A token taken at once costs microseconds; from this long on, the request waited for the bucket (seconds).
BUCKET_WAIT_FLOOR = 0.001


# Headers of the last response the transport saw in this task, for generated clients that raise
# on an unexpected status without the headers (Retry-After, RateLimit-Reason must not be lost).
_last_headers: ContextVar[list[httpx.Headers] | None] = ContextVar("desk_last_headers", default=None)


def require_tls(desk: Service, base_url: str, *, allow_insecure_http: bool) -> str:
    """The base URL without a trailing slash; http:// only with the development flag."""
    if base_url.startswith("http://") and not allow_insecure_http:
        raise ConfigError(
            f"{desk}.base_url",
            "must use https:// (set sync.allow_insecure_http for local development)",
            source="desk client",
        )
    if not base_url.startswith(("https://", "http://")):
        raise ConfigError(f"{desk}.base_url", "must be an https:// URL", source="desk client")
    return base_url.rstrip("/")


def endpoint_template(method: str, path: str) -> str:
    """The endpoint a per-endpoint limit counts: "<METHOD> <path>" with every id replaced by "{}".

    Resource names in the desks' REST paths are lowercase words (issue, comment, transitions, search, jql,
    servicedeskapi, support-issues, ...); ids and keys are not (10042, VESUPPORT-7, 5f0c...: digits or
    capitals), and the API version after "api" is kept. Per request, so one split and a match per segment;
    the result never reaches a metric label.
    """
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part and _RESOURCE.match(part) is None and not (is_decimal(part) and parts[i - 1] == "api"):
            parts[i] = "{}"
    return f"{method} {'/'.join(parts)}"


class Pacing:
    """The sidecar's own pacing of one desk: one bucket for the desk, or one per endpoint (`per_endpoint`).

    `rate` is each bucket's requests per second (0: no pacing; a `hold` still applies)."""

    def __init__(self, rate: float, *, per_endpoint: bool) -> None:
        self.rate = rate
        self.per_endpoint = per_endpoint
        self._desk = TokenBucket(rate)
        self._endpoints: dict[str, TokenBucket] = {}

    def bucket(self, method: str, path: str) -> TokenBucket:
        """The bucket a request draws from."""
        if not self.per_endpoint:
            return self._desk
        key = endpoint_template(method, path)
        found = self._endpoints.get(key)
        if found is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                key = OTHER_ENDPOINTS
                found = self._endpoints.get(key)
            if found is None:
                found = self._endpoints[key] = TokenBucket(self.rate)
        return found

    def endpoints(self) -> list[str]:
        """The endpoints paced so far (tests and diagnostics)."""
        return list(self._endpoints)


class _CountingTransport(httpx.AsyncBaseTransport):
    """Counts every request by method and status class; a request without an answer counts as `error`."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, desk: Service, metrics: Metrics, pacing: Pacing | None = None
    ) -> None:
        self._pacing = pacing
        self._inner = inner
        self._desk = desk
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method.upper()
        label = cast(HttpMethod, method) if method in get_args(HttpMethod) else None
        bucket = self._pacing.bucket(method, request.url.path) if self._pacing is not None else None
        if bucket is not None:
            start = time.monotonic()
            held = await bucket.acquire()  # an endpoint's 429 hold: counted once, as its Retry-After
            waited = time.monotonic() - start - held  # queued behind other requests, then for a token
            if waited >= BUCKET_WAIT_FLOOR:
                self._metrics.count_rate_limit_wait(self._desk, "token_bucket", waited)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            if label is not None:
                self._metrics.count_api_request(self._desk, label, None)
            raise
        if label is not None:
            self._metrics.count_api_request(self._desk, label, response.status_code)
        if bucket is not None and response.status_code == 429 and _reason(response.headers) == BURST_REASON:
            # Jira's burst limit is this endpoint's: hold back its requests, not the desk's others.
            bucket.hold(parse_retry_after(response.headers.get("retry-after")) or 1.0)
        box = _last_headers.get()
        if box is not None:
            box[:] = [response.headers]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class DeskHttp:
    """One pooled httpx.AsyncClient for a desk; `request` returns 2xx responses or raises DeskError."""

    def __init__(
        self,
        desk: Service,
        base_url: str,
        *,
        timeout: float,
        metrics: Metrics,
        secrets: Iterable[str] = (),
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        max_connections: int = 20,
        requests_per_second: float = 0.0,
        per_endpoint: bool | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`requests_per_second` paces the desk, per endpoint when `per_endpoint` (default: Jira only)."""
        self.desk = desk
        self.base_url = require_tls(desk, base_url, allow_insecure_http=allow_insecure_http)
        self._metrics = metrics
        secrets = list(secrets)
        if isinstance(auth, tuple):  # the encoded Basic credential is as secret as the token in it
            secrets.append(base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        self._redact_own = Redactor(secrets)
        self.pacing = Pacing(requests_per_second, per_endpoint=desk == "jira" if per_endpoint is None else per_endpoint)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        inner = transport or pooled_transport(limits)
        self.client = CookielessClient(
            base_url=self.base_url,
            auth=auth,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=httpx.Timeout(timeout),
            transport=_CountingTransport(inner, desk, metrics, self.pacing),
            follow_redirects=False,
            event_hooks={"response": [_bound_answer]},
        )

    async def request(
        self,
        op: str,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; 2xx comes back, anything else raises DeskError (`op` names the call)."""
        response = await self.call(op, self.client.request(method, url, json=json_body, params=params, headers=headers))
        self.raise_for_status(op, response.status_code, response.headers, response.content)
        return response

    async def call(self, op: str, pending: Awaitable[T], box: list[httpx.Headers] | None = None) -> T:
        """Await a call that uses `self.client` (raw or through a generated client), translating httpx errors.

        `box`, when given, receives the headers of the last response (see `_last_headers`).
        """
        token = _last_headers.set(box)
        try:
            return await pending
        except httpx.TimeoutException as exc:
            raise DeskError(f"{self.desk} {op}: timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeskError(f"{self.desk} {op}: connection failed ({type(exc).__name__})", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise DeskError(f"{self.desk} {op}: HTTP error ({type(exc).__name__})", retryable=False) from exc
        except httpx.InvalidURL as exc:  # not an HTTPError: a path built from a bad id
            raise DeskError(f"{self.desk} {op}: invalid request URL", retryable=False) from exc
        except JsonLimitError as exc:
            raise DeskError(f"{self.desk} {op}: answer refused: {exc}", retryable=False) from exc
        finally:
            _last_headers.reset(token)

    def json(self, op: str, response: httpx.Response) -> Any:
        """The answer's JSON, bounded in size and depth; a refused or malformed answer is a DeskError."""
        try:
            return boundedjson.loads(response.content, max_bytes=MAX_ANSWER_BYTES, max_depth=MAX_ANSWER_DEPTH)
        except JsonLimitError as exc:
            raise DeskError(f"{self.desk} {op}: answer refused: {exc}", retryable=False) from None

    def json_object(self, op: str, response: httpx.Response) -> dict[str, Any]:
        """The answer as a JSON object (what every desk endpoint the sidecar calls returns)."""
        answer = self.json(op, response)
        if not isinstance(answer, dict):
            raise DeskError(f"{self.desk} {op}: answer is not a JSON object", retryable=False)
        return answer

    def raise_for_status(self, op: str, status: int, headers: Mapping[str, str], content: bytes) -> None:
        """Nothing for 2xx; otherwise the DeskError the engine acts on (retryable, retry_after, scope)."""
        if 200 <= status < 300:
            return
        # 400/403/404/422 and any other 3xx/4xx will not heal by retrying; 408/409/425/429/5xx may. A 401
        # refuses the credentials, not the request: desk-wide, it heals when the operator fixes the token,
        # so it is retryable and desk-scoped (the worker then probes the desk and waits; see outbound.py).
        retryable = status in RETRYABLE or status >= 500 or status == 401
        retry_after = parse_retry_after(headers.get("retry-after")) if status in RETRY_AFTER_STATUSES else None
        if status == 429 and retry_after:  # the engines hold the request's work back at least this long
            self._metrics.count_rate_limit_wait(self.desk, "retry_after", retry_after)
        # The desk's RateLimit-Reason says what the limit covers: one issue's writes, one endpoint (the transport
        # already holds that endpoint's requests back), or else the whole desk.
        reason = _reason(headers)
        scope = "issue" if reason == PER_ISSUE_REASON else "endpoint" if reason == BURST_REASON else "desk"
        text = self.redact(error_text(content))
        message = f"{self.desk} {op}: HTTP {status}" + (f": {text}" if text else "")
        raise DeskError(message, retryable=retryable, status=status, retry_after=retry_after, scope=scope)

    def redact(self, text: str) -> str:
        """This desk's own secrets and every configured secret removed, then shortened."""
        cleaned = _CREDENTIAL.sub(r"\1 <redacted>", current_redactor()(self._redact_own(text)))
        return cleaned if len(cleaned) <= MAX_ERROR_TEXT else cleaned[: MAX_ERROR_TEXT - 1] + "…"

    async def aclose(self) -> None:
        await self.client.aclose()

    @contextlib.asynccontextmanager
    async def stream(self, op: str, url: str, *, with_auth: bool = True) -> AsyncIterator[httpx.Response]:
        """GET with the body left unread, for files (#15): read it with `body_chunks`.

        Sent through the client's own transport (counted, paced, same pool), but past the client's
        response hook: that hook reads a JSON-typed answer whole, and a downloaded .json file must stream
        like any other. No redirect is followed and no status raised: the caller decides. `with_auth=False`
        for a signed URL on another host (Jira's media URL), which must never see the desk credential."""
        request = self.client.build_request("GET", url)
        if not with_auth and "authorization" in request.headers:  # a token set as a default header (Waldur)
            del request.headers["authorization"]
        auth = self.client.auth if with_auth else None
        if auth is not None:
            flow = auth.sync_auth_flow(request)
            request = next(flow)  # Basic/Token auth: one step that sets the header
            flow.close()
        transport = self.client._transport_for_url(request.url)
        response = await self.call(op, transport.handle_async_request(request))
        try:
            yield response
        finally:
            await response.aclose()

    async def body_chunks(self, op: str, response: httpx.Response) -> AsyncIterator[bytes]:
        """The body of a `stream` answer chunk by chunk, transport failures as retryable DeskErrors."""
        chunks = response.aiter_bytes()
        while True:
            try:
                chunk = await self.call(op, anext(chunks))
            except StopAsyncIteration:
                return
            yield chunk


def _reason(headers: Mapping[str, str]) -> str:
    """A 429's RateLimit-Reason (Jira), "" when absent."""
    return headers.get("ratelimit-reason", "").strip()


async def _bound_answer(response: httpx.Response) -> None:
    """Response hook: refuse an oversized JSON answer as it is read, before anything parses it (its nesting is
    checked where it is parsed: `json`, through boundedjson). Raises JsonLimitError, which `call` translates."""
    if "json" not in response.headers.get("content-type", ""):
        return
    declared = response.headers.get("content-length", "")
    if is_decimal(declared) and int(declared) > MAX_ANSWER_BYTES:
        raise JsonLimitError(f"JSON of {declared} bytes is over the limit of {MAX_ANSWER_BYTES}")
    content = await response.aread()
    if len(content) > MAX_ANSWER_BYTES:
        raise JsonLimitError(f"JSON of {len(content)} bytes is over the limit of {MAX_ANSWER_BYTES}")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def error_text(content: bytes) -> str:
    """The desk's error message from its body: Jira `errorMessages`/`errors`, JSM `errorMessage`, DRF `detail`."""
    try:
        body = boundedjson.loads(content, max_bytes=MAX_ANSWER_BYTES, max_depth=MAX_ANSWER_DEPTH) if content else None
    except ValueError:
        return content[:MAX_ERROR_TEXT].decode("utf-8", "replace").strip() if content else ""
    parts: list[str] = []
    if isinstance(body, dict):
        parts += [str(m) for m in body.get("errorMessages") or [] if m]
        for name in ("errorMessage", "detail", "message"):
            if isinstance(body.get(name), str) and body[name]:
                parts.append(body[name])
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts += [f"{k}: {v}" for k, v in errors.items()]
        skip = {"errorMessages", "errorMessage", "detail", "message", "errors", "i18nErrorMessage", "status"}
        for name, value in body.items():  # DRF field errors: {"field": ["message", ...]}
            if name not in skip and isinstance(value, list) and all(isinstance(v, str) for v in value):
                parts.append(f"{name}: {' '.join(value)}")
    elif isinstance(body, list):
        parts += [str(v) for v in body if isinstance(v, str)]
    return "; ".join(parts)
