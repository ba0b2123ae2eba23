"""The webhook port against hostile senders, over loopback HTTP to the real app: per-source budgets,
bounded writer admission, replays under new delivery ids, timestamps, and answers that say nothing
about the configuration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.jira_hooks import sign_jira_body
from devnet.node_config import free_port
from devnet.waiting import async_wait_until
from sidecar.app import App
from tests.sidecar.harness import app_flags, read_rows, running_app
from tests.sidecar.web.test_webhooks import ENV, SECRET, VECTORS, WALDUR_SECRET, url

FLOODER = "127.0.0.2"  # a second loopback address: another source as far as the receiver can tell


def jira_body(n: int, *, timestamp_ms: int | str | None = "now") -> bytes:
    """The vector delivery made unique by `n` (the issue id), stamped now unless told otherwise."""
    doc = json.loads(VECTORS["deliveries"][0]["body"])
    doc["issue"]["id"] = str(20000 + n)
    doc.pop("timestamp", None)
    if timestamp_ms == "now":
        doc["timestamp"] = int(time.time() * 1000)
    elif timestamp_ms is not None:
        doc["timestamp"] = timestamp_ms
    return json.dumps(doc, separators=(",", ":")).encode()


def signed(body: bytes, identifier: str) -> dict[str, str]:
    return {
        **VECTORS["deliveries"][0]["headers"],
        "X-Hub-Signature": sign_jira_body(SECRET, body),
        "X-Atlassian-Webhook-Identifier": identifier,
    }


def forged(body: bytes, identifier: str) -> dict[str, str]:
    return {**signed(body, identifier), "X-Hub-Signature": "sha256=" + "0" * 64}


def metric(text: str, desk: str, outcome: str) -> float:
    prefix = f'servicedesk_webhook_deliveries_total{{desk="{desk}",outcome="{outcome}"}} '
    found = [float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)]
    assert len(found) == 1, (desk, outcome)
    return found[0]


@contextlib.asynccontextmanager
async def app_with(tmp_path: Path, env: dict[str, str] = ENV, **flags: str) -> AsyncIterator[App]:
    async with running_app(app_flags(tmp_path, f"http://127.0.0.1:{free_port()}", **flags), env) as app:
        yield app


async def test_a_flood_from_one_address_does_not_turn_signed_deliveries_into_429s(tmp_path: Path) -> None:
    """Defaults: 50 requests/s per source, 5 failed authentications/s per source, 100/s overall."""
    answers: list[int] = []
    stop = asyncio.Event()

    async def flood(client: httpx.AsyncClient, target: str) -> None:
        n = 0
        while not stop.is_set():
            bodies = [jira_body(n + i) for i in range(20)]
            batch = [client.post(target, content=body, headers=forged(body, "x")) for body in bodies]
            done = await asyncio.gather(*batch, return_exceptions=True)  # a connection lost mid-flood is no answer
            answers.extend(a.status_code for a in done if isinstance(a, httpx.Response))
            n += 20

    flooder = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=FLOODER), timeout=30)
    async with app_with(tmp_path) as app, flooder, httpx.AsyncClient(timeout=30) as desk:
        task = asyncio.create_task(flood(flooder, url(app, "jira")))
        try:
            await async_wait_until(lambda: 429 in answers, timeout=60, what="the flood to be rate limited")
            delivered = []
            for i in range(60):  # more than one source's budget, sent while the flood goes on
                body = jira_body(1000 + i)
                delivered.append(await desk.post(url(app, "jira"), content=body, headers=signed(body, f"real-{i}")))
            assert not task.done()
        finally:
            stop.set()
            await task
        metrics = (await desk.get(f"http://127.0.0.1:{app.web_port}/metrics")).text
    assert [(a.status_code, a.json()["status"]) for a in delivered] == [(200, "accepted")] * 60
    assert 429 in answers and set(answers) <= {401, 429}
    assert metric(metrics, "jira", "accepted") == 60
    assert metric(metrics, "jira", "rate_limited") == answers.count(429)
    accepted = read_rows(tmp_path / "sidecar.db", "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'accepted'")
    assert accepted == [(60,)]


async def test_a_flood_from_a_forbidden_source_is_rate_limited_too(tmp_path: Path) -> None:
    flooder = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=FLOODER), timeout=30)
    async with app_with(tmp_path, **{"webhook.allowed_sources": "127.0.0.1/32"}) as app, flooder:
        answers = await asyncio.gather(*[flooder.post(url(app, "jira"), content=b"{}") for _ in range(50)])
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {403, 429}  # the source's failure budget ran out before the allow-list was asked


async def test_intake_over_its_writer_slots_is_answered_503_without_writing(tmp_path: Path) -> None:
    db = tmp_path / "sidecar.db"
    async with app_with(tmp_path, **{"webhook.max_queued_writes": "1"}) as app, httpx.AsyncClient(timeout=60) as client:
        pending: list[asyncio.Task[httpx.Response]] = []

        def refused() -> bool:
            body, n = jira_body(len(pending)), len(pending)
            post = client.post(url(app, "jira"), content=body, headers=signed(body, f"held-{n}"))
            pending.append(asyncio.create_task(post))
            return any(t.done() and t.result().status_code == 503 for t in pending)

        holder = sqlite3.connect(db, isolation_level=None, timeout=10)
        holder.execute("BEGIN IMMEDIATE")  # the writer thread now waits: the first delivery keeps its slot
        try:
            await async_wait_until(refused, timeout=30, what="a delivery refused while the writer is held")
            # Held until every delivery but the one in the slot is answered: one still on its way when the
            # lock went would find the slot free again (on a loaded machine requests arrive late).
            await async_wait_until(
                lambda: sum(not t.done() for t in pending) <= 1, timeout=30, what="all but one delivery answered"
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        answers = await asyncio.gather(*pending)
        metrics = (await client.get(f"http://127.0.0.1:{app.web_port}/metrics")).text
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 1 and statuses.count(503) == len(statuses) - 1 >= 1
    busy = [a for a in answers if a.status_code == 503]
    assert all(a.headers["retry-after"] == "1" and a.json()["status"] == "overloaded" for a in busy)
    assert read_rows(db, "SELECT COUNT(*) FROM webhook_deliveries") == [(1,)]
    assert metric(metrics, "jira", "overloaded") == len(busy)


async def test_a_signed_body_replayed_under_a_new_delivery_id_is_a_duplicate(tmp_path: Path) -> None:
    body = jira_body(1)
    async with app_with(tmp_path) as app, httpx.AsyncClient() as client:
        first = await client.post(url(app, "jira"), content=body, headers=signed(body, "original"))
        replay = await client.post(url(app, "jira"), content=body, headers=signed(body, "replayed-as-new"))
        body2 = jira_body(2)  # once: a body stamped twice may differ by a millisecond, and its signature with it
        other = await client.post(url(app, "jira"), content=body2, headers=signed(body2, "other"))
    assert [(a.status_code, a.json()["status"]) for a in (first, replay, other)] == [
        (200, "accepted"), (200, "duplicate"), (200, "accepted")]
    assert read_rows(tmp_path / "sidecar.db", "SELECT delivery_id FROM webhook_deliveries ORDER BY id") == [
        ("original",), ("other",)]


@pytest.mark.parametrize(
    ("offset_s", "status", "outcome"),
    [(None, 400, "malformed"), (600, 400, "malformed"), (60, 200, "accepted"), (0, 200, "accepted")],
)
async def test_a_signed_jira_body_needs_a_timestamp_not_far_in_the_future(
    tmp_path: Path, offset_s: int | None, status: int, outcome: str
) -> None:
    stamp = None if offset_s is None else int((time.time() + offset_s) * 1000)
    body = jira_body(1, timestamp_ms=stamp)
    async with app_with(tmp_path) as app, httpx.AsyncClient() as client:
        answer = await client.post(url(app, "jira"), content=body, headers=signed(body, "stamped"))
    assert (answer.status_code, answer.json()["status"]) == (status, outcome)
    recorded = read_rows(tmp_path / "sidecar.db", "SELECT COUNT(*) FROM webhook_deliveries")
    assert recorded == [(1 if status == 200 else 0,)]


async def test_a_waldur_hook_with_the_shared_secret_needs_a_timestamp(tmp_path: Path) -> None:
    context = {"issue_uuid": "0f6b3c9a2f8e4a51b3c2d1e0f9a8b7c6"}
    bare = json.dumps({"type": "issue_update_succeeded", "context": context}).encode()
    created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    dated = json.dumps({"type": "issue_update_succeeded", "context": context, "created": created}).encode()
    async with app_with(tmp_path) as app, httpx.AsyncClient() as client:
        answers = [await client.post(url(app, "waldur"), content=b, headers={"X-Webhook-Secret": WALDUR_SECRET})
                   for b in (bare, dated)]
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(400, "malformed"), (200, "accepted")]
    assert answers[0].json()["error"] == "timestamp missing"


async def test_a_configured_secret_requires_a_signature_even_when_require_signature_is_off(tmp_path: Path) -> None:
    """`webhook.require_signature: false` only lets a desk without a secret (Waldur here) send unsigned hooks."""
    env = {"VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": SECRET}
    unsigned_jira = jira_body(1)
    unsigned_waldur = json.dumps({"type": "issue_update_succeeded", "context": {"issue_uuid": "ab" * 16}}).encode()
    async with app_with(tmp_path, env, **{"webhook.require_signature": "false"}) as app, httpx.AsyncClient() as c:
        jira = await c.post(url(app, "jira"), content=unsigned_jira)
        waldur = await c.post(url(app, "waldur"), content=unsigned_waldur)  # no timestamp needed when unsigned
    assert (jira.status_code, jira.json()) == (401, {"status": "bad_signature", "error": "bad signature"})
    assert (waldur.status_code, waldur.json()["status"]) == (200, "accepted")


async def _rejections(tmp_path: Path, env: dict[str, str], flags: dict[str, str]) -> tuple[list[Any], list[Any]]:
    """The answers to a forged and an unsigned delivery, and the audit summary written at shutdown."""
    body = jira_body(1)
    async with app_with(tmp_path, env, **flags) as app, httpx.AsyncClient() as client:
        answers = [
            await client.post(url(app, "jira"), content=body, headers=forged(body, "forged")),
            await client.post(url(app, "jira"), content=body),
        ]
    summary = read_rows(tmp_path / "sidecar.db", "SELECT status, error, details_json FROM audit "
                   "WHERE event_type = 'webhook_rejections'")
    return [(a.status_code, a.json()) for a in answers], summary


async def test_rejections_say_nothing_about_secrets_or_allow_lists(tmp_path: Path) -> None:
    with_secret, audited = await _rejections(tmp_path / "a", ENV, {"webhook.allowed_sources": "127.0.0.0/8"})
    without_secret, _ = await _rejections(tmp_path / "b", {}, {})
    assert with_secret == without_secret == [(401, {"status": "bad_signature", "error": "bad signature"})] * 2
    refused, audited_refusal = await _rejections(tmp_path / "c", ENV, {"webhook.allowed_sources": "10.0.0.0/8"})
    assert refused == [(403, {"status": "forbidden_source", "error": "forbidden"})] * 2
    assert [(s, json.loads(d)["count"]) for s, _, d in audited + audited_refusal] == [
        ("bad_signature", 2), ("forbidden_source", 2)]
    text = json.dumps(audited + audited_refusal).lower()
    assert not any(word in text for word in ("secret", "configured", "allowed_sources", "10.0.0.0", "webhook."))
