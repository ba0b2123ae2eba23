"""Outbound sync latency: a ticket included on chain -> its Jira issue visible through the desk's API.

The real sidecar process (python -m sidecar run, both directions on, as inbound_latency runs it), a
fresh devnet node (200 ms commit timeout) and the Jira simulator at its defaults (no added latency,
3 s search-index lag). One ticket at a time, with the sidecar idle before each (its previous ticket
fully worked off, ref registration included) and then a random pause (0 to GAP seconds, seeded), so
arrivals are not in step with the phases of the sidecar's polling loops (in production they come at
random); BENCH_OUTBOUND_TICKETS tickets after BENCH_OUTBOUND_WARMUP unmeasured ones:

- included: the moment the node reports the create tx included, i.e. when its broadcast_tx_commit
  answers (CometBFT answers after the block is committed and its Tx event fired: the same event that
  the sidecar's websocket NewBlock subscription sees);
- visible: the first moment a GET of the issue by its key over the simulator's REST API (the agent's
  credential, polled every POLL seconds from the start of the broadcast) answers 200 with the ticket's
  label; the poll makes the figure up to POLL seconds late, never early.

Figures: p50/p90/p99 of visible - included, with the run's block time (header times over the run) as
baseline; the issue's goal is p50 under 0.25 s. For the breakdown: from inclusion to the simulator
receiving the create POST, and visible - the inclusion block's header time (BFT time: the previous
block's commit, so about one block interval more than "included").
"""

from __future__ import annotations

import base64
import os
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.inbound_latency import block_times, percentile
from bench.results import Figure, report
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, TxResult
from devnet.fixtures import ACCOUNT_NAMES, AGENT_NAMES
from devnet.jira_sim import JiraSim
from devnet.keys import TestAccount, genesis_app_state
from devnet.waiting import wait_until
from tests.sidecar.sync.inbound_kit import CUSTOMER, RECIPIENTS, Sidecar

TICKETS = int(os.environ.get("BENCH_OUTBOUND_TICKETS", "40"))
WARMUP = int(os.environ.get("BENCH_OUTBOUND_WARMUP", "2"))
POLL = 0.01  # seconds between GETs of the issue while it is not there yet
GAP = 1.0  # seconds: the longest random pause before a ticket (longer than every loop's idle wait)
GOAL = 0.25  # seconds, p50, at the devnet's 200 ms blocks
CREATE_PATH = "/rest/api/3/issue"


@dataclass(frozen=True)
class Sample:
    ticket_id: str
    height: int
    included: float  # unix seconds: broadcast_tx_commit answered
    visible: float  # unix seconds: the GET answered 200 with the ticket's label


def ticket_label(ticket_id: str) -> str:
    """`.../support/12` -> `ve-sup-000012` (what the sidecar labels the issue with)."""
    return f"ve-sup-{int(ticket_id.rsplit('/', 1)[-1]):06d}"


def create_included(customer: ChainDriver, n: int) -> tuple[str, int, float]:
    """One create tx through broadcast_tx_commit: (ticket id, height, the moment the node said included)."""
    customer.resync()  # the sidecar never signs for the customer, but a failed earlier tx may have left a gap
    msg = customer.create_msg("technical", "normal", {"subject": f"latency {n}", "description": "d"}, RECIPIENTS)
    raw = customer.sign([msg])
    answer = customer.call("broadcast_tx_commit", tx=base64.b64encode(raw).decode())
    included = time.time()
    assert int(answer["check_tx"].get("code", 0)) == 0, answer["check_tx"]
    height = int(answer["height"])
    result = TxResult.from_rpc(str(answer["hash"]), answer["tx_result"], height)
    assert result.ok, result
    created = [e["ticket_id"] for e in result.support_events() if e.get("event_type") == "support_request_created"]
    assert len(created) == 1, created
    return str(created[0]), height, included


def visible_at(desk: httpx.Client, key: str, label: str, timeout: float = 60.0) -> float:
    """The moment the GET of `key` first answers with `label` (another issue under that key fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = desk.get(f"{CREATE_PATH}/{key}", params={"fields": "labels"})
        seen = time.time()
        if answer.status_code == 200:
            labels = answer.json()["fields"].get("labels") or []
            assert label in labels, f"{key} carries {labels}, not {label}: another ticket's issue"
            return seen
        assert answer.status_code == 404, answer.text
        time.sleep(POLL)
    raise AssertionError(f"{key} ({label}) not visible within {timeout}s")


OUTBOUND_WORK = {
    "desk jobs": "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')",
    "chain inbox": "SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'",
    "chain txs": "SELECT COUNT(*) FROM tx_intents WHERE state IN ('queued', 'signed', 'broadcast')",
}


def outbound_busy(db: Path, height: int) -> str | None:
    """What the sidecar still has to do for the tickets so far (None: nothing): read the chain through
    `height`, work off the desk jobs and land the ref registrations. Inbound re-reads are left out: the
    sweep re-reads the issues the sidecar itself just changed, which is no outbound work."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        cursor = conn.execute("SELECT height FROM cursor").fetchone()
        if cursor is None or int(cursor[0]) < height:
            return "follower behind"
        for what, sql in OUTBOUND_WORK.items():
            if conn.execute(sql).fetchone()[0]:
                return what
        return None
    except sqlite3.OperationalError as exc:
        return f"database: {exc}"
    finally:
        conn.close()


