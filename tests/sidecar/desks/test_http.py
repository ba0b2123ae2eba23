"""The one edge where desk HTTP failures become DeskError: retryable or not, Retry-After, scope, no secrets."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from devnet.jira_sim import JiraSim
from devnet.sim_faults import FaultPlan
from devnet.waiting import async_wait_until
from sidecar.desks.http import (
    MAX_ENDPOINTS,
    DeskHttp,
    Pacing,
    endpoint_template,
    error_text,
    parse_retry_after,
)
from sidecar.desks.jira import JiraDesk
from sidecar.errors import DeskError
from sidecar.http_transport import _AsyncioStream, _Backend, _Pool
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, api_requests, jira_config, ticket

SECRET = "tok-Zq81-never-show-me"


@pytest.fixture
async def desks() -> AsyncIterator[list[JiraDesk]]:
    made: list[JiraDesk] = []
    yield made
    for desk in made:
        await desk.aclose()


def jira(
    sim: JiraSim, made: list[JiraDesk], *, token: str = JIRA_TOKEN, metrics: Metrics | None = None, **config: Any
) -> JiraDesk:
    desk = JiraDesk(jira_config(sim, **config), token, metrics=metrics or Metrics(), allow_insecure_http=True)
    made.append(desk)
    return desk


async def test_burst_429_is_retryable_and_holds_back_that_endpoint_only(
    make_jira_sim: Callable[..., JiraSim], desks: list[JiraDesk]
) -> None:
    sim = make_jira_sim(rate_per_second=0.5, burst=1)
    desk = jira(sim, desks)
    await desk.check()
    with pytest.raises(DeskError) as err:
        await desk.check()
    e = err.value
    assert (e.status, e.retryable, e.scope) == (429, True, "endpoint")  # Jira's burst limit is per endpoint
    assert e.retry_after is not None and e.retry_after >= 1
    refused = sim.requests[-1]
    assert refused.outcome == "rate:burst" and refused.path == "/rest/api/3/myself"
    pacing = desk.http.pacing
    assert pacing.bucket("GET", "/rest/api/3/myself").try_take() > 0  # held for the desk's Retry-After
    assert pacing.bucket("GET", "/rest/api/3/issue/VESUPPORT-1").try_take() == 0.0  # another endpoint is not
    assert pacing.bucket("PUT", "/rest/api/3/myself").try_take() == 0.0  # nor the same path with another method


def test_endpoint_templates_name_the_endpoint_never_an_id() -> None:
    """The key of Jira's per-endpoint pacing: one per (method, endpoint), whatever issue or id is in the path."""
    cases = {
        ("GET", "/rest/api/3/issue/VESUPPORT-17"): "GET /rest/api/3/issue/{}",
        ("GET", "/rest/api/3/issue/10042"): "GET /rest/api/3/issue/{}",
        ("PUT", "/rest/api/3/issue/10042/properties/virtengine"): "PUT /rest/api/3/issue/{}/properties/virtengine",
        ("POST", "/rest/api/3/issue/VESUPPORT-9/transitions"): "POST /rest/api/3/issue/{}/transitions",
        ("POST", "/rest/servicedeskapi/request/VESUPPORT-3/comment"): "POST /rest/servicedeskapi/request/{}/comment",
        ("GET", "/rest/servicedeskapi/servicedesk/4/requesttype/25"): (
            "GET /rest/servicedeskapi/servicedesk/{}/requesttype/{}"
        ),
        ("GET", "/rest/api/3/project/VESUPPORT/statuses"): "GET /rest/api/3/project/{}/statuses",
        ("POST", "/rest/api/3/search/jql"): "POST /rest/api/3/search/jql",
        ("GET", "/rest/api/3/attachment/content/10007"): "GET /rest/api/3/attachment/content/{}",
        ("GET", "/api/support-issues/5f0c2a7be1d94c0e8a3f6b1d2c4e9a70/"): "GET /api/support-issues/{}/",
    }
    for (method, path), template in cases.items():
        assert endpoint_template(method, path) == template


