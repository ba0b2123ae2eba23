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
from sidecar.store.intents import intent_state, list_intents, redrive_intents_txn
from sidecar.store.jobs import list_jobs, queue_manual_sync_txn, redrive_txn
from sidecar.store.status import queue_figures
from sidecar.store.tickets import get_ticket
from sidecar.web.health import iso

SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


class ControlService(control_pb2_grpc.ControlServicer):
    def __init__(
        self, store: Store, health_state: HealthState, desks: Sequence[str] = (), auditor: Auditor | None = None
    ) -> None:
        self._store = store
        self._health = health_state
        self._desks = list(desks)
        self._auditor = auditor

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
        if request.direction not in ("", "outbound"):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "only outbound manual sync exists in this version")
        try:
            parse_ticket_id(request.ticket_id)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ticket_id must be <address>/support/<n>")
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
        return control_pb2.SyncTicketResponse(jobs_queued=queued)

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


class ControlServer:
    """Binds at construction (port 0 allowed) so callers know the real port before serving."""

    def __init__(
        self,
        listen: str,
        store: Store,
        health_state: HealthState,
        desks: Sequence[str] = (),
        auditor: Auditor | None = None,
    ) -> None:
        self._health_state = health_state
        self.server = grpc.aio.server()
        service = ControlService(store, health_state, desks, auditor)
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
