"""A loopback stand-in for Vault's KV v2 read API (the only Vault call the sidecar makes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def fake_vault(token: str, mount: str, path: str, data: dict[str, str]) -> Iterator[str]:
    """Serve data at /v1/<mount>/data/<path> to requests bearing `token`; yield the address."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("X-Vault-Token") != token:
                self._send(403, {"errors": ["permission denied"]})
            elif self.path.split("?")[0] == f"/v1/{mount}/data/{path}":
                self._send(
                    200, {"data": {"data": data, "metadata": {"version": 3, "deletion_time": "", "destroyed": False}}}
                )
            else:
                self._send(404, {"errors": []})

        def _send(self, status: int, body: dict[str, object]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            return None

    with serving(Handler) as address:
        yield address


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stand-in HTTP server on a loopback port, in a thread; yields its address, stops it after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