async def test_pacing_is_per_endpoint_for_jira_and_one_bucket_for_waldur() -> None:
    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    made = [
        DeskHttp(
            desk,
            "https://desk.example",
            timeout=1,
            metrics=Metrics(),
            requests_per_second=5.0,
            transport=httpx.MockTransport(ok),
        )
        for desk in ("jira", "waldur")
    ]
    try:
        for http in made:
            for key in ("VESUPPORT-1", "VESUPPORT-2", "10003"):
                await http.request("read", "GET", f"/rest/api/3/issue/{key}")
                await http.request("edit", "PUT", f"/rest/api/3/issue/{key}")
        jira_pacing, waldur_pacing = made[0].pacing, made[1].pacing
        assert sorted(jira_pacing.endpoints()) == ["GET /rest/api/3/issue/{}", "PUT /rest/api/3/issue/{}"]
        assert waldur_pacing.endpoints() == []  # one bucket for the desk
        assert waldur_pacing.bucket("GET", "/a") is waldur_pacing.bucket("PUT", "/b")
    finally:
        for http in made:
            await http.aclose()


def test_endpoint_buckets_are_bounded() -> None:
    pacing = Pacing(10.0, per_endpoint=True)
    for i in range(MAX_ENDPOINTS + 20):
        pacing.bucket("GET", f"/rest/api/3/thing{'x' * i}")  # a template rule gone wrong: all distinct
    assert len(pacing.endpoints()) == MAX_ENDPOINTS + 1  # the cap, plus the one bucket they then share


async def test_per_issue_429_is_scoped_to_the_issue(
    make_jira_sim: Callable[..., JiraSim], desks: list[JiraDesk]
) -> None:
    sim = make_jira_sim(per_issue_writes=1, per_issue_window=30)
    desk = jira(sim, desks)
    ref = await desk.create(ticket())
    await desk.update_fields(ref, ticket(priority="low"))
    with pytest.raises(DeskError) as err:
        await desk.update_fields(ref, ticket(priority="urgent"))
    e = err.value
    assert (e.status, e.retryable, e.scope) == (429, True, "issue")
    assert e.retry_after is not None and 1 <= e.retry_after <= 30


async def test_server_faults_timeouts_and_drops_are_retryable(
    make_jira_sim: Callable[..., JiraSim], desks: list[JiraDesk]
) -> None:
    sim = make_jira_sim(faults=FaultPlan(hang_seconds=10))
    metrics = Metrics()
    desk = jira(sim, desks, timeout=0.3, metrics=metrics)
    sim.faults.inject("503", retry_after=7)
    sim.faults.inject("500")
    sim.faults.inject("timeout")
    sim.faults.inject("drop")
    got = []
    for _ in range(4):
        with pytest.raises(DeskError) as err:
            await desk.check()
        got.append((err.value.status, err.value.retryable, err.value.retry_after))
    assert got == [(503, True, 7.0), (500, True, None), (None, True, None), (None, True, None)]
    await desk.check()
    assert api_requests(metrics, "jira", "GET", "5xx") == 2
    assert api_requests(metrics, "jira", "GET", "error") == 2
    assert api_requests(metrics, "jira", "GET", "2xx") == 1


async def test_client_errors_are_final_and_carry_the_desks_text(jira_sim: JiraSim, desks: list[JiraDesk]) -> None:
    desk = jira(jira_sim, desks, priority_map=(("high", "Critical"),))  # a priority this site does not have
    with pytest.raises(DeskError) as err:
        await desk.create(ticket())
    e = err.value
    assert (e.status, e.retryable) == (400, False)
    assert "priority: The priority selected is invalid: Critical" in str(e)
    assert "Lease 42" not in str(e)  # never the request body


