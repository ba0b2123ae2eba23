"""`sync.enable_inbound: false` stops inbound sync: deliveries are still verified and recorded, nothing acts on them.

The real app on the devnet node with the Jira simulator, a signed webhook naming an issue the sidecar
never linked: with inbound on it is taken and ignored (not linked); with inbound off it stays accepted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from devnet.cometbft import DevnetNode
from devnet.jira_hooks import sign_jira_body
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from tests.sidecar.harness import running_app
from tests.sidecar.sync.inbound_kit import SIGNING_KEY, rows
from tests.sidecar.sync.test_outbound_e2e import desk_env, desk_flags

pytestmark = pytest.mark.node
SECRET = "jira-hook-secret-for-the-switch"


def delivery_states(db: Path) -> list[tuple[str, str | None]]:
    return [(r[0], r[1]) for r in rows(db, "SELECT state, reason FROM webhook_deliveries ORDER BY id")]


@pytest.mark.parametrize("inbound", [True, False])
async def test_inbound_off_records_deliveries_and_acts_on_none(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path, inbound: bool
) -> None:
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{"sync.enable_inbound": str(inbound).lower()})
    env = {
        **desk_env(jira_sim, None),
        "VIRTENGINE_SERVICEDESK_SIGNING_KEY": SIGNING_KEY,
        "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": SECRET,
    }
    db = tmp_path / "sidecar.db"
    async with running_app(flags, env) as app:
        body = json.dumps(
            {"webhookEvent": "jira:issue_updated", "timestamp": int(time.time() * 1000), "issue": {"id": "77777"}}
        ).encode()
        headers = {
            "X-Hub-Signature": sign_jira_body(SECRET, body),
            "X-Atlassian-Webhook-Identifier": "switch-1",
            "Content-Type": "application/json",
        }
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"http://127.0.0.1:{app.web_port}/webhooks/jira", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["status"] == "accepted"
        if inbound:
            assert "inbound" in app.tasks and "inbound-sweep" in app.tasks
            await async_wait_until(
                lambda: delivery_states(db) == [("ignored", "issue not linked to a chain ticket")],
                timeout=20,
                what="the hint taken and ignored",
            )
        else:
            assert "inbound" not in app.tasks and "inbound-sweep" not in app.tasks, "inbound runs although off"
    if not inbound:
        assert delivery_states(db) == [("accepted", None)], "an accepted delivery was acted on"
