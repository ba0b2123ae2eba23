"""Every configured secret, and Authorization values echoed by a failing server, stay out of every output.

The real sidecar runs with all six secrets from a secrets directory; its chain RPC URL points at a
loopback server that answers every call with an error quoting secrets and an Authorization header.
Logs, /metrics, health, gRPC answers and errors, and the SQLite file must not contain any of them.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.waiting import wait_until
from sidecar.secrets import SECRET_SPECS
from tests.sidecar.fake_vault import serving
from tests.sidecar.observe.support import running_sidecar

SECRETS = {
    "jira_api_token": "KNOWN-jira-token-" + secrets.token_hex(6),
    "jira_webhook_secret": "KNOWN-jira-hook-" + secrets.token_hex(6),
    "waldur_token": "KNOWN-waldur-token-" + secrets.token_hex(6),
    "waldur_webhook_secret": "KNOWN-waldur-hook-" + secrets.token_hex(6),
    "signing_key": secrets.token_hex(32),
    "support_private_key": base64.b64encode(secrets.token_bytes(32)).decode(),
}
BASIC = base64.b64encode(f"svc@example.org:{SECRETS['jira_api_token']}".encode()).decode()
LEAKS = [*SECRETS.values(), BASIC]


class LeakyNode(BaseHTTPRequestHandler):
    """A node (or proxy in front of it) whose errors quote credentials back to the caller."""

    hits = 0

    def do_POST(self) -> None:
        LeakyNode.hits += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        detail = (
            f"upstream refused key {SECRETS['signing_key']} and token {SECRETS['jira_api_token']}; "
            f"request carried Authorization: Basic {BASIC}; echo {self.headers.get('Authorization')}"
        )
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Internal", "data": detail}})
        self._answer(200, body.encode(), "application/json")

    def do_GET(self) -> None:  # the websocket upgrade of the head watcher
        LeakyNode.hits += 1
        self._answer(401, f"bad webhook secret {SECRETS['waldur_webhook_secret']}".encode(), "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("WWW-Authenticate", f"Basic realm={SECRETS['waldur_token']}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def leaky_node() -> Iterator[str]:
    with serving(LeakyNode) as address:
        yield address


def assert_clean(where: str, text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"a secret leaked into {where}"


def test_no_secret_reaches_logs_metrics_health_grpc_or_the_database(tmp_path: Path, leaky_node: str) -> None:
    assert {spec.name for spec in SECRET_SPECS} == set(SECRETS)  # every configured secret is injected
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for spec in SECRET_SPECS:
        (secrets_dir / spec.file_names[0]).write_text(SECRETS[spec.name] + "\n")
    db = tmp_path / "data" / "sidecar.db"
    env = {
        "VIRTENGINE_SERVICEDESK_CHAIN_RPC_URL": leaky_node,
        "VIRTENGINE_SERVICEDESK_CHAIN_POLL_INTERVAL": "100ms",
        "VIRTENGINE_SERVICEDESK_STORE_PATH": str(db),
        "VIRTENGINE_SERVICEDESK_SECRETS_DIR": str(secrets_dir),
        "VIRTENGINE_SERVICEDESK_JIRA_URL": leaky_node,
        "VIRTENGINE_SERVICEDESK_JIRA_USERNAME": "svc@example.org",
        "VIRTENGINE_SERVICEDESK_WALDUR_URL": leaky_node + "/api",
        "VIRTENGINE_SERVICEDESK_WALDUR_ORG_UUID": "0d5c7a1e-1f4e-4d55-9d5f-1a2b3c4d5e6f",
        "VIRTENGINE_SERVICEDESK_SYNC_ALLOW_INSECURE_HTTP": "true",
        "VIRTENGINE_SERVICEDESK_AUDIT_LOG_LEVEL": "debug",
    }
    outputs: dict[str, str] = {}
    LeakyNode.hits = 0
    with running_sidecar(tmp_path, env) as (proc, http):
        warning = proc.wait_for_log("chain unreachable; retrying")
        assert "<redacted>" in warning["error"]  # the secret reached the log path, and was masked
        wait_until(lambda: LeakyNode.hits >= 5, timeout=20, what="the sidecar retrying the leaky node")
        outputs["/metrics"] = httpx.get(f"http://{http}/metrics", timeout=5).text
        outputs["/webhooks/health"] = httpx.get(f"http://{http}/webhooks/health", timeout=5).text
        verbose = httpx.get(f"http://{http}/webhooks/health?verbose=1", timeout=5)
        outputs["/webhooks/health?verbose=1"] = verbose.text
        assert "<redacted>" in verbose.json()["chain"]["last_error"]
        grpc_port = int(proc.wait_for_log("started")["grpc_port"])
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            control = control_pb2_grpc.ControlStub(channel)
            status = control.GetStatus(control_pb2.GetStatusRequest(), timeout=5)
            outputs["GetStatus"] = str(status) + status.SerializeToString().decode("utf-8", "replace")
            assert not status.healthy and status.problems
            served = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            outputs["grpc health"] = str(served)
            with pytest.raises(grpc.RpcError) as failed:
                control.SyncTicket(control_pb2.SyncTicketRequest(ticket_id=SECRETS["jira_api_token"]), timeout=5)
            error = failed.value
            assert isinstance(error, grpc.Call)
            outputs["SyncTicket error"] = f"{error.code()} {error.details()} {error.trailing_metadata()}"
    outputs["logs"] = proc.text()
    assert outputs["logs"].count("\n") > 5

    conn = sqlite3.connect(db)
    audit_rows = [tuple(r) for r in conn.execute("SELECT * FROM audit")]
    conn.close()
    assert audit_rows, "config_loaded was audited"
    outputs["audit rows"] = json.dumps(audit_rows)
    outputs["database file"] = b"".join(p.read_bytes() for p in db.parent.iterdir()).decode("latin-1")
    for where, text in outputs.items():
        assert_clean(where, text)
