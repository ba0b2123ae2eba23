"""10,000 queued tickets drained into the Jira simulator (20 ms latency; Jira's burst limit, per endpoint and
HTTP method, at 100 requests/s with a burst of 100 each), timed beside the rate-limit floor. The endpoints'
buckets fill in parallel, so the floor is the slowest endpoint's: the requests the sidecar's protocol needs on
it (one label search and one create per ticket, each on its own endpoint) beyond its free burst (every bucket
starts full), divided by its rate: (10,000 - 100) / 100 = 99 s. Goal: within 1.1x of the floor, 0 duplicates.
The sidecar paces each endpoint at `jira.requests_per_second` = 100, the simulator's rate.

The simulator runs in a process of its own, as a desk does: in the benchmark's process its request handling
would share the worker's interpreter lock and be charged to the sidecar's time.

The queue is filled directly (real SQLite store, real desk worker, real HTTP); no chain is needed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

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


def sealed_created(
    key: EnvelopeKey, n: int, subject: str = "", description: str = "queued for the drain benchmark"
) -> RequestCreated:
    """Ticket `n`'s creation event, its content sealed to `key` as the chain carries it."""
    tid = f"{SUBMITTER}/support/{n}"
    envelope = key.seal({"subject": subject or f"Bench ticket {n}", "description": description}, [key.public_bytes])
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
    return RequestCreated(
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


def created_events(key: EnvelopeKey, count: int) -> list[BlockBatch]:
    return [BlockBatch(n, [sealed_created(key, n)], {}) for n in range(1, count + 1)]


class Desk(Protocol):
    """What the drain needs of the desk: a JiraSim, or the address of one in another process."""

    base_url: str
    email: str
    api_token: str | None


@dataclass
class RemoteDesk:
    base_url: str
    email: str
    api_token: str | None


async def drain(tmp: Path, sim: Desk) -> tuple[float, int]:
    """Drain TICKETS queued creates into `sim`: (seconds, desk requests sent, as the sidecar counted them)."""
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
    started = time.perf_counter()
    while True:
        # As the product's loop runs it: step again at once while jobs come, wait as told when none was due.
        wait = await worker.step()
        if wait <= 0:
            continue
        left = await store.read(
            "left", lambda c: c.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
        )
        if left == 0:
            break
        await asyncio.sleep(min(wait, 0.05))
    elapsed = time.perf_counter() - started
    dead = await store.read("dead", lambda c: c.execute("SELECT COUNT(*) FROM jobs WHERE state = 'dead'").fetchone()[0])
    await desk.aclose()
    await store.close()
    assert dead == 0, f"{dead} jobs dead-lettered"
    sent = sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "servicedesk_api_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("service") == "jira"
    )
    return elapsed, int(sent)


def floor_seconds(needed: int, rate: float, burst: int) -> float:
    """The fastest any client can send `needed` requests through a token bucket that starts full."""
    return max(0, needed - burst) / rate


def endpoint_floor(needed: dict[str, int], rate: float, burst: int) -> float:
    """The fastest any client can send `needed` (endpoint -> requests) through one full bucket per endpoint."""
    return max((floor_seconds(n, rate, burst) for n in needed.values()), default=0.0)


@dataclass
class Answered:
    """What the simulator saw, sent back from its process once the drain is over."""

    labels: list[str]
    outcomes: Counter[str]
    endpoints: Counter[str]
    rate: float
    burst: int


def serve_sim(conn: Connection) -> None:
    """The simulator's process: serve until the parent says the drain is over, then report what it saw."""
    with JiraSim(latency=0.02, rate_per_second=LIMIT, burst=BURST, validate=False) as sim:
        conn.send(RemoteDesk(sim.base_url, sim.email, sim.api_token))
        conn.recv()
        labels = [label for issue in sim.list_issues() for label in issue.labels if label.startswith("ve-sup-")]
        with sim.lock:
            outcomes = Counter(r.outcome for r in sim.requests)
            endpoints = Counter(r.endpoint for r in sim.requests)
        assert sim.endpoint_buckets is not None  # Jira's limit: one bucket per endpoint and method
        conn.send(Answered(labels, outcomes, endpoints, sim.endpoint_buckets.rate, sim.endpoint_buckets.burst))


def main() -> None:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_sim, args=(theirs,), daemon=True)
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp:
            elapsed, requests = asyncio.run(drain(Path(tmp), ours.recv()))
        ours.send("done")
        seen: Answered = ours.recv()
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.kill()
    labels = seen.labels
    duplicates = len(labels) - len(set(labels))
    lost = TICKETS - len(set(labels))
    throttled = sum(n for outcome, n in seen.outcomes.items() if outcome.startswith("rate:"))
    busiest, on_busiest = seen.endpoints.most_common(1)[0]
    rate, burst = seen.rate, seen.burst
    # One label search and one create per ticket, on two endpoints: the protocol's minimum.
    per_endpoint = {"label search": TICKETS, "create": TICKETS}
    needed = sum(per_endpoint.values())
    floor = endpoint_floor(per_endpoint, rate, burst)
    report(
        "outbound_drain",
        [
            Figure("tickets", TICKETS, "tickets"),
            Figure("drain_time", elapsed, "s", floor, elapsed / floor),
            Figure("requests_sent", requests, "requests", needed, requests / needed),
            Figure("busiest_endpoint_requests", on_busiest, "requests", TICKETS, on_busiest / TICKETS),
            Figure("answered_429", throttled, "requests"),
            Figure("duplicates", duplicates, "issues"),
            Figure("lost", lost, "tickets"),
            Figure("throughput", TICKETS / elapsed, "tickets/s"),
        ],
    )
    verdict = "met" if elapsed <= 1.1 * floor and duplicates == 0 else "MISSED"
    print(f"  busiest endpoint: {busiest} ({on_busiest} requests)")
    print(
        f"  drain {elapsed:.1f} s vs floor {floor:.1f} s ({elapsed / floor:.3f}x, goal <= 1.1x),"
        f" {duplicates} duplicates (goal 0): {verdict}"
    )


if __name__ == "__main__":
    main()
