"""10,000 queued tickets drained into the Jira simulator (20 ms latency, 100 requests/s limit),
timed beside the rate-limit floor: the requests the sidecar's protocol needs beyond the simulator's free
burst (its token bucket starts full), divided by the limit. Goal: within 1.1x of the floor, 0 duplicates.

The queue is filled directly (real SQLite store, real desk worker, real HTTP); no chain is needed.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

from nacl.public import PrivateKey

from bench.results import Figure, report
from devnet.jira_sim import JiraSim
from sidecar.chain.envelope import EnvelopeKey
from sidecar.config import load_config
from sidecar.desks.jira import JiraDesk
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.store.inbox import BlockBatch, commit_blocks_txn, init_cursor_txn
from sidecar.store.jobs import dispatch_inbox_txn
from sidecar.store.records import RequestCreated
from sidecar.sync.content import ContentOpener
from sidecar.sync.outbound import DeskWorker, WorkerSettings

TICKETS = int(os.environ.get("BENCH_TICKETS", "10000"))
LIMIT = 100.0
BURST = 100
SUBMITTER = "virtengine1benchcustomer000000000000000000000"


def created_events(key: EnvelopeKey, count: int) -> list[BlockBatch]:
    batches = []
    for n in range(1, count + 1):
        tid = f"{SUBMITTER}/support/{n}"
        envelope = key.seal(
            {"subject": f"Bench ticket {n}", "description": "queued for the drain benchmark"}, [key.public_bytes]
        )
        payload = {
            "event_type": "support_request_created",
            "event_id": f"{tid}/1",
            "ticket_id": tid,
            "ticket_number": f"SUP-{n:06d}",
            "submitter": SUBMITTER,
            "category": "technical",
            "priority": "normal",
            "status": "open",
            "payload": {"envelope": envelope},
            "recipients": [key.key_id],
            "timestamp": 1764150000 + n,
        }
        event = RequestCreated(
            f"{tid}/1",
            "support_request_created",
            n,
            0,
            n,
            tid,
            SUBMITTER,
            payload["timestamp"],
            payload,
            ticket_number=f"SUP-{n:06d}",
            submitter=SUBMITTER,
            category="technical",
            priority="normal",
            status="open",
            recipients=(key.key_id,),
        )
        batches.append(BlockBatch(n, [event], {}))
    return batches


async def drain(tmp: Path, sim: JiraSim) -> tuple[float, int]:
    store = await Store.open(str(tmp / "sidecar.db"))
    key = EnvelopeKey(PrivateKey(os.urandom(32)))
    await store.write("cursor", init_cursor_txn, "bench", 0)
    events = created_events(key, TICKETS)
    for start in range(0, TICKETS, 1000):
        await store.write("commit", commit_blocks_txn, "bench", events[start : start + 1000])
    await store.write("dispatch", dispatch_inbox_txn, ["jira"], [], TICKETS, time.time())
    config = load_config(
        environ={"VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": str(sim.api_token)},
        flags={
            "jira.base_url": sim.base_url,
            "jira.username": sim.email,
            "sync.allow_insecure_http": "true",
            "webhook.require_signature": "false",
            "jira.requests_per_second": str(LIMIT),
        },
    )
    metrics = Metrics()
    desk = JiraDesk(config.settings.jira, str(sim.api_token), metrics=metrics, allow_insecure_http=True)
    worker = DeskWorker(
        desk,
        store,
        ContentOpener(store, key),
        Auditor(store),
        metrics,
        HealthState(),
        config.settings.retry,
        WorkerSettings(concurrency=8, keep_bases=False),  # outbound alone
        rng=random.Random(1),
    )
    before = len(sim.requests)
    started = time.perf_counter()
    while True:
        await worker.step()
        left = await store.read(
            "left", lambda c: c.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
        )
        if left == 0:
            break
    elapsed = time.perf_counter() - started
    dead = await store.read("dead", lambda c: c.execute("SELECT COUNT(*) FROM jobs WHERE state = 'dead'").fetchone()[0])
    await desk.aclose()
    await store.close()
    assert dead == 0, f"{dead} jobs dead-lettered"
    return elapsed, len(sim.requests) - before


def floor_seconds(needed: int, rate: float, burst: int) -> float:
    """The fastest any client can send `needed` requests through a token bucket that starts full."""
    return max(0, needed - burst) / rate


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp,
        JiraSim(latency=0.02, rate_per_second=LIMIT, burst=BURST, validate=False) as sim,
    ):
        elapsed, requests = asyncio.run(drain(Path(tmp), sim))
        issues = sim.list_issues()
        labels = [label for issue in issues for label in issue.labels if label.startswith("ve-sup-")]
        duplicates = len(labels) - len(set(labels))
        lost = TICKETS - len(set(labels))
        throttled = sum(1 for r in sim.requests if r.outcome.startswith("rate:"))
        assert sim.bucket is not None
        rate, burst = sim.bucket.rate, sim.bucket.burst
    needed = 2 * TICKETS  # one label search and one create per ticket: the protocol's minimum
    floor = floor_seconds(needed, rate, burst)
    report(
        "outbound_drain",
        [
            Figure("tickets", TICKETS, "tickets"),
            Figure("drain_time", elapsed, "s", floor, elapsed / floor),
            Figure("requests_sent", requests, "requests", needed, requests / needed),
            Figure("answered_429", throttled, "requests"),
            Figure("duplicates", duplicates, "issues"),
            Figure("lost", lost, "tickets"),
            Figure("throughput", TICKETS / elapsed, "tickets/s"),
        ],
    )
    verdict = "met" if elapsed <= 1.1 * floor and duplicates == 0 else "MISSED"
    print(
        f"  drain {elapsed:.1f} s vs floor {floor:.1f} s ({elapsed / floor:.3f}x, goal <= 1.1x),"
        f" {duplicates} duplicates (goal 0): {verdict}"
    )


if __name__ == "__main__":
    main()
