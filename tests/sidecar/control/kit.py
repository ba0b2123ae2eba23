"""What the control API's tests share: a real Store, a ControlServer over it in this process on loopback and
a stub that calls it, the CLI run in a thread, and the rows most of them start from (a mirrored ticket linked
to Jira, a priority conflict parked for the operator)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2_grpc

from sidecar.cli import main
from sidecar.control.auth import ControlSecurity
from sidecar.control.deps import ControlDeps
from sidecar.control.server import ControlServer
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.store.db import Store
from sidecar.store.inbound import record_conflict_txn
from sidecar.store.refs import RefRow, record_ref_txn
from sidecar.store.tickets import apply_event_txn
from tests.sidecar.chain.signer_kit import db_rows
from tests.sidecar.sync.rig import created

Stub = control_pb2_grpc.ControlStub
CUSTOMER = "virtengine1customer0000000000000000000000000000"
TICKET = f"{CUSTOMER}/support/1"
UNKNOWN = f"{CUSTOMER}/support/9"


def mirror_ticket(conn: sqlite3.Connection, ticket_id: str = TICKET, linked: bool = True) -> None:
    """The ticket in the mirror (open, high, technical: the follower folds its creation at height 10), with a
    verified Jira ref (10001, SD-1) when linked."""
    now = time.time()
    event = replace(
        created(1),
        event_id=f"created-{ticket_id}",
        height=10,
        ticket_id=ticket_id,
        sender=CUSTOMER,
        submitter=CUSTOMER,
        timestamp=int(now),
    )
    apply_event_txn(conn, event, None, now)
    if linked:
        record_ref_txn(conn, RefRow(ticket_id, "jira", "10001", "SD-1", None, False), now)


def park_priority_conflict(conn: sqlite3.Connection, ticket_id: str, now: float) -> int:
    """An open conflict at Jira left to the operator: from high, the chain says urgent and the desk low."""
    return record_conflict_txn(
        conn,
        ticket_id,
        "jira",
        "priority",
        base="high",
        chain_value="urgent",
        desk_value="low",
        strategy="manual",
        rule="manual",
        winner=None,
        now=now,
    )


def desk_deps(
    store: Store, outbound: Iterable[str] = ("jira",), inbound: Iterable[str] = ("jira",), **more: Any
) -> ControlDeps:
    """Deps as app.py builds them for a sidecar serving these desks: a fresh health view, audit into `store`."""
    return ControlDeps(store, HealthState(), Auditor(store), list(outbound), list(inbound), **more)


@contextlib.asynccontextmanager
async def opened_store(path: Path, seed: Callable[[sqlite3.Connection], object] | None = None) -> AsyncIterator[Store]:
    """A real Store file (migrations applied), with `seed` written in one transaction first; closed on the way out."""
    store = await Store.open(str(path))
    try:
        if seed is not None:
            await store.write("seed", seed)
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running_server(
    deps: ControlDeps, listen: str = "127.0.0.1:0", security: ControlSecurity | None = None
) -> AsyncIterator[ControlServer]:
    """A ControlServer serving `deps` in this process, stopped at once on the way out."""
    server = ControlServer(listen, deps, security)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


def loopback(server: ControlServer) -> str:
    """The address a client dials for a server listening on 127.0.0.1."""
    return f"127.0.0.1:{server.port}"


@contextlib.asynccontextmanager
async def dial(address: str) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield Stub(channel)


@contextlib.asynccontextmanager
async def control_stub(deps: ControlDeps) -> AsyncIterator[Stub]:
    """A stub calling a ControlServer over `deps`, in this process on a loopback port."""
    async with running_server(deps) as server, dial(loopback(server)) as stub:
        yield stub


def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """Rows as committed, read on a read-only connection of their own."""
    return db_rows(Path(store.path), sql)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in a thread: it makes blocking gRPC calls to the server on this event loop."""
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
