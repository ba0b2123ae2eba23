"""Shared pieces of the signer tests: queue intents, run the real signer, read the chain independently."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from virtengine.support.v1 import query_pb2, tx_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.waiting import async_wait_until
from sidecar.chain.keys import SigningKey, parse_key
from sidecar.chain.rpc import CometRpc
from sidecar.chain.signer import CrashPoint, Signer, SignerSettings
from sidecar.chain.subscription import websocket_url
from sidecar.chain.txbuild import FeePolicy, encode_msg
from sidecar.chain.txwatch import TxWatcher
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.secrets import Secret
from sidecar.store.db import Store
from sidecar.store.intents import queue_intent_txn
from tests.sidecar.chain.scan import support_public
from tests.sidecar.harness import read_rows

FEE = FeePolicy("uve", Decimal("0.025"), Decimal("1.3"), 2_000_000, 300_000)
UNSETTLED = ("queued", "signed", "broadcast")


def devnet_key(name: str) -> SigningKey:
    """The devnet account `name` as the signer would load it from a hex key file."""
    hex_key = hashlib.sha256(f"devnet-account:{name}".encode()).hexdigest()
    return parse_key(Secret(hex_key, f"test:{name}"), "virtengine", path="signing_key")


def settings(**changes: Any) -> SignerSettings:
    return replace(SignerSettings("virtengine-devnet-1", FEE, busy_interval=0.05, idle_interval=0.1), **changes)


@dataclass
class Rig:
    """A signer on a real SQLite file, talking to a real node, with its tx subscription running."""

    store: Store
    rpc: CometRpc
    signer: Signer
    metrics: Metrics
    stop: asyncio.Event
    watching: asyncio.Task[None] | None

    def confirmations(self, source: str) -> int:
        value = self.metrics.registry.get_sample_value("servicedesk_signer_confirmations_total", {"source": source})
        return int(value or 0)

    async def close(self) -> None:
        self.stop.set()
        if self.watching is not None:
            await self.watching
        await self.rpc.aclose()
        await self.store.close()


async def open_rig(
    db: Path,
    rpc_url: str,
    name: str = "sidecar",
    crash_at: CrashPoint | None = None,
    ws_url: str | None = "",
    health: HealthState | None = None,
    **changes: Any,
) -> Rig:
    """`ws_url` "" subscribes at the node's own websocket, None runs without a subscription (polling only)."""
    store = await Store.open(str(db))
    rpc = CometRpc(rpc_url, 10.0)
    metrics = Metrics()
    key = devnet_key(name)
    watcher = TxWatcher(ws_url or websocket_url(rpc_url), key.address, metrics) if ws_url is not None else None
    signer = Signer(
        rpc,
        store,
        key,
        settings(**changes),
        metrics,
        Auditor(store),
        watcher=watcher,
        crash_at=crash_at,
        health=health,
    )
    stop = asyncio.Event()
    watching = asyncio.create_task(watcher.subscription.run(stop)) if watcher is not None else None
    return Rig(store, rpc, signer, metrics, stop, watching)


def register_msg(
    sender: str, ticket_id: str, external_id: str, system: str = "jira"
) -> tx_pb2.MsgRegisterExternalTicket:
    return tx_pb2.MsgRegisterExternalTicket(
        sender=sender,
        resource_id=ticket_id,
        resource_type="support_request",
        external_system=system,
        external_ticket_id=external_id,
        external_url=f"https://desk.example/{external_id}",
    )


def external_id(ticket_id: str) -> str:
    return "SD-" + ticket_id.rsplit("/", 1)[-1]


async def queue_refs(store: Store, ticket_ids: list[str], sender: str, system: str = "jira") -> list[int]:
    """Queue one MsgRegisterExternalTicket per ticket, as outbound sync does."""

    def txn(conn: sqlite3.Connection) -> list[int]:
        out = []
        for ticket_id in ticket_ids:
            msg_type, raw = encode_msg(register_msg(sender, ticket_id, external_id(ticket_id), system))
            out.append(queue_intent_txn(conn, f"register:{ticket_id}:{system}", msg_type, ticket_id, raw))
        return out

    return await store.write("queue refs", txn)


async def queue_msgs(store: Store, items: list[tuple[str, str | None, Any]]) -> list[int]:
    """Queue arbitrary Msgs as (dedupe_key, ticket_id, msg)."""

    def txn(conn: sqlite3.Connection) -> list[int]:
        return [queue_intent_txn(conn, key, *_typed(ticket, msg)) for key, ticket, msg in items]

    return await store.write("queue msgs", txn)


def _typed(ticket: str | None, msg: Any) -> tuple[str, str | None, bytes]:
    msg_type, raw = encode_msg(msg)
    return msg_type, ticket, raw


def db_counts(db: Path) -> dict[str, int]:
    return dict(read_rows(db, "SELECT state, COUNT(*) FROM tx_intents GROUP BY state"))


def db_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return read_rows(db, sql, params)


async def settle(
    rig: Rig, timeout: float = 60.0, on_step: Callable[[dict[str, int]], None] | None = None
) -> dict[str, int]:
    """Step the signer until no intent is queued or in flight; return the counts by state. `on_step` sees the
    counts after each step (the benchmark notes when every tx was in the mempool)."""

    failure: list[BaseException] = []

    async def settled() -> bool:
        try:
            await rig.signer.step()
        except Exception as exc:  # stop at once and show it, rather than time out
            failure.append(exc)
            return True
        if on_step is not None:
            on_step(rig.signer.status.counts)
        return not any(rig.signer.status.counts.get(s) for s in UNSETTLED)

    await async_wait_until(settled, timeout=timeout, what="every intent included or dead", interval=0.0)
    if failure:
        raise failure[0]
    return rig.signer.status.counts


def create_tickets(node: DevnetNode, count: int) -> list[str]:
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as driver:
        return driver.create_tickets(count, [support_public()], per_tx=100)


async def tickets(node: DevnetNode, count: int) -> list[str]:
    """create_tickets off the event loop (the signer under test runs on it)."""
    return await asyncio.to_thread(create_tickets, node, count)


def chain_refs(node: DevnetNode, ticket_id: str) -> list[Any]:
    data = query_pb2.QueryExternalTicketRefsRequest(resource_id=ticket_id).SerializeToString().hex()
    response = node.rpc("abci_query", path="/virtengine.support.v1.Query/ExternalTicketRefs", data=data)["response"]
    answer = query_pb2.QueryExternalTicketRefsResponse.FromString(base64.b64decode(response.get("value") or ""))
    return list(answer.refs)


def linked_events(node: DevnetNode, first: int = 1) -> tuple[Counter[str], list[tuple[int, int, str]]]:
    """Every successful external-ref link per ticket id, and every failed tx (height, code, log), from blocks."""
    linked: Counter[str] = Counter()
    failed: list[tuple[int, int, str]] = []
    for height in range(first, node.height() + 1):
        result = node.rpc("block_results", height=height)
        for tx in result.get("txs_results") or []:
            if int(tx.get("code") or 0):
                failed.append((height, int(tx["code"]), str(tx.get("log", ""))))
                continue
            for event in tx.get("events") or []:
                attrs = {a["key"]: a.get("value", "") for a in event.get("attributes") or []}
                if event.get("type") == "support_event" and "payload_json" in attrs:
                    payload = json.loads(attrs["payload_json"])
                    if payload.get("event_type") == "support_external_ticket_linked":
                        linked[payload["ticket_id"]] += 1
    return linked, failed
