"""Every configured secret, and Authorization values echoed by a failing server, stay out of every output.

The real sidecar runs with all six secrets from a secrets directory; its chain RPC URL points at a
loopback server that answers every call with an error quoting secrets and an Authorization header.
Logs, /metrics, health, gRPC answers and errors, and the SQLite file must not contain any of them.
Secrets hold `"`, `\\`, non-ASCII and a line break, which JSON escapes: redaction works on values, and
every output is checked for the raw and the escaped forms of each secret.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

import sidecar
from devnet.waiting import wait_until
from sidecar.observe.audit import Auditor
from sidecar.observe.logs import setup_logging
from sidecar.secrets import SECRET_SPECS
from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn
from sidecar.store.records import ContentCheck, PoisonEvent
from sidecar.store.webhooks import Delivery, record_delivery_txn
from tests.sidecar.fake_vault import serving
from tests.sidecar.observe.support import running_sidecar
from tests.sidecar.sync.rig import created

SIDECAR = Path(sidecar.__file__).parent
T0 = 1_700_000_000.0

SECRETS = {
    # Sent only base64-encoded (Basic auth), so it may hold any character: a quote, a backslash, a line break.
    "jira_api_token": 'KNOWN-jira-"token\\-\n-' + secrets.token_hex(6),
    "jira_webhook_secret": "KNOWN-jira-hook-ünïcødé-€-" + secrets.token_hex(6),
    "waldur_token": "KNOWN-waldur-token-" + secrets.token_hex(6),  # an HTTP header value: plain ASCII
    "waldur_webhook_secret": 'KNOWN-waldur-"hook"\\' + secrets.token_hex(6),
    "signing_key": secrets.token_hex(32),
    "support_private_key": base64.b64encode(secrets.token_bytes(32)).decode(),
    "grpc_token": "KNOWN-grpc-token-" + secrets.token_hex(6),
    "grpc_read_token": "KNOWN-grpc-read-token-" + secrets.token_hex(6),
    "s3_access_key_id": "KNOWNS3KEYID" + secrets.token_hex(6).upper(),
    "s3_secret_access_key": "KNOWN-s3-secret/" + secrets.token_hex(12),
}
BASIC = base64.b64encode(f"svc@example.org:{SECRETS['jira_api_token']}".encode()).decode()
LEAKS = [*SECRETS.values(), BASIC]
BEARER = (("authorization", f"Bearer {SECRETS['grpc_token']}"),)


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


def forms(secret: str) -> set[str]:
    """The secret as it would appear raw, JSON-escaped, JSON-escaped to ASCII, or Python-repr'd."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}


def assert_clean(where: str, text: str, leaks: list[str] = LEAKS) -> None:
    for leak in leaks:
        for form in forms(leak):
            assert form not in text, f"a secret leaked into {where}"


def test_no_secret_reaches_logs_metrics_health_grpc_or_the_database(tmp_path: Path, leaky_node: str) -> None:
    assert {spec.name for spec in SECRET_SPECS} == set(SECRETS)  # every configured secret is injected
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for spec in SECRET_SPECS:
        (secrets_dir / spec.file_names[0]).write_text(SECRETS[spec.name] + "\n")
        (secrets_dir / spec.file_names[0]).chmod(0o600)
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
            status = control.GetStatus(control_pb2.GetStatusRequest(), timeout=5, metadata=BEARER)
            outputs["GetStatus"] = str(status) + status.SerializeToString().decode("utf-8", "replace")
            assert not status.healthy and status.problems
            served = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            outputs["grpc health"] = str(served)
            with pytest.raises(grpc.RpcError) as failed:
                control.SyncTicket(
                    control_pb2.SyncTicketRequest(ticket_id=SECRETS["jira_api_token"]), timeout=5, metadata=BEARER
                )
            error = failed.value
            assert isinstance(error, grpc.Call)
            outputs["SyncTicket error"] = f"{error.code()} {error.details()} {error.trailing_metadata()}"
    outputs["logs"] = proc.text()
    assert outputs["logs"].count("\n") > 5

    conn = sqlite3.connect(db)
    audit_rows = [tuple(r) for r in conn.execute("SELECT * FROM audit")]
    conn.close()
    assert audit_rows, "config_loaded was audited"
    outputs["audit rows"] = json.dumps(audit_rows, ensure_ascii=False)
    outputs["database file"] = b"".join(p.read_bytes() for p in db.parent.iterdir()).decode("utf-8", "replace")
    for where, text in outputs.items():
        assert_clean(where, text)


# Secrets that JSON rendering changes: a quote and a backslash are escaped, non-ASCII becomes \u escapes,
# a line break becomes \n. Redacting the rendered line would miss every one of them.
TRICKY = [
    'tok"en-quote-' + secrets.token_hex(4),
    "tok\\en-backslash-" + secrets.token_hex(4),
    "tøkén-ünïcødé-€-" + secrets.token_hex(4),
    "tok\nen-newline-" + secrets.token_hex(4),
]
TRICKY_IDS = ["quote", "backslash", "unicode", "newline"]  # stable test ids: the values are random


