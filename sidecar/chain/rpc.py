"""Async client of CometBFT's HTTP JSON-RPC. int64 parameters travel as strings, as the node wants.

Answers are parsed with size and depth limits, and the ones the follower builds on are checked
for shape and for answering the height that was asked, so a broken or foreign endpoint becomes a
ChainRpcError rather than a crash or a silently wrong block.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar import boundedjson
from sidecar.chain.node_http import NodeHttp, NodeHttpError
from sidecar.errors import ChainRpcError
from sidecar.urls import public_url

# One answer is at most a batch of `chunk` block_results (or one block): CometBFT's own limits
# (consensus max_bytes 21 MiB a block, rpc max_body_bytes 1 MB by default) are far below this.
MAX_ANSWER_BYTES = 256 * 1024 * 1024
MAX_ANSWER_DEPTH = 64  # CometBFT's JSON nests about ten levels deep
# Connections to the node, all kept alive: the follower's window, the signer and the sync's queries at once
# (more calls wait their turn). The node's own cap, rpc.max_open_connections, is 900 by default.
NODE_CONNECTIONS = 32
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # requests are ours: compact, strict JSON


class NodeAnswerMismatch(ChainRpcError):
    """The node answered for another height than the one asked: never retried, never used."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class NodeStatus:
    chain_id: str
    latest_height: int
    latest_block_time: str
    earliest_height: int
    catching_up: bool
    version: str
    earliest_block_hash: str = ""  # identifies the chain instance: a re-genesised node has another


