"""The CLI's side of the control API: one channel to a running sidecar, one path for every call.

Exit codes (the CLI's --help epilog repeats them):
  0  ok
  1  the sidecar refused or failed the call (NOT_FOUND, FAILED_PRECONDITION, UNAUTHENTICATED, ...)
  2  usage: bad arguments, an unreadable or too open --token-file or TLS file, or INVALID_ARGUMENT from the sidecar
  3  unreachable: UNAVAILABLE or DEADLINE_EXCEEDED, or a control address that cannot be dialed
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.message import Message
from virtengine.servicedesk.v1 import control_pb2_grpc

from sidecar.control.dial import DialOptions, call_metadata, open_channel
from sidecar.errors import ConfigError
from sidecar.listen import dial_target
from sidecar.secrets import read_private_file

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_CODES_HELP = """exit codes:
  0  ok
  1  the sidecar refused or failed the call (not found, paused, unauthenticated, ...)
  2  usage: bad arguments, a --token-file others can read, an unreadable TLS file, or INVALID_ARGUMENT
     from the sidecar
  3  the sidecar cannot be reached at the control address (not running, wrong address, timeout)"""
EXIT_FOR: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNREACHABLE,
}
HINT_FOR: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "is the sidecar running at {address}, and is that its grpc.listen?",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer from {address} in time; a larger --timeout may help",
    grpc.StatusCode.UNAUTHENTICATED: "the sidecar did not accept the caller: give --token-file with a token it "
    "accepts, or a client certificate with --tls-cert/--tls-key",
    grpc.StatusCode.PERMISSION_DENIED: "the sidecar does not allow this to this caller",
    grpc.StatusCode.UNIMPLEMENTED: "this sidecar does not offer the call (an older version?)",
}


class CallFailed(Exception):
    """A call did not give an answer; the reason is already on standard error."""

    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(exit_code)


def fail(message: str, exit_code: int) -> CallFailed:
    print(f"servicedesk-sidecar: {message}", file=sys.stderr)
    return CallFailed(exit_code)


def read_token(file: str) -> str:
    """The bearer token of --token-file; ConfigError when others can read the file or it is empty."""
    token = read_private_file(file, "--token-file").strip()
    if not token:
        raise ConfigError("--token-file", f"{file} is empty", source="flag")
    return token


class ControlClient:
    """One blocking channel for one CLI command; `call` and `stream` turn errors into CallFailed."""

    def __init__(self, options: DialOptions, timeout: float) -> None:
        self.options = options
        self.timeout = timeout
        self._metadata = call_metadata(options)
        try:
            dial_target(options.address)
        except ValueError as exc:
            raise fail(f"--control {options.address!r}: {exc}", EXIT_UNREACHABLE) from None
        try:
            self._channel = open_channel(options)
        except ValueError as exc:  # a TLS file that cannot be read, a certificate without its key
            raise fail(f"TLS options (--tls-ca, --tls-cert, --tls-key): {exc}", EXIT_USAGE) from None
        self._stub = control_pb2_grpc.ControlStub(self._channel)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()

    def call(self, method: str, request: Message) -> Any:
        """The answer of the unary call `method` (its name in the .proto)."""
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._failed(method, exc) from None

    def stream(self, method: str, request: Message) -> Iterator[Any]:
        """The messages of the server stream `method` until it ends; KeyboardInterrupt cancels it."""
        answers = getattr(self._stub, method)(request, metadata=self._metadata)
        try:
            yield from answers
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and answers.cancelled():
                return
            raise self._failed(method, exc) from None
        finally:
            answers.cancel()

    def _failed(self, method: str, exc: grpc.RpcError) -> CallFailed:
        code: grpc.StatusCode = exc.code()
        detail: str = exc.details() or ""
        hint = HINT_FOR.get(code, "").format(address=self.options.address)
        return fail(
            f"{method}: {code.name}: {detail}" + (f" ({hint})" if hint else ""), EXIT_FOR.get(code, EXIT_FAILED)
        )
