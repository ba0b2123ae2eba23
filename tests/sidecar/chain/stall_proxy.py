"""A loopback TCP proxy whose node-to-client direction can be stalled, like a reader that stopped reading."""

from __future__ import annotations

import asyncio
import contextlib
import socket


class StallProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.port = 0

    async def start(self) -> StallProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stall(self) -> None:
        """Stop reading from the node for every connection, present and future."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        # Small buffers, so a stalled reader backs pressure up into the node quickly.
        up_sock = up_writer.get_extra_info("socket")
        if up_sock is not None:
            up_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._writers.update({writer, up_writer})
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, stallable=False)),
            asyncio.create_task(self._pump(up_reader, writer, stallable=True)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, stallable: bool) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, OSError):
            while True:
                if stallable:
                    await self._flowing.wait()
                data = await src.read(1024)
                if not data:
                    return
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
