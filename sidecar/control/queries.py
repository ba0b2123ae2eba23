"""The questions operators ask: what the sidecar is doing (GetStatus) and one ticket's story (GetTicket)."""

from __future__ import annotations

import grpc
from virtengine.servicedesk.v1 import control_pb2

import sidecar
from sidecar.control.deps import ControlDeps
from sidecar.observe.logs import current_redactor
from sidecar.store.status import queue_figures
from sidecar.web.health import iso


class QueryCalls:
    deps: ControlDeps

    async def GetStatus(
        self, request: control_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetStatusResponse:
        figures = await self.deps.store.read("control status", queue_figures)
        redact = current_redactor()
        health = self.deps.health
        chain = health.chain
        desks = [
            control_pb2.DeskStatus(name=name, configured=state != "not_configured", status=state)
            for name, state in sorted(health.desks.items())
        ]
        return control_pb2.GetStatusResponse(
            healthy=health.healthy,
            chain_id=chain.chain_id or figures.cursor_chain_id or "",
            chain_reachable=chain.reachable,
            cursor_height=figures.cursor_height or 0,
            head_height=chain.head_height or 0,
            pending_events=figures.pending_events,
            failed_events=figures.failed_events,
            desks=desks,
            last_sync=iso(figures.last_sync) or "",
            version=sidecar.__version__,
            problems=[redact(f"{k}: {v}") for k, v in sorted(health.problems.items())],
        )

    async def GetTicket(
        self, request: control_pb2.GetTicketRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetTicketResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetTicket is being built")
        raise AssertionError
