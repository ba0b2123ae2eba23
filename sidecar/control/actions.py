"""The calls that change what the sidecar does next: manual sync, re-drives, conflict decisions."""

from __future__ import annotations

import time

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.chain.events import parse_ticket_id
from sidecar.control.deps import ControlDeps
from sidecar.control.views import conflict_message
from sidecar.store.audit import AuditEntry
from sidecar.store.inbound import ConflictNotOpen, queue_rereads_txn, resolve_conflict_txn
from sidecar.store.intents import intent_state, redrive_intents_txn
from sidecar.store.jobs import queue_manual_sync_txn, redrive_txn
from sidecar.store.tickets import get_ticket


class ActionCalls:
    deps: ControlDeps

    async def RedriveJob(
        self, request: control_pb2.RedriveJobRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RedriveJobResponse:
        if request.id == 0 and not request.all_dead:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give a job id, or all_dead=true")
        job_id = request.id or None
        count = await self.deps.store.write("redrive", redrive_txn, job_id, request.desk or None, time.time())
        if job_id is not None and count == 0:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job_id} is not dead-lettered")
        await self.deps.audit(
            AuditEntry(
                "jobs_redriven", desk=request.desk or None, status="ok", details={"job_id": request.id, "count": count}
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
                return control_pb2.SyncTicketResponse(jobs_queued=rereads, rereads_queued=rereads)
        served = self.deps.outbound_desks
        desks = [request.desk] if request.desk else list(served)
        unknown = [d for d in desks if d not in served]
        if unknown or not desks:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"desk not configured: {', '.join(unknown)}")
        if await self.deps.store.read("ticket", get_ticket, request.ticket_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"ticket {request.ticket_id} is not in the local mirror")
        queued = await self.deps.store.write(
            "manual sync", queue_manual_sync_txn, request.ticket_id, desks, time.time()
        )
        await self.deps.audit(
            AuditEntry(
                "manual_sync",
                ticket_id=request.ticket_id,
                direction="outbound",
                status="queued",
                details={"jobs": queued},
            )
        )
        return control_pb2.SyncTicketResponse(jobs_queued=queued + rereads, rereads_queued=rereads)

    async def _sync_inbound(self, request: control_pb2.SyncTicketRequest, context: grpc.aio.ServicerContext) -> int:
        """A re-read of the ticket's desk issues (each linked, verified ref of the asked desks)."""
        reading = self.deps.inbound_desks
        desks = [request.desk] if request.desk else list(reading)
        unknown = [d for d in desks if d not in reading]
        if unknown or not desks:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"inbound sync is not running for: {', '.join(unknown) or 'any desk'}",
            )
        if await self.deps.store.read("ticket", get_ticket, request.ticket_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"ticket {request.ticket_id} is not in the local mirror")
        queued = await self.deps.store.write("manual re-read", queue_rereads_txn, request.ticket_id, desks, time.time())
        await self.deps.audit(
            AuditEntry(
                "manual_sync",
                ticket_id=request.ticket_id,
                direction="inbound",
                status="queued",
                details={"rereads": queued},
            )
        )
        return queued

    async def ResolveConflict(
        self, request: control_pb2.ResolveConflictRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ResolveConflictResponse:
        """The operator keeps one side of a parked conflict; the sync that follows carries it over."""
        if request.id <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id: give the conflict's id (ListConflicts)")
        if request.winner not in ("chain", "desk"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "winner: must be chain or desk")
        entry = self.deps.by_caller(
            AuditEntry(
                "conflict_resolved",
                direction="inbound",
                status=request.winner,
                details={"conflict_id": request.id, "rule": "manual", "winner": request.winner},
            )
        )
        by = (request.operator or entry.actor or "operator")[:80]
        auditor = self.deps.auditor
        audit = auditor.clean(entry) if auditor is not None and auditor.enabled else None
        try:
            row = await self.deps.store.write(
                "resolve conflict", resolve_conflict_txn, request.id, request.winner, by, time.time(), audit
            )
        except ConflictNotOpen as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"conflict {request.id} does not exist")
        assert row is not None
        return control_pb2.ResolveConflictResponse(conflict=conflict_message(row))

    async def RedriveIntent(
        self, request: control_pb2.RedriveIntentRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RedriveIntentResponse:
        """Dead intents back to the signer's queue (a ref whose registration died is queued again this way)."""
        if request.id < 0 or (request.id == 0) == (not request.all_dead):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give an intent id, or all_dead=true (not both)")
        intent_id = request.id or None
        if intent_id is not None:
            state = await self.deps.store.read("intent state", intent_state, intent_id)
            if state is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"tx intent {intent_id} does not exist")
            if state != "dead":
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"tx intent {intent_id} is {state}, not dead")
        count = await self.deps.store.write("redrive intents", redrive_intents_txn, intent_id, time.time())
        await self.deps.audit(
            AuditEntry("intents_redriven", status="ok", details={"intent_id": request.id, "count": count})
        )
        return control_pb2.RedriveIntentResponse(redriven=count)
