"""The node's HTTP client against a real loopback server that answers what each test scripts: each framing
the node may use, kept-alive connections, and every way an answer can fail to be HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devnet.waiting import async_wait_until
from sidecar.chain.node_http import NodeHttp, NodeHttpError
from sidecar.chain.rpc import CometRpc
from sidecar.errors import ChainRpcError


@dataclass
class Scripted:
    """A server answering each request with the next scripted bytes (None: never answer; a list: its pieces
    `pause` seconds apart, up to a None, where it stops answering; the connection is closed after an answer
    whose script ends with `close`)."""

    answers: list[tuple[bytes | list[bytes | None] | None, bool]] = field(default_factory=list)
    pause: float = 0.0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body) as received
    connections: int = 0
    closed_by_client: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:])
                self.requests.append((head, await reader.readexactly(length)))
                answer, close = self.answers.pop(0)
                for piece in answer if isinstance(answer, list) else [answer]:
                    if piece is None:  # silent from here: until the client gives up and closes
                        if not await reader.read(1):
                            self.closed_by_client += 1
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(self.pause)
                if close:
                    return
        finally:
            writer.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(extra) + (
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" for p in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\nX-Trailer: t\r\n\r\n"


@contextlib.asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None) -> AsyncIterator[Scripted]:
    scripted = Scripted()
    listener = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=tls)
    scripted.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield scripted


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    async with serving() as scripted:
        yield scripted


def client(server: Scripted, *, timeout: float = 5.0, max_answer: int = 1_000_000, path: str = "") -> NodeHttp:
    return NodeHttp(f"http://127.0.0.1:{server.port}{path}", timeout, 4, max_answer)


BODY = b'{"jsonrpc":"2.0","id":1,"result":{"height":"7"}}'


async def test_each_framing_reads_the_same_body_and_keeps_the_connection_when_it_may(server: Scripted) -> None:
    server.answers = [
        (ok(BODY), False),
        (chunked(BODY), False),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(BODY), False),
        (b"HTTP/1.0 200 OK\r\n\r\n" + BODY, True),  # ends when the connection does
        (ok(BODY, b"Connection: close\r\n"), True),
        (ok(BODY), False),
    ]
    http = client(server)
    try:
        for _ in range(6):
            assert await http.post(b"{}") == (200, BODY)
    finally:
        await http.aclose()
    assert server.connections == 3  # new ones only after the answer read to the end and the one saying close


async def test_the_request_goes_to_the_urls_path_and_query_with_its_credentials_as_basic_auth(
    server: Scripted,
) -> None:
    server.answers = [(ok(BODY), False)]
    http = NodeHttp(f"http://us%40er:p%3Ass@127.0.0.1:{server.port}/rpc/?apikey=k", 5.0, 4, 1_000_000)
    try:
        await http.post(b'{"a":1}')
    finally:
        await http.aclose()
    head, body = server.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /rpc/?apikey=k HTTP/1.1" and body == b'{"a":1}'
    assert f"Host: 127.0.0.1:{server.port}" in lines and "Content-Type: application/json" in lines
    assert f"Authorization: Basic {base64.b64encode(b'us@er:p:ss').decode()}" in lines


async def test_a_connection_the_node_closed_while_idle_is_not_used_again(server: Scripted) -> None:
    server.answers = [(ok(BODY), True), (ok(BODY), False)]  # closed after answering, without saying so
    http = client(server)
    try:
        assert await http.post(b"{}") == (200, BODY)
        await async_wait_until(lambda: not http._idle[0].reusable(), timeout=5, what="the close to reach the client")
        assert await http.post(b"{}") == (200, BODY)
    finally:
        await http.aclose()
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "Content-Length is not a number"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "Content-Length is not a number"),  # a superscript 2
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", "over 1000000 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", "without its line end"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f4241\r\n", "over 1000000 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"short", "connection failed"),
    ],
)
async def test_an_answer_that_is_not_http_we_take_is_an_error_and_its_connection_is_dropped(
    server: Scripted, answer: bytes, reason: str
) -> None:
    server.answers = [(answer, True), (ok(BODY), False)]
    http = client(server)
    try:
        with pytest.raises(NodeHttpError, match=reason) as caught:
            await http.post(b"{}")
        assert not caught.value.timed_out and "SSH" not in str(caught.value)
        assert await http.post(b"{}") == (200, BODY)  # on a new connection
    finally:
        await http.aclose()
    assert server.connections == 2


async def test_a_node_that_never_answers_times_out_and_the_connection_is_closed(server: Scripted) -> None:
    server.answers = [(None, False)]
    http = client(server, timeout=0.3)
    try:
        with pytest.raises(NodeHttpError) as caught:
            await http.post(b"{}")
        assert caught.value.timed_out and not http._idle
    finally:
        await http.aclose()
    await async_wait_until(lambda: server.closed_by_client == 1, timeout=5, what="the client to close the connection")


async def test_an_answer_that_keeps_arriving_is_read_past_the_timeout_and_one_that_stops_is_not(
    server: Scripted,
) -> None:
    """The timeout is for a node that stops, not a long answer: pieces 0.1 s apart make a second of answer,
    read whole with a 0.5 s timeout; the same answer stopping half-way fails after 0.5 s of silence."""
    framed = chunked(BODY, size=8)
    pieces = [framed[i : i + 16] for i in range(0, len(framed), 16)]
    server.pause = 0.1
    server.answers = [(pieces, False), ([*pieces[: len(pieces) // 2], None], False)]
    http = client(server, timeout=0.5)
    try:
        started = asyncio.get_running_loop().time()
        assert await http.post(b"{}") == (200, BODY)
        assert asyncio.get_running_loop().time() - started > 0.5
        with pytest.raises(NodeHttpError, match="no progress within 0.5s") as caught:
            await http.post(b"{}")
        assert caught.value.timed_out
    finally:
        await http.aclose()


async def test_a_cancelled_request_closes_its_connection_rather_than_leave_an_answer_on_it(server: Scripted) -> None:
    server.answers = [(None, False), (ok(BODY), False)]
    http = client(server)
    try:
        pending = asyncio.create_task(http.post(b"{}"))
        await async_wait_until(lambda: bool(server.requests), timeout=5, what="the request to arrive")
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert not http._idle
        assert await http.post(b"{}") == (200, BODY)
    finally:
        await http.aclose()
    assert server.connections == 2


async def test_the_rpc_client_names_the_failure_and_keeps_secrets_out_of_it(server: Scripted) -> None:
    closed = server.port
    rpc = CometRpc(f"http://user:hunter2@127.0.0.1:{closed}/k3y0000000000000000000000000000000", 2.0)
    server.answers = [(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", False)]
    try:
        with pytest.raises(ChainRpcError, match="answered HTTP 502") as answered:
            await rpc.status()
        assert answered.value.retryable
    finally:
        await rpc.aclose()
    unreachable = CometRpc("http://user:hunter2@127.0.0.1:1", 2.0)
    try:
        with pytest.raises(ChainRpcError, match=r"unreachable at http://127\.0\.0\.1:1: cannot connect") as caught:
            await unreachable.status()
        assert caught.value.retryable and "hunter2" not in str(caught.value)
    finally:
        await unreachable.aclose()


async def test_https_checks_the_nodes_certificate(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified against the system's authorities (SSL_CERT_FILE, as OpenSSL reads it, stands in for them here):
    refused, nothing sent, when they do not vouch for it; answered when they do."""
    cert, key = certificate
    served_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served_tls.load_cert_chain(cert, key)
    async with serving(served_tls) as served:
        served.answers = [(ok(BODY), False)]
        untrusting = NodeHttp(f"https://127.0.0.1:{served.port}", 5.0, 1, 1000)
        with pytest.raises(NodeHttpError, match="cannot connect"):
            await untrusting.post(b"{}")
        assert not served.requests
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = NodeHttp(f"https://127.0.0.1:{served.port}", 5.0, 1, 1000)
        try:
            assert await trusting.post(b"{}") == (200, BODY)
        finally:
            await trusting.aclose()


def test_only_http_and_https_node_urls_are_taken() -> None:
    for url in ("ftp://node:21", "http://", "tcp://127.0.0.1:26657"):
        with pytest.raises(ValueError, match="http:// or https://"):
            NodeHttp(url, 1.0, 1, 1000)
