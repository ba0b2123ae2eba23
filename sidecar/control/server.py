"""The gRPC server: the Control service behind the auth layer, grpc.health.v1 and reflection beside it,
bound (TCP or a unix socket, with or without TLS) and served."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from virtengine.servicedesk.v1 import control_pb2_grpc

from sidecar.config_schema import ServiceDeskConfig
from sidecar.control.auth import CONTROL_SERVICE, AuthInterceptor, ControlSecurity
from sidecar.control.deps import ControlDeps
from sidecar.control.health import ControlHealth
from sidecar.control.service import ControlService
from sidecar.errors import ConfigError
from sidecar.listen import ControlAddress, missing_protection, parse_control_listen
from sidecar.secrets import Secret, read_private_file

SERVICE_NAME = CONTROL_SERVICE
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class ControlServer:
    """Binds at construction (port 0 allowed) so callers know the real port before serving.

    Refuses (ConfigError naming grpc.listen) an address other machines can reach unless TLS and a
    client CA or a token protect it, whoever constructs it."""

    def __init__(
        self,
        listen: str,
        deps: ControlDeps,
        security: ControlSecurity | None = None,
        *,
        max_lag_blocks: int = 20,
    ) -> None:
        security = security or ControlSecurity()
        try:
            address = parse_control_listen(listen)
        except ValueError as exc:
            raise ConfigError("grpc.listen", f"must be {exc} (got {listen})", source="grpc.listen") from None
        lacking = missing_protection(
            address, tls=security.tls, client_ca=bool(security.client_ca), token=security.token is not None
        )
        if lacking:
            raise ConfigError(
                "grpc.listen", f"is {listen}, reachable from other machines: it needs {lacking}", source="grpc.listen"
            )
        self.address = address
        if address.is_unix:
            folder = os.path.dirname(address.path)
            if not os.path.isdir(folder):
                raise ConfigError(
                    "grpc.listen",
                    f"is {listen}, but {folder} is not a directory (create it, e.g. with systemd's RuntimeDirectory=)",
                    source="grpc.listen",
                )
            clear_stale_socket(address.path)
        self.server = grpc.aio.server(interceptors=[AuthInterceptor(security, deps.auditor, unix=address.is_unix)])
        self.service = ControlService(deps)
        control_pb2_grpc.add_ControlServicer_to_server(self.service, self.server)
        self.health = ControlHealth(deps.health, deps.store, max_lag_blocks, (SERVICE_NAME,))
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE, reflection.SERVICE_NAME), self.server)
        self._socket_inode: int | None = None
        self.port = self._bind(address, server_credentials(security))

    @classmethod
    def from_settings(
        cls, settings: ServiceDeskConfig, secrets: Mapping[str, Secret], deps: ControlDeps
    ) -> ControlServer:
        """The server the configuration's grpc.* keys and secrets describe."""
        return cls(
            settings.grpc.listen,
            deps,
            ControlSecurity.from_settings(settings.grpc, secrets),
            max_lag_blocks=settings.chain.max_lag_blocks,
        )

    def _bind(self, address: ControlAddress, credentials: grpc.ServerCredentials | None) -> int:
        """The bound port (1 for a unix socket); OSError when the address cannot be bound."""
        previous = os.umask(0o177) if address.is_unix else None  # the socket file is born 0600
        try:
            if credentials is None:
                port = int(self.server.add_insecure_port(address.bind_target))
            else:
                port = int(self.server.add_secure_port(address.bind_target, credentials))
        except RuntimeError as exc:  # grpc raises for an address it cannot bind
            raise OSError(f"cannot listen on {address.bind_target} for gRPC: {exc}") from None
        finally:
            if previous is not None:
                os.umask(previous)
        if port == 0:
            raise OSError(f"cannot listen on {address.bind_target} for gRPC")
        if address.is_unix:
            os.chmod(address.path, 0o600)  # whatever the umask did, before anything is served
            self._socket_inode = os.stat(address.path).st_ino
        return port

    async def start(self) -> None:
        await self.refresh_health()  # NOT_SERVING until the follower says otherwise, from the first call
        await self.server.start()

    async def refresh_health(self) -> None:
        """SERVING only when the follower is connected and within chain.max_lag_blocks of the head."""
        await self.health.refresh()

    async def stop(self, grace: float) -> None:
        await self.health.stop()
        await self.server.stop(grace)
        if self._socket_inode is not None:
            with contextlib.suppress(OSError):  # ours only: a successor may already have bound the path
                if os.stat(self.address.path).st_ino == self._socket_inode:
                    os.unlink(self.address.path)


def server_credentials(security: ControlSecurity) -> grpc.ServerCredentials | None:
    """TLS credentials from the grpc.tls_* files (the key must be private); client certificates are
    required when grpc.client_ca is set. None without TLS."""
    if not security.tls:
        return None
    cert = _read_pem(security.tls_cert, "grpc.tls_cert")
    key = read_private_file(security.tls_key, "grpc.tls_key").encode()
    ca = _read_pem(security.client_ca, "grpc.client_ca") if security.client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def _read_pem(path: str, key_path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key_path, f"cannot be read: {path} ({exc.strerror})", source=key_path) from None
    if b"-----BEGIN" not in data:
        raise ConfigError(key_path, f"is not a PEM file: {path}", source=key_path)
    return data


def clear_stale_socket(path: str) -> None:
    """Remove a socket file left by a crash; OSError when something still listens on it, or when the
    path is not a socket (never delete what is not ours to delete)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"cannot listen on unix://{path} for gRPC: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError:
        pass  # timed out or another error: assume alive, refuse below
    finally:
        probe.close()
    raise OSError(f"cannot listen on unix://{path} for gRPC: another process is listening on it")
