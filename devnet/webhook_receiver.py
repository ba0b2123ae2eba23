"""A loopback HTTP endpoint that records webhook deliveries exactly as received (raw bytes).

Tests point a simulator at it to check signatures, identifiers, retries and duplicates; it can be
scripted to answer with error statuses so the sender's retry path is exercised.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devnet.sim_runner import SimRunner
from devnet.waiting import async_wait_until, wait_until


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records every POST to any path; `respond_with(503, 503)` scripts the next answers."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._script: list[int] = []
        self._lock = threading.Lock()
        self.runner = SimRunner(Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])]))

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            status = self._script.pop(0) if self._script else 200
            self.deliveries.append(
                Delivery(request.url.path, {k.lower(): v for k, v in request.headers.items()}, body, status)
            )
        return Response(status_code=status)

    def respond_with(self, *statuses: int) -> None:
        """Answer the next deliveries with these statuses (then 200 again)."""
        with self._lock:
            self._script.extend(statuses)

    def url(self, path: str = "/hook") -> str:
        return self.runner.base_url + path

    def received(self, header: str | None = None, value: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if header is None or d.headers.get(header.lower()) == value]

    def wait_for(self, count: int, timeout: float = 5.0, **match: str) -> list[Delivery]:
        """Block until at least `count` deliveries (optionally with header=value) have arrived."""
        (header, value) = next(iter(match.items())) if match else (None, None)

        def enough() -> list[Delivery] | None:
            got = self.received(header.replace("_", "-") if header else None, value)
            return got if len(got) >= count else None

        return wait_until(enough, timeout=timeout, what=f"{count} webhook deliveries")

    async def async_wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        async def enough() -> list[Delivery] | None:
            got = self.received()
            return got if len(got) >= count else None

        return await async_wait_until(enough, timeout=timeout, what=f"{count} webhook deliveries")

    def start(self) -> WebhookReceiver:
        self.runner.start()
        return self

    def stop(self) -> None:
        self.runner.stop()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
