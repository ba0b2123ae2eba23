"""How a client (the CLI, tests, tooling) opens a channel to a running sidecar's control API."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sidecar.listen import dial_target


@dataclass(frozen=True)
class DialOptions:
    address: str  # host:port or unix:///path
    tls_ca: str = ""  # PEM file that signed the server's certificate: dial with TLS when set
    tls_cert: str = ""  # client certificate (mTLS)
    tls_key: str = ""
    server_name: str = ""  # TLS name to check, when it differs from the address's host
    token: str = field(default="", repr=False)  # bearer token sent as `authorization: Bearer <token>`


def channel_credentials(options: DialOptions) -> grpc.ChannelCredentials | None:
    """TLS credentials when tls_ca is set (with the client certificate for mTLS); None for plaintext.
    ValueError naming the option whose file cannot be read, or a certificate given without its key."""
    if not options.tls_ca:
        if options.tls_cert or options.tls_key:
            raise ValueError("tls_cert/tls_key: a client certificate needs tls_ca (the CA of the server)")
        return None
    if bool(options.tls_cert) != bool(options.tls_key):
        raise ValueError("tls_cert/tls_key: give both the client certificate and its key, or neither")
    root = _read("tls_ca", options.tls_ca)
    key = _read("tls_key", options.tls_key) if options.tls_key else None
    cert = _read("tls_cert", options.tls_cert) if options.tls_cert else None
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)


def channel_options(options: DialOptions) -> list[tuple[str, str]]:
    """The TLS name to check, when it differs from the host dialed (always for a unix socket)."""
    return [("grpc.ssl_target_name_override", options.server_name)] if options.server_name else []


def open_channel(options: DialOptions) -> grpc.Channel:
    """A blocking channel; ValueError for an address that cannot be dialed or an unreadable TLS file."""
    target = dial_target(options.address)
    credentials = channel_credentials(options)
    if credentials is None:
        return grpc.insecure_channel(target, options=channel_options(options))
    return grpc.secure_channel(target, credentials, options=channel_options(options))


def open_aio_channel(options: DialOptions) -> grpc.aio.Channel:
    """The same channel for asyncio clients (tests, tooling)."""
    target = dial_target(options.address)
    credentials = channel_credentials(options)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=channel_options(options))
    return grpc.aio.secure_channel(target, credentials, options=channel_options(options))


def call_metadata(options: DialOptions) -> tuple[tuple[str, str], ...]:
    """Metadata to send with every call (the bearer token, if any)."""
    return (("authorization", f"Bearer {options.token}"),) if options.token else ()


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{option}: cannot read {path} ({exc.strerror})") from None
