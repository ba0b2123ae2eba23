"""The desks' HTTP transport (sidecar/http_transport.py): httpx over httpcore's pool without its per-request
rescans and with its waiting requests at a semaphore (`_Pool`), and connections on asyncio's transports
(`_Backend`). Every test runs a real server on a loopback socket (plain or TLS) and checks what a desk client
relies on: keep-alive reuse, the pool's limits, TLS with certificate checks, timeouts, a connection cut
mid-answer, and bodies larger than the buffers in both directions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest

from devnet.waiting import async_wait_until
from sidecar.http_transport import READ_HIGH_WATER, _AsyncioStream, _Backend, _Pool, pooled_transport

HANG_UP = b"x-test: hang-up\r\n"  # a handler's extra header: the server closes the connection soon after answering
# What a handler gets (method, path, body) and answers (status, extra header lines, body); None: hang up unanswered.
Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes, bytes] | None]]


@dataclass
class Served:
    port: int
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0


@contextlib.asynccontextmanager
async def server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Served]:
    """An HTTP/1.1 server with keep-alive, counting its connections and the most open at once."""
    served = Served(0)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        served.open_now += 1
        served.most_open = max(served.most_open, served.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next(
                    (int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0
                )
                body = await reader.readexactly(length)
                served.requests.append(path)
                answer = await handler(method, path, body)
                if answer is None:
                    return
                status, extra, content = answer
                writer.write(
                    b"HTTP/1.1 %d OK\r\ncontent-length: %d\r\n%s\r\n" % (status, len(content), extra) + content
                )
                await writer.drain()
                if extra == HANG_UP:
                    await asyncio.sleep(0.2)  # after the client has put the connection back in its pool
                    return
        finally:
            served.open_now -= 1
            writer.close()

    listening = await asyncio.start_server(connection, "127.0.0.1", 0, ssl=tls)
    served.port = listening.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        listening.close()
        await listening.wait_closed()


def client(
    port: int, *, scheme: str = "http", connections: int = 4, timeout: float = 5.0, **kw: object
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = pooled_transport(limits, **kw)  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=f"{scheme}://127.0.0.1:{port}", transport=transport, timeout=timeout)


async def ok(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes]:
    return 200, b"", b'{"path":"' + path.encode() + b'","size":%d}' % len(body)


def pool_of(http: httpx.AsyncClient) -> httpcore.AsyncConnectionPool:
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    return pool


async def test_the_transport_in_use_is_the_one_pass_pool_on_asyncio_streams() -> None:
    """The swap took (an httpx or httpcore that moved its pool would silently give back the slow path)."""
    async with server(ok) as served, client(served.port) as http:
        await http.get("/a")
        pool = pool_of(http)
        assert type(pool) is _Pool
        assert isinstance(pool._network_backend, _Backend)
        streams = [c._connection._network_stream for c in pool.connections]  # type: ignore[attr-defined]
        assert streams and all(isinstance(s, _AsyncioStream) for s in streams)
        assert [s.get_extra_info("is_readable") for s in streams] == [False]  # idle and open: reusable


async def test_sequential_requests_reuse_one_kept_alive_connection() -> None:
    async with server(ok) as served, client(served.port) as http:
        for n in range(20):
            assert (await http.post(f"/r{n}", content=b"x" * n)).json() == {"path": f"/r{n}", "size": n}
    assert served.connections == 1
    assert len(served.requests) == 20


async def test_concurrent_requests_beyond_max_connections_wait_for_one_and_all_succeed() -> None:
    release = asyncio.Event()

    async def slow(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        await release.wait()
        return await ok(method, path, body)

    async with server(slow) as served, client(served.port, connections=3) as http:
        calls = [asyncio.ensure_future(http.get(f"/c{n}")) for n in range(10)]
        await async_wait_until(lambda: len(served.requests) == 3, timeout=5, what="three requests served")
        await asyncio.sleep(0.1)  # time for a fourth to go out, were the pool to let it
        assert served.open_now == 3 and len(served.requests) == 3
        assert len(pool_of(http)._requests) == 3  # type: ignore[attr-defined]  # the 7 others wait at the gate
        release.set()
        answers = await asyncio.gather(*calls)
    assert sorted(a.json()["path"] for a in answers) == sorted(f"/c{n}" for n in range(10))
    assert served.most_open == 3
    assert served.connections == 3  # the queued requests took the connections given back, none was added


async def test_a_request_s_place_is_given_back_when_its_answer_is_closed_not_before() -> None:
    """A streamed answer keeps its connection, and so its place, until it is closed: a second request on a
    one-connection pool waits for exactly that."""
    async with server(ok) as served, client(served.port, connections=1) as http:
        async with http.stream("GET", "/streamed") as first:
            second = asyncio.ensure_future(http.get("/second"))
            await asyncio.sleep(0.2)
            assert not second.done() and served.requests == ["/streamed"]
            assert len(pool_of(http)._requests) == 1  # type: ignore[attr-defined]  # the second waits at the gate
            await first.aread()
        assert (await asyncio.wait_for(second, 5)).json()["path"] == "/second"  # the closed answer gave its place
    assert served.connections == 1


async def test_idle_connections_beyond_max_keepalive_are_closed_when_the_pool_is_looked_over() -> None:
    """httpx's max_keepalive_connections, as httpcore applies it, on the pool's look-over (every SWEEP_SECONDS;
    made due here)."""
    release = asyncio.Event()

    async def held(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        await release.wait()
        return await ok(method, path, body)

    limits = httpx.Limits(max_connections=4, max_keepalive_connections=1)
    async with server(held) as served:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{served.port}", transport=pooled_transport(limits)
        ) as http:
            calls = [asyncio.ensure_future(http.get(f"/k{n}")) for n in range(4)]
            await async_wait_until(lambda: served.open_now == 4, timeout=5, what="four connections")
            release.set()
            await asyncio.gather(*calls)
            pool = pool_of(http)
            pool._sweep_due = 0.0  # type: ignore[attr-defined]
            await http.get("/after")
            assert len(pool_of(http).connections) == 1
    assert served.connections == 4


async def test_an_idle_connection_the_server_closed_is_dropped_not_reused() -> None:
    """The server hangs up after answering (no `Connection: close`, as a keep-alive timeout does): asyncio
    delivers the end, the idle connection reads as "is_readable", and the next request opens a new one."""

    async def answer_then_hang_up(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        return 200, HANG_UP, b"{}"

    async with server(answer_then_hang_up) as served, client(served.port) as http:
        await http.get("/first")
        stream = pool_of(http).connections[0]._connection._network_stream  # type: ignore[attr-defined]
        await async_wait_until(lambda: stream.get_extra_info("is_readable"), timeout=5, what="the hang-up seen")
        assert (await http.get("/second")).status_code == 200
    assert served.connections == 2


async def test_a_read_timeout_is_httpx_read_timeout() -> None:
    async def never(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes] | None:
        await asyncio.sleep(30)
        return None

    async with server(never) as served, client(served.port, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/slow")


async def test_a_refused_connection_is_httpx_connect_error() -> None:
    async with server(ok) as served:
        port = served.port
    async with client(port) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/nobody")


async def test_an_answer_cut_short_is_a_protocol_error_and_the_connection_is_not_kept() -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(truncated, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        async with client(port) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get("/cut")
            assert all(c.is_closed() for c in pool_of(http).connections)  # none is handed out again
    finally:
        listening.close()
        await listening.wait_closed()


async def test_bodies_larger_than_the_buffers_arrive_whole_both_ways() -> None:
    """4 MiB up and down: asyncio's write buffer fills (the write waits for room) and the read side pauses the
    socket above READ_HIGH_WATER while the caller reads slowly; not a byte is lost or reordered."""
    blob = bytes(range(256)) * (4 * 1024 * 4)  # 4 MiB

    async def echo_digest(method: str, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        if path == "/down":
            return 200, b"", blob
        return 200, b"", hashlib.sha256(body).hexdigest().encode()

    assert len(blob) > 8 * READ_HIGH_WATER
    async with server(echo_digest) as served, client(served.port) as http:
        up = await http.post("/up", content=blob)
        assert up.text == hashlib.sha256(blob).hexdigest()
        got = hashlib.sha256()
        async with http.stream("GET", "/down") as response:
            async for chunk in response.aiter_raw():
                got.update(chunk)
                await asyncio.sleep(0.001)  # a slow consumer: the buffer passes its high-water mark
        assert got.hexdigest() == hashlib.sha256(blob).hexdigest()
        assert (await http.get("/after")).status_code == 200  # the connection went back to the pool usable
    assert served.connections == 1


async def test_tls_checks_the_desks_certificate(certificate: tuple[Path, Path]) -> None:
    """HTTPS goes through asyncio's start_tls: answered when the certificate is trusted, refused (ConnectError,
    nothing sent) when it is not."""
    cert, key = certificate
    served_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served_tls.load_cert_chain(cert, key)
    async with server(ok, tls=served_tls) as served:
        async with client(served.port, scheme="https", verify=ssl.create_default_context(cafile=str(cert))) as http:
            for _ in range(3):
                assert (await http.post("/secure", content=b"abc")).json() == {"path": "/secure", "size": 3}
            stream = pool_of(http).connections[0]._connection._network_stream  # type: ignore[attr-defined]
            assert stream.get_extra_info("ssl_object") is not None
        assert served.connections == 1
        async with client(served.port, scheme="https") as http:  # certifi's authorities: not this certificate
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get("/secure")
        assert served.requests == ["/secure"] * 3
