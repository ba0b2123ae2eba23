"""The ASGI layer every desk simulator shares: latency, faults, auth, rate limits, contract checks.

It sits outside the Starlette routes so that failures look like the network and the gateway
(dropped sockets, 429s, 503s, answers lost after the desk applied the request) and so that every
request and response passes the contract check. Rate limits and outages read `clock`, which a test
may replace with a ManualClock.

Rate limits are the desks' own: Jira's burst limit is one token bucket per HTTP method and endpoint (the
route template, e.g. "GET /rest/api/3/issue/{key}"), so exhausting one endpoint slows that endpoint only;
Waldur throttles no support endpoint, so its simulator has no limit unless a test asks for one (then one
bucket for every request). See `SimCore.per_endpoint_limit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import parse_qsl

from starlette.routing import Match

from devnet.sim_faults import (
    APPLIED_KINDS,
    Clock,
    EndpointBuckets,
    Fault,
    FaultPlan,
    PerKeyWindow,
    TokenBucket,
    retry_after_header,
)
from devnet.sim_runner import SimRunner
from devnet.sim_webhooks import WebhookSender

Headers = list[tuple[bytes, bytes]]
EXEMPT_HEADER = b"x-sim-exempt"  # set by a route whose answer the spec cannot describe (e.g. 410)


@dataclass
class SimRequest:
    """A fully read request as the contract checker and the log see it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class SimResponse:
    status: int
    headers: Headers
    body: bytes

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name.lower() == b"content-type":
                return value.decode("latin-1")
        return ""


@dataclass
class RequestRecord:
    """One line of the request log."""

    method: str
    path: str
    query: str
    status: int | None
    outcome: str  # "ok", "fault:<kind>", "auth", "rate:<reason>", "contract"
    at: float = field(default_factory=time.time)
    body: bytes = b""
    endpoint: str = ""  # "<METHOD> <route template>", the key of Jira's burst limit (no ids in it)


def json_response(status: int, payload: Any, extra: Headers | None = None) -> SimResponse:
    body = b"" if payload is None else json.dumps(payload).encode()
    headers: Headers = [(b"content-type", b"application/json;charset=UTF-8")] if payload is not None else []
    return SimResponse(status, headers + list(extra or []), body)


