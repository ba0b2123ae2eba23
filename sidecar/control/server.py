"""The gRPC server: the Control service with grpc.health.v1 and reflection beside it, bound and served."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from sidecar.control.deps import ControlDeps
from sidecar.control.service import ControlService

SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


class ControlServer:
    """Binds at construction (port 0 allowed) so callers know the real port before serving."""

    def __init__(self, listen: str, deps: ControlDeps) -> None:
        self._health_state = deps.health
        self.server = grpc.aio.server()
        self.service = ControlService(deps)
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
