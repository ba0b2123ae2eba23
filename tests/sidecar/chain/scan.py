"""An independent scan of support events over block_results: what the follower must have seen.

Written separately from sidecar.chain.events on purpose, so a shared mistake cannot hide.
"""

from __future__ import annotations

import base64
import hashlib

import httpx

from devnet.driver import DevAccount


def _ids(events: list[dict[str, object]]) -> list[str]:
    out = []
    for event in events:
        if event.get("type") != "support_event":
            continue
        attrs = {a["key"]: a["value"] for a in event.get("attributes") or []}  # type: ignore[union-attr]
        out.append(attrs["event_id"])
    return out


def scan_event_ids(rpc_url: str, first: int, last: int) -> list[str]:
    ids: list[str] = []
    with httpx.Client(base_url=rpc_url, timeout=10) as client:
        for height in range(first, last + 1):
            result = client.get("/block_results", params={"height": str(height)}).json()["result"]
            block = result.get("finalize_block_events") or []

            def mode(event: dict[str, object]) -> str:
                attrs = event.get("attributes") or []
                return next((a["value"] for a in attrs if a["key"] == "mode"), "")  # type: ignore[index,union-attr]

            ids += _ids([e for e in block if mode(e) == "BeginBlock"])
            for tx in result.get("txs_results") or []:
                if not tx.get("code"):
                    ids += _ids(tx.get("events") or [])
            ids += _ids([e for e in block if mode(e) != "BeginBlock"])
    return ids


def support_secret() -> str:
    """The devnet sidecar account's X25519 key, as the sidecar's support_private_key secret."""
    return base64.b64encode(hashlib.sha256(b"devnet-box:sidecar").digest()).decode()


def support_public() -> bytes:
    return DevAccount.from_name("sidecar").box_public
