"""The HTTP plumbing under httpx for the sidecar's desk clients: a pool that hands out connections without
rescanning itself per request, connections on asyncio's own transports, and a client without a cookie jar.
Each cuts per-request CPU that the desks' APIs gain nothing from (under load, most of the sidecar's CPU went
to httpcore's pool and anyio). The node's RPC has a leaner client of its own (sidecar/chain/node_http.py).

A client on this transport connects directly: httpx reads HTTP(S)_PROXY and NO_PROXY only for the transports
it builds itself, so the sidecar's clients never go through a proxy named in the environment."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore
import httpx

# A connection's received bytes held unread before asyncio stops reading the socket (an attachment streamed to a
# slower consumer), and the level at which it reads again.
READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024


class _Received(asyncio.Protocol):
    """One connection's bytes as asyncio delivers them, for `_AsyncioStream` to take."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.writable = True
        self.reading_paused = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None, late: type[Exception]) -> None:
        """Until something changes (bytes, the end, room to write); `late` when `timeout` passes first."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            raise late(f"no progress within {timeout}s") from None
        finally:
            self._waiter = None


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """A pooled connection straight on asyncio's transport, not through anyio.

    httpcore's own stream wraps every read and write in an anyio cancel scope and answers the pool's
    "is_readable" (asked of every idle connection each time one is handed out or taken back) by rebuilding
    anyio's attribute map with a getpeername call: most of a desk request's CPU after the pool itself. Here a
    read or write that need not wait sets no timer, and "is_readable" is what asyncio already delivered: bytes
    or the end of an idle keep-alive connection (the server closed it)."""

    def __init__(self, transport: asyncio.Transport, received: _Received) -> None:
        self._transport = transport
        self._received = received
        received.transport = transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        received = self._received
        while not received.buffer and not received.eof:
            await received.wait(timeout, httpcore.ReadTimeout)
        if received.buffer:
            data = bytes(received.buffer[:max_bytes])
            del received.buffer[:max_bytes]
            if received.reading_paused and len(received.buffer) <= READ_LOW_WATER:
                received.reading_paused = False
                self._transport.resume_reading()
            return data
        if received.error is not None:
            raise httpcore.ReadError(f"connection lost ({type(received.error).__name__})")
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("connection closed")
        self._transport.write(buffer)
        while not self._received.writable:  # asyncio holds more than its high-water mark unsent
            if self._transport.is_closing():
                raise httpcore.WriteError("connection closed")
            await self._received.wait(timeout, httpcore.WriteTimeout)

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                secured = await loop.start_tls(
                    self._transport, self._received, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout}s") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from None
        if secured is None:  # the connection ended during the handshake
            raise httpcore.ConnectError("TLS handshake failed: connection closed")
        assert isinstance(secured, asyncio.Transport)
        return _AsyncioStream(secured, self._received)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return bool(self._received.buffer) or self._received.eof
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self._transport.get_extra_info(name)  # ssl_object, socket, sockname, peername


class _Backend(httpcore.AsyncNetworkBackend):
    """TCP connections as `_AsyncioStream`s; socket options and Unix sockets (which the desks never use) go to
    httpcore's own backend."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if socket_options:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, received = await loop.create_connection(_Received, host, port, local_addr=local)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"not connected within {timeout}s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        assert isinstance(transport, asyncio.Transport)
        return _AsyncioStream(transport, received)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# How often the pool looks over all its connections for closed, expired and surplus idle ones when nothing
