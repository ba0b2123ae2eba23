"""A loopback JSON-RPC proxy in front of the real node that holds `block_results` above a height until released.

It pins the follower mid-backfill on purpose: its cursor stays below the gate while the chain runs on, and
its next batch requests wait in the proxy. A test can then break the node under a follower that is provably
in the middle of a backfill, not idle at the head.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from tests.sidecar.chain.loopback import serve_post


class GateProxy:
    """Forwards every request; a batch asking for `block_results` above `gate` waits until `release()`."""

    def __init__(self, upstream: str, gate: int) -> None:
        self._client = httpx.AsyncClient(base_url=upstream, timeout=10)
        self.gate = gate
        self.held = 0  # requests waiting at the gate now
        self.unanswered = 0  # requests the node did not answer (it was down)
        self._open = asyncio.Event()
        self.url = ""

    def release(self) -> None:
        self._open.set()

    def _gated(self, items: list[Any]) -> bool:
        for item in items:
            if isinstance(item, dict) and item.get("method") == "block_results":
                with contextlib.suppress(TypeError, ValueError):
                    if int(item.get("params", {}).get("height", 0)) > self.gate:
                        return True
        return False

    async def _forward(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        if self._gated(body if isinstance(body, list) else [body]) and not self._open.is_set():
            self.held += 1
            try:
                await self._open.wait()
            finally:
                self.held -= 1
        try:
            upstream = await self._client.post("/", content=raw, headers={"content-type": "application/json"})
        except httpx.TransportError:
            self.unanswered += 1
            return Response(status_code=502)  # the node is gone: what a reverse proxy answers
        return Response(upstream.content, status_code=upstream.status_code, media_type="application/json")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GateProxy]:
        try:
            async with serve_post(self._forward, "the gate proxy") as self.url:
                try:
                    yield self
                finally:
                    self.release()  # held requests must finish before the server can stop
        finally:
            await self._client.aclose()
