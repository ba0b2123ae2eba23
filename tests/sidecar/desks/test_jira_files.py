"""JiraDesk's attachments (sidecar/desks/jira_files.py) against the Jira simulator over loopback HTTP:
streamed multipart upload, listing, the 303 to the media host, and limits that never trust a declared size."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.jira_sim import JiraSim
from sidecar.desks.base import ExternalTicket
from sidecar.desks.files import DISABLED, TOO_LARGE, AttachmentRefused, DeskAttachment, HasAttachments
from sidecar.desks.jira import JiraDesk
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, api_requests, jira_config, ticket

MIB = 1024 * 1024
MakeDesk = Callable[..., JiraDesk]


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[JiraDesk] = []

    def make(sim: JiraSim, metrics: Metrics | None = None) -> JiraDesk:
        desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=metrics or Metrics(), allow_insecure_http=True)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


async def new_issue(desk: JiraDesk) -> ExternalTicket:
    return await desk.create(ticket(7))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def read_all(desk: JiraDesk, attachment: DeskAttachment, max_bytes: int) -> tuple[bytes, int]:
    """The downloaded bytes and how many chunks they came in."""
    out, chunks = bytearray(), 0
    async for chunk in desk.download(attachment, max_bytes):
        out += chunk
        chunks += 1
    return bytes(out), chunks


async def test_jira_desk_has_attachments(make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk) -> None:
    assert isinstance(make_desk(make_jira_sim()), HasAttachments)


async def test_upload_list_download_round_trip_of_3_mib(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_jira_sim(max_attachment_bytes=4 * MIB)
    metrics = Metrics()
    desk = make_desk(sim, metrics)
    ref = await new_issue(desk)
    assert await desk.list_attachments(ref) == []
    data = os.urandom(3 * MIB)
    uploaded = await desk.upload_attachment(ref, "trace.bin", "application/octet-stream", write(tmp_path, "f", data))
    assert uploaded.file_name == "trace.bin" and uploaded.size == len(data) and uploaded.public
    assert uploaded.author == sim.me.account_id and uploaded.created_at is not None
    (listed,) = await desk.list_attachments(ref)
    assert listed == uploaded
    body, chunks = await read_all(desk, listed, 4 * MIB)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert chunks > 1  # streamed as it arrived, not handed over whole
    assert sim.issue(ref.key).attachments[0].content == data
    # the content URL (303) and the media URL (200) were both counted like every desk call
    assert api_requests(metrics, "jira", "GET", "3xx") == 1
    assert sim.media_requests == [False]  # the media host never saw the Jira credential


async def test_unicode_file_names_travel_unchanged(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_jira_sim()
    desk = make_desk(sim)
    ref = await new_issue(desk)
    name = 'Prüfbericht "März" 日本.txt'
    uploaded = await desk.upload_attachment(ref, name, "text/plain", write(tmp_path, "f", b"hi"))
    assert uploaded.file_name == name and sim.issue(ref.key).attachments[0].filename == name


async def test_over_the_site_limit_is_a_final_too_large_refusal(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_jira_sim(max_attachment_bytes=1000)
    desk = make_desk(sim)
    ref = await new_issue(desk)
    with pytest.raises(AttachmentRefused) as refused:
        await desk.upload_attachment(ref, "secret-name.bin", "application/zip", write(tmp_path, "f", b"0" * 1001))
    assert refused.value.reason == TOO_LARGE and refused.value.retryable is False
    assert isinstance(refused.value, DeskError)
    assert "secret-name" not in str(refused.value)  # file names are content
    assert sim.issue(ref.key).attachments == []
    assert sim.request_count("POST", "/attachments") == 0  # refused from the site's settings, nothing sent


async def test_a_413_from_the_desk_is_a_too_large_refusal(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_jira_sim()
    sim.max_issue_attachments = 1  # under the size limit, but the issue is full: Jira's other 413
    desk = make_desk(sim)
    ref = await new_issue(desk)
    sim.agent_attach(ref.key, "first.txt", b"1")
    with pytest.raises(AttachmentRefused) as refused:
        await desk.upload_attachment(ref, "x.txt", "text/plain", write(tmp_path, "f", b"x"))
    assert refused.value.reason == TOO_LARGE and refused.value.status == 413 and not refused.value.retryable
    assert sim.request_count("POST", "/attachments") == 1


async def test_disabled_attachments_are_a_final_refusal(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_jira_sim(attachments_enabled=False)
    desk = make_desk(sim)
    ref = await new_issue(desk)
    with pytest.raises(AttachmentRefused) as refused:
        await desk.upload_attachment(ref, "x.txt", "text/plain", write(tmp_path, "f", b"x"))
    assert refused.value.reason == DISABLED and not refused.value.retryable


@pytest.mark.parametrize("mime", ["application/octet-stream", "application/json"])
async def test_download_stops_past_max_bytes_when_the_desk_declares_less(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk, mime: str
) -> None:
    sim = make_jira_sim(max_attachment_bytes=MIB)
    desk = make_desk(sim)
    ref = await new_issue(desk)
    att_id = sim.agent_attach(ref.key, "big.json", b"7" * 200_000, mime)
    sim.declared_sizes[att_id] = 10  # metadata says 10 bytes; the body is chunked, without a Content-Length
    (listed,) = await desk.list_attachments(ref)
    assert listed.size == 10 and listed.author == sim.agent.account_id
    received = 0
    with pytest.raises(AttachmentRefused) as refused:
        async for chunk in desk.download(listed, 50_000):
            received += len(chunk)
    assert refused.value.reason == TOO_LARGE and received <= 50_000


async def test_download_stops_past_max_bytes_when_the_declared_size_is_true(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim(max_attachment_bytes=MIB)
    desk = make_desk(sim)
    ref = await new_issue(desk)
    sim.agent_attach(ref.key, "a.bin", b"1" * 100_001)
    (listed,) = await desk.list_attachments(ref)
    with pytest.raises(AttachmentRefused):
        await read_all(desk, listed, 100_000)
    body, _ = await read_all(desk, listed, 100_001)  # exactly at the limit is fine
    assert len(body) == 100_001


async def test_a_deleted_attachment_is_a_final_404(make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk) -> None:
    sim = make_jira_sim()
    desk = make_desk(sim)
    ref = await new_issue(desk)
    att_id = sim.agent_attach(ref.key, "a.txt", b"x")
    (listed,) = await desk.list_attachments(ref)
    sim.delete_attachment(att_id, as_agent=True)
    with pytest.raises(DeskError) as gone:
        await read_all(desk, listed, 100)
    assert gone.value.status == 404 and gone.value.retryable is False


def hostile(answer: Any) -> httpx.ASGITransport:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        import json

        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return httpx.ASGITransport(app=app)


@pytest.mark.parametrize(
    "attachments",
    [
        "not a list",
        [{"id": "../../etc", "content": "https://x/1"}],
        [{"id": "10001", "content": "file:///etc/passwd"}],
        [17],
    ],
)
async def test_a_hostile_attachment_list_is_a_desk_error(attachments: Any) -> None:
    from sidecar.config_schema import JiraConfig

    config = JiraConfig(base_url="http://hostile.test", username="u@example.com", account_id="a", timeout=5.0)
    desk = JiraDesk(
        config,
        JIRA_TOKEN,
        metrics=Metrics(),
        allow_insecure_http=True,
        transport=hostile({"id": "10001", "key": "VESUPPORT-1", "fields": {"attachment": attachments}}),
    )
    try:
        with pytest.raises(DeskError):
            await desk.list_attachments(ExternalTicket("jira", "10001", "VESUPPORT-1", "http://hostile.test"))
    finally:
        await desk.aclose()


async def test_an_expired_media_url_is_retryable_for_that_file_only(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim()
    sim.media_ttl = -1.0  # every media URL is already expired when the client follows it
    desk = make_desk(sim)
    ref = await new_issue(desk)
    sim.agent_attach(ref.key, "a.txt", b"x")
    (listed,) = await desk.list_attachments(ref)
    with pytest.raises(DeskError) as refused:
        await read_all(desk, listed, 100)
    assert refused.value.retryable and refused.value.scope == "issue" and refused.value.status is None
    sim.media_ttl = 60.0
    assert (await read_all(desk, listed, 100))[0] == b"x"


async def test_the_credential_never_follows_a_content_url_to_another_host(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim, elsewhere = make_jira_sim(), make_jira_sim()
    desk = make_desk(sim)
    ref = await new_issue(desk)
    sim.agent_attach(ref.key, "a.txt", b"x")
    (listed,) = await desk.list_attachments(ref)
    forged = replace(listed, content_url=f"{elsewhere.base_url}/rest/api/3/attachment/content/{listed.id}")
    assert (await read_all(desk, forged, 100))[0] == b"x"  # read from the desk's own site, by id
    assert elsewhere.request_count() == 0


# JSM visibility (#15 item 4): a file attached with an internal note stays at the desk ---------------------
JSM = {"service_desk_id": "7", "request_type_id": "25"}


@pytest.fixture
async def jsm_desk(make_jira_sim: Callable[..., JiraSim]) -> AsyncIterator[tuple[JiraSim, JiraDesk]]:
    """A simulator with request type 25 in service desk 7 and a desk configured to create JSM requests."""
    sim = make_jira_sim()
    sim.add_request_type("7", "25")
    desk = JiraDesk(jira_config(sim, **JSM), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    yield sim, desk
    await desk.aclose()


async def test_at_a_jsm_desk_an_internal_attachment_is_not_public(
    jsm_desk: tuple[JiraSim, JiraDesk], tmp_path: Path
) -> None:
    from sidecar.desks import jira_files, jira_read

    sim, desk = jsm_desk
    sim.request_attachment_page = 2  # five files: the visibility listing takes three pages
    ref = await new_issue(desk)
    assert sim.issue(ref.key).request_type_id == "25"  # a customer request, not a plain issue
    public = [sim.agent_attach(ref.key, f"shot{n}.png", b"\x89PNG\r\n\x1a\n", "image/png") for n in range(2)]
    internal = [sim.agent_attach_internal(ref.key, f"note{n}.txt", b"agents only", "text/plain") for n in range(2)]
    public.append((await desk.upload_attachment(ref, "log.txt", "text/plain", write(tmp_path, "l.txt", b"x"))).id)
    listed = await jira_files.list_attachments(desk.http, ref, jsm=True)
    view = await jira_read.read_issue(desk.http, ref, page_size=50, jsm=True)
    for found in (listed, list(view.attachments)):
        assert {a.id: a.public for a in found} == {**dict.fromkeys(public, True), **dict.fromkeys(internal, False)}
    by_id = {a.id: a for a in listed}
    assert by_id[internal[0]].author_name == sim.agent.display_name  # displayName, never the email
    assert by_id[public[-1]].author_name == sim.me.display_name


async def test_a_plain_jira_desk_keeps_every_attachment_public(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    """No request type: Jira has no customer, so no visibility. No Service Desk call is made (the issue is
    not a request: that call would be a 404 and fail the read)."""
    from sidecar.desks import jira_files, jira_read

    sim = make_jira_sim()
    desk = make_desk(sim)
    ref = await new_issue(desk)
    sim.agent_attach(ref.key, "a.txt", b"a", "text/plain")
    sim.agent_attach_internal(ref.key, "b.txt", b"b", "text/plain")
    listed = await jira_files.list_attachments(desk.http, ref)
    view = await jira_read.read_issue(desk.http, ref, page_size=50)
    assert [a.public for a in listed] == [True, True] == [a.public for a in view.attachments]


async def test_a_failed_visibility_listing_is_a_retryable_error_for_the_issue(
    jsm_desk: tuple[JiraSim, JiraDesk],
) -> None:
    """Never "all public" by default: when the Service Desk API does not answer (here a 404), the read fails
    and is retried. Without attachments no listing is asked for, so the same 404 does not matter."""
    from sidecar.desks import jira_files, jira_read

    sim, desk = jsm_desk
    ref = await new_issue(desk)
    sim.issue(ref.key).request_type_id = None  # the request listing now answers 404
    view = await jira_read.read_issue(desk.http, ref, page_size=50, jsm=True)
    assert view.attachments == ()  # no attachments: no listing call, so no failure
    sim.agent_attach(ref.key, "a.txt", b"a", "text/plain")
    for call in (
        jira_files.list_attachments(desk.http, ref, jsm=True),
        jira_read.read_issue(desk.http, ref, page_size=50, jsm=True),
    ):
        with pytest.raises(DeskError) as caught:
            await call
        assert caught.value.retryable is True and caught.value.scope == "issue" and caught.value.status == 404


@pytest.mark.parametrize(
    "values",
    ["not a list", [{"filename": "a.txt"}], [{"_links": {"jiraRest": "https://x/rest/api/2/attachment/../1"}}], [3]],
)
async def test_a_hostile_visibility_listing_is_a_retryable_desk_error(values: Any) -> None:
    from sidecar.config_schema import JiraConfig
    from sidecar.desks import jira_files

    config = JiraConfig(base_url="http://hostile.test", username="u@example.com", account_id="a", timeout=5.0)
    desk = JiraDesk(
        config, JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=hostile({"values": values})
    )
    attachment = DeskAttachment("10001", "a.txt", 1, "text/plain", None, None, True, "http://hostile.test/c/10001")
    try:
        with pytest.raises(DeskError) as caught:
            await jira_files.with_visibility(
                desk.http, ExternalTicket("jira", "10001", "VESUPPORT-1", "http://hostile.test"), [attachment], True
            )
        assert caught.value.retryable is True and caught.value.scope == "issue"
    finally:
        await desk.aclose()
