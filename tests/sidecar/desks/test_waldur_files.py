"""Waldur attachments through WaldurDesk (sidecar/desks/waldur_files.py) against the Waldur simulator over
real loopback HTTP: upload, list, download, and each refusal the server (or a proxy in front) answers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.waldur_sim import WaldurSim
from sidecar.desks.base import ExternalTicket
from sidecar.desks.files import TOO_LARGE, AttachmentRefused, DeskAttachment, HasAttachments
from sidecar.desks.waldur import WaldurDesk
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import WALDUR_TOKEN, ticket, waldur_config
from tests.sidecar.sync.rig import TamperingTransport

MakeDesk = Callable[..., WaldurDesk]
MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16


class WatchingTransport(httpx.AsyncBaseTransport):
    """Real HTTP; records the size of every request body chunk as httpx hands it over, and can answer a
    download with a lying Content-Length (the real bytes, streamed as they arrive)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport(retries=0)
        self.chunks: list[int] = []
        self.declare: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/support-attachments/":
            body = request.stream
            assert isinstance(body, httpx.AsyncByteStream)

            async def watched() -> AsyncIterator[bytes]:
                async for chunk in body:
                    self.chunks.append(len(chunk))
                    yield chunk

            request = httpx.Request(request.method, request.url, headers=request.headers, stream=_Stream(watched()))
        response = await self._inner.handle_async_request(request)
        if self.declare is not None and request.url.path.startswith("/api/media/"):
            headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
            return httpx.Response(
                response.status_code, headers=[*headers, ("content-length", self.declare)], stream=response.stream
            )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[WaldurDesk] = []

    def make(sim: WaldurSim, *, token: str = WALDUR_TOKEN, transport: Any = None) -> WaldurDesk:
        desk = WaldurDesk(waldur_config(sim), token, metrics=Metrics(), allow_insecure_http=True, transport=transport)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


async def read_all(desk: WaldurDesk, att: DeskAttachment, max_bytes: int) -> bytes:
    return b"".join([chunk async for chunk in desk.download(att, max_bytes)])


async def test_upload_is_listed_and_downloads_the_same_bytes(
    waldur_sim: WaldurSim, make_desk: MakeDesk, tmp_path: Path
) -> None:
    watcher = WatchingTransport()
    desk = make_desk(waldur_sim, transport=watcher)
    assert isinstance(desk, HasAttachments)
    ref = await desk.create(ticket())
    content = os.urandom(3 * MiB)
    up = await desk.upload_attachment(ref, "node log.zip", "application/zip", write(tmp_path, "plain", content))
    # Streamed: the 3 MiB body went out in many chunks, none of them the whole file.
    assert sum(watcher.chunks) > 3 * MiB and max(watcher.chunks) <= 1 * MiB and len(watcher.chunks) > 10
    assert up.file_name == "node_log.zip" and up.size == 3 * MiB and up.public is True and up.author is None
    assert up.content_type == "application/octet-stream"  # Waldur sniffs the bytes; random bytes are not a zip
    (listed,) = await desk.list_attachments(ref)
    assert listed == up and listed.id == waldur_sim.attachments[0].uuid.hex
    assert await read_all(desk, listed, 10 * MiB) == content


async def test_a_name_without_extension_gets_one_and_an_image_is_typed(
    waldur_sim: WaldurSim, make_desk: MakeDesk, tmp_path: Path
) -> None:
    desk = make_desk(waldur_sim)
    ref = await desk.create(ticket())
    up = await desk.upload_attachment(ref, "screenshot", "image/png", write(tmp_path, "p", PNG))
    assert up.file_name == "screenshot.png" and up.content_type == "image/png" and up.size == len(PNG)


