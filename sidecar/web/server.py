"""Starlette on uvicorn, embedded so that the app, not uvicorn, owns signals and shutdown order."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.config import parse_listen
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.web.health import health_endpoint
from sidecar.web.webhooks import WebhookReceiver


def build_web_app(
    prefix: str, store: Store, health: HealthState, metrics: Metrics, receiver: WebhookReceiver | None = None
) -> Starlette:
    """Health and metrics always; the desks' receivers when webhook.enabled."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route(f"{prefix}/health", health_endpoint(store, health, metrics), methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *(receiver.routes(prefix) if receiver is not None else []),
    ]
    return Starlette(routes=routes)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: SIGTERM is the app's to handle."""

    def install_signal_handlers(self) -> None:
        return None


class WebServer:
    """Binds its socket at construction so the real port is known before serving (port 0 in tests)."""

    def __init__(self, app: Starlette, listen_addr: str) -> None:
        host, port = parse_listen(listen_addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(128)
        self._sock.setblocking(False)
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5)
        self._server = _EmbeddedServer(config)

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        """Stop accepting; in-flight requests finish within the graceful timeout."""
        self._server.should_exit = True

    async def wait_started(self) -> None:
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
