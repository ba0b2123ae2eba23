"""The calls that change what the sidecar does next: manual sync, re-drives, conflict decisions."""

from __future__ import annotations

import time

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.control.deps import ControlDeps
from sidecar.control.paging import BadArgument, check_desk, check_ticket_id, refuse
from sidecar.control.views import conflict_message, job_message
from sidecar.store.audit import AuditEntry
from sidecar.store.inbound import ConflictNotOpen, Rereads, request_rereads_txn, resolve_conflict_txn
from sidecar.store.intents import intent_state, redrive_intents_txn
from sidecar.store.jobs import ManualSync, job_by_id, queue_manual_sync_txn, redrive_txn
from sidecar.store.pauses import EVERY_DESK, is_paused, list_pauses
from sidecar.store.tickets import get_ticket
from sidecar.timestamps import iso

DIRECTIONS = {"outbound": ("outbound",), "inbound": ("inbound",), "both": ("outbound", "inbound")}


class ActionCalls:
    deps: ControlDeps

    async def RedriveJob(
        self, request: control_pb2.RedriveJobRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.RedriveJobResponse:
        """Dead jobs back to their desk's queue: one by id, or all_dead (optionally of one desk)."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if request.id < 0 or (request.id == 0) == (not request.all_dead):
            await refuse(context, invalid, "give a job id, or all_dead=true (not both)")
        try:
            desk = check_desk(request.desk)
        except BadArgument as exc:
            await refuse(context, invalid, str(exc))
        job_id = request.id or None
        if job_id is not None:
            job = await self.deps.store.read("job", job_by_id, job_id)
            if job is None:
                await refuse(context, grpc.StatusCode.NOT_FOUND, f"job {job_id} does not exist")
            if job.state != "dead":
                await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, f"job {job_id} is {job.state}, not dead")
            desk = job.desk  # `desk` narrows all_dead only; one job goes back to its own desk
        if desk is not None and desk not in self.deps.outbound_desks:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, f"desk {desk} is not configured")
        count = await self.deps.store.write("redrive", redrive_txn, job_id, desk, time.time())
        if job_id is not None and count == 0:  # re-driven (or changed) by someone else since the read
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, f"job {job_id} is no longer dead")
        await self.deps.audit(
            AuditEntry("jobs_redriven", desk=desk, status="ok", details={"job_id": request.id, "count": count})
        )
        return control_pb2.RedriveJobResponse(redriven=count)

    async def SyncTicket(
        self, request: control_pb2.SyncTicketRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.SyncTicketResponse:
        """Queue a full sync of one ticket, once: asking again while it waits queues nothing new."""
        plan = await self._sync_plan(request, context)
        ticket_id = request.ticket_id
        response = control_pb2.SyncTicketResponse()
        if "outbound" in plan:
            sync: ManualSync = await self.deps.store.write(
                "manual sync", queue_manual_sync_txn, ticket_id, plan["outbound"], time.time()
            )
            response.jobs.extend(job_message(j) for j in sync.waiting)
            response.jobs_queued += sync.queued
            status = "queued" if sync.queued else "already_pending"
            await self._audit_sync(request, "outbound", status, {"jobs": sync.queued, "waiting": len(sync.waiting)})
        if "inbound" in plan:
            rereads: Rereads = await self.deps.store.write(
                "manual re-read", request_rereads_txn, ticket_id, plan["inbound"], time.time()
            )
            response.jobs_queued += rereads.queued
            response.rereads_queued = rereads.queued
            response.rereads_pending = rereads.pending
            status = "queued" if rereads.queued else "already_pending" if rereads.pending else "no_linked_issue"
            await self._audit_sync(request, "inbound", status, {"rereads": rereads.queued, "pending": rereads.pending})
        return response

    async def _sync_plan(
        self, request: control_pb2.SyncTicketRequest, context: grpc.aio.ServicerContext
    ) -> dict[str, list[str]]:
        """The desks of each asked direction; every refusal comes before anything is queued."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        directions = DIRECTIONS.get(request.direction or "outbound")
        if directions is None:
            await refuse(context, invalid, "direction: must be outbound, inbound or both")
        if not request.ticket_id:
            await refuse(context, invalid, "ticket_id: required (<address>/support/<n>)")
        try:
            check_ticket_id(request.ticket_id)
            desk = check_desk(request.desk)
        except BadArgument as exc:
            await refuse(context, invalid, str(exc))
        plan: dict[str, list[str]] = {}
        for direction in directions:
            served = self.deps.outbound_desks if direction == "outbound" else self.deps.inbound_desks
            if (desk is not None and desk not in served) or not served:
                await refuse(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{direction} sync is not configured for {desk or 'any desk'}",
                )
            plan[direction] = [desk] if desk is not None else sorted(served)
        if await self.deps.store.read("ticket", get_ticket, request.ticket_id) is None:
            await refuse(context, grpc.StatusCode.NOT_FOUND, f"ticket {request.ticket_id} is not in the local mirror")
        pauses = await self.deps.store.read("pauses", list_pauses)
        for direction, desks in plan.items():
            for name in desks:
                if is_paused(pauses, direction, name):
                    pause = min(
                        (p for p in pauses if p.direction == direction and p.desk in (name, EVERY_DESK)),
                        key=lambda p: p.since,
                    )
                    await refuse(
                        context,
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"{direction} is paused for {name} (since {iso(pause.since)}, by {pause.by})",
                    )
        return plan

    async def _audit_sync(
        self, request: control_pb2.SyncTicketRequest, direction: str, status: str, details: dict[str, int]
    ) -> None:
        """Every request is recorded, also one that found its sync already waiting (status already_pending)."""
        await self.deps.audit(
            AuditEntry(
                "manual_sync",
                ticket_id=request.ticket_id,
                desk=request.desk or None,
                direction=direction,
                status=status,
                details=details,
            )
        )

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
        if self.deps.activity is not None:
            self.deps.activity.publish(
                "conflict",
                "resolved",
                ticket_id=row.ticket_id,
                desk=row.desk,
                direction="inbound",
                id=row.id,
                detail=f"{row.field}: {request.winner}",
            )
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