# forces it to (a request waiting while the pool is full does); a connection handed out is checked itself.
SWEEP_SECONDS = 1.0


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool, its request-to-connection assignment done without rescanning the pool per request.

    httpcore runs the assignment each time a request arrives and each time an answer is closed, and its own
    version asks every connection whether it expired, counts the pool once per idle connection, and looks
    over the pool again for each waiting request: with a desk's 32 connections and its workers waiting for
    them, thousands of calls per request, the largest part of a desk request's CPU. This one keeps the rules
    (closed connections dropped; expired ones closed; idle ones closed while the pool holds more connections
    than max_keepalive_connections; each waiting request, oldest first, takes an available connection to its
    origin, else a new connection while there is room, else the place of an idle connection, else waits) but
    looks over the whole pool only every SWEEP_SECONDS or when a waiting request finds it full, checks the
    connection it hands out for expiry itself, and gives each available connection to one request only
    (httpcore may give it to two, and the second then goes round again, or close it for a third)."""

    _sweep_due = 0.0  # monotonic time of the next look over the pool (set per pool once it has looked)
    _gate: asyncio.Semaphore | None = None  # made on first use, on the loop that uses the pool

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Requests beyond max_connections wait at an asyncio semaphore, not in httpcore's queue (an anyio event
        and a cancel scope per waiting request, and a look over every waiting one each time a connection comes
        back); a request's place is given back when its answer is closed, as its connection is."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self._max_connections)
        gate = self._gate
        await gate.acquire()
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            gate.release()
            raise
        response.stream = _Releasing(response.stream, gate)
        return response

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        queued = [r for r in self._requests if r.is_queued()]
        now = time.monotonic()
        if now >= self._sweep_due or (queued and len(self._connections) >= self._max_connections):
            self._sweep(closing)
            self._sweep_due = now + SWEEP_SECONDS
        if not queued:
            return closing
        # A connection given to a request that has not started on it yet still reads as idle: never offered again.
        promised = {id(r.connection) for r in self._requests if r.connection is not None}
        available = [c for c in self._connections if id(c) not in promised and c.is_available()]
        for pool_request in queued:
            origin = pool_request.request.url.origin
            chosen = self._take_available(available, origin, closing)
            if chosen is None:
                if len(self._connections) >= self._max_connections:
                    idle = next((c for c in available if c.is_idle()), None)  # to another origin
                    if idle is None:
                        continue  # waits until a connection is given back
                    available.remove(idle)
                    self._connections.remove(idle)
                    closing.append(idle)
                chosen = self.create_connection(origin)
                self._connections.append(chosen)
            pool_request.assign_to_connection(chosen)
        return closing

    def _sweep(self, closing: list[httpcore.AsyncConnectionInterface]) -> None:
        """Drop closed connections; close expired ones, and idle ones while the pool holds more connections
        than max_keepalive_connections (counted as httpcore does: those kept so far and those not yet seen)."""
        kept: list[httpcore.AsyncConnectionInterface] = []
        for at, connection in enumerate(self._connections):
            if connection.is_closed():
                continue
            if connection.has_expired() or (
                connection.is_idle() and len(kept) + len(self._connections) - at > self._max_keepalive_connections
            ):
                closing.append(connection)
                continue
            kept.append(connection)
        self._connections = kept

    def _take_available(
        self,
        available: list[httpcore.AsyncConnectionInterface],
        origin: httpcore.Origin,
        closing: list[httpcore.AsyncConnectionInterface],
    ) -> httpcore.AsyncConnectionInterface | None:
        """The first available connection to `origin` that has not expired (the server closed it, or its
        keep-alive ran out), taken out of `available`; expired ones met on the way are closed."""
        at = 0
        while at < len(available):
            connection = available[at]
            if not connection.can_handle_request(origin):
                at += 1
                continue
            del available[at]
            if connection.has_expired():
                self._connections.remove(connection)
                closing.append(connection)
                continue
            return connection
        return None

    async def _close_connections(self, closing: list[httpcore.AsyncConnectionInterface]) -> None:
        """Nothing to close (nearly every call) costs no anyio cancel scope."""
        if closing:
            await super()._close_connections(closing)


class _Releasing:
    """An answer's body that gives its request's place back (once) when it is closed."""

    def __init__(self, inner: Any, gate: asyncio.Semaphore) -> None:
        self._inner = inner
        self._gate: asyncio.Semaphore | None = gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._gate is not None:
                self._gate.release()
                self._gate = None


def pooled_transport(limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> httpx.AsyncHTTPTransport:
    """httpx's transport (no retries) on `_Pool` (no rescan per request, waiting requests at a semaphore) and
    its connections on asyncio's transports (`_Backend`).

    Neither the pool's class nor its backend is a constructor argument of httpx's transport, so both are
    swapped in after (the pool keeps every setting it was built with: `_Pool` adds no constructor, only
    state it makes on first use); an httpx or httpcore that keeps its pool elsewhere gets the transport
    unchanged (tests/sidecar/test_http_transport.py checks both are in). `verify` as httpx's: True checks the
    server's certificate against certifi's authorities (or SSL_CERT_FILE / SSL_CERT_DIR)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, retries=0, verify=verify)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if type(pool) is httpcore.AsyncConnectionPool and isinstance(backend, httpcore.AsyncNetworkBackend):
        pool.__class__ = _Pool
        pool._network_backend = _Backend(backend)
    return transport


class _NoCookies(httpx.Cookies):
    """The desks' APIs authenticate every request (Basic or token): no cookie is kept or sent back, and the
    cookie jar's per-answer parsing (a few percent of a request's CPU) is skipped."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("the sidecar's clients keep no cookies")


_NO_COOKIES = _NoCookies()


class CookielessClient(httpx.AsyncClient):
    """httpx's client without a cookie jar (see `_NoCookies`)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the sidecar's clients keep no cookies")
