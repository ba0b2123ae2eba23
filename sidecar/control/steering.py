"""Steering a running sidecar: pause and resume a direction, resync the signer, watch what it does.

Pause and Resume write the store first (a restart keeps them), then the in-memory PauseBook the
engines consult on every step. A pause stops work, not intake: paused outbound runs no desk jobs
(they stay pending), paused inbound claims no re-reads and sweeps nothing (hints still queue).
Resume with a desk lifts that desk's own pause; a pause of every desk (desk "") stays until a
Resume without a desk, which lifts every pause of the direction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.chain.events import parse_ticket_id
from sidecar.chain.node_guard import NodeRefused
from sidecar.control.caller import caller
from sidecar.control.deps import ControlDeps
from sidecar.control.views import pause_message
from sidecar.errors import ChainRpcError
from sidecar.observe.activity import KINDS, Activity, WatchFilter, unknown_kinds
from sidecar.observe.logs import current_redactor
from sidecar.store.audit import AuditEntry
from sidecar.store.pauses import DIRECTIONS, EVERY_DESK, Pause, list_pauses, pause_txn, resume_txn
from sidecar.timestamps import iso
from sidecar.urls import scrub_urls

DESKS = ("jira", "waldur")
REASON_MAX = 200  # characters of an operator's reason kept (store, audit, health)
RESYNC_WAIT = 30.0  # seconds ResyncSequence waits for the signer's loop to serve it


class SteeringCalls:
    deps: ControlDeps

    async def Pause(
        self, request: control_pb2.PauseRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.PauseResponse:
        directions = await _directions(request.direction, context)
        await self._check_desk(request.desk, context, allow_unconfigured=False)
        reason = " ".join(request.reason.split())[:REASON_MAX]  # one line, bounded
        by = caller()[:80]
        book = self.deps.pauses
        async with book.lock if book is not None else asyncio.Lock():
            added, pauses = await self.deps.store.write(
                "pause", _pause_txn, directions, request.desk, by, reason, time.time()
            )
            if book is not None:
                book.replace(pauses)
        details = {"directions": list(directions), "desk": request.desk or "all", "added": added, "reason": reason}
        await self.deps.audit(
            AuditEntry("paused", desk=request.desk or None, direction=request.direction or None, details=details)
        )
        self._announce("paused", directions, request.desk)
        return control_pb2.PauseResponse(pauses=[pause_message(p) for p in pauses])

    async def Resume(
        self, request: control_pb2.ResumeRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResumeResponse:
        directions = await _directions(request.direction, context)
        configured = await self._check_desk(request.desk, context, allow_unconfigured=True)
        desk = request.desk or None  # None: every pause of the directions, whichever desk
        book = self.deps.pauses
        async with book.lock if book is not None else asyncio.Lock():
            lifted, pauses = await self.deps.store.write("resume", _resume_txn, directions, desk)
            if book is not None:
                book.replace(pauses)
        if not configured and not lifted:  # a removed desk may still be resumed, if it was paused
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"desk: {request.desk} is not configured")
        details = {"directions": list(directions), "desk": request.desk or "all", "count": lifted}
        await self.deps.audit(
            AuditEntry("resumed", desk=request.desk or None, direction=request.direction or None, details=details)
        )
        if lifted:
            self._announce("resumed", directions, request.desk)
        return control_pb2.ResumeResponse(resumed=lifted, pauses=[pause_message(p) for p in pauses])

    async def ResyncSequence(
        self, request: control_pb2.ResyncSequenceRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResyncSequenceResponse:
        signer = self.deps.signer
        if signer is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "no signer: set chain.key_file or the signing_key secret"
            )
            raise AssertionError
        try:
            previous, sequence = await asyncio.wait_for(signer.resync_sequence(), RESYNC_WAIT)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the signer did not get to the resync within {RESYNC_WAIT:.0f}s"
            )
            raise AssertionError from None
        except NodeRefused as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the signer refuses the node: {_shown(exc)}")
            raise AssertionError from None
        except ChainRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the node did not answer: {_shown(exc)}")
            raise AssertionError from None
        details = {"previous_sequence": previous, "sequence": sequence}
        await self.deps.audit(AuditEntry("sequence_resynced", status="ok", details=details))
        return control_pb2.ResyncSequenceResponse(
            address=signer.status.address, previous_sequence=previous, sequence=sequence
        )

    async def WatchEvents(
        self, request: control_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[control_pb2.ControlEvent]:
        """Until the client cancels or the server stops; the subscription goes with the call either way.
        Initial metadata is sent once subscribed: a client that waits for it misses nothing after."""
        unknown = unknown_kinds(request.kinds)
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"kinds: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})"
            )
        if request.ticket_id:
            try:
                parse_ticket_id(request.ticket_id)
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ticket_id: must be <address>/support/<n>")
        await self._check_desk(request.desk, context, allow_unconfigured=False)
        feed = self.deps.activity
        if feed is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this server has no activity feed")
            raise AssertionError
        wanted = WatchFilter(frozenset(request.kinds), request.ticket_id, request.desk)
        with feed.subscribe(wanted) as subscription:
            await context.send_initial_metadata(())
            while (item := await subscription.next()) is not None:
                yield event_message(item)

    async def _check_desk(self, desk: str, context: grpc.aio.ServicerContext, *, allow_unconfigured: bool) -> bool:
        """INVALID_ARGUMENT for a name that is no desk; FAILED_PRECONDITION for one not configured (unless
        allowed). Returns whether the desk ("" for every desk) is configured."""
        if desk and desk not in DESKS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "desk: must be jira, waldur or empty for every desk")
        configured = not desk or desk in self.deps.configured_desks
        if not configured and not allow_unconfigured:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"desk: {desk} is not configured")
        return configured

    def _announce(self, action: str, directions: tuple[str, ...], desk: str) -> None:
        if self.deps.activity is not None:
            for direction in directions:
                self.deps.activity.publish("pause", action, desk=desk, direction=direction)


def event_message(item: Activity) -> control_pb2.ControlEvent:
    return control_pb2.ControlEvent(
        seq=item.seq,
        at=iso(item.at) or "",
        kind=item.kind,
        action=item.action,
        ticket_id=item.ticket_id,
        desk=item.desk,
        direction=item.direction,
        height=item.height,
        id=item.id,
        detail=item.detail,
    )


async def _directions(direction: str, context: grpc.aio.ServicerContext) -> tuple[str, ...]:
    if direction and direction not in DIRECTIONS:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "direction: must be outbound, inbound or empty for both")
    return (direction,) if direction else DIRECTIONS


def _pause_txn(
    conn: sqlite3.Connection, directions: tuple[str, ...], desk: str, by: str, reason: str, now: float
) -> tuple[int, list[Pause]]:
    added = pause_txn(conn, directions, desk or EVERY_DESK, by, reason, now)
    return added, list_pauses(conn)


def _resume_txn(conn: sqlite3.Connection, directions: tuple[str, ...], desk: str | None) -> tuple[int, list[Pause]]:
    return resume_txn(conn, directions, desk), list_pauses(conn)


def _shown(exc: Exception) -> str:
    return scrub_urls(current_redactor()(str(exc)))
