"""Listen addresses (`host:port`, and `unix:///path` for the control API), shared by the servers that
bind them and the clients that dial them.

A leaf module: configuration validates with it, the web and gRPC servers bind with it, and the CLI
dials a running sidecar with it, without any of them importing the others.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sidecar.digits import is_decimal

LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "127.0.0.1"}  # a dual-stack bind answers on both
UNIX_SCHEME = "unix://"
MAX_UNIX_PATH = 107  # sockaddr_un.sun_path holds 108 bytes, the last one a NUL


def parse_listen(raw: str) -> tuple[str, int]:
    """'host:port', ':port' (all interfaces) or '[::1]:port'."""
    host, sep, port = raw.rpartition(":")
    if not sep or not is_decimal(port) or not 0 <= int(port) <= 65535:
        raise ValueError("host:port with a port 0..65535, e.g. :8480 or 127.0.0.1:8480")
    host = host.strip("[]")
    return (host or "0.0.0.0", int(port))


def unix_socket_path(raw: str) -> str | None:
    """The absolute path of 'unix:///abs/path'; None for an address that is not a unix one.
    ValueError for a unix address without an absolute path, or one too long for a socket."""
    if not raw.startswith("unix:"):
        return None
    path = raw.removeprefix(UNIX_SCHEME)
    if not raw.startswith(UNIX_SCHEME) or not path.startswith("/") or path.endswith("/") or "\x00" in path:
        raise ValueError("unix:///absolute/path of a socket file, e.g. unix:///run/servicedesk/control.sock")
    if len(path.encode()) > MAX_UNIX_PATH:
        raise ValueError(f"a unix socket path of at most {MAX_UNIX_PATH} bytes")
    return path


@dataclass(frozen=True)
class ControlAddress:
    """Where the control API listens: a unix socket (`path`), or `host` and `port`."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_local(self) -> bool:
        """Reachable from this machine only: a unix socket or a loopback host."""
        return self.is_unix or is_loopback_host(self.host)

    @property
    def bind_target(self) -> str:
        """The address as grpc's add_*_port takes it."""
        if self.is_unix:
            return UNIX_SCHEME + self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_control_listen(raw: str) -> ControlAddress:
    """'unix:///abs/path' or anything parse_listen accepts; ValueError otherwise."""
    path = unix_socket_path(raw)
    if path is not None:
        return ControlAddress(path=path)
    host, port = parse_listen(raw)
    return ControlAddress(host=host, port=port)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (an IPv4-mapped loopback too) or 'localhost'; an all-interfaces bind is not."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # another name may resolve anywhere
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def missing_protection(address: ControlAddress, *, tls: bool, client_ca: bool, token: bool) -> str:
    """What a control API bound at `address` lacks to be safe to expose; '' when nothing.

    Off this machine, a caller must be authenticated over an encrypted channel: TLS and either a
    client certificate or a bearer token. A unix socket or loopback address needs neither."""
    if address.is_local:
        return ""
    lacking = [] if tls else ["TLS (grpc.tls_cert and grpc.tls_key)"]
    if not client_ca and not token:
        lacking.append("client certificates (grpc.client_ca) or the secret grpc_token")
    return " and ".join(lacking)


def dial_target(listen: str) -> str:
    """Where a client on this host reaches a server listening on `listen`: an all-interfaces bind is
    reached on loopback; an IPv6 host is bracketed; a unix socket is grpc's `unix:///path`.
    ValueError for an address parse_control_listen refuses."""
    address = parse_control_listen(listen)
    if address.is_unix:
        return address.bind_target
    host = LOOPBACK_FOR.get(address.host, address.host)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"
