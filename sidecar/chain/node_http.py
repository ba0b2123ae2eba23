"""HTTP/1.1 POSTs of JSON-RPC bodies to the node, on kept-alive asyncio streams.

The node's RPC needs one request shape (POST, a JSON body, no redirects, cookies or compression) and answers
with Content-Length, chunked or connection-delimited bodies. A general HTTP client spends most of a batch
request's CPU on what this never needs (measured on the devnet, a 10-call batch of empty heights sent,
parsed and checked: 430-580 us on httpx over the sidecar's own transport, 115 us on this), and during a
backfill the follower sends hundreds a second on the interpreter that also decodes and opens every event.

Everything the node sends is outside input: a status line, a header or a chunk that is not HTTP, or a body
past the size cap, is a NodeHttpError, and the connection it came on is closed, never reused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from urllib.parse import unquote, urlsplit

from sidecar.digits import is_decimal

# Bytes a connection buffers before asyncio stops reading its socket: a block_results batch is about a
# megabyte through the busiest blocks, so a smaller buffer would pause and resume the socket per 64 KiB.
STREAM_LIMIT = 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024  # the status line and headers together (the node sends a few hundred bytes)


class NodeHttpError(Exception):
    """The request failed: no connection, the connection broke, or the answer is not HTTP we take. Its text
    names what happened, never the body."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _Progress:
    """Moves a request's deadline on each read that brought bytes: `timeout` from the last progress, set
    again only once half of it has gone (a timer moved per read would cost more than the read)."""

    def __init__(self, deadline: asyncio.Timeout, timeout: float) -> None:
        self._deadline, self._timeout = deadline, timeout
        self._loop = asyncio.get_running_loop()

    def __call__(self) -> None:
        now = self._loop.time()
        when = self._deadline.when()
        if when is not None and when - now < self._timeout / 2:
            self._deadline.reschedule(now + self._timeout)


class _Reader:
    """A connection's reader whose every read counts as progress."""

    def __init__(self, reader: asyncio.StreamReader, progress: _Progress) -> None:
        self._reader, self._progress = reader, progress

    async def readuntil(self, separator: bytes) -> bytes:
        data = await self._reader.readuntil(separator)
        self._progress()
        return data

    async def readexactly(self, size: int) -> bytes:
        """`size` bytes, read a buffer's worth at a time so that a long body shows its progress."""
        if size <= STREAM_LIMIT:
            data = await self._reader.readexactly(size)
            self._progress()
            return data
        pieces = []
        while size > 0:
            pieces.append(await self._reader.readexactly(min(size, STREAM_LIMIT)))
            size -= len(pieces[-1])
            self._progress()
        return b"".join(pieces)

    async def read(self, limit: int) -> bytes:
        data = await self._reader.read(limit)
        self._progress()
        return data


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def reusable(self) -> bool:
        """Still open: the node did not close it while it was idle (a keep-alive timeout, a restart)."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class NodeHttp:
    """POSTs to one node URL (http or https, user:password@ sent as Basic auth), at most `connections` at once.
    A request fails when `timeout` seconds pass without progress: waiting for a connection, connecting, or
    between two reads of the answer (a large answer on a slow link takes as long as it keeps arriving)."""

    def __init__(self, url: str, timeout: float, connections: int, max_answer_bytes: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the node URL must be http:// or https:// with a host")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        host = f"[{self._host}]" if ":" in self._host else self._host
        authority = host if parts.port is None else f"{host}:{parts.port}"
        headers = [f"Host: {authority}", "Content-Type: application/json", "Accept: application/json"]
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers.append(f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}")
        target = parts.path.rstrip("/") + "/" + (f"?{parts.query}" if parts.query else "")
        self._head = (f"POST {target} HTTP/1.1\r\n" + "\r\n".join(headers) + "\r\nContent-Length: ").encode("latin-1")
        self._timeout = timeout
        self._max_answer = max_answer_bytes
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, body) of one POST of `body`."""
        if self._closed:
            raise NodeHttpError("client closed")
        try:
            async with asyncio.timeout(self._timeout) as deadline, self._slots:
                return await self._exchange(body, _Progress(deadline, self._timeout))
        except TimeoutError:
            raise NodeHttpError(f"no progress within {self._timeout}s", timed_out=True) from None

    async def _exchange(self, body: bytes, progress: _Progress) -> tuple[int, bytes]:
        connection = await self._connection()
        progress()
        done = False
        try:
            connection.writer.write(self._head + b"%d\r\n\r\n" % len(body) + body)
            status, answer, keep = await self._answer(_Reader(connection.reader, progress))
            done = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise NodeHttpError(f"connection failed ({type(exc).__name__})") from None
        finally:
            if done and keep and not self._closed:
                self._idle.append(connection)
            else:  # broken, cancelled, timed out or told to close: never handed out again
                connection.close()
        return status, answer

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest to still be open
            if connection.reusable():
                return connection
            connection.close()
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls else None,
                limit=STREAM_LIMIT,
            )
        except (OSError, ssl.SSLError) as exc:
            raise NodeHttpError(f"cannot connect ({type(exc).__name__})") from None
        return _Connection(reader, writer)

    async def _answer(self, reader: _Reader) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection may carry another request)."""
        while True:
            status, version, headers = await self._head_of(reader)
            if not 100 <= status < 200:
                break  # an interim answer (100 Continue, 103 Early Hints) precedes the real one
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, await self._chunked(reader), keep
        length = headers.get("content-length")
        if length is not None:
            if not is_decimal(length):
                raise NodeHttpError("the answer's Content-Length is not a number")
            size = int(length)
            self._check_size(size)
            return status, await reader.readexactly(size), keep
        if status in (204, 304):
            return status, b"", keep
        return status, await self._until_closed(reader), False

    async def _head_of(self, reader: _Reader) -> tuple[int, str, dict[str, str]]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise NodeHttpError("the answer's headers are too long") from None
        if len(head) > MAX_HEAD_BYTES:
            raise NodeHttpError("the answer's headers are too long")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not is_decimal(code):
            raise NodeHttpError("the answer is not HTTP/1.x")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, colon, value = line.partition(":")
                if not colon:
                    raise NodeHttpError("the answer has a malformed header line")
                headers[name.strip().lower()] = value.strip()
        return int(code), version, headers

    async def _chunked(self, reader: _Reader) -> bytes:
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise NodeHttpError("the answer has a malformed chunk size") from None
            if size < 0:
                raise NodeHttpError("the answer has a malformed chunk size")
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any, end with an empty line
                    pass
                return bytes(body)
            self._check_size(len(body) + size)
            chunk = await reader.readexactly(size + 2)
            if chunk[-2:] != b"\r\n":
                raise NodeHttpError("the answer has a chunk without its line end")
            body += memoryview(chunk)[:-2]

    async def _until_closed(self, reader: _Reader) -> bytes:
        body = bytearray()
        while data := await reader.read(STREAM_LIMIT):
            body += data
            self._check_size(len(body))
        return bytes(body)

    def _check_size(self, size: int) -> None:
        if size > self._max_answer:
            raise NodeHttpError(f"the answer is over {self._max_answer} bytes")

    async def aclose(self) -> None:
        """Close every idle connection; one still in use closes when its request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await connection.writer.wait_closed()
