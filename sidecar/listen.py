"""Listen addresses (`host:port`), shared by the servers that bind them and the clients that dial them.

A leaf module: configuration validates with it, the web and gRPC servers bind with it, and the CLI
dials a running sidecar with it, without any of them importing the others.
"""

from __future__ import annotations

LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "127.0.0.1"}  # a dual-stack bind answers on both


def parse_listen(raw: str) -> tuple[str, int]:
    """'host:port', ':port' (all interfaces) or '[::1]:port'."""
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("host:port with a port 0..65535, e.g. :8480 or 127.0.0.1:8480")
    host = host.strip("[]")
    return (host or "0.0.0.0", int(port))


def dial_target(listen: str) -> str:
    """Where a client on this host reaches a server listening on `listen`: an all-interfaces bind is
    reached on loopback; an IPv6 host is bracketed. ValueError for an address parse_listen refuses."""
    host, port = parse_listen(listen)
    host = LOOPBACK_FOR.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