async def test_revoked_token_is_a_desk_wide_wait_and_never_shown(
    make_jira_sim: Callable[..., JiraSim], desks: list[JiraDesk], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_jira_sim(api_token=SECRET)
    desk = jira(sim, desks, token=SECRET)
    await desk.check()
    sim.revoke_token()
    with pytest.raises(DeskError) as err:
        await desk.check()
    e = err.value
    assert (e.status, e.retryable, e.scope) == (401, True, "desk")  # the worker waits for a new token
    assert "Client must be authenticated" in str(e)
    basic = base64.b64encode(f"{sim.email}:{SECRET}".encode()).decode()
    for leak in (SECRET, basic):
        assert leak not in str(e) and leak not in repr(e.__cause__) and leak not in caplog.text


async def test_a_desk_echoing_the_secret_gets_it_masked() -> None:
    """A misbehaving gateway echoing credentials in its error body: the text is kept, the secret is not."""

    def echo(request: httpx.Request) -> httpx.Response:
        text = f"bad token {SECRET} from {request.headers['authorization']}"
        return httpx.Response(403, json={"errorMessages": [text]})

    http = DeskHttp(
        "jira",
        "https://jira.example",
        timeout=1,
        metrics=Metrics(),
        secrets=(SECRET,),
        auth=("me@example.com", SECRET),
        transport=httpx.MockTransport(echo),
    )
    try:
        with pytest.raises(DeskError) as err:
            await http.request("check", "GET", "/rest/api/3/myself")
    finally:
        await http.aclose()
    message = str(err.value)
    assert err.value.status == 403 and not err.value.retryable
    assert "bad token <redacted>" in message and SECRET not in message
    assert base64.b64encode(f"me@example.com:{SECRET}".encode()).decode() not in message


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_error_text_of_each_desk_shape() -> None:
    jira_body = b'{"errorMessages": ["No."], "errors": {"summary": "required"}}'
    assert error_text(jira_body) == "No.; summary: required"
    assert error_text(b'{"errorMessage": "JSM says no", "i18nErrorMessage": {}}') == "JSM says no"
    assert error_text(b'{"detail": "Invalid token."}') == "Invalid token."
    assert error_text(b'{"remote_id": ["issue with this remote id already exists."]}') == (
        "remote_id: issue with this remote id already exists."
    )
    assert error_text(b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"


@pytest.mark.parametrize(
    "credential",
    [{"auth": ("me@example.com", SECRET)}, {"headers": {"Authorization": f"Token {SECRET}"}}],
    ids=["basic-auth", "token-header"],
)
async def test_a_stream_without_auth_sends_no_credential_whichever_way_the_desk_sets_it(
    credential: dict[str, Any],
) -> None:
    """A signed media URL on another host (Jira's attachment redirect) must never see the desk's credential,
    whether it is the client's auth (Jira's Basic) or a default header (Waldur's Token)."""
    seen: list[httpx.Headers] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, content=b"file bytes")

    http = DeskHttp(
        "jira",
        "https://jira.example",
        timeout=1,
        metrics=Metrics(),
        secrets=(SECRET,),
        transport=httpx.MockTransport(record),
        **credential,
    )
    try:
        for with_auth in (True, False):
            async with http.stream("attachment", "https://media.example/f/1", with_auth=with_auth) as response:
                assert b"".join([c async for c in http.body_chunks("attachment", response)]) == b"file bytes"
    finally:
        await http.aclose()
    assert "authorization" in seen[0]
    assert "authorization" not in seen[1]


async def test_a_connection_the_desk_closed_is_not_reused_and_no_cookie_is_kept() -> None:
    """The pool's cheap "is_readable" (transport._AsyncioStream) must still see a keep-alive connection the desk
    closed, or the next request would go out on it and fail; and a desk's Set-Cookie is never sent back. A few ms,
    loopback."""
    cookies: list[str | None] = []
    served = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        cookies.append(next((line for line in head.split("\r\n") if line.startswith("cookie:")), None))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Set-Cookie: session=abc123; Path=/\r\n\r\n{}"
        )
        await writer.drain()
        served += 1
        writer.close()  # the desk drops the keep-alive connection once it has answered

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = DeskHttp("jira", f"http://127.0.0.1:{port}", timeout=5, metrics=Metrics(), allow_insecure_http=True)
    try:
        pool = http.client._transport._inner._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, _Backend)  # the httpx in use still lets the swap in
        await http.request("first", "GET", "/rest/api/3/myself")
        await async_wait_until(
            lambda: served == 1 and all(c.has_expired() for c in pool.connections), timeout=5, what="the close seen"
        )
        await http.request("second", "GET", "/rest/api/3/myself")
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()
    assert served == 2
    assert cookies == [None, None]


async def test_a_desk_client_takes_the_transport_with_the_one_pass_pool_on_asyncio_streams(jira_sim: Any) -> None:
    """The cheap path is the one a desk takes (tests/sidecar/test_http_transport.py tests the transport itself)."""
    http = DeskHttp("jira", jira_sim.base_url, timeout=5, metrics=Metrics(), allow_insecure_http=True)
    try:
        with pytest.raises(DeskError, match="HTTP 401"):  # no credential given: any answer keeps the connection
            await http.request("first", "GET", "/rest/api/3/myself")
        pool = http.client._transport._inner._pool  # type: ignore[attr-defined]
        assert type(pool) is _Pool
        streams = [c._connection._network_stream for c in pool.connections]
        assert streams and all(isinstance(s, _AsyncioStream) for s in streams)
        assert [s.get_extra_info("is_readable") for s in streams] == [False] * len(streams)  # idle, still open
    finally:
        await http.aclose()
