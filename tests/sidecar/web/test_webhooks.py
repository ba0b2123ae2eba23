"""The webhook receivers of the real app over loopback HTTP: every outcome, its status, its row and audit."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.jira_hooks import sign_jira_body
from devnet.node_config import free_port
from sidecar.app import App
from tests.sidecar.harness import app_flags, read_rows, running_app
from tests.vectors import load

VECTORS = load("jira_webhooks.json")
SECRET = VECTORS["secret"]
WALDUR_SECRET = "waldur-hook-secret"
DEEP = b"[" * 1200 + b"]" * 1200  # json.loads alone would raise RecursionError
ENV = {
    "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": SECRET,
    "VIRTENGINE_SERVICEDESK_WALDUR_WEBHOOK_SECRET": WALDUR_SECRET,
}


def fresh(delivery: dict[str, Any], identifier: str) -> tuple[bytes, dict[str, str]]:
    """The vector delivery with a timestamp of now, signed again, under a new delivery id."""
    doc = json.loads(delivery["body"])
    doc["timestamp"] = int(time.time() * 1000)
    body = json.dumps(doc, separators=(",", ":")).encode()
    headers = {**delivery["headers"], "X-Hub-Signature": sign_jira_body(SECRET, body),
               "X-Atlassian-Webhook-Identifier": identifier}
    return body, headers


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    flags = app_flags(tmp_path, f"http://127.0.0.1:{free_port()}", **{"webhook.max_body_bytes": "4096"})
    async with running_app(flags, ENV) as running:
        yield running


def url(app: App, desk: str) -> str:
    return f"http://127.0.0.1:{app.web_port}/webhooks/{desk}"


async def test_a_signed_jira_delivery_is_recorded_once_by_ids_only(app: App, tmp_path: Path) -> None:
    body, headers = fresh(VECTORS["deliveries"][0], "delivery-1")
    async with httpx.AsyncClient() as client:
        first = await client.post(url(app, "jira"), content=body, headers=headers)
        again = await client.post(url(app, "jira"), content=body, headers={**headers, "X-Atlassian-Webhook-Retry": "1"})
        metrics = (await client.get(f"http://127.0.0.1:{app.web_port}/metrics")).text
    assert (first.status_code, first.json()["status"]) == (200, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")  # Jira would retry a 409
    db = tmp_path / "sidecar.db"
    assert read_rows(db, "SELECT desk, delivery_id, event_type, external_id, state FROM webhook_deliveries") == [
        ("jira", "delivery-1", "jira:issue_updated", "10007", "accepted")]
    assert read_rows(db, "SELECT event_type, status FROM audit WHERE event_type LIKE 'webhook%'") == [
        ("webhook_accepted", "accepted")]
    assert 'servicedesk_webhook_deliveries_total{desk="jira",outcome="duplicate"} 1.0' in metrics
    conn = sqlite3.connect(db)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "Lease 42" not in dump  # the summary in the body is never stored


async def test_a_recorded_delivery_logs_one_external_callback_line_with_ids_only(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """The operations guide's `grep "external callback"`: one line per recorded delivery (desk, outcome, event,
    delivery id), none for its duplicate, and neither the body's content nor a secret in any line."""
    caplog.set_level(logging.INFO)
    body, headers = fresh(VECTORS["deliveries"][0], "delivery-logged")
    async with httpx.AsyncClient() as client:
        for retry in ("0", "1"):
            retried = {**headers, "X-Atlassian-Webhook-Retry": retry}
            assert (await client.post(url(app, "jira"), content=body, headers=retried)).status_code == 200
    lines = [r for r in caplog.records if r.getMessage().startswith("external callback")]
    assert [(r.getMessage(), r.desk, r.outcome, r.event, r.delivery_id) for r in lines] == [  # type: ignore[attr-defined]
        ("external callback recorded", "jira", "accepted", "jira:issue_updated", "delivery-logged")]
    assert not [r for r in caplog.records if "Lease 42" in str(vars(r)) or SECRET in str(vars(r))]


async def test_the_vectors_verify_but_are_too_old(app: App, tmp_path: Path) -> None:
    """The vectors are signed for real but were sent a year ago: acknowledged, recorded as ignored."""
    async with httpx.AsyncClient() as client:
        answers = [await client.post(url(app, "jira"), content=d["body"].encode(), headers=d["headers"])
                   for d in VECTORS["deliveries"]]
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "stale")] * len(answers)
    states = read_rows(tmp_path / "sidecar.db", "SELECT state, reason FROM webhook_deliveries")
    assert states and all(state == "ignored" and "webhook.max_age" in reason for state, reason in states)


