"""One loopback HTTP server for the JSON-RPC proxies the chain tests put in front of the real node."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devnet.waiting import async_wait_until


@contextlib.asynccontextmanager
async def serve_post(handler: Callable[[Request], Awaitable[Response]], what: str) -> AsyncIterator[str]:
    """Serve `handler` for `POST /` on a free loopback port; yields the base URL, stops the server after."""
    app = Starlette(routes=[Route("/", handler, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await async_wait_until(lambda: server.started, timeout=10, what=f"{what} to listen")
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
