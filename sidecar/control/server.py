"""grpc.aio server for virtengine.servicedesk.v1.Control, health and reflection.

Only this package maps sidecar errors to gRPC status codes.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

import sidecar
from sidecar.observe.health import HealthState
from sidecar.observe.logs import current_redactor
from sidecar.store.db import Store
from sidecar.store.status import queue_figures
from sidecar.web.health import iso

SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


class ControlService(control_pb2_grpc.ControlServicer):
    def __init__(self, store: Store, health_state: HealthState) -> None:
        self._store = store
        self._health = health_state

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


class ControlServer:
    """Binds at construction (port 0 allowed) so callers know the real port before serving."""

    def __init__(self, listen: str, store: Store, health_state: HealthState) -> None:
        self._health_state = health_state
        self.server = grpc.aio.server()
        control_pb2_grpc.add_ControlServicer_to_server(ControlService(store, health_state), self.server)
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
