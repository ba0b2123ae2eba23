"""A loopback JSON-RPC proxy in front of the real node that answers `block_results` of the newest block the
way CometBFT does in the moment between storing a block and storing its results."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.sidecar.chain.loopback import serve_post


class LaggingResultsProxy:
    """Forwards every request; the first `block_results` of each height at the node's head fails."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._client = httpx.AsyncClient(base_url=upstream, timeout=10)
        self.lagged: set[int] = set()
        self.url = ""

    async def _head(self) -> int:
        doc = (await self._client.post("/", json={"jsonrpc": "2.0", "id": 0, "method": "status"})).json()
        return int(doc["result"]["sync_info"]["latest_block_height"])

    async def _answer(self, item: dict[str, Any], head: int) -> dict[str, Any] | None:
        if item.get("method") != "block_results":
            return None
        height = int(item.get("params", {}).get("height", 0))
        if height < head or height in self.lagged:
            return None
        self.lagged.add(height)
        return {"jsonrpc": "2.0", "id": item.get("id"),
                "error": {"code": -32603, "message": "Internal error",
                          "data": f"could not find results for height #{height}"}}

    async def _forward(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        items = body if isinstance(body, list) else [body]
        head = await self._head()
        lagged = [await self._answer(item, head) for item in items]
        if any(lagged):
            pairs = zip(items, lagged, strict=True)
            answer: Any = [lag or (await self._client.post("/", json=item)).json() for item, lag in pairs]
        else:
            answer = (await self._client.post("/", json=body)).json()
        return JSONResponse(answer if isinstance(body, list) else answer[0] if isinstance(answer, list) else answer)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LaggingResultsProxy]:
        try:
            async with serve_post(self._forward, "the lagging proxy") as self.url:
                yield self
        finally:
            await self._client.aclose()
