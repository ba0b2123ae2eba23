"""A loopback JSON-RPC proxy in front of the real node that can answer some methods itself, the way a
misbehaving node, a load balancer or a proxy would: an error for `/tx`, a broadcast that never reaches the
node, a `/status` for another chain or an older height. Everything else is the node's own answer."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.sidecar.chain.loopback import serve_post


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self._client = httpx.AsyncClient(base_url=upstream, timeout=10)
        self.errors: dict[str, str] = {}  # method -> the error `data` answered instead of forwarding
        self.swallow_broadcasts = False  # answer broadcast_tx_sync "accepted" without telling the node
        self.chain_id: str | None = None  # /status answers for this chain
        self.height: int | None = None  # /status answers this latest height
        self.answered = Counter[str]()  # method -> answers the proxy made up
        self.url = ""

    def _made_up(self, item: dict[str, Any]) -> dict[str, Any] | None:
        method = str(item.get("method"))
        if method in self.errors:
            self.answered[method] += 1
            return {"jsonrpc": "2.0", "id": item.get("id"),
                    "error": {"code": -32603, "message": "Internal error", "data": self.errors[method]}}
        if method == "broadcast_tx_sync" and self.swallow_broadcasts:
            self.answered[method] += 1
            return {"jsonrpc": "2.0", "id": item.get("id"),
                    "result": {"code": 0, "data": "", "log": "", "codespace": "", "hash": ""}}
        return None

    async def _forward(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        items = body if isinstance(body, list) else [body]
        answers = []
        for item in items:
            answer = self._made_up(item) or (await self._client.post("/", json=item)).json()
            if item.get("method") == "status" and "result" in answer:
                answer = self._status(answer)
            answers.append(answer)
        return JSONResponse(answers if isinstance(body, list) else answers[0])

    def _status(self, answer: dict[str, Any]) -> dict[str, Any]:
        if self.chain_id is not None:
            answer["result"]["node_info"]["network"] = self.chain_id
            self.answered["status"] += 1
        if self.height is not None:
            answer["result"]["sync_info"]["latest_block_height"] = str(self.height)
            self.answered["status"] += 1
        return answer

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RpcProxy]:
        try:
            async with serve_post(self._forward, "the rpc proxy") as self.url:
                yield self
        finally:
            await self._client.aclose()