@pytest.fixture
def redacting(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The process's logging set up as the CLI does, with the tricky secrets configured."""
    stream = io.StringIO()
    setup_logging("debug", getattr(request, "param", "json"), TRICKY, stream=stream)
    yield stream
    setup_logging("warning", "text", [], stream=io.StringIO())


def _log_every_way(secret: str) -> None:
    log = logging.getLogger("test.tricky")
    extras = {"plain": secret, "nested": {"k": [secret, 1]}, "obj": ValueError(secret)}
    log.info("message carries %s", secret, extra=extras)
    try:
        raise RuntimeError(f"desk answered 401 for {secret}")
    except RuntimeError:
        log.exception("failed")


@pytest.mark.parametrize("secret", TRICKY, ids=TRICKY_IDS)
def test_json_logs_mask_secrets_whatever_characters_they_hold(redacting: io.StringIO, secret: str) -> None:
    _log_every_way(secret)
    text = redacting.getvalue()
    assert_clean("JSON log lines", text, TRICKY)
    lines = [json.loads(line) for line in text.strip().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["msg"] == "message carries <redacted>"
    assert (first["plain"], first["nested"], first["obj"]) == ("<redacted>", {"k": ["<redacted>", 1]}, "<redacted>")
    assert "RuntimeError: desk answered 401 for <redacted>" in second["error"]
    assert_clean("decoded JSON values", json.dumps(lines, ensure_ascii=False), TRICKY)


@pytest.mark.parametrize("redacting", ["text"], indirect=True)
@pytest.mark.parametrize("secret", TRICKY, ids=TRICKY_IDS)
def test_text_logs_mask_secrets_whatever_characters_they_hold(redacting: io.StringIO, secret: str) -> None:
    _log_every_way(secret)
    text = redacting.getvalue()
    assert_clean("text log lines", text, TRICKY)
    assert "message carries <redacted> plain=<redacted>" in text
    assert "RuntimeError: desk answered 401 for <redacted>" in text


def _audit_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY id")]


def _entry(event_type: str, secret: str) -> AuditEntry:
    """An entry with the secret in every column and in details, plus a content key that must be dropped."""
    return AuditEntry(
        event_type,
        ticket_id=f"ticket-{secret}",
        desk=secret,
        direction="inbound",
        actor=secret,
        status=secret,
        error=f"the desk said {secret}",
        tx_hash=secret,
        details={"delivery_id": secret, "ids": [secret, 7], "body": "ticket text"},
    )


async def test_every_audit_path_stores_rows_masked(redacting: io.StringIO, tmp_path: Path) -> None:
    """The Auditor, a caller cleaning first (the desk worker, the signer), and the stores that append their
    own rows (webhook intake, tickets, the chain inbox) all go through the one cleaning in append_audit_txn."""
    store = await Store.open(str(tmp_path / "sidecar.db"))
    auditor = Auditor(store, clock=lambda: T0)
    quote, backslash, unicode, newline = TRICKY
    try:
        await auditor.record(_entry("via_auditor", quote))
        cleaned = auditor.clean(_entry("cleaned", backslash))
        await store.write("cleaned first", lambda c: append_audit_txn(c, cleaned, T0))
        await store.write("raw append", lambda c: append_audit_txn(c, _entry("raw", unicode), T0))
        # Webhook intake: the accepted row is appended by the delivery store with the delivery.
        delivery = Delivery("jira", newline, f"jira:issue_updated {quote}", unicode, "ab" * 32, "accepted")
        details = {"delivery_id": newline, "event": f"jira:issue_updated {quote}", "external_id": unicode}
        hook = AuditEntry("webhook_accepted", desk="jira", status="accepted", details=details)
        assert await store.write("record webhook", record_delivery_txn, delivery, hook, T0)
        # The chain inbox: a ticket whose payload could not be opened, and an undecodable event.
        await store.write("cursor", init_cursor_txn, "devnet", 0)
        event = replace(created(1), height=1, position=0)
        poison = PoisonEvent(f"poison-{backslash}", 1, 1, f"bad event {newline}", "{}")
        batch = BlockBatch(1, [event, poison], {event.event_id: ContentCheck("placeholder", f"cannot open: {unicode}")})
        await store.write("commit", commit_blocks_txn, "devnet", [batch])
        rows = await store.read("audit", _audit_rows)
    finally:
        await store.close()
    kinds = [r["event_type"] for r in rows]
    expected = ["via_auditor", "cleaned", "raw", "webhook_accepted", "content_unavailable", "chain_event_poison"]
    assert kinds == expected
    assert_clean("audit rows", json.dumps(rows, ensure_ascii=False), TRICKY)
    assert_clean("audit rows (ASCII JSON)", json.dumps(rows), TRICKY)
    for row in rows[:3]:
        assert row["desk"] == row["actor"] == "<redacted>" and row["error"] == "the desk said <redacted>"
        details = json.loads(row["details_json"])
        assert details == {"delivery_id": "<redacted>", "ids": ["<redacted>", 7], "dropped": ["body"]}
    assert json.loads(rows[3]["details_json"])["external_id"] == "<redacted>"
    assert rows[4]["error"] == "cannot open: <redacted>" and rows[5]["error"] == "bad event <redacted>"
    # Cleaning is idempotent: a row cleaned by its caller and again on append keeps what it had.
    assert rows[0]["details_json"] == rows[1]["details_json"] == rows[2]["details_json"]


def test_append_audit_txn_is_the_only_writer_of_audit_rows() -> None:
    """No path can skip the cleaning: the one INSERT into the audit table is in append_audit_txn."""
    writers = [
        (path.relative_to(SIDECAR.parent).as_posix(), line.strip())
        for path in sorted(SIDECAR.rglob("*.py"))
        for line in path.read_text().splitlines()
        if re.search(r"(?i)\b(insert|replace)\b[^\n]*\binto\s+audit\b", line)
    ]
    assert len(writers) == 1, writers
    assert writers[0][0] == "sidecar/store/audit.py"
    source = (SIDECAR / "store" / "audit.py").read_text()
    body = source[source.index("def append_audit_txn"):source.index("def purge_audit_txn")]
    assert "clean_fields(entry, current_redactor())" in body and "INSERT INTO audit" in body
