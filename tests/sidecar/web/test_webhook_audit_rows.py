"""The audit row of an accepted delivery is cleaned by the audit rule whichever redactor applies: the
process's (the receiver leaves cleaning to the writer thread then) or an Auditor's own (the receiver
cleans early with it). Over loopback HTTP to the real receiver and a real store; a few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from sidecar.config_schema import WebhookConfig
from sidecar.observe import logs
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.logs import Redactor, current_redactor, setup_logging
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.web.server import WebServer, build_web_app
from sidecar.web.webhooks import WebhookReceiver
from tests.sidecar.harness import read_rows
from tests.sidecar.web.test_webhook_hostile import jira_body, signed
from tests.sidecar.web.test_webhooks import SECRET

PROCESS_SECRET = "process-secret-4f1c9e"
OWN_SECRET = "auditor-secret-7b2d05"


@contextlib.contextmanager
def process_secrets(*secrets: str) -> Iterator[None]:
    """The process's logging and redactor set up as the CLI does, knowing `secrets`; as before afterwards."""
    root = logging.getLogger()
    handlers, level, redactor = list(root.handlers), root.level, current_redactor()
    setup_logging("info", "json", secrets=secrets, stream=io.StringIO())
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logs._current = redactor  # the process's redactor as it was (setup_logging sets it; nothing unsets it)


@contextlib.asynccontextmanager
async def receiving(db: Path, auditor_redactor: Redactor | None) -> AsyncIterator[str]:
    store = await Store.open(str(db))
    metrics = Metrics()
    auditor = Auditor(store, redactor=auditor_redactor)
    receiver = WebhookReceiver(WebhookConfig(), {"jira": SECRET, "waldur": None}, store, auditor, metrics)
    web = WebServer(build_web_app("/webhooks", store, HealthState(), metrics, receiver), "127.0.0.1:0")
    task = asyncio.create_task(web.serve())
    await asyncio.wait_for(web.wait_started(), 10)
    try:
        yield f"http://127.0.0.1:{web.port}/webhooks/jira"
    finally:
        web.stop()
        await asyncio.wait_for(task, 15)
        await store.close()


async def deliver(url: str, identifier: str) -> httpx.Response:
    body = jira_body(1)
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=body, headers=signed(body, identifier))


def audited_ids(db: Path) -> list[str]:
    details = read_rows(db, "SELECT details_json FROM audit WHERE event_type = 'webhook_accepted'")
    return [json.loads(text)["delivery_id"] for (text,) in details]


async def test_a_secret_known_to_the_process_is_masked_in_the_delivery_audit_row(tmp_path: Path) -> None:
    with process_secrets(PROCESS_SECRET):
        async with receiving(tmp_path / "a.db", None) as url:
            answer = await deliver(url, f"id-{PROCESS_SECRET}")
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    assert audited_ids(tmp_path / "a.db") == ["id-<redacted>"]


async def test_a_secret_known_only_to_the_auditor_is_masked_in_the_delivery_audit_row(tmp_path: Path) -> None:
    with process_secrets(PROCESS_SECRET):  # the process's redactor does not know OWN_SECRET
        async with receiving(tmp_path / "b.db", Redactor([OWN_SECRET])) as url:
            answer = await deliver(url, f"id-{OWN_SECRET}")
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    assert audited_ids(tmp_path / "b.db") == ["id-<redacted>"]
