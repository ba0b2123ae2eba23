"""A response's writes leave together: what one loop step writes is held until the step ends and sent as
one write, in order, and closing sends what is held before the connection closes.

Real loopback sockets and a real asyncio transport under the wrapper; under a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sidecar.web.coalesce import CoalescingTransport


@asynccontextmanager
async def loopback() -> AsyncIterator[tuple[asyncio.Transport, asyncio.Queue[bytes]]]:
    """A client transport to a loopback server that puts everything it reads (to EOF, b"" on a reset) on the
    queue; both closed at the end."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def read_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await received.put(await reader.read())
        except ConnectionError:
            await received.put(b"")
        writer.close()

    server = await asyncio.start_server(read_all, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, "127.0.0.1", port)
    try:
        yield transport, received
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


async def test_one_steps_writes_leave_together_in_order_and_close_sends_them_first() -> None:
    async with loopback() as (transport, received):
        wrapped = CoalescingTransport(transport, asyncio.get_running_loop())
        wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
        wrapped.write(b"{}")
        # Nothing handed to the socket yet: both writes are held for the end of this step.
        assert wrapped.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\n{}")
        await asyncio.sleep(0)  # the step ends: the held writes went out as one
        assert wrapped.get_write_buffer_size() == transport.get_write_buffer_size()
        wrapped.write(b"second")
        wrapped.close()  # held bytes are sent before the close, not dropped
        assert await asyncio.wait_for(received.get(), 10) == b"HTTP/1.1 200 OK\r\n\r\n{}second"


async def test_abort_drops_what_is_held() -> None:
    async with loopback() as (transport, received):
        wrapped = CoalescingTransport(transport, asyncio.get_running_loop())
        wrapped.write(b"never sent")
        wrapped.abort()
        assert wrapped.get_write_buffer_size() == 0
        assert await asyncio.wait_for(received.get(), 10) == b""
        assert transport.is_closing()
