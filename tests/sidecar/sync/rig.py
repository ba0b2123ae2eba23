"""A desk worker on a real SQLite store, driven step by step against a desk simulator on one manual clock.

Chain events are committed through the store's real inbox path and dispatched into jobs; `run_due`
steps the worker until no job is due at the current clock time. Time moves only when a test says so.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.config_schema import RetryConfig
from sidecar.desks.base import Desk
from sidecar.desks.waldur import WaldurDesk
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn
from sidecar.store.jobs import Job, dispatch_inbox_txn, list_jobs
from sidecar.store.records import ExternalTicketLinked, RequestCreated, StatusChanged, SupportEvent
from sidecar.sync.content import ContentOpener
from sidecar.sync.outbound import DeskWorker, WorkerSettings
from tests.sidecar.desks.support import WALDUR_TOKEN, waldur_config

CHAIN = "virtengine-devnet-1"
CUSTOMER = "virtengine1customer000000000000000000000000000"
AGENT = "virtengine1agent00000000000000000000000000000000"
IDLE = 999.0  # what step() returns when no job was due


def ticket_id(n: int) -> str:
    return f"ticket-{n:04d}"


def created(n: int) -> RequestCreated:
    return RequestCreated(
        event_id=f"created-{n}",
        event_type="support_request_created",
        height=0,
        position=0,
        sequence=1,
        ticket_id=ticket_id(n),
        sender=CUSTOMER,
        timestamp=0,
        payload={},
        ticket_number=f"SUP-{n:06d}",
        submitter=CUSTOMER,
        category="technical",
        priority="high",
        status="open",
    )


def linked(n: int, desk: str, external_id: str) -> ExternalTicketLinked:
    return ExternalTicketLinked(
        event_id=f"linked-{n}-{desk}",
        event_type="support_external_ticket_linked",
        height=0,
        position=1,
        sequence=2,
        ticket_id=ticket_id(n),
        sender=AGENT,
        timestamp=0,
        payload={},
        external_system=desk,
        external_ticket_id=external_id,
        linked_by=AGENT,
    )


def status_changed(n: int, old: str, new: str) -> StatusChanged:
    return StatusChanged(
        event_id=f"status-{n}-{new}",
        event_type="support_request_status_changed",
        height=0,
        position=2,
        sequence=3,
        ticket_id=ticket_id(n),
        sender=AGENT,
        timestamp=0,
        payload={},
        old_status=old,
        new_status=new,
        updated_by=AGENT,
    )


@dataclass
class Rig:
    store: Store
    desk: Desk
    clock: ManualClock
    retry: RetryConfig = field(default_factory=lambda: RetryConfig(max_retries=5, initial_backoff=1.0))
    height: int = 99
    worker: DeskWorker | None = None
    own_senders: tuple[str, ...] = ()  # the sidecar's chain address, where a test has its inbound Msgs land

    @classmethod
    async def open(cls, path: Path, desk: Desk, clock: ManualClock, **changes: Any) -> Rig:
        store = await Store.open(str(path))
        await store.write("cursor", init_cursor_txn, CHAIN, 99)
        rig = cls(store, desk, clock, **changes)
        rig.worker = DeskWorker(
            desk,
            store,
            ContentOpener(store, None),
            Auditor(store, clock=clock),
            Metrics(),
            HealthState(),
            rig.retry,
            WorkerSettings(concurrency=4, idle_wait=IDLE),
            clock=clock,
            own_senders=rig.own_senders,
        )
        return rig

    async def close(self) -> None:
        await self.desk.aclose()
        await self.store.close()

    async def chain(self, *events: SupportEvent) -> None:
        """Commit the events at the next height and turn them into jobs for this desk."""
        self.height += 1
        placed = [_at(event, self.height, i) for i, event in enumerate(events)]
        await self.store.write("commit", commit_blocks_txn, CHAIN, [BlockBatch(self.height, placed, {})])
        await self.store.write("dispatch", dispatch_inbox_txn, [self.desk.name], [], 100, self.clock())

    async def run_due(self, limit: int = 50) -> None:
        """Step the worker until nothing is due at the current clock time (idle, or paused by Retry-After)."""
        assert self.worker is not None
        for _ in range(limit):
            if await self.worker.step() > 0:
                return
        raise AssertionError(f"the worker still had due jobs after {limit} steps")

    async def jobs(self) -> list[Job]:
        return list(reversed(await self.store.read("jobs", list_jobs, None, self.desk.name, 100)))

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(sql, args)]

        return await self.store.read("query", run)

    async def audit(self, event_type: str) -> list[dict[str, Any]]:
        rows = await self.query(
            "SELECT ticket_id, status, error, details_json FROM audit WHERE event_type = ? ORDER BY id", event_type
        )
        return [{"ticket_id": r[0], "status": r[1], "error": r[2], "details": json.loads(r[3])} for r in rows]


def _at(event: SupportEvent, height: int, position: int) -> SupportEvent:
    return replace(event, height=height, position=position, event_id=f"{event.event_id}@{height}")


class TamperingTransport(httpx.AsyncBaseTransport):
    """The desk client's transport seam: real HTTP to the simulator, with answers rewritten on the way
    back for the requests a test names (a desk answer the sidecar cannot have expected)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport(retries=0)
        self.rules: list[tuple[str, str, Any, int | None]] = []  # (method, path prefix, body -> bytes, status)
        self.tampered: list[str] = []

    def rewrite(self, method: str, path_prefix: str, change: Any, status: int | None = None) -> None:
        """The next answer to `method` on `path_prefix` gets `change(body)` as its body (and `status`)."""
        self.rules.append((method, path_prefix, change, status))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        for i, (method, prefix, change, status) in enumerate(self.rules):
            if request.method == method and request.url.path.startswith(prefix):
                del self.rules[i]
                body = await response.aread()
                self.tampered.append(f"{method} {request.url.path}")
                new = change(body)
                if inspect.isawaitable(new):
                    new = await new
                headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
                return httpx.Response(status or response.status_code, headers=headers, content=new)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def waldur_rig(tmp_path: Path, rigs: list[Rig], sim: WaldurSim, clock: ManualClock, **config: Any) -> Rig:
    """A rig on the real Waldur client for `sim` (`config`: WaldurConfig changes), closed with `rigs`."""
    desk = WaldurDesk(waldur_config(sim, **config), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    return rig
