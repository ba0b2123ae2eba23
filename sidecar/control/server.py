"""grpc.aio server for virtengine.servicedesk.v1.Control, health and reflection.

Only this package maps sidecar errors to gRPC status codes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

import sidecar
from sidecar.chain.events import parse_ticket_id
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.logs import current_redactor
from sidecar.store.audit import AuditEntry
from sidecar.store.db import Store
from sidecar.store.inbound import (
    ConflictNotOpen,
    ConflictRow,
    list_conflicts,
    queue_rereads_txn,
    resolve_conflict_txn,
)
from sidecar.store.intents import intent_state, list_intents, redrive_intents_txn
from sidecar.store.jobs import list_jobs, queue_manual_sync_txn, redrive_txn
from sidecar.store.status import queue_figures
from sidecar.store.tickets import get_ticket
from sidecar.web.health import iso

SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


class ControlService(control_pb2_grpc.ControlServicer):
    def __init__(
        self,
        store: Store,
        health_state: HealthState,
        desks: Sequence[str] = (),
        auditor: Auditor | None = None,
        inbound: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._health = health_state
        self._desks = list(desks)
        self._auditor = auditor
        self._inbound = list(inbound)

    async def GetStatus(
        self, request: control_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetStatusResponse:
        figures = await self._store.read("control status", queue_figures)
        redact = current_redactor()
        chain = self._health.chain
        desks = [
            control_pb2.DeskStatus(name=name, configured=state != "not_configured", status=state)
            for name, state in sorted(self._health.desks.items())
        ]
        return control_pb2.GetStatusResponse(
            healthy=self._health.healthy,
            chain_id=chain.chain_id or figures.cursor_chain_id or "",
            chain_reachable=chain.reachable,
            cursor_height=figures.cursor_height or 0,
            head_height=chain.head_height or 0,
            pending_events=figures.pending_events,
            failed_events=figures.failed_events,
            desks=desks,
            last_sync=iso(figures.last_sync) or "",
            version=sidecar.__version__,
            problems=[redact(f"{k}: {v}") for k, v in sorted(self._health.problems.items())],
        )

    async def ListJobs(
        self, request: control_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListJobsResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        jobs = await self._store.read("list jobs", list_jobs, request.state or None, request.desk or None, limit)
        return control_pb2.ListJobsResponse(
            jobs=[
                control_pb2.Job(
                    id=j.id,
                    dedupe_key=j.dedupe_key,
                    kind=j.kind,
                    desk=j.desk,
                    ticket_id=j.ticket_id or "",
                    state=j.state,
                    attempts=j.attempts,
                    next_run_at=iso(j.next_run_at) or "",
                    last_error=current_redactor()(j.last_error or ""),
                )
                for j in jobs
            ]
        )

    async def RedriveJob(
        self, request: control_pb2.RedriveJobRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RedriveJobResponse:
        if request.id == 0 and not request.all_dead:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give a job id, or all_dead=true")
        job_id = request.id or None
        count = await self._store.write("redrive", redrive_txn, job_id, request.desk or None, time.time())
        if job_id is not None and count == 0:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job_id} is not dead-lettered")
        if self._auditor is not None:
            await self._auditor.record(
                AuditEntry(
                    "jobs_redriven",
                    desk=request.desk or None,
                    actor="operator",
                    status="ok",
                    details={"job_id": request.id, "count": count},
                )
            )
        return control_pb2.RedriveJobResponse(redriven=count)

    async def SyncTicket(
        self, request: control_pb2.SyncTicketRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.SyncTicketResponse:
        if request.direction not in ("", "outbound", "inbound", "both"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "direction must be outbound, inbound or both")
        try:
            parse_ticket_id(request.ticket_id)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ticket_id must be <address>/support/<n>")
        rereads = 0
        if request.direction in ("inbound", "both"):
            rereads = await self._sync_inbound(request, context)
            if request.direction == "inbound":
                return control_pb2.SyncTicketResponse(jobs_queued=rereads)
        desks = [request.desk] if request.desk else list(self._desks)
        unknown = [d for d in desks if d not in self._desks]
        if unknown or not desks:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"desk not configured: {', '.join(unknown)}")
        if await self._store.read("ticket", get_ticket, request.ticket_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"ticket {request.ticket_id} is not in the local mirror")
        queued = await self._store.write("manual sync", queue_manual_sync_txn, request.ticket_id, desks, time.time())
        if self._auditor is not None:
            await self._auditor.record(
                AuditEntry(
                    "manual_sync",
                    ticket_id=request.ticket_id,
                    direction="outbound",
                    actor="operator",
                    status="queued",
                    details={"jobs": queued},
                )
            )
        return control_pb2.SyncTicketResponse(jobs_queued=queued + rereads)

    async def _sync_inbound(self, request: control_pb2.SyncTicketRequest, context: grpc.aio.ServicerContext) -> int:
        """A re-read of the ticket's desk issues (each linked, verified ref of the asked desks)."""
        desks = [request.desk] if request.desk else list(self._inbound)
        unknown = [d for d in desks if d not in self._inbound]
        if unknown or not desks:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"inbound sync is not running for: {', '.join(unknown) or 'any desk'}",
            )
        if await self._store.read("ticket", get_ticket, request.ticket_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"ticket {request.ticket_id} is not in the local mirror")
        queued = await self._store.write("manual re-read", queue_rereads_txn, request.ticket_id, desks, time.time())
        if self._auditor is not None:
            await self._auditor.record(
                AuditEntry(
                    "manual_sync",
                    ticket_id=request.ticket_id,
                    direction="inbound",
                    actor="operator",
                    status="queued",
                    details={"rereads": queued},
                )
            )
        return queued

    async def ListConflicts(
        self, request: control_pb2.ListConflictsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListConflictsResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        rows = await self._store.read("list conflicts", list_conflicts, request.include_resolved, limit)
        return control_pb2.ListConflictsResponse(conflicts=[_conflict(c) for c in rows])

    async def ResolveConflict(
        self, request: control_pb2.ResolveConflictRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResolveConflictResponse:
        """The operator keeps one side of a parked conflict; the sync that follows carries it over."""
        if request.id <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id: give the conflict's id (ListConflicts)")
        if request.winner not in ("chain", "desk"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "winner: must be chain or desk")
        by = (request.operator or "operator")[:80]
        entry = AuditEntry(
            "conflict_resolved",
            direction="inbound",
            actor=by,
            status=request.winner,
            details={"conflict_id": request.id, "rule": "manual", "winner": request.winner},
        )
        audit = self._auditor.clean(entry) if self._auditor is not None and self._auditor.enabled else None
        try:
            row = await self._store.write(
                "resolve conflict", resolve_conflict_txn, request.id, request.winner, by, time.time(), audit
            )
        except ConflictNotOpen as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"conflict {request.id} does not exist")
        assert row is not None
        return control_pb2.ResolveConflictResponse(conflict=_conflict(row))

    async def ListTxIntents(
        self, request: control_pb2.ListTxIntentsRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ListTxIntentsResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        views = await self._store.read("list intents", list_intents, request.state or None, limit)
        redact = current_redactor()
        return control_pb2.ListTxIntentsResponse(
            intents=[
                control_pb2.TxIntent(
                    id=v.intent.id,
                    msg_type=v.intent.msg_type,
                    ticket_id=v.intent.ticket_id or "",
                    state=v.intent.state,
                    tx_hash=v.tx_hash or "",
                    height=v.height or 0,
                    code=v.intent.code or 0,
                    log=redact(v.intent.log or ""),
                    attempts=v.intent.attempts,
                    created_at=iso(v.created_at) or "",
                )
                for v in views
            ]
        )

    async def RedriveIntent(
        self, request: control_pb2.RedriveIntentRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RedriveIntentResponse:
        """Dead intents back to the signer's queue (a ref whose registration died is queued again this way)."""
        if request.id < 0 or (request.id == 0) == (not request.all_dead):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give an intent id, or all_dead=true (not both)")
        intent_id = request.id or None
        if intent_id is not None:
            state = await self._store.read("intent state", intent_state, intent_id)
            if state is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"tx intent {intent_id} does not exist")
            if state != "dead":
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"tx intent {intent_id} is {state}, not dead")
        count = await self._store.write("redrive intents", redrive_intents_txn, intent_id, time.time())
        if self._auditor is not None:
            await self._auditor.record(
                AuditEntry(
                    "intents_redriven",
                    actor="operator",
                    status="ok",
                    details={"intent_id": request.id, "count": count},
                )
            )
        return control_pb2.RedriveIntentResponse(redriven=count)


def _conflict(c: ConflictRow) -> control_pb2.Conflict:
    """A conflict as operators see it: values are field values (statuses, priorities, agent addresses)."""
    return control_pb2.Conflict(
        id=c.id,
        ticket_id=c.ticket_id,
        desk=c.desk,
        field=c.field,
        base_value=c.base_value or "",
        chain_value=c.chain_value or "",
        desk_value=c.desk_value or "",
        strategy=c.strategy,
        state=c.state,
        resolution=c.resolution or "",
        detected_at=iso(c.detected_at) or "",
        resolved_at=iso(c.resolved_at) or "",
    )


class ControlServer:
    """Binds at construction (port 0 allowed) so callers know the real port before serving."""

    def __init__(
        self,
        listen: str,
        store: Store,
        health_state: HealthState,
        desks: Sequence[str] = (),
        auditor: Auditor | None = None,
        inbound: Sequence[str] = (),
    ) -> None:
        self._health_state = health_state
        self.server = grpc.aio.server()
        self.service = ControlService(store, health_state, desks, auditor, inbound)
        service = self.service
        control_pb2_grpc.add_ControlServicer_to_server(service, self.server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.port = self.server.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen} for gRPC")

    async def start(self) -> None:
        await self.server.start()
        await self.refresh_health()

    async def refresh_health(self) -> None:
        """SERVING only when the sidecar is healthy (node reachable, desks answer)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._health_state.healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set("", status)
        await self._health.set(SERVICE_NAME, status)

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)
