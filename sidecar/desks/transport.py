"""The desk clients' HTTP plumbing under httpx: a pool whose idle-connection check is a plain socket poll,
and a client without a cookie jar. Both cut per-request CPU that the desks' APIs gain nothing from."""

from __future__ import annotations

import asyncio.trsock
import math
import select
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any, Protocol

import httpcore
import httpx


class _Socket(Protocol):
    def fileno(self) -> int: ...


def _socket_readable(sock: _Socket) -> bool:
    """Whether a read would return at once: on an idle keep-alive connection, the server has closed it."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


# How long a connection is taken as open after it was last used or found open by a poll. httpcore asks every
# idle connection each time it hands out or takes back one (under load, hundreds of polls per request); a
# server closes an idle connection when its keep-alive runs out (seconds to minutes: uvicorn 5 s, load
# balancers 60 s), or after an answer that says "Connection: close" (h11 then retires the connection itself).
# A server that drops one within this second anyway (a restart) costs one retryable network error.
TRUSTED_SECONDS = 1.0


class _Stream(httpcore.AsyncNetworkStream):
    """A pooled connection that answers the pool's "is_readable" from the socket it keeps at hand.

    httpcore asks it of every idle connection each time it hands out or takes back one (a dozen times per
    request with a few connections open), and the anyio stream rebuilds its whole attribute map (with a
    getpeername call) to answer: the sidecar's largest cost per desk request after the network itself. The
    answer is the same poll of the same socket; everything else goes to the wrapped stream."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")  # on asyncio an asyncio.TransportSocket, not a socket.socket
        self._sock: _Socket | None = sock if isinstance(sock, socket.socket | asyncio.trsock.TransportSocket) else None
        self._open_at = -math.inf  # when the connection was last used, or found open by a poll

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        self._open_at = time.monotonic() if data else -math.inf  # b"": the server closed it
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)
        self._open_at = time.monotonic()

    def _readable(self, sock: _Socket) -> bool:
        now = time.monotonic()
        if now - self._open_at < TRUSTED_SECONDS:
            return False
        if _socket_readable(sock):
            return True
        self._open_at = now
        return False

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._sock is not None:
            return self._readable(self._sock)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's own network backend, its connections wrapped in `_Stream`."""

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
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pooled_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport (no retries), its pool's connections answering "is_readable" cheaply (`_Stream`).

    The pool's backend is not a constructor argument of httpx's transport, so it is swapped in after; an
    httpx that keeps its pool elsewhere gets the transport unchanged (tests/sidecar/desks check it is in)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, retries=0)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _Backend(backend)
    return transport


class _NoCookies(httpx.Cookies):
    """The desks' APIs authenticate every request (Basic or token): no cookie is kept or sent back, and the
    cookie jar's per-answer parsing (a few percent of a desk request's CPU) is skipped."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("a desk client keeps no cookies")


_NO_COOKIES = _NoCookies()


class CookielessClient(httpx.AsyncClient):
    """httpx's client without a cookie jar (see `_NoCookies`)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("a desk client keeps no cookies")
