"""How a client (the CLI, tests, tooling) opens a channel to a running sidecar's control API."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from sidecar.listen import dial_target


@dataclass(frozen=True)
class DialOptions:
    address: str  # host:port or unix:///path
    tls_ca: str = ""  # PEM file that signed the server's certificate: dial with TLS when set
    tls_cert: str = ""  # client certificate (mTLS)
    tls_key: str = ""
    server_name: str = ""  # TLS name to check, when it differs from the address's host
    token: str = ""  # bearer token sent as `authorization: Bearer <token>`


def open_channel(options: DialOptions) -> grpc.Channel:
    """A blocking channel; ValueError for an address that cannot be dialed."""
    return grpc.insecure_channel(dial_target(options.address))


def call_metadata(options: DialOptions) -> tuple[tuple[str, str], ...]:
    """Metadata to send with every call (the bearer token, if any)."""
    return (("authorization", f"Bearer {options.token}"),) if options.token else ()
