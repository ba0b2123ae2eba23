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