async def test_download_stops_past_max_bytes_whatever_the_length_says(
    waldur_sim: WaldurSim, make_desk: MakeDesk, tmp_path: Path
) -> None:
    watcher = WatchingTransport()
    desk = make_desk(waldur_sim, transport=watcher)
    ref = await desk.create(ticket())
    up = await desk.upload_attachment(ref, "big.bin", "application/octet-stream", write(tmp_path, "b", b"z" * MiB))
    got: list[bytes] = []
    with pytest.raises(AttachmentRefused) as honest:
        async for chunk in desk.download(up, 64 * 1024):
            got.append(chunk)
    assert honest.value.reason == TOO_LARGE and not honest.value.retryable and got == []  # declared: no byte read
    watcher.declare = "10"  # a lying server: the real megabyte behind a small Content-Length
    with pytest.raises(AttachmentRefused) as lied:
        async for chunk in desk.download(up, 64 * 1024):
            got.append(chunk)
    assert lied.value.reason == TOO_LARGE
    assert 0 < sum(map(len, got)) <= 64 * 1024
    watcher.declare = None
    assert await read_all(desk, up, MiB) == b"z" * MiB  # exactly at the limit is fine


async def test_proxy_413_is_a_too_large_refusal(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_waldur_sim(upload_limit=256 * 1024)
    desk = make_desk(sim)
    ref = await desk.create(ticket())
    with pytest.raises(AttachmentRefused) as refused:
        await desk.upload_attachment(ref, "big.txt", "text/plain", write(tmp_path, "b", b"x" * 300 * 1024))
    assert (refused.value.reason, refused.value.status, refused.value.retryable) == (TOO_LARGE, 413, False)
    assert sim.attachments == []


async def test_server_refusals_of_an_upload(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    sim = make_waldur_sim(excluded_attachment_types=".exe")
    desk = make_desk(sim)
    ref = await desk.create(ticket())
    with pytest.raises(AttachmentRefused) as ext:
        await desk.upload_attachment(ref, "setup.exe", "application/octet-stream", write(tmp_path, "e", b"MZ"))
    assert (ext.value.reason, ext.value.status) == ("type_not_allowed", 400)
    with pytest.raises(AttachmentRefused) as empty:
        await desk.upload_attachment(ref, "empty.txt", "text/plain", write(tmp_path, "0", b""))
    assert (empty.value.reason, empty.value.status) == ("empty", 400)
    gone = ExternalTicket("waldur", "0" * 31 + "1", "WLD-GONE", f"{sim.api_url}/support-issues/{'0' * 31}1/")
    with pytest.raises(DeskError) as missing:
        await desk.upload_attachment(gone, "a.txt", "text/plain", write(tmp_path, "a", b"a"))
    assert missing.value.status == 400 and not missing.value.retryable
    assert "Object does not exist" in str(missing.value) and "a.txt" not in str(missing.value)
    assert sim.attachments == []


async def test_someone_elses_issue_is_refused_and_hidden(
    waldur_sim: WaldurSim, make_desk: MakeDesk, tmp_path: Path
) -> None:
    desk = make_desk(waldur_sim)
    ref = await desk.create(ticket())
    up = await desk.upload_attachment(ref, "a.txt", "text/plain", write(tmp_path, "a", b"hello"))
    agent = make_desk(waldur_sim, token="waldur-agent-token")  # support role, not the issue's caller
    with pytest.raises(DeskError) as denied:
        await agent.upload_attachment(ref, "b.txt", "text/plain", write(tmp_path, "b", b"hi"))
    assert denied.value.status == 403 and not denied.value.retryable
    assert await agent.list_attachments(ref) == []
    with pytest.raises(DeskError) as hidden:
        await read_all(agent, up, MiB)
    assert hidden.value.status == 404


async def test_a_file_url_off_the_desk_origin_is_refused(
    waldur_sim: WaldurSim, make_desk: MakeDesk, tmp_path: Path
) -> None:
    tamper = TamperingTransport()
    desk = make_desk(waldur_sim, transport=tamper)
    ref = await desk.create(ticket())
    await desk.upload_attachment(ref, "a.txt", "text/plain", write(tmp_path, "a", b"hello"))
    tamper.rewrite(
        "GET", "/api/support-attachments/", lambda body: body.replace(b"http://127.0.0.1", b"http://evil.example")
    )
    with pytest.raises(DeskError) as off:
        await desk.list_attachments(ref)
    assert "origin" in str(off.value) and not off.value.retryable
    assert tamper.tampered == ["GET /api/support-attachments/"]
