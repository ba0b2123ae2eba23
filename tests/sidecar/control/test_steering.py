"""Pause, Resume, ResyncSequence and WatchEvents over real gRPC: an in-process server over a real store,
then the running sidecar on the devnet with the Jira simulator (a paused desk gets nothing, across a
restart, until it is resumed)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from virtengine.servicedesk.v1 import control_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from sidecar.control.deps import ControlDeps
from sidecar.observe.activity import Activity, ActivityFeed, WatchFilter
from sidecar.store.pauses import PauseBook
from tests.sidecar.chain.signer_kit import db_rows
from tests.sidecar.control.kit import Stub, control_stub, desk_deps, opened_store
from tests.sidecar.harness import running_app
from tests.sidecar.sync.test_outbound_e2e import RECIPIENTS, desk_env, desk_flags

SIDECAR = DevAccount.from_name("sidecar")


@contextlib.asynccontextmanager
async def control_over(db: Path) -> AsyncIterator[tuple[Stub, ControlDeps]]:
    """A control server as app.py wires it (pause book loaded from the store, a feed), over `db`."""
    async with opened_store(db) as store:
        deps = desk_deps(store, pauses=await PauseBook.load(store), activity=ActivityFeed())
        async with control_stub(deps) as stub:
            yield stub, deps


def shown(pauses: Any) -> list[tuple[str, str]]:
    return [(p.direction, p.desk) for p in pauses]


async def refused(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request)
    return caught.value.code(), caught.value.details() or ""


async def test_pauses_are_persisted_audited_and_lifted_by_direction_and_desk(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with control_over(db) as (control, deps):
        book = deps.pauses
        assert book is not None
        for call, request, code, field in (
            (control.Pause, control_pb2.PauseRequest(direction="up"), grpc.StatusCode.INVALID_ARGUMENT, "direction:"),
            (control.Pause, control_pb2.PauseRequest(desk="zendesk"), grpc.StatusCode.INVALID_ARGUMENT, "desk:"),
            (control.Pause, control_pb2.PauseRequest(desk="waldur"), grpc.StatusCode.FAILED_PRECONDITION, "desk:"),
            (control.Resume, control_pb2.ResumeRequest(direction="up"), grpc.StatusCode.INVALID_ARGUMENT, "direction:"),
            (control.Resume, control_pb2.ResumeRequest(desk="waldur"), grpc.StatusCode.FAILED_PRECONDITION, "desk:"),
        ):
            code_seen, detail = await refused(call, request)
            assert code_seen == code and detail.startswith(field), (request, code_seen, detail)
        assert db_rows(db, "SELECT * FROM pauses") == []  # a refused call changed nothing

        paused = await control.Pause(
            control_pb2.PauseRequest(direction="outbound", desk="jira", reason="desk migration\n" + "x" * 500)
        )
        assert shown(paused.pauses) == [("outbound", "jira")]
        first = paused.pauses[0]
        assert (
            first.by.startswith("peer:ipv4:127.0.0.1:") and first.since and first.reason.startswith("desk migration x")
        )
        assert len(first.reason) == 200
        assert book.is_paused("outbound", "jira") and not book.is_paused("inbound", "jira")
        again = await control.Pause(control_pb2.PauseRequest(direction="outbound", desk="jira", reason="other"))
        assert list(again.pauses) == [first]  # already paused: the first pause (start, reason) stands
        both = await control.Pause(control_pb2.PauseRequest(reason="chain upgrade"))
        assert shown(both.pauses) == [("inbound", ""), ("outbound", ""), ("outbound", "jira")]
        assert book.is_paused("inbound", "jira") and book.is_paused("inbound", "waldur")

    # A restart: a new book and a new server over the same file see the pauses.
    async with control_over(db) as (control, deps):
        book = deps.pauses
        assert book is not None
        assert shown(book.pauses) == [("inbound", ""), ("outbound", ""), ("outbound", "jira")]
        lifted = await control.Resume(control_pb2.ResumeRequest(direction="outbound", desk="jira"))
        assert lifted.resumed == 1
        assert shown(lifted.pauses) == [("inbound", ""), ("outbound", "")]
        assert book.is_paused("outbound", "jira")  # the pause of every desk still holds it
        none = await control.Resume(control_pb2.ResumeRequest(direction="outbound", desk="jira"))
        assert none.resumed == 0
        everything = await control.Resume(control_pb2.ResumeRequest())
        assert everything.resumed == 2 and list(everything.pauses) == []
        assert not book.is_paused("outbound", "jira") and not book.is_paused("inbound", "jira")

    assert db_rows(db, "SELECT * FROM pauses") == []
    audits = db_rows(
        db,
        "SELECT event_type, actor, desk, direction, details_json FROM audit WHERE event_type IN "
        "('paused', 'resumed') ORDER BY id",
    )
    assert all(actor.startswith("peer:ipv4:127.0.0.1:") for _, actor, _, _, _ in audits)  # the caller
    assert [(e, desk, direction) for e, _, desk, direction, _ in audits] == [
        ("paused", "jira", "outbound"),
        ("paused", "jira", "outbound"),
        ("paused", None, None),
        ("resumed", "jira", "outbound"),
        ("resumed", "jira", "outbound"),
        ("resumed", None, None),
    ]
    details = [json.loads(a[4]) for a in audits]
    assert details[0]["added"] == 1 and details[1]["added"] == 0 and details[2]["added"] == 2
    assert len(details[0]["reason"]) == 200
    assert [d["count"] for d in details[3:]] == [1, 0, 2]


async def test_resync_needs_a_signer_and_watch_checks_its_filters(tmp_path: Path) -> None:
    async with control_over(tmp_path / "s.db") as (control, _):
        code, detail = await refused(control.ResyncSequence, control_pb2.ResyncSequenceRequest())
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "signer" in detail
        for request, wanted, field in (
            (control_pb2.WatchEventsRequest(kinds=["job", "gossip"]), grpc.StatusCode.INVALID_ARGUMENT, "kinds:"),
            (control_pb2.WatchEventsRequest(ticket_id="nope"), grpc.StatusCode.INVALID_ARGUMENT, "ticket_id:"),
            (control_pb2.WatchEventsRequest(desk="zendesk"), grpc.StatusCode.INVALID_ARGUMENT, "desk:"),
            (control_pb2.WatchEventsRequest(desk="waldur"), grpc.StatusCode.FAILED_PRECONDITION, "desk:"),
        ):
            call = control.WatchEvents(request)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
            assert caught.value.code() == wanted and (caught.value.details() or "").startswith(field), request


async def test_watchers_get_filtered_events_and_leave_no_subscriber_behind(tmp_path: Path) -> None:
    async with control_over(tmp_path / "s.db") as (control, deps):
        feed = deps.activity
        assert feed is not None
        pauses = control.WatchEvents(control_pb2.WatchEventsRequest(kinds=["pause"], desk="jira"))
        everything = control.WatchEvents(control_pb2.WatchEventsRequest())
        await pauses.initial_metadata()  # sent once subscribed
        await everything.initial_metadata()
        assert feed.subscribers == 2
        feed.publish("job", "done", ticket_id="ve1x/support/1", desk="jira", id=7, detail="create")
        await control.Pause(control_pb2.PauseRequest(direction="inbound", desk="jira"))
        await control.Resume(control_pb2.ResumeRequest(direction="inbound", desk="jira"))
        got = [await pauses.read() for _ in range(2)]
        assert [(e.kind, e.action, e.desk, e.direction) for e in got] == [
            ("pause", "paused", "jira", "inbound"),
            ("pause", "resumed", "jira", "inbound"),
        ]
        seen = [await everything.read() for _ in range(3)]
        assert [(e.kind, e.action) for e in seen] == [("job", "done"), ("pause", "paused"), ("pause", "resumed")]
        assert (seen[0].id, seen[0].ticket_id, seen[0].detail) == (7, "ve1x/support/1", "create")
        assert [e.seq for e in seen] == sorted(e.seq for e in seen) and seen[0].at

        pauses.cancel()  # the client goes away: its subscription goes with it
        await async_wait_until(lambda: feed.subscribers == 1, timeout=5, what="the cancelled watcher to be removed")
        feed.close()  # the server stops: the stream ends cleanly, after what was queued
        feed.publish("job", "done")  # nobody is left to get it
        assert await everything.read() == grpc.aio.EOF
        assert await everything.code() == grpc.StatusCode.OK
        await async_wait_until(lambda: feed.subscribers == 0, timeout=5, what="the ended watcher to be removed")


async def test_a_slow_watcher_loses_the_oldest_events_and_is_told_how_many() -> None:
    feed = ActivityFeed(capacity=3)
    with feed.subscribe(WatchFilter(kinds=frozenset({"job"}))) as sub:
        for n in range(1, 6):
            feed.publish("job", "done", id=n)
            feed.publish("event", "processed", height=n)  # filtered out: takes no room
        notice = await sub.next()
        assert notice is not None and (notice.kind, notice.action, notice.detail) == (
            "watch",
            "dropped",
            "2 events dropped",
        )
        rest = [await sub.next() for _ in range(3)]
        assert [a.id for a in rest if a is not None] == [3, 4, 5]
        assert all(isinstance(a, Activity) and a.seq > notice.seq for a in rest)
        feed.close()
        assert await sub.next() is None
    assert feed.subscribers == 0


# --- the running sidecar on the devnet ------------------------------------------------------------------


class Watcher:
    """A WatchEvents stream read in the background: every event it got so far."""

    def __init__(self, port: int) -> None:
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.call = Stub(self._channel).WatchEvents(control_pb2.WatchEventsRequest())
        self.events: list[control_pb2.ControlEvent] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Watcher:
        await self.call.initial_metadata()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for event in self.call:
            self.events.append(event)

    def of(self, ticket_id: str) -> set[tuple[str, str]]:
        return {(e.kind, e.action) for e in self.events if e.ticket_id == ticket_id}

    async def ended(self) -> grpc.StatusCode:
        """How the stream ended, once the server ended it."""
        assert self._task is not None
        await self._task
        code: grpc.StatusCode = await self.call.code()
        await self._channel.close()
        return code

    async def close(self) -> None:
        self.call.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._channel.close()


def job_of(db: Path, ticket_id: str) -> tuple[str, int] | None:
    found = db_rows(db, f"SELECT state, attempts FROM jobs WHERE desk = 'jira' AND ticket_id = '{ticket_id}'")
    return found[0] if found else None


async def verbose_health(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        answer: dict[str, Any] = (
            await client.get(f"http://127.0.0.1:{port}/webhooks/health?verbose=1", timeout=5)
        ).json()
    return answer


def chain_sequence(node: DevnetNode) -> int:
    with ChainDriver(node.rpc_url, SIDECAR) as driver:
        return driver.query_account()[1]


@pytest.mark.node
async def test_a_paused_desk_gets_nothing_across_a_restart_until_resumed(
    devnet_node: DevnetNode, make_jira_sim: Callable[..., JiraSim], tmp_path: Path
) -> None:
    jira = make_jira_sim()
    db = tmp_path / "sidecar.db"
    flags = desk_flags(tmp_path, devnet_node, jira, None)
    env = {
        **desk_env(jira, None),
        "VIRTENGINE_SERVICEDESK_SIGNING_KEY": hashlib.sha256(b"devnet-account:sidecar").hexdigest(),
    }
    async with running_app(flags, env) as app:
        assert app.grpc_port is not None
        watcher = await Watcher(app.grpc_port).start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            control = Stub(channel)
            await control.Pause(control_pb2.PauseRequest(direction="outbound", desk="jira", reason="maintenance"))

            def create() -> list[str]:
                with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer")) as customer:
                    return customer.create_tickets(1, RECIPIENTS)

            (ticket_id,) = await asyncio.to_thread(create)
            await async_wait_until(lambda: job_of(db, ticket_id), timeout=60, what="the ticket's Jira job to be queued")
            # The negative check: an unpaused worker claims a pending job within one idle wait (0.5 s). The
            # follower moving 5 blocks on (about 1 s at 200 ms blocks) shows the loops running; waiting at least
            # 4 idle waits past the queuing gives the worker 4 chances to take the job.
            queued_at = time.monotonic()
            height = await asyncio.to_thread(devnet_node.height)
            await asyncio.to_thread(devnet_node.wait_for_height, height + 5)
            await async_wait_until(
                lambda: db_rows(db, "SELECT height FROM cursor")[0][0] >= height + 5,
                timeout=30,
                what="the follower to read 5 more blocks",
            )
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - queued_at)))
            assert job_of(db, ticket_id) == ("pending", 0)
            assert jira.list_issues() == []
            health = await verbose_health(app.web_port or 0)
            assert [(p["direction"], p["desk"], p["reason"]) for p in health["paused"]] == [
                ("outbound", "jira", "maintenance")
            ]
            assert health["paused"][0]["by"].startswith("peer:") and health["paused"][0]["since"]
            processed = [e for e in watcher.events if e.ticket_id == ticket_id and e.kind == "event"]
            assert processed and processed[0].action == "processed" and processed[0].height > 0
    # The app stopped with the watch open: its stream ended cleanly (not cancelled at the end of the grace).
    assert await asyncio.wait_for(watcher.ended(), 5) == grpc.StatusCode.OK

    # Restarted on the same store: still paused, still nothing at the desk, until resumed.
    async with running_app(flags, env) as app:
        assert app.grpc_port is not None
        watcher = await Watcher(app.grpc_port).start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            control = Stub(channel)
            health = await verbose_health(app.web_port or 0)
            assert [(p["direction"], p["desk"]) for p in health["paused"]] == [("outbound", "jira")]
            status = await control.GetStatus(control_pb2.GetStatusRequest())
            assert shown(status.pauses) == [("outbound", "jira")]
            assert job_of(db, ticket_id) == ("pending", 0) and jira.list_issues() == []

            # Nothing is in flight (nothing was created at the desk yet): the sequence is the chain's.
            resynced = await control.ResyncSequence(control_pb2.ResyncSequenceRequest())
            assert resynced.address == SIDECAR.address
            assert resynced.sequence == await asyncio.to_thread(chain_sequence, devnet_node)

            lifted = await control.Resume(control_pb2.ResumeRequest(direction="outbound", desk="jira"))
            assert lifted.resumed == 1 and list(lifted.pauses) == []
            await async_wait_until(lambda: len(jira.list_issues()) == 1, timeout=60, what="the Jira issue")

            wanted = {("event", "processed"), ("job", "done"), ("intent", "included")}
            await async_wait_until(
                lambda: wanted <= watcher.of(ticket_id), timeout=60, what="the watcher to see the ticket's sync"
            )
            included = [e for e in watcher.events if e.ticket_id == ticket_id and e.kind == "intent"]
            assert included[0].height > 0 and included[0].id > 0 and included[0].detail == "MsgRegisterExternalTicket"
            done = [e for e in watcher.events if e.ticket_id == ticket_id and e.kind == "job"]
            assert done[-1].desk == "jira" and done[-1].id > 0
        await watcher.close()
    assert job_of(db, ticket_id) == ("done", 0)
    audits = db_rows(
        db, "SELECT event_type, actor FROM audit WHERE event_type IN ('paused', 'resumed', 'sequence_resynced')"
    )
    assert [event for event, _ in audits] == ["paused", "sequence_resynced", "resumed"]
    assert all(actor.startswith("peer:") for _, actor in audits)
