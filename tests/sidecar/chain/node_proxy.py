"""A loopback JSON-RPC proxy in front of real nodes: it can be pointed at another node while a
sidecar follows through it (a node re-genesised or swapped behind the URL), and it can rewrite the
payload_json of chosen support events in block_results answers, to stand for a chain whose app
checks envelopes less strictly than the devnet's does (the sidecar must not rely on that check), or
answer block_results for another height than the one asked, as a broken node or cache would."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.sidecar.chain.loopback import serve_post

# event_id -> the new payload_json text, from the event's parsed payload_json.
Rewrite = Callable[[dict[str, Any]], str]


class NodeProxy:
    def __init__(self, upstream: str, rewrites: dict[str, Rewrite] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.rewrites = dict(rewrites or {})
        self.rewritten: set[str] = set()
        self.wrong_heights_from: int | None = None  # block_results from this height answer for the next one
        self.earliest: tuple[int, str] | None = None  # /status names this (height, hash) as its earliest block
        self.times: dict[tuple[str, str], list[float]] = {}  # (upstream, method) -> when each came (monotonic)
        self.batches: list[list[str]] = []  # the methods of each HTTP request forwarded, in order
        self.url = ""
        self._client = httpx.AsyncClient(timeout=15)

    def calls(self, upstream: str, method: str) -> int:
        """How many `method` calls went to `upstream`."""
        return len(self.times.get((upstream, method), ()))

    def point_at(self, upstream: str) -> None:
        """Every request from now on goes to `upstream`."""
        self.upstream = upstream.rstrip("/")

    def _rewrite_event(self, event: Any) -> None:
        if not isinstance(event, dict) or event.get("type") != "support_event":
            return
        attrs = {a.get("key"): a for a in event.get("attributes") or []}
        event_id = (attrs.get("event_id") or {}).get("value")
        rule = self.rewrites.get(event_id or "")
        if rule is None or "payload_json" not in attrs:
            return
        attrs["payload_json"]["value"] = rule(json.loads(attrs["payload_json"]["value"]))
        self.rewritten.add(str(event_id))

    def _rewrite(self, doc: Any) -> None:
        result = doc.get("result") if isinstance(doc, dict) else None
        if not isinstance(result, dict):
            return
        sync = result.get("sync_info")
        if self.earliest is not None and isinstance(sync, dict):  # a node that pruned below this block
            sync["earliest_block_height"], sync["earliest_block_hash"] = str(self.earliest[0]), self.earliest[1]
        shift = self.wrong_heights_from is not None and "finalize_block_events" in result
        if shift and int(result["height"]) >= (self.wrong_heights_from or 0):
            result["height"] = str(int(result["height"]) + 1)
        for tx in result.get("txs_results") or []:
            for event in tx.get("events") or []:
                self._rewrite_event(event)
        for event in result.get("finalize_block_events") or []:
            self._rewrite_event(event)

    async def _forward(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        upstream = self.upstream
        for item in body if isinstance(body, list) else [body]:
            self.times.setdefault((upstream, str(item.get("method"))), []).append(time.monotonic())
        self.batches.append([str(item.get("method")) for item in (body if isinstance(body, list) else [body])])
        answer = (await self._client.post(upstream + "/", json=body)).json()
        for doc in answer if isinstance(answer, list) else [answer]:
            self._rewrite(doc)
        return JSONResponse(answer)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[NodeProxy]:
        try:
            async with serve_post(self._forward, "the node proxy") as self.url:
                yield self
        finally:
            await self._client.aclose()
