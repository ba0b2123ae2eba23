"""ABCI socket transport (CometBFT v0.38): each message is a uvarint length prefix followed by a
protobuf `tendermint.abci.Request`/`Response`. CometBFT opens one connection per purpose
(consensus, mempool, query, snapshot); each is served by its own thread, in request order."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any

from cosmpy.protos.tendermint.abci import types_pb2 as abci

log = logging.getLogger("devnet.abci")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024




def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uvarint(stream: Any) -> int | None:
    """Read one uvarint from a binary file object; None on a clean EOF before the first byte."""
    shift = 0
    result = 0
    while True:
        chunk = stream.read(1)
        if not chunk:
            if shift == 0:
                return None
            raise EOFError("connection closed inside a length prefix")
        byte = chunk[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("uvarint too long")


def read_message(stream: Any) -> abci.Request | None:
    length = read_uvarint(stream)
    if length is None:
        return None
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"ABCI message of {length} bytes is too large")
    body = stream.read(length)
    if len(body) != length:
        raise EOFError("connection closed inside a message")
    return abci.Request.FromString(body)


def frame(response: abci.Response) -> bytes:
    body = response.SerializeToString()
    return encode_uvarint(len(body)) + body


def dispatch(app: Any, request: abci.Request) -> abci.Response:
    """Route one request to `app.<oneof name>`; methods the app lacks answer an empty response."""
    name = request.WhichOneof("value")
    response = abci.Response()
    if name is None:
        response.exception.error = "empty request"
        return response
    if name == "echo":
        response.echo.message = request.echo.message
        return response
    if name == "flush":
        response.flush.SetInParent()
        return response
    handler = getattr(app, name, None)
    try:
        if handler is None:
            getattr(response, name).SetInParent()
        else:
            getattr(response, name).CopyFrom(handler(getattr(request, name)))
    except Exception as exc:  # a bug in the app: CometBFT treats an exception as fatal, as it should
        log.exception("ABCI %s failed", name)
        response = abci.Response()
        response.exception.error = f"{name}: {exc!r}"
    return response


class _Handler(socketserver.StreamRequestHandler):
    server: AbciServer

    def handle(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                request = read_message(self.rfile)
            except (OSError, EOFError, ValueError) as exc:
                log.info("ABCI connection closed: %s", exc)
                return
            if request is None:
                return
            try:
                self.wfile.write(frame(dispatch(self.server.app, request)))
                self.wfile.flush()
            except OSError:
                return


class AbciServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server: one thread per CometBFT connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, app: Any) -> None:
        self.app = app
        super().__init__((host, port), _Handler)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="abci-server", daemon=True)
        thread.start()
        return thread
