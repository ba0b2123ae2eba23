"""Async client of CometBFT's HTTP JSON-RPC. int64 parameters travel as strings, as the node wants."""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass
from typing import Any

import httpx

from sidecar.errors import ChainRpcError


@dataclass(frozen=True)
class NodeStatus:
    chain_id: str
    latest_height: int
    latest_block_time: str
    earliest_height: int
    catching_up: bool
    version: str


class CometRpc:
    """One long-lived HTTP client to the node; opened and closed by app.py."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> Any:
        """POST one JSON-RPC request; return `result` or raise ChainRpcError."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": _stringify(params)}
        return self._result(method, await self._post(method, body))

    async def _post(self, method: str, body: Any) -> Any:
        try:
            response = await self._client.post("/", json=body)
        except httpx.TimeoutException:
            raise ChainRpcError(f"node RPC {method} timed out at {self.url}", retryable=True) from None
        except httpx.HTTPError as exc:
            raise ChainRpcError(
                f"node RPC {method} unreachable at {self.url}: {type(exc).__name__}", retryable=True
            ) from None
        if response.status_code >= 500 and not response.content:
            raise ChainRpcError(f"node RPC {method} answered HTTP {response.status_code}", retryable=True)
        try:
            return response.json()
        except ValueError:
            raise ChainRpcError(
                f"node RPC {method} answered non-JSON (HTTP {response.status_code})", retryable=True
            ) from None

    def _result(self, method: str, doc: dict[str, Any]) -> Any:
        if doc.get("error"):
            err = doc["error"]
            detail = err.get("data") or err.get("message") or str(err)
            raise ChainRpcError(f"node RPC {method} failed: {detail}", retryable=_retryable_rpc_error(str(detail)))
        return doc.get("result")

    async def status(self) -> NodeStatus:
        result = await self.call("status")
        sync = result["sync_info"]
        return NodeStatus(
            chain_id=result["node_info"]["network"],
            latest_height=int(sync["latest_block_height"]),
            latest_block_time=sync.get("latest_block_time", ""),
            earliest_height=int(sync.get("earliest_block_height") or 1),
            catching_up=bool(sync.get("catching_up", False)),
            version=result["node_info"].get("version", ""),
        )

    async def block_results(self, height: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("block_results", height=height)
        return result

    async def block_results_range(self, first: int, last: int) -> list[dict[str, Any]]:
        """block_results of first..last in one JSON-RPC batch request (one round trip, one HTTP request)."""
        heights = range(first, last + 1)
        body = [{"jsonrpc": "2.0", "id": h, "method": "block_results", "params": {"height": str(h)}} for h in heights]
        docs = await self._post("block_results", body)
        if isinstance(docs, dict) and "error" in docs and "id" not in docs:
            limit = re.search(r"exceeds maximum \((\d+)\)", str(docs["error"].get("data", "")))
            if limit and len(heights) > 1:  # the node's rpc.max_request_batch_size: split and retry
                half = first + max(1, min(int(limit.group(1)), len(heights) // 2)) - 1
                return await self.block_results_range(first, half) + await self.block_results_range(half + 1, last)
            self._result("block_results", docs)
        docs = [docs] if isinstance(docs, dict) else docs  # CometBFT answers a one-item batch with an object
        if not isinstance(docs, list):
            raise ChainRpcError("node RPC block_results batch answered neither a list nor an object", retryable=True)
        by_id = {doc.get("id"): doc for doc in docs}
        results = []
        for height in heights:
            doc = by_id.get(height)
            if doc is None:
                raise ChainRpcError(f"node RPC block_results batch lacks height {height}", retryable=True)
            results.append(self._result("block_results", doc))
        return results

    async def block(self, height: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("block", height=height)
        return result

    async def abci_query(self, path: str, data: bytes, height: int = 0) -> dict[str, Any]:
        """Query the app; returns the `response` object (code, log, value base64, height)."""
        params: dict[str, Any] = {"path": path, "data": data.hex(), "prove": False}
        if height:
            params["height"] = height
        result = await self.call("abci_query", **params)
        response: dict[str, Any] = result["response"]
        return response

    async def broadcast_tx_sync(self, tx: bytes) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("broadcast_tx_sync", tx=base64.b64encode(tx).decode())
        return result

    async def tx(self, tx_hash: str) -> dict[str, Any] | None:
        """The included tx by hash, or None while it is not (yet) in a block."""
        try:
            # JSON-RPC over POST takes []byte params as base64 (the 0x-hex form is for GET URIs only).
            raw = base64.b64encode(bytes.fromhex(tx_hash.removeprefix("0x"))).decode()
            result: dict[str, Any] = await self.call("tx", hash=raw, prove=False)
        except ChainRpcError as exc:
            if "not found" in str(exc):
                return None
            raise
        return result

    async def aclose(self) -> None:
        await self._client.aclose()


def _stringify(params: dict[str, Any]) -> dict[str, Any]:
    """CometBFT decodes int64 from JSON strings only."""
    return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in params.items()}


def _retryable_rpc_error(detail: str) -> bool:
    permanent = (
        "is not available, lowest height is",
        "could not find results for height",
        "node is not persisting finalize block responses",
    )
    return not any(p in detail for p in permanent)
