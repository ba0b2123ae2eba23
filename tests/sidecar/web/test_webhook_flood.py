"""A flood of forged webhooks at full speed against the real app following the real devnet node.

Every budget is opened wide so that all 10,000 requests reach the signature check, the most a forged
request can cost: the database must grow by less than 100 KB over the flood (it grew ~321 bytes per
rejection when each one was audited), and the follower must keep following the chain while tickets
are created on it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from devnet.cometbft import DevnetNode
from devnet.waiting import async_wait_until
from tests.sidecar.chain.scan import support_secret
from tests.sidecar.chain.test_follower_node import CHAIN_ID, caught_up, create, db_cursor, db_rows
from tests.sidecar.harness import app_flags, running_app
from tests.sidecar.web.test_webhook_hostile import forged, jira_body, metric
from tests.sidecar.web.test_webhooks import SECRET, url

pytestmark = pytest.mark.node
FLOOD = 10_000
CONNECTIONS = 64
TICKETS = 10
WIDE_OPEN = {
    "webhook.rate_limit_per_second": "100000",
    "webhook.rate_limit_per_source": "100000",
    "webhook.auth_failures_per_source": "100000",
}


def logical_bytes(db: Path) -> int:
    """The database's size as SQLite sees it, the WAL's pages included (what a checkpoint would leave)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(size)
    finally:
        conn.close()


async def flood(target: str) -> tuple[Counter[int], int]:
    """Send FLOOD forged deliveries over CONNECTIONS kept-alive connections; the answers' statuses, and how
    many sends were lost with their connection (a keep-alive connection the server closed as it was reused)
    and sent again."""
    statuses: Counter[int] = Counter()
    lost = 0
    numbers = iter(range(FLOOD))
    body = jira_body(0)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal lost
        for n in numbers:  # shared: each number is answered once
            while True:
                try:
                    answer = await client.post(target, content=body, headers=forged(body, f"forged-{n}"))
                    break
                except httpx.TransportError:
                    lost += 1
            statuses[answer.status_code] += 1

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(CONNECTIONS)))
    return statuses, lost


async def test_ten_thousand_forged_deliveries_cost_no_disk_and_do_not_hold_the_follower_back(
    devnet_node: DevnetNode, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    flags = app_flags(tmp_path, devnet_node.rpc_url, **{"chain.chain_id": CHAIN_ID, **WIDE_OPEN})
    env = {
        "VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY": support_secret(),
        "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": SECRET,
    }
    async with running_app(flags, env) as app, httpx.AsyncClient() as client:
        await caught_up(db, devnet_node)
        before, cursor_before = logical_bytes(db), db_cursor(db)
        tickets = asyncio.create_task(create(devnet_node, TICKETS, per_tx=1))  # created while the flood runs
        started = time.monotonic()
        statuses, lost = await flood(url(app, "jira"))
        seconds = time.monotonic() - started
        cursor_at_end = db_cursor(db)
        ids = await tickets
        head = await asyncio.to_thread(devnet_node.height)
        await async_wait_until(lambda: db_cursor(db) >= head, timeout=60, what=f"the cursor to reach {head}")
        after = logical_bytes(db)
        recorded = "SELECT COUNT(*) FROM audit WHERE event_type IN ('webhook_accepted', 'webhook_ignored')"
        per_request = db_rows(db, recorded)
        exported = (await client.get(f"http://127.0.0.1:{app.web_port}/metrics")).text
    print(  # the figures, for the record (nothing below depends on speed)
        json.dumps({"requests": FLOOD, "resent": lost, "seconds": round(seconds, 1),
                    "db_growth_bytes": after - before, "cursor": [cursor_before, cursor_at_end, head]})
    )
    assert statuses == Counter({401: FLOOD})  # every one reached the signature check and failed it
    assert FLOOD <= metric(exported, "jira", "bad_signature") <= FLOOD + lost
    assert after - before < 100 * 1024, (before, after)
    assert per_request == [0] and db_rows(db, "SELECT COUNT(*) FROM webhook_deliveries") == [0]
    created = db_rows(db, "SELECT ticket_id FROM chain_inbox WHERE event_type = 'support_request_created'")
    assert len(ids) == TICKETS and set(ids) <= set(created)
    summary = db_rows(db, "SELECT status, details_json FROM audit WHERE event_type = 'webhook_rejections'")
    assert summary and {status for status, _ in summary} == {"bad_signature"}  # one row per minute and at shutdown
    assert sum(json.loads(details)["count"] for _, details in summary) == metric(exported, "jira", "bad_signature")