class CometRpc:
    """One long-lived client of the node's JSON-RPC; opened and closed by app.py. Its HTTP is NodeHttp
    (sidecar/chain/node_http.py): the one request shape the node needs, at a fifth of httpx's CPU per call."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._http = NodeHttp(self.url, timeout, NODE_CONNECTIONS, MAX_ANSWER_BYTES)
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> Any:
        """POST one JSON-RPC request; return `result` or raise ChainRpcError."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": _stringify(params)}
        return self._result(method, await self._post(method, body))

    async def _post(self, method: str, body: Any) -> Any:
        try:
            status, content = await self._http.post(_ENCODER.encode(body).encode())
        except NodeHttpError as exc:
            where = public_url(self.url)
            if exc.timed_out:
                raise ChainRpcError(f"node RPC {method} timed out at {where}", retryable=True) from None
            raise ChainRpcError(f"node RPC {method} unreachable at {where}: {exc}", retryable=True) from None
        if status >= 500 and not content:
            raise ChainRpcError(f"node RPC {method} answered HTTP {status}", retryable=True)
        try:
            return boundedjson.loads(content, max_bytes=MAX_ANSWER_BYTES, max_depth=MAX_ANSWER_DEPTH)
        except boundedjson.JsonLimitError as exc:
            raise ChainRpcError(
                f"node RPC {method} answered unusable JSON (HTTP {status}): {exc}", retryable=True
            ) from None

    def _result(self, method: str, doc: Any) -> Any:
        if not isinstance(doc, dict):
            raise ChainRpcError(f"node RPC {method} answered a {type(doc).__name__}, not an object", retryable=True)
        if doc.get("error"):
            err = doc["error"]
            detail = (err.get("data") or err.get("message") or str(err)) if isinstance(err, dict) else str(err)
            raise ChainRpcError(f"node RPC {method} failed: {detail}", retryable=_retryable_rpc_error(str(detail)))
        return doc.get("result")

    async def status(self) -> NodeStatus:
        return _status_of(await self.call("status"))

    async def block_results(self, height: int) -> dict[str, Any]:
        return _results_of(height, await self.call("block_results", height=height))

    async def block_results_range(self, first: int, last: int) -> list[dict[str, Any]]:
        """block_results of first..last in one JSON-RPC batch request (one round trip, one HTTP request)."""
        heights = range(first, last + 1)
        by_id = await self._batch_answers(_block_results_calls(heights))
        if by_id is None:  # over the node's rpc.max_request_batch_size: split and retry
            half = first + max(1, len(heights) // 2) - 1
            return await self.block_results_range(first, half) + await self.block_results_range(half + 1, last)
        return self._results_by_height(by_id, heights)

    async def block_results_checked(self, first: int, last: int) -> tuple[list[dict[str, Any]], NodeStatus]:
        """block_results of first..last and the node's status in one JSON-RPC batch: one HTTP request, so
        one node answered both, and its status says which chain instance the results are from (a node
        swapped behind the URL between two requests cannot slip results past the check). A node whose
        batch limit is below these calls gets the results split, then its status asked after them."""
        heights = range(first, last + 1)
        calls = [*_block_results_calls(heights), {"jsonrpc": "2.0", "id": "status", "method": "status", "params": {}}]
        by_id = await self._batch_answers(calls)
        if by_id is None:
            return await self.block_results_range(first, last), await self.status()
        return self._results_by_height(by_id, heights), _status_of(self._result("status", _answer(by_id, "status")))

    def _results_by_height(self, by_id: dict[Any, Any], heights: range) -> list[dict[str, Any]]:
        """Each height's block_results from a batch's answers, checked to be for that height."""
        return [_results_of(height, self._result("block_results", _answer(by_id, height))) for height in heights]

    async def _batch_answers(self, calls: list[dict[str, Any]]) -> dict[Any, Any] | None:
        """The answers of one JSON-RPC batch by id; None when the node refused it for its size (and more
        than one call was asked). Any other refusal of the whole batch raises."""
        method = str(calls[0]["method"])
        docs = await self._post(method, calls)
        if isinstance(docs, dict) and "error" in docs and "id" not in docs:
            error = docs["error"]
            detail = str(error.get("data", "")) if isinstance(error, dict) else ""
            if len(calls) > 1 and re.search(r"exceeds maximum \(\d+\)", detail):
                return None
            self._result(method, docs)
        docs = [docs] if isinstance(docs, dict) else docs  # CometBFT answers a one-item batch with an object
        if not isinstance(docs, list):
            raise ChainRpcError(f"node RPC {method} batch answered neither a list nor an object", retryable=True)
        return {doc.get("id"): doc for doc in docs if isinstance(doc, dict)}

    async def block(self, height: int) -> dict[str, Any]:
        result = await self.call("block", height=height)
        try:
            answered = result["block"]["header"]["height"]
        except (KeyError, TypeError):
            raise ChainRpcError("node RPC block answered without a header height", retryable=True) from None
        if str(answered) != str(height):
            raise NodeAnswerMismatch(f"node RPC block answered height {str(answered)[:20]} when asked for {height}")
        block: dict[str, Any] = result
        return block

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

    async def broadcast_txs_sync(self, txs: Sequence[bytes]) -> list[dict[str, Any] | ChainRpcError]:
        """broadcast_tx_sync of each tx in one JSON-RPC batch request: one round trip instead of one per tx.

        The node runs a batch's calls one after another in its order, so CheckTx meets consecutive sequences
        as it would one request at a time. Each answer is that call's result or its error; a failed request
        raises (any prefix of the txs may then have been checked, as with one broadcast that timed out).
        Past the node's rpc.max_request_batch_size the batch is split, nothing of it having run."""
        body = [
            {
                "jsonrpc": "2.0",
                "id": index,
                "method": "broadcast_tx_sync",
                "params": {"tx": base64.b64encode(tx).decode()},
            }
            for index, tx in enumerate(txs)
        ]
        by_id = await self._batch_answers(body)
        if by_id is None:  # over the node's rpc.max_request_batch_size: split, nothing of it having run
            cut = max(1, len(txs) // 2)
            return await self.broadcast_txs_sync(txs[:cut]) + await self.broadcast_txs_sync(txs[cut:])
        answers: list[dict[str, Any] | ChainRpcError] = []
        for index in range(len(txs)):
            doc = _answer(by_id, index)
            try:
                result = self._result("broadcast_tx_sync", doc)
            except ChainRpcError as exc:
                answers.append(exc)
                continue
            if not isinstance(result, dict):
                raise ChainRpcError("node RPC broadcast_tx_sync answered no result object", retryable=True)
            answers.append(result)
        return answers

    async def tx(self, tx_hash: str) -> dict[str, Any] | None:
        """The included tx by hash; None only on the node's exact answer for an unknown hash (CometBFT
        rpc/core/tx.go: `fmt.Errorf("tx (%X) not found", hash)`). Any other failure raises: an error text
        that merely contains "not found" (a proxy, a pruned store) proves nothing about the tx."""
        raw = bytes.fromhex(tx_hash.removeprefix("0x"))
        # JSON-RPC over POST takes []byte params as base64 (the 0x-hex form is for GET URIs only).
        params = {"hash": base64.b64encode(raw).decode(), "prove": False}
        doc = await self._post("tx", {"jsonrpc": "2.0", "id": next(self._ids), "method": "tx", "params": params})
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict) and error.get("data") == f"tx ({raw.hex().upper()}) not found":
            return None
        result = self._result("tx", doc)
        if not isinstance(result, dict):  # a blank answer is not the node's "not found"
            raise ChainRpcError("node RPC tx answered no result object", retryable=True)
        return result

    async def aclose(self) -> None:
        await self._http.aclose()


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _block_results_calls(heights: range) -> list[dict[str, Any]]:
    return [{"jsonrpc": "2.0", "id": h, "method": "block_results", "params": {"height": str(h)}} for h in heights]


def _answer(by_id: dict[Any, Any], call_id: int | str) -> Any:
    doc = by_id.get(call_id)
    if doc is None:
        raise ChainRpcError(f"node RPC batch lacks the answer to {call_id}", retryable=True)
    return doc


def _status_of(result: Any) -> NodeStatus:
    try:
        sync, info = result["sync_info"], result["node_info"]
        return NodeStatus(
            chain_id=_text(info["network"]),
            latest_height=int(sync["latest_block_height"]),
            latest_block_time=_text(sync.get("latest_block_time", "")),
            earliest_height=int(sync.get("earliest_block_height") or 1),
            catching_up=bool(sync.get("catching_up", False)),
            version=_text(info.get("version", "")),
            earliest_block_hash=_text(sync.get("earliest_block_hash") or ""),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"node RPC status answered a malformed status ({type(exc).__name__})"
        raise ChainRpcError(problem, retryable=True) from None


def _results_of(height: int, result: Any) -> dict[str, Any]:
    """A block_results answer, checked to be an object for exactly `height` (a node answering for
    another height is switched, reset or broken: its blocks must never reach the cursor)."""
    if not isinstance(result, dict):
        raise ChainRpcError(f"node RPC block_results for height {height} is not an object", retryable=True)
    answered = result.get("height")
    if str(answered) != str(height):
        raise NodeAnswerMismatch(f"node RPC block_results answered height {str(answered)[:20]} when asked for {height}")
    return result


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
