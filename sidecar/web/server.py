"""Starlette on uvicorn, embedded so that the app, not uvicorn, owns signals and shutdown order.

Two listeners: the public one (`webhook.listen_addr`: the desks' receivers and the plain health
that load balancers poll) and the observe one (`observe.listen`, loopback by default: /metrics and
verbose health). With `observe.listen` empty the public listener serves everything, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar.listen import parse_listen
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.web.coalesce import CoalescingWrites
from sidecar.web.deadlines import header_deadline_protocol
from sidecar.web.health import CachedFigures, health_endpoint
from sidecar.web.peers import ClientAddress
from sidecar.web.webhooks import WebhookReceiver


def _prefix(prefix: str) -> str:
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def _metrics_route(metrics: Metrics) -> Route:
    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Route("/metrics", metrics_endpoint, methods=["GET"])


def build_web_app(
    prefix: str,
    store: Store,
    health: HealthState,
    metrics: Metrics,
    receiver: WebhookReceiver | None = None,
    *,
    figures: CachedFigures | None = None,
    observe: bool = True,
) -> WebApp:
    """The public app: the desks' receivers (when webhook.enabled) and health. With `observe` (no
    separate observe listener) it also serves /metrics and verbose health; without, it ignores
    `?verbose=1` and has no /metrics."""
    prefix = _prefix(prefix)
    figures = figures or CachedFigures(store)
    # The receivers first: routes are tried in order, and webhooks are what this port serves most.
    routes = receiver.routes(prefix) if receiver is not None else []
    health_route = health_endpoint(figures, health, metrics, verbose=observe)
    routes.append(Route(f"{prefix}/health", health_route, methods=["GET"]))
    if observe:
        routes.append(_metrics_route(metrics))
    app = WebApp(routes=routes)
    if receiver is not None:
        app.direct.update(receiver.endpoints(prefix))
    return app


class WebApp(Starlette):
    """Starlette, with the receivers' deliveries taken straight to their endpoint: a POST to one of the
    exact paths in `direct` skips Starlette's two middlewares, its router and the route's method check (six
    coroutine layers and a regex per delivery, on the port's hot path). Each of those paths is also one of
    the app's routes, so anything else there (another method, a trailing slash) is answered by Starlette
    as before. An error escaping a receiver reaches uvicorn, which logs it and answers 500, as Starlette's
    error middleware would have."""

    def __init__(self, *, routes: Sequence[Route]) -> None:
        super().__init__(routes=list(routes))
        self.direct: dict[str, ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.direct.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def build_observe_app(
    prefix: str, store: Store, health: HealthState, metrics: Metrics, *, figures: CachedFigures | None = None
) -> Starlette:
    """What `observe.listen` serves: /metrics and health with `?verbose=1` (same paths as the public port)."""
    figures = figures or CachedFigures(store)
    health_route = Route(
        f"{_prefix(prefix)}/health", health_endpoint(figures, health, metrics, verbose=True), methods=["GET"]
    )
    return Starlette(routes=[health_route, _metrics_route(metrics)])


@dataclass(frozen=True)
class ServerLimits:
    """`read_timeout`: for a request's headers, then for its body. `max_connections`: uvicorn's
    limit_concurrency (beyond it requests are answered 503). `keep_alive`: idle time between requests."""

    read_timeout: float = 10.0
    max_connections: int = 256
    keep_alive: int = 5


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: SIGTERM is the app's to handle. (uvicorn since 0.29 takes
    SIGINT/SIGTERM in `capture_signals` around `serve`, stops on its own and raises the signal again when
    done; the former `install_signal_handlers` hook is no longer called.)"""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """Binds its socket at construction so the real port is known before serving (port 0 in tests).

    uvicorn's proxy-header handling is off: `ClientAddress` resolves the client itself, believing
    X-Forwarded-For only from `trusted_proxies` (see sidecar/web/peers.py)."""

    def __init__(
        self,
        app: ASGIApp,
        listen_addr: str,
        limits: ServerLimits = ServerLimits(),
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        host, port = parse_listen(listen_addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # [::] takes IPv4 too
            self._sock.bind((host, port))
            self._sock.listen(128)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self.host, self.port = host, self._sock.getsockname()[1]
        guarded = ClientAddress(app, trusted_proxies)
        config = uvicorn.Config(
            guarded,
            # The header deadline, and a response's head and body sent in one write (sidecar/web/coalesce.py).
            http=type("ServerProtocol", (header_deadline_protocol(limits.read_timeout), CoalescingWrites), {}),
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.keep_alive,
            timeout_graceful_shutdown=5,
        )
        self._server = _EmbeddedServer(config)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        """Stop accepting; in-flight requests finish within the graceful timeout."""
        self._server.should_exit = True

    def close(self) -> None:
        """Release the socket of a server that never served (its construction's partner failed)."""
        self._sock.close()

    async def wait_started(self) -> None:
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
