"""Serve an ASGI app with uvicorn on a free loopback port, from a thread or from a running loop.

The desk simulators and the webhook receiver all need real HTTP on 127.0.0.1 so that clients are
tested over sockets, not through an in-process transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from devnet.waiting import async_wait_until, wait_until

Hook = Callable[[], Awaitable[None]]


class _QuietServer(uvicorn.Server):
    """uvicorn.Server that never touches process signal handlers (tests own Ctrl-C)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SimRunner:
    """Runs `app` on 127.0.0.1:0; `on_start`/`on_stop` run inside the serving loop."""

    def __init__(self, app: Any, *, on_start: Hook | None = None, on_stop: Hook | None = None) -> None:
        self.app = app
        self._on_start = on_start
        self._on_stop = on_stop
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """Root URL of the running server, e.g. http://127.0.0.1:41234."""
        if not self.port:
            raise RuntimeError("server is not running")
        return f"http://127.0.0.1:{self.port}"

    def _make_server(self) -> _QuietServer:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            http="h11",
            ws="none",
            lifespan="off",
            log_level="critical",
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        return _QuietServer(config)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        assert self._server is not None
        try:
            if self._on_start:
                await self._on_start()
            await self._server.serve()
        except BaseException as exc:  # surfaced to the starter through wait_until
            self._error = exc
            raise
        finally:
            if self._on_stop:
                await self._on_stop()

    def _started(self) -> bool:
        if self._error is not None:
            raise RuntimeError(f"server failed to start: {self._error!r}")
        server = self._server
        if server is None or not server.started:
            return False
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return True

    # sync: a background thread with its own loop ---------------------------------------------
    def start(self, timeout: float = 10.0) -> SimRunner:
        """Start in a daemon thread and return once the port is bound."""
        self._server = self._make_server()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True, name="sim-server")
        self._thread.start()
        wait_until(self._started, timeout=timeout, what="simulator to bind its port", interval=0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("simulator thread did not stop in time")
            self._thread = None

    def __enter__(self) -> SimRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # async: a task in the caller's loop -------------------------------------------------------
    async def astart(self, timeout: float = 10.0) -> SimRunner:
        """Start as a task in the running loop and return once the port is bound."""
        self._server = self._make_server()
        self._task = asyncio.create_task(self._serve())

        async def started() -> bool:
            return self._started()

        await async_wait_until(started, timeout=timeout, what="simulator to bind its port", interval=0.01)
        return self

    async def astop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and await the task."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout)
            self._task = None

    async def __aenter__(self) -> SimRunner:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule `fn(*args)` on the serving loop from any thread."""
        if self.loop is None:
            raise RuntimeError("server is not running")
        self.loop.call_soon_threadsafe(fn, *args)