class SimCore:
    """Base of the Jira and Waldur simulators; subclasses fill in the desk-specific hooks."""

    write_methods = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    burst_reason: str | None = "jira-burst-based"  # RateLimit-Reason values; Waldur sends none
    per_issue_reason: str | None = "jira-per-issue-on-write"
    # Jira Cloud's burst limit is per endpoint: "Request rate limits (per-second): Restricts how many requests
    # you can make per second to each API endpoint" (developer.atlassian.com/cloud/jira/platform/rate-limiting);
    # a 429 with RateLimit-Reason jira-burst-based has the scope "One tenant, one endpoint, one HTTP method. Slow
    # down requests to that endpoint only" (.../build-an-app-that-respects-rate-limits/). Atlassian publishes no
    # numbers: `rate_per_second` and `burst` are each endpoint's (the project's 100/s, burst 100). False: one
    # bucket for every request (what WaldurSim uses when a test asks it for a limit).
    per_endpoint_limit: bool = True

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rate_per_second: float | None = None,
        burst: int = 100,
        per_issue_writes: int | None = None,
        per_issue_window: float = 1.0,
        faults: FaultPlan | None = None,
        validate: bool = False,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.latency = latency
        self.clock = clock
        self.burst = burst
        # Exactly one of these is set when there is a rate limit (see `per_endpoint_limit`); a test may set
        # either to None to lift the limit.
        self.bucket: TokenBucket | None = None
        self.endpoint_buckets: EndpointBuckets | None = None
        if rate_per_second and self.per_endpoint_limit:
            self.endpoint_buckets = EndpointBuckets(rate_per_second, burst, clock)
        elif rate_per_second:
            self.bucket = TokenBucket(rate_per_second, burst, clock)
        self.issue_writes = PerKeyWindow(per_issue_writes, per_issue_window, clock) if per_issue_writes else None
        self.faults = faults or FaultPlan(seed=seed, clock=clock)
        self.validate = validate
        self.contract_violations: list[str] = []
        self.internal_errors: list[str] = []  # simulator bugs: a route raised instead of answering
        self.requests: list[RequestRecord] = []
        self.lock = threading.RLock()
        self.inner: Any = None  # the Starlette app with the routes
        self._stopping: asyncio.Event | None = None

    # hooks ------------------------------------------------------------------------------------
    def authenticate(self, req: SimRequest) -> bool:
        raise NotImplementedError

    def error(self, status: int, message: str, extra: Headers | None = None) -> SimResponse:
        """An error body in the desk's own shape."""
        raise NotImplementedError

    def write_key(self, req: SimRequest) -> str | None:
        """The issue a write targets, for the per-issue write limit."""
        return None

    def check_request(self, req: SimRequest) -> list[str]:
        return []

    def check_response(self, req: SimRequest, resp: SimResponse) -> list[str]:
        return []

    # lifecycle (subclasses set self.runner and self.webhooks) ----------------------------------
    runner: SimRunner
    webhooks: WebhookSender

    async def _start_hook(self) -> None:
        self._stopping = asyncio.Event()
        await self.webhooks.start()

    def start(self) -> Self:
        """Serve from a background thread (sync tests, `make devnet`)."""
        self.runner.start()
        return self

    def stop(self) -> None:
        if self.runner.loop is not None:
            self.runner.call_soon(self.release_hangs)
        self.runner.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def astart(self) -> Self:
        """Serve as a task in the running loop (async tests)."""
        await self.runner.astart()
        return self

    async def astop(self) -> None:
        self.release_hangs()
        await self.runner.astop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    def release_hangs(self) -> None:
        """Wake requests hung by a `timeout` or `apply-delay` fault (called on the serving loop at shutdown)."""
        if self._stopping is not None:
            self._stopping.set()

    # inspection -------------------------------------------------------------------------------
    def endpoint_of(self, scope: dict[str, Any]) -> str:
        """The request's "<METHOD> <route template>", as Jira names an endpoint: ids are the template's
        placeholders. A path no route serves is "<METHOD> (unrouted)"."""
        method = str(scope["method"]).upper()
        for route in getattr(self.inner, "routes", ()):
            match, _ = route.matches(scope)
            if match is not Match.NONE:  # FULL, or PARTIAL: the path is served, not with this method (405)
                return f"{method} {getattr(route, 'path', '(unrouted)')}"
        return f"{method} (unrouted)"

    def limit_bucket(self, endpoint: str) -> TokenBucket | None:
        """The bucket a request to `endpoint` ("<METHOD> <template>") draws from, if any."""
        if self.endpoint_buckets is not None:
            return self.endpoint_buckets.bucket(endpoint)
        return self.bucket

    def request_count(self, method: str | None = None, path_contains: str = "") -> int:
        with self.lock:
            return sum(
                1 for r in self.requests if (method is None or r.method == method.upper()) and path_contains in r.path
            )

    # the ASGI entry point -----------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The client went away before its body arrived (say, it was SIGKILLed mid-send): a real
                # server never sees a whole request, so nothing is recorded, handled or answered.
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        req = SimRequest(
            method=scope["method"].upper(),
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        record = RequestRecord(req.method, req.path, req.query, None, "ok", body=body, endpoint=self.endpoint_of(scope))
        with self.lock:
            self.requests.append(record)
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self.faults.pick(req.method, req.path)
        after = fault if fault is not None and fault.kind in APPLIED_KINDS else None
        resp = await self._gate(req, record, None if after else fault)
        if resp is None:
            resp = await self._dispatch(scope, req)
            exempt = any(name == EXEMPT_HEADER for name, _ in resp.headers)
            resp.headers = [(n, v) for n, v in resp.headers if n != EXEMPT_HEADER]
            if self.validate and not exempt:
                self._violations(req, self.check_response(req, resp), "response")
            bucket = self.limit_bucket(record.endpoint)
            if bucket is not None and bucket.near_limit():
                resp.headers.append((b"x-ratelimit-nearlimit", b"true"))
        elif after is not None:  # refused before the routes: the desk applied nothing, so no answer is lost
            self.faults.put_back(after, req.method, req.path)
            after = None
        if after is not None and resp.status >= 0:
            record.outcome = f"fault:{after.kind}"
            self.faults.record_lost_answer(after.kind, req.method, req.path, resp.status)
            if after.kind == "apply-drop":
                resp = SimResponse(-1, [], b"")
            else:
                await self._hold()  # the client has given up by now; the late answer goes nowhere
        if resp.status < 0:  # a fault that closes the connection
            await self._abort(send)
            return
        record.status = resp.status
        await send({"type": "http.response.start", "status": resp.status, "headers": resp.headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def _hold(self) -> None:
        """Hang for the plan's `hang_seconds`, or until the simulator stops."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.faults.hang_seconds)

    async def _gate(self, req: SimRequest, record: RequestRecord, fault: Fault | None) -> SimResponse | None:
        """Everything that may answer before the routes do (`fault`: one that fires before them)."""
        if fault is not None:
            record.outcome = f"fault:{fault.kind}"
            if fault.kind == "timeout":
                await self._hold()
                return SimResponse(-1, [], b"")
            if fault.kind == "drop":
                return SimResponse(-1, [], b"")
            if fault.kind == "429":
                return self._rate_limited(self.burst_reason, float(fault.retry_after or 1), self.burst)
            extra = [(b"retry-after", str(fault.retry_after).encode())] if fault.retry_after else []
            return self.error(int(fault.kind), "simulated server fault", extra)
        if not self.authenticate(req):
            record.outcome = "auth"
            return self.error(401, "Client must be authenticated to access this resource.")
        bucket = self.limit_bucket(record.endpoint)
        if bucket is not None:
            ok, wait, _ = bucket.take()
            if not ok:
                record.outcome = "rate:burst"
                return self._rate_limited(self.burst_reason, wait, bucket.burst)
        key = self.write_key(req) if req.method in self.write_methods else None
        if key is not None and self.issue_writes is not None:
            ok, wait = self.issue_writes.hit(key)
            if not ok:
                record.outcome = "rate:per-issue"
                return self._rate_limited(self.per_issue_reason, wait, self.issue_writes.limit)
        if self.validate:
            problems = self.check_request(req)
            if problems:
                record.outcome = "contract"
                self._violations(req, problems, "request")
                return self.error(400, "contract violation: " + "; ".join(problems))
        return None

    def _rate_limited(self, reason: str | None, wait: float, limit: int) -> SimResponse:
        reset = datetime.now(UTC) + timedelta(seconds=wait)
        headers: Headers = [
            (b"retry-after", retry_after_header(wait).encode()),
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", b"0"),
            (b"x-ratelimit-reset", reset.strftime("%Y-%m-%dT%H:%MZ").encode()),
            (b"x-ratelimit-nearlimit", b"true"),
        ]
        if reason:
            headers.append((b"ratelimit-reason", reason.encode()))
        return self.error(
            429, f"Rate limit exceeded. Expected available in {retry_after_header(wait)} seconds.", headers
        )

    def _violations(self, req: SimRequest, problems: list[str], where: str) -> None:
        with self.lock:
            self.contract_violations.extend(f"{where} {req.method} {req.path}: {p}" for p in problems)

    async def _dispatch(self, scope: dict[str, Any], req: SimRequest) -> SimResponse:
        """Run the Starlette routes with the already read body and capture their answer."""
        sent = False
        captured = SimResponse(500, [], b"")

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # a second receive() would mean a disconnect wait
            sent = True
            return {"type": "http.request", "body": req.body, "more_body": False}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured.body += message.get("body", b"")

        try:
            await self.inner(scope, replay, capture)
        except Exception as exc:
            with self.lock:
                self.internal_errors.append(f"{req.method} {req.path}: {exc!r}")
            return self.error(500, "simulator error")
        return captured

    @staticmethod
    async def _abort(send: Any) -> None:
        """Close the socket without answering (uvicorn's h11 cycle exposes its transport)."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)