@pytest.mark.parametrize(
    ("change", "status", "outcome"),
    [
        (lambda b, h: (b, {**h, "X-Hub-Signature": "sha256=" + "0" * 64}), 401, "bad_signature"),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "X-Hub-Signature"}), 401, "bad_signature"),
        (lambda b, h: (b + b" ", h), 401, "bad_signature"),  # one byte more than was signed
        (lambda b, h: (b"[1, 2]", {**h, "X-Hub-Signature": sign_jira_body(SECRET, b"[1, 2]")}), 400, "malformed"),
        (lambda b, h: (b"x" * 5000, {**h, "X-Hub-Signature": sign_jira_body(SECRET, b"x" * 5000)}), 413, "too_large"),
        (lambda b, h: (DEEP, {**h, "X-Hub-Signature": sign_jira_body(SECRET, DEEP)}), 400, "malformed"),  # no crash
    ],
)
async def test_bad_deliveries_get_their_status_write_nothing_and_are_summed_up_at_shutdown(
    tmp_path: Path, change: Any, status: int, outcome: str
) -> None:
    body, headers = change(*fresh(VECTORS["deliveries"][1], "delivery-bad"))
    db = tmp_path / "sidecar.db"
    flags = app_flags(tmp_path, f"http://127.0.0.1:{free_port()}", **{"webhook.max_body_bytes": "4096"})
    async with running_app(flags, ENV) as running, httpx.AsyncClient() as client:
        answer = await client.post(url(running, "jira"), content=body, headers=headers)
        assert read_rows(db, "SELECT COUNT(*) FROM audit WHERE event_type LIKE 'webhook%'") == [(0,)]  # nothing durable
    assert (answer.status_code, answer.json()["status"]) == (status, outcome)
    assert read_rows(db, "SELECT COUNT(*) FROM webhook_deliveries") == [(0,)]
    audited = read_rows(db, "SELECT event_type, status, details_json FROM audit WHERE event_type LIKE 'webhook%'")
    assert [(e, s) for e, s, _ in audited] == [("webhook_rejections", outcome)]  # the summary, written at shutdown
    details = json.loads(audited[0][2])
    assert (details["count"], details["sources"]) == (1, ["127.0.0.1"]) and details["reasons"]
    assert SECRET not in str(audited)


async def test_waldur_hooks_authenticate_by_shared_secret_json_or_form(app: App, tmp_path: Path) -> None:
    context = {"issue_uuid": "0f6b3c9a2f8e4a51b3c2d1e0f9a8b7c6", "issue_key": "WAL-1"}
    created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    payload: dict[str, Any] = {"created": created, "type": "issue_update_succeeded", "context": context}
    body = json.dumps(payload).encode()
    form = httpx.QueryParams({**payload, "type": "issue_creation_succeeded", "context": json.dumps(context)})
    async with httpx.AsyncClient() as client:
        good = await client.post(url(app, "waldur"), content=body, headers={"X-Webhook-Secret": WALDUR_SECRET})
        wrong = await client.post(url(app, "waldur"), content=body + b" ", headers={"X-Webhook-Secret": "guess"})
        bare = await client.post(url(app, "waldur"), content=body + b"  ")
        formed = await client.post(url(app, "waldur"), content=str(form).encode(), headers={
            "X-Webhook-Secret": WALDUR_SECRET, "Content-Type": "application/x-www-form-urlencoded"})
    assert [a.status_code for a in (good, wrong, bare, formed)] == [200, 401, 401, 200]
    assert read_rows(tmp_path / "sidecar.db", "SELECT event_type, external_id FROM webhook_deliveries ORDER BY id") == [
        ("issue_update_succeeded", context["issue_uuid"]), ("issue_creation_succeeded", context["issue_uuid"])]


async def test_source_allow_list_and_rate_limit(tmp_path: Path) -> None:
    flags = app_flags(tmp_path, f"http://127.0.0.1:{free_port()}",
                      **{"webhook.allowed_sources": "10.0.0.0/8", "webhook.rate_limit_per_second": "1"})
    body, headers = fresh(VECTORS["deliveries"][0], "delivery-2")
    async with running_app(flags, ENV) as running, httpx.AsyncClient() as client:
        refused = await client.post(url(running, "jira"), content=body, headers=headers)
    assert (refused.status_code, refused.json()["status"]) == (403, "forbidden_source")

    flags = app_flags(tmp_path, f"http://127.0.0.1:{free_port()}", **{"webhook.rate_limit_per_second": "1"})
    async with running_app(flags, ENV) as running, httpx.AsyncClient() as client:
        answers = [await client.post(url(running, "jira"), content=body, headers=headers) for _ in range(3)]
    assert answers[0].status_code == 200
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(a.headers["retry-after"] == "1" for a in limited)


async def test_a_change_by_the_sidecars_own_jira_account_is_recorded_as_an_echo(tmp_path: Path) -> None:
    own, theirs = fresh(VECTORS["deliveries"][0], "by-us"), fresh(VECTORS["deliveries"][0], "by-an-agent")
    actor = json.loads(own[0])["user"]["accountId"]
    doc = json.loads(theirs[0])
    doc["user"]["accountId"] = "someone-else"
    other = json.dumps(doc).encode()
    flags = app_flags(tmp_path, f"http://127.0.0.1:{free_port()}", **{"jira.account_id": actor})
    async with running_app(flags, ENV) as running, httpx.AsyncClient() as client:
        echo = await client.post(url(running, "jira"), content=own[0], headers=own[1])
        agent = await client.post(url(running, "jira"), content=other,
                                  headers={**theirs[1], "X-Hub-Signature": sign_jira_body(SECRET, other)})
    assert [echo.json()["status"], agent.json()["status"]] == ["echo", "accepted"]
    stored = read_rows(tmp_path / "sidecar.db", "SELECT delivery_id, state, reason FROM webhook_deliveries ORDER BY id")
    assert stored == [
        ("by-us", "ignored", "the sidecar's own change"), ("by-an-agent", "accepted", None)]