def idle_through(side: Sidecar, height: int) -> None:
    """Wait until the sidecar has read the chain through `height` and has no outbound work open (a height
    taken once: under load the follower may trail a moving head by a block at any given moment)."""
    seen: list[str | None] = [None]

    def idle() -> bool:
        seen[0] = outbound_busy(side.db, height)
        return seen[0] is None

    try:
        wait_until(idle, timeout=120, what="the sidecar idle", interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still {seen[0]}\nsidecar log tail:\n{side.tail()}") from None


def run_tickets(node: DevnetNode, jira: JiraSim, side: Sidecar, count: int) -> list[Sample]:
    """`count` tickets one at a time; the n-th issue the sidecar creates is VESUPPORT-n (one project, nothing
    else creates issues), which the label check confirms."""
    samples = []
    rng = random.Random(16)
    auth = (jira.agent.email, jira.agent_token)
    with (
        ChainDriver(node.rpc_url, CUSTOMER) as customer,
        httpx.Client(base_url=jira.base_url, auth=auth, timeout=30) as desk,
    ):
        for n in range(1, count + 1):
            idle_through(side, node.height())  # the previous ticket worked off, its ref registration included
            time.sleep(rng.uniform(0.0, GAP))  # a random arrival, not a wait for anything
            key = f"VESUPPORT-{len(jira.list_issues()) + 1}"
            ticket_id, height, included = create_included(customer, n)
            visible = visible_at(desk, key, ticket_label(ticket_id))
            samples.append(Sample(ticket_id, height, included, visible))
    return samples


def create_requests(jira: JiraSim) -> list[float]:
    """When the simulator received each create POST (its request log, answered or not)."""
    with jira.lock:
        return sorted(r.at for r in jira.requests if r.method == "POST" and r.path == CREATE_PATH)


def measure(tmp: Path) -> list[Figure]:
    accounts = {name: TestAccount.from_name(name) for name in ACCOUNT_NAMES}
    state = genesis_app_state(accounts.values(), agents=[accounts[n] for n in AGENT_NAMES])
    node = DevnetNode(state, home=tmp / "node", log_level="error").start()
    try:
        with JiraSim() as jira:
            side = Sidecar(tmp, node, jira)
            side.start()
            try:
                first_height = node.height()
                samples = run_tickets(node, jira, side, WARMUP + TICKETS)[WARMUP:]
                posts = create_requests(jira)
            finally:
                side.stop()
        last_height = node.height()
        times = block_times(node.rpc_url, {s.height for s in samples} | {first_height, last_height})
    finally:
        node.cleanup()
    block = (times[last_height] - times[first_height]) / max(1, last_height - first_height)
    latency = [s.visible - s.included for s in samples]
    from_header = [s.visible - times[s.height] for s in samples]
    to_post = [min(at for at in posts if at >= s.included) - s.included for s in samples]
    p50, p90, p99 = (percentile(latency, q) for q in (0.5, 0.9, 0.99))
    h50 = percentile(from_header, 0.5)
    print(
        f"  outbound: included->visible p50 {p50:.3f}s p90 {p90:.3f}s p99 {p99:.3f}s (block {block:.3f}s); "
        f"included->create POST p50 {percentile(to_post, 0.5):.3f}s; header time->visible p50 {h50:.3f}s"
    )
    if p50 >= GOAL:
        print(f"  GOAL MISSED: included -> visible p50 {p50:.3f}s (goal < {GOAL}s)")
    return [
        Figure("tickets", len(samples), "tickets"),
        Figure("block_time", block, "s"),
        Figure("included_to_visible_p50", p50, "s", block, p50 / block),
        Figure("included_to_visible_p90", p90, "s", block, p90 / block),
        Figure("included_to_visible_p99", p99, "s", block, p99 / block),
        Figure("included_to_visible_mean", statistics.fmean(latency), "s"),
        Figure(
            "included_to_create_request_p50", percentile(to_post, 0.5), "s", block, percentile(to_post, 0.5) / block
        ),
        Figure("header_time_to_visible_p50", h50, "s", block, h50 / block),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp:
        figures = measure(Path(tmp))
    report("outbound_latency", figures)


if __name__ == "__main__":
    main()
