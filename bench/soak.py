"""The soak: `python -m bench.soak --duration S --seed N [--warmup S] [--rate 12] [--spread 60] [--out DIR]`.

The devnet node, the Jira and Waldur simulators (100 ms per answer, each with its real rate limits: Jira's burst
limit per endpoint and HTTP method, 100 requests/s with a burst of 100 each, the desk of bench/outbound_drain;
Waldur throttles no support endpoint, see devnet/waldur_rules.py), each simulator in a process of its own
(bench.sim_process), and the sidecar as a real process (`python -m sidecar run`).
For `duration` seconds a driver creates `rate` tickets/s on chain (12/s: 100x the operations guide's
10,000/day) and changes each ticket six times within `spread` seconds of its creation: three priority
changes on chain by the agent and three by agents at the desks (Jira, Waldur, Jira, or the other way round).
A sampler reads, once a second: the queue depth (outbound jobs and inbox, inbound re-reads, unconfirmed chain
txs) and cursor lag from the sidecar's /metrics, the cursor lag again as the node's head minus the sidecar's
stored cursor (the gauge stands still while the follower is paused by backpressure), its RSS and open file
descriptors from /proc, and the size of its database (the file and its -wal). After warm-up (by default a
fifth of the run, at most 300 s, and at least `spread` + 30 s: until the spread the number of tickets being
changed still grows, and the desks' connection pools fill a little after; see `default_warmup`; a run that
leaves under 30 s to judge is refused) each series is judged by
bench.soak_trend (open fds on their 10 s floor); any upward trend fails the run (exit 1), naming the series
and by how much. To tell a slow sidecar from a starved one, the samples also hold the
sidecar's CPU use and run-queue wait, the machine's load, the desks' answer time, the sidecar's
rate-limit waits and running jobs per desk, and each rig process's CPU time (the summary compares each one's
share of a core at the start and at the end: a simulator whose cost grows with its history starves the
sidecar, as the Jira simulator's sweep searches once did); the summary gives each desk's requests per
ticket and what bounds the desk: for Jira its busiest endpoint's limit, for Waldur the sidecar's pacing of
it (the rate-limit arithmetic).

Writes DIR/soak.json ({"machine", "figures", "samples", "verdict"}) and DIR/soak.png (one panel per series,
warm-up shaded); DIR defaults to bench/results.

The sidecar is configured as an operator would for this load (and nothing else differs from its defaults
but the devnet addresses, secrets and the test kit's retry timings and webhook limits):
`jira.requests_per_second` at Jira's limit (100/s, which the sidecar applies per endpoint as Jira does), and
`<desk>.max_concurrency` 32: a job takes two or three desk answers in a row (about 0.3 s at 100 ms each),
and each desk gets about seven jobs per ticket (the create, the chain's three changes, and the three desk
changes coming back from the chain), some 80 a second at 12 tickets/s; the same number bounds the inbound
re-reads and the desk's connections. Waldur has no limit of its own, so its pacing is the operator's
protection of their server: `waldur.requests_per_second` 240, above what this load asks of it (12.5
requests per ticket, 150/s) by a margin for its bursts, and a cap should the server answer faster. At 160/s
(the first hour-long run) the load used 94% of the pace and on average 16 of the 32 jobs waited on it.
`sync.sync_interval` and `jira.index_lag` at their defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from virtengine.support.v1 import tx_pb2

from bench.proc import cpu_seconds, memory_kb
from bench.results import RESULTS, Figure, machine
from bench.sim_process import RemoteSim
from bench.soak_trend import Tolerance, Trend, floor, judge
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, ChainDriverError, TxResult
from devnet.keys import TestAccount, genesis_app_state
from tests.sidecar.harness import cursor_height
from tests.sidecar.sync.inbound_kit import (
    AGENT,
    CUSTOMER,
    JIRA_PRIORITY,
    RECIPIENTS,
    WALDUR_PRIORITIES,
    Sidecar,
)

ACCOUNTS = ("customer", "agent", "sidecar")
PRIORITIES = tuple(JIRA_PRIORITY)  # chain priorities
LATENCY = 0.1  # seconds per desk answer
DESK_RATE, DESK_BURST = 100.0, 100  # Jira's limit per endpoint and method (requests/s, free burst)
CONCURRENCY = 32
WALDUR_PACE = 240.0  # requests/s the sidecar allows itself at Waldur (Waldur throttles no support view)
TICK = 0.25  # seconds between driver steps
MAX_MSGS = 50  # Msgs in one driver tx
# When each ticket's changes are made, as fractions of `spread` seconds after its creation: chain, desk.
CHAIN_AT = (0.1, 0.4, 0.7)
DESK_AT = (0.25, 0.55, 0.85)
SPREAD = 60.0
SIDECAR_FLAGS = {
    "jira.requests_per_second": str(DESK_RATE),
    "waldur.requests_per_second": str(WALDUR_PACE),
    "jira.max_concurrency": str(CONCURRENCY),
    "waldur.max_concurrency": str(CONCURRENCY),
    "sync.sync_interval": "30s",  # the default (the kit's 2 s is for short tests)
    "jira.index_lag": "60s",  # the default
}
# Series judged after warm-up, with their tolerances (see bench.soak_trend for the rule). The database is
# judged per ticket created: it grows legitimately with every ticket, so only growth beyond that is a trend.
TOLERANCES = {
    "queue_depth": Tolerance(50),
    "cursor_lag": Tolerance(5),
    "cursor_lag_store": Tolerance(5),
    "rss_mb": Tolerance(8),
    "open_fds": Tolerance(4),
    "db_bytes_per_ticket": Tolerance(512, relative=0.1),
}
# Series judged on their floor over the trailing seconds (bench.soak_trend.floor): open fds swing with the
# desks' pooled connections in use; a leaked descriptor raises the floor.
FLOORS = {"open_fds": 10.0}
UNITS = {
    "queue_depth": "",
    "cursor_lag": " blocks",
    "cursor_lag_store": " blocks",
    "rss_mb": " MB",
    "open_fds": "",
    "db_bytes_per_ticket": " B",
}


# the rig -------------------------------------------------------------------------------------------
class Rig:
    """The node, both simulators and the sidecar process."""

    def __init__(self, home: Path, seed: int) -> None:
        accounts = [TestAccount.from_name(n) for n in ACCOUNTS]
        agents = [a for a in accounts if a.name in ("agent", "sidecar")]
        self.node = DevnetNode(genesis_app_state(accounts, agents=agents), home=home / "node", log_level="error")
        self.node.start()
        desk: dict[str, Any] = {"latency": LATENCY, "validate": False}
        # Each simulator in its own process: in the driver's, they shared its interpreter lock with the driver
        # and the sampler (an hour-long run's driver process reached 73% of a core, two thirds of it the desks).
        # Jira: its burst limit, one bucket per endpoint and method; Waldur: no limit (no support view is throttled).
        self.jira = RemoteSim("jira", seed=seed, rate_per_second=DESK_RATE, burst=DESK_BURST, **desk)
        self.waldur = RemoteSim("waldur", priorities=WALDUR_PRIORITIES, seed=seed + 1, **desk)
        self.sidecar = Sidecar(home, self.node, self.jira, self.waldur, SIDECAR_FLAGS)  # type: ignore[arg-type]
        self.requests: Counter[str] = Counter()  # "<desk> <METHOD> <route template> <outcome>" -> count
        self.tallied = 0

    def pids(self) -> dict[str, int]:
        """The rig's own processes (this one: the driver and the sampler; the node's two; each simulator's)."""
        return {"driver": os.getpid(), **self.node.pids, "jira_sim": self.jira.pid, "waldur_sim": self.waldur.pid}

    def close(self) -> None:
        self.sidecar.kill()
        for sim in (self.jira, self.waldur):
            sim.stop()
        self.node.cleanup()

    def request_total(self) -> int:
        """Desk requests answered so far (the tallied ones and those still in the simulators' logs)."""
        return self.tallied + self.jira.answered() + self.waldur.answered()

    def tally_requests(self) -> None:
        """Move the simulators' request logs into counts by kind (the simulator's own endpoint names); they
        drop their webhook attempt logs too (both would grow for an hour)."""
        for sim in (self.jira, self.waldur):
            kinds, answered = sim.tally()
            self.requests.update({f"{sim.desk} {kind}": n for kind, n in kinds.items()})
            self.tallied += answered


# the driver ----------------------------------------------------------------------------------------
@dataclass
class Ticket:
    tid: str
    created: float  # monotonic
    chain_done: int = 0
    desk_done: int = 0
    first_desk: str = "jira"
    waited: int = -1  # the desk update that already waited for its link (counted once)


@dataclass
class Counts:
    created: int = 0
    chain_updates: int = 0
    desk_updates: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    deferred_desk: int = 0  # desk updates due before the sidecar had linked the issue (made once it is)


class Driver:
    """Creates tickets on chain at `rate`/s (one tx per tick, pipelined) and makes each ticket's six changes."""

    def __init__(self, rig: Rig, rate: float, seed: int, spread: float = SPREAD) -> None:
        self.rig, self.rate = rig, rate
        self.chain_at = [spread * f for f in CHAIN_AT]
        self.desk_at = [spread * f for f in DESK_AT]
        self.rng = random.Random(seed)
        self.customer = ChainDriver(rig.node.rpc_url, CUSTOMER)
        self.agent = ChainDriver(rig.node.rpc_url, AGENT)
        self.tickets: list[Ticket] = []
        self.active: list[Ticket] = []
        self.pending_creates: list[tuple[str, float]] = []  # tx hash, when broadcast
        self.pending_updates: list[str] = []
        self.links: dict[tuple[str, str], str] = {}  # (ticket, desk) -> Jira key / Waldur uuid
        self.last_ref = 0  # rowid of the last external_refs row read
        self.counts = Counts()
        self.started: float | None = None
        self.requested = 0  # tickets broadcast so far

    def close(self) -> None:
        self.customer.close()
        self.agent.close()

    def step(self, now: float) -> None:
        """One tick: the tickets due by the wall clock (a late tick catches up), then the changes due."""
        if self.started is None:
            self.started = now - TICK
        due = int(self.rate * (now - self.started)) - self.requested
        for start in range(0, due, MAX_MSGS):
            self._create(min(MAX_MSGS, due - start), now)
        self.requested += max(0, due)
        self._collect(now)
        self._read_links()
        self._chain_updates(now)
        self._desk_updates(now)

    def _create(self, n: int, now: float) -> None:
        msgs = [
            self.customer.create_msg("technical", "normal", {"subject": "soak", "description": "d"}, RECIPIENTS)
            for _ in range(n)
        ]
        self._broadcast(self.customer, msgs, self.pending_creates, now)

    def _broadcast(self, driver: ChainDriver, msgs: list[Any], pending: list[Any], now: float) -> None:
        try:
            checked = driver.broadcast(msgs)
        except ChainDriverError as exc:
            self.counts.refused[f"broadcast: {type(exc).__name__}"] += 1
            driver.resync()
            return
        if not checked.ok:
            self.counts.refused[f"check_tx code {checked.code}"] += 1
            driver.resync()
            return
        pending.append((checked.hash, now) if pending is self.pending_creates else checked.hash)

    def _collect(self, now: float) -> None:
        """Ticket ids of the create txs committed since the last tick (in order; stop at the first missing)."""
        while self.pending_creates:
            tx_hash, _ = self.pending_creates[0]
            result = self.customer.lookup(tx_hash)
            if result is None:
                return
            self.pending_creates.pop(0)
            if not result.ok:
                self.counts.refused[f"create deliver code {result.code}"] += 1
                self.customer.resync()
                continue
            for tid in _created(result):
                ticket = Ticket(tid, now, first_desk=self.rng.choice(("jira", "waldur")))
                self.tickets.append(ticket)
                self.active.append(ticket)
                self.counts.created += 1
        while self.pending_updates:
            result = self.agent.lookup(self.pending_updates[0])
            if result is None:
                return
            self.pending_updates.pop(0)
            if not result.ok:
                self.counts.refused[f"update deliver code {result.code}"] += 1
                self.agent.resync()

    def _read_links(self) -> None:
        """The desk issues the sidecar linked since the last read (its verified refs, read-only)."""
        db = self.rig.sidecar.db
        if not db.exists():
            return
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                found = conn.execute(
                    "SELECT rowid, ticket_id, desk, external_id, external_key FROM external_refs WHERE rowid > ?"
                    " AND verified = 1 ORDER BY rowid",
                    (self.last_ref,),
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return  # tables not created yet
        for rowid, tid, desk, external_id, key in found:
            self.links[(str(tid), str(desk))] = str(key if desk == "jira" else external_id)
            self.last_ref = max(self.last_ref, int(rowid))

    def _chain_updates(self, now: float) -> None:
        msgs = []
        for ticket in self.active:
            if ticket.chain_done < len(CHAIN_AT) and now - ticket.created >= self.chain_at[ticket.chain_done]:
                ticket.chain_done += 1
                priority = self.rng.choice(PRIORITIES)
                msgs.append(
                    tx_pb2.MsgUpdateSupportRequest(
                        sender=self.agent.address,
                        ticket_id=ticket.tid,
                        status="SUPPORT_STATUS_UNSPECIFIED",
                        priority=priority,
                    )
                )
        for start in range(0, len(msgs), MAX_MSGS):
            self._broadcast(self.agent, msgs[start : start + MAX_MSGS], self.pending_updates, now)
        self.counts.chain_updates += len(msgs)

    def _desk_updates(self, now: float) -> None:
        still = []
        for ticket in self.active:
            if ticket.desk_done < len(DESK_AT) and now - ticket.created >= self.desk_at[ticket.desk_done]:
                other = "waldur" if ticket.first_desk == "jira" else "jira"
                desk = ticket.first_desk if ticket.desk_done % 2 == 0 else other
                ref = self.links.get((ticket.tid, desk))
                if ref is None:
                    if ticket.waited != ticket.desk_done:
                        ticket.waited = ticket.desk_done
                        self.counts.deferred_desk += 1
                else:
                    priority = JIRA_PRIORITY[self.rng.choice(PRIORITIES)]
                    try:
                        if desk == "jira":
                            self.rig.jira.agent_update(ref, priority=priority)
                        else:
                            self.rig.waldur.agent_update(ref, priority=priority)
                        self.counts.desk_updates[desk] += 1
                    except Exception as exc:  # a desk refusing the agent is counted, never fatal
                        self.counts.refused[f"{desk} agent update: {type(exc).__name__}"] += 1
                    ticket.desk_done += 1
            if ticket.chain_done < len(CHAIN_AT) or ticket.desk_done < len(DESK_AT):
                still.append(ticket)
        self.active = still


def _created(result: TxResult) -> list[str]:
    return [e["ticket_id"] for e in result.support_events() if e.get("event_type") == "support_request_created"]


# the sampler ---------------------------------------------------------------------------------------
METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = METRIC.match(line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                continue
    return out


def _sum(metrics: dict[str, float], name: str, *labels: str) -> float:
    return sum(v for k, v in metrics.items() if k.partition("{")[0] == name and all(x in k for x in labels))


class Sampler(threading.Thread):
    """Once a second: queue depth and cursor lag (/metrics), RSS and open fds (/proc), database size."""

    def __init__(self, rig: Rig, driver: Driver, started: float) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.rig, self.driver, self.started = rig, driver, started
        self.samples: list[dict[str, float]] = []
        self.errors: Counter[str] = Counter()
        self.probes: Counter[str] = Counter()  # the sampler's own desk requests, left out of the sidecar's
        self.halt = threading.Event()
        self.client = httpx.Client(timeout=5)
        self.last_cpu: tuple[float, float, float, float] | None = None  # (when, sidecar s, machine busy, total)
        self.last_wait: tuple[float, float] | None = None  # (when, the sidecar's loop thread's run-queue wait s)
        self.cpu_seconds = 0.0  # the sidecar's CPU time at the last sample
        self.rig_pids = rig.pids()

    def run(self) -> None:
        tick = time.monotonic()
        while not self.halt.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a missed sample is counted, never fatal
                self.errors[type(exc).__name__] += 1
            tick += 1.0
            self.halt.wait(max(0.0, tick - time.monotonic()))
        self.client.close()

    def sample(self) -> dict[str, float]:
        proc = self.rig.sidecar.proc
        assert proc is not None, "the sidecar is not running"
        pid = proc.proc.pid
        metrics = parse_metrics(self.client.get(f"http://127.0.0.1:{self.rig.sidecar.port}/metrics").text)
        outbound = _sum(metrics, "servicedesk_queue_pending")
        inbound = _sum(metrics, "servicedesk_inbound_queue", 'state="pending"')
        intents = sum(
            _sum(metrics, "servicedesk_tx_intents", f'state="{s}"') for s in ("queued", "signed", "broadcast")
        )
        db = self.rig.sidecar.db
        size = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
        created = self.driver.counts.created
        cpu, busy = self._cpu(pid)
        return {
            "t": round(time.monotonic() - self.started, 3),
            "queue_depth": outbound + inbound + intents,
            "queue_outbound": outbound,
            "queue_inbound": inbound,
            "queue_intents": intents,
            "cursor_lag": _sum(metrics, "servicedesk_follower_lag_blocks"),
            "cursor_lag_store": float(self.rig.node.height() - cursor_height(db)),
            "rss_mb": memory_kb(pid, "VmRSS") / 1024,
            "open_fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
            "db_bytes": float(size),
            "db_bytes_per_ticket": size / created if created else 0.0,
            "tickets": float(created),
            "sidecar_cpu_percent": cpu,
            "machine_cpu_percent": busy,
            "desk_requests": float(self.rig.request_total()),
            "sidecar_runqueue_wait_percent": self._waited(pid),
            **{
                f"{d}_jobs_running": _sum(metrics, "servicedesk_jobs", f'desk="{d}"', 'state="running"')
                for d in ("jira", "waldur")
            },
            # each rig process's CPU time so far: which of them grows when the machine's load does
            **{f"rig_{name}_cpu_s": cpu_seconds(p) for name, p in self.rig_pids.items()},
            "machine_load1": float(Path("/proc/loadavg").read_text().split()[0]),
            **{f"{d}_answer_ms": self._probe(d) for d in ("jira", "waldur")},
            **{
                f"{d}_wait_{c}_s": _sum(metrics, "servicedesk_desk_rate_limit_wait_seconds_total", f'desk="{d}"', c)
                for d in ("jira", "waldur")
                for c in ("token_bucket", "retry_after")
            },
        }

    def _waited(self, pid: int) -> float:
        """Share of the last second the sidecar's event loop thread was runnable but not running (% of wall
        time, /proc/<pid>/schedstat): high when the machine's other work starves it of CPU."""
        waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
        now = time.monotonic()
        last, self.last_wait = self.last_wait, (now, waited)
        if last is None or now <= last[0]:
            return 0.0
        return round(100 * (waited - last[1]) / (now - last[0]), 1)

    def _probe(self, desk: str) -> float:
        """How long the desk takes to answer its cheapest authenticated call now (ms): what the sidecar sees."""
        if desk == "jira":
            url, headers = f"{self.rig.jira.base_url}/rest/api/3/myself", {}
            auth: tuple[str, str] | None = (self.rig.jira.email, str(self.rig.jira.api_token))
        else:
            url, auth = f"{self.rig.waldur.api_url}/users/me/", None
            headers = {"Authorization": f"Token {self.rig.waldur.token}"}
        self.probes[desk] += 1
        began = time.perf_counter()
        self.client.get(url, headers=headers, auth=auth)
        return round(1000 * (time.perf_counter() - began), 1)

    def _cpu(self, pid: int) -> tuple[float, float]:
        """The sidecar's CPU use (% of one core) and the machine's (% of all cores) since the last sample."""
        mine = cpu_seconds(pid)
        self.cpu_seconds = mine
        ticks = os.sysconf("SC_CLK_TCK")
        jiffies = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle, total = (jiffies[3] + jiffies[4]) / ticks, sum(jiffies) / ticks
        now = time.monotonic()
        last, self.last_cpu = self.last_cpu, (now, mine, total - idle, total)
        if last is None or now <= last[0] or total <= last[3]:
            return 0.0, 0.0
        return round(100 * (mine - last[1]) / (now - last[0]), 1), round(
            100 * (total - idle - last[2]) / (total - last[3]), 1
        )


def judged(samples: list[dict[str, float]], name: str) -> list[tuple[float, float]]:
    """The (t, value) series judged for `name`: its samples, or their floor for a series in FLOORS."""
    series = [(s["t"], s[name]) for s in samples]
    return floor(series, FLOORS[name]) if name in FLOORS else series


def rig_usage(rig: Rig) -> dict[str, dict[str, float]]:
    """CPU seconds and peak RSS of the rig's own processes, to tell a sidecar starved by its rig from a slow one."""
    pids = rig.pids()
    return {
        name: {"cpu_seconds": round(cpu_seconds(pid), 1), "peak_rss_mb": round(memory_kb(pid, "VmHWM") / 1024, 1)}
        for name, pid in pids.items()
    }


# the run -------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    samples: list[dict[str, float]]
    trends: list[Trend]
    counts: Counts
    requests: Counter[str]
    sampler_errors: Counter[str]
    drained_in: float | None  # seconds after driving stopped until the backlog was empty (None: not within drain)
    store: dict[str, Any]  # the sidecar's work by kind and state at the end (store_snapshot)
    probes: Counter[str] = field(default_factory=Counter)  # requests the sampler made of each desk


def run(
    duration: float, warmup: float, rate: float, seed: int, drain: float, home: Path, spread: float = SPREAD
) -> Outcome:
    rig = Rig(home, seed)
    driver: Driver | None = None
    sampler: Sampler | None = None
    try:
        rig.sidecar.start()
        started = time.monotonic()
        driver = Driver(rig, rate, seed, spread)
        sampler = Sampler(rig, driver, started)
        sampler.start()
        end, tick, last_tally = started + duration, started, started
        while time.monotonic() < end:
            driver.step(time.monotonic())
            if time.monotonic() - last_tally > 10:
                rig.tally_requests()
                last_tally = time.monotonic()
            tick += TICK
            time.sleep(max(0.0, tick - time.monotonic()))
        drained_in = _drain(rig, driver, sampler, drain, started + duration)
        sampler.halt.set()
        sampler.join(timeout=10)
        rig.tally_requests()
        store = store_snapshot(rig.sidecar.db)
        store["sidecar_cpu_seconds"] = round(sampler.cpu_seconds, 1)
        store["rig"] = rig_usage(rig)
        try:  # SIGTERM: the sidecar must exit 0 within 15 s (a starved machine can make it slower)
            rig.sidecar.stop()
            store["sidecar_stop"] = "exited 0 on SIGTERM"
        except AssertionError as exc:
            store["sidecar_stop"] = f"not clean: {str(exc).splitlines()[0]}"
        window = [s for s in sampler.samples if s["t"] <= duration]
        trends = [judge(name, judged(window, name), warmup, tol) for name, tol in TOLERANCES.items()]
        return Outcome(
            sampler.samples, trends, driver.counts, rig.requests, sampler.errors, drained_in, store, sampler.probes
        )
    finally:
        if sampler is not None:
            sampler.halt.set()
        if driver is not None:
            driver.close()
        rig.close()


def store_snapshot(db: Path) -> dict[str, Any]:
    """The sidecar's work at the end, read-only: desk jobs by desk, kind and state (with how many were retried
    and their error classes), inbound re-reads and tx intents by state: where a backlog sits."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        jobs = conn.execute(
            "SELECT desk, kind, state, COUNT(*), SUM(attempts > 0), SUM(attempts) FROM jobs GROUP BY 1, 2, 3"
        ).fetchall()
        errors = conn.execute(
            "SELECT desk, kind, substr(last_error, 1, 60), COUNT(*) FROM jobs WHERE last_error IS NOT NULL"
            " GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 20"
        ).fetchall()
        inbound = conn.execute("SELECT desk, state, COUNT(*) FROM inbound_queue GROUP BY 1, 2").fetchall()
        intents = conn.execute("SELECT msg_type, state, COUNT(*) FROM tx_intents GROUP BY 1, 2").fetchall()
        inbox = conn.execute("SELECT state, COUNT(*) FROM chain_inbox GROUP BY 1").fetchall()
    finally:
        conn.close()
    return {
        "jobs": {f"{d} {k} {s}": {"count": n, "retried": r or 0, "attempts": a or 0} for d, k, s, n, r, a in jobs},
        "job_errors": {f"{d} {k}: {e}": n for d, k, e, n in errors},
        "inbound_queue": {f"{d} {s}": n for d, s, n in inbound},
        "tx_intents": {f"{m.rpartition('.')[2]} {s}": n for m, s, n in intents},
        "chain_inbox": {str(s): n for s, n in inbox},
    }


def _drain(rig: Rig, driver: Driver, sampler: Sampler, limit: float, stopped: float) -> float | None:
    """After the driving: keep collecting txs and sampling until the backlog is empty (at most `limit` s)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        driver._collect(time.monotonic())
        last = sampler.samples[-1] if sampler.samples else None
        if last is not None and last["t"] > stopped - sampler.started and last["queue_depth"] == 0:
            return round(time.monotonic() - stopped, 1)
        time.sleep(0.5)
    return None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def figures(outcome: Outcome, duration: float, warmup: float) -> list[Figure]:
    window = [s for s in outcome.samples if warmup <= s["t"] <= duration]
    final = [s for s in outcome.samples if s["t"] <= duration][-1:] or [{}]
    out = [
        Figure("tickets_created", outcome.counts.created, "tickets"),
        Figure("ticket_rate", round(outcome.counts.created / duration, 2), "tickets/s"),
        Figure("chain_updates", outcome.counts.chain_updates, "updates"),
        Figure("desk_updates", sum(outcome.counts.desk_updates.values()), "updates"),
        Figure("final_backlog", final[0].get("queue_depth", 0.0), "items"),
        Figure("series_trending_upward", sum(t.upward for t in outcome.trends), "series"),
        Figure("sidecar_cpu_share", round(pct([s["sidecar_cpu_percent"] for s in window], 0.5), 1), "% of a core"),
        Figure("machine_load1", round(pct([s["machine_load1"] for s in window], 0.5), 1), "runnable"),
    ]
    for name in TOLERANCES:
        values = [s[name] for s in window]
        unit = UNITS[name].strip() or "items"
        out.append(Figure(f"{name}_p50", round(pct(values, 0.5), 2), unit))
        out.append(Figure(f"{name}_p99", round(pct(values, 0.99), 2), unit))
    return out


def plot(samples: list[dict[str, float]], warmup: float, duration: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*TOLERANCES, "db_bytes"]
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), sharex=True)
    ts = [s["t"] for s in samples]
    for ax, name in zip(axes, names, strict=True):
        ax.plot(ts, [s[name] for s in samples], linewidth=0.8)
        ax.axvspan(0, warmup, color="grey", alpha=0.2, label="warm-up")
        ax.axvline(duration, color="red", linewidth=0.6, linestyle="--")
        ax.set_ylabel(name + UNITS.get(name, " B"), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("seconds (dashed: driving stopped)")
    fig.suptitle("soak: sidecar resources and backlog, sampled once a second")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(outcome: Outcome, args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = figures(outcome, args.duration, args.warmup)
    verdict = {
        "passed": not any(t.upward for t in outcome.trends),
        "duration": args.duration,
        "warmup": args.warmup,
        "rate": args.rate,
        "seed": args.seed,
        "spread": args.spread,
        "rule": "upward when the least-squares rise over the post-warm-up window AND the last third's median minus"
        " the first third's both exceed the tolerance (bench/soak_trend.py); open_fds judged on its 10 s floor",
        "trends": [asdict(t) for t in outcome.trends],
        "updates": {"chain": outcome.counts.chain_updates, **dict(outcome.counts.desk_updates)},
        "deferred_desk_updates": outcome.counts.deferred_desk,
        "refused": dict(outcome.counts.refused),
        "sampler_errors": dict(outcome.sampler_errors),
        "drained_in_seconds": outcome.drained_in,
        "desk_requests": dict(sorted(outcome.requests.items())),
        "store_at_end": outcome.store,
        "desk_arithmetic": [
            {"desk": d, "requests": n, "per_ticket": round(p, 2), "tickets_per_s_at_limit": round(c, 2), "bound": b}
            for d, n, p, c, b in desk_arithmetic(outcome)
        ],
    }
    doc = {"machine": machine(), "figures": [asdict(f) for f in rows], "samples": outcome.samples, "verdict": verdict}
    json_path, png_path = out / "soak.json", out / "soak.png"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    plot(outcome.samples, args.warmup, args.duration, png_path)
    return json_path, png_path


def desk_arithmetic(outcome: Outcome) -> list[tuple[str, int, float, float, str]]:
    """(desk, requests answered, requests per ticket created, tickets/s the desk can carry, what bounds it).

    Jira is bounded by its busiest endpoint (each has its own 100/s); Waldur, which has no limit, by the
    sidecar's own pacing of it (`waldur.requests_per_second`)."""
    created = outcome.counts.created
    out = []
    for desk in ("jira", "waldur"):
        endpoints: Counter[str] = Counter()
        for k, n in outcome.requests.items():
            if k.startswith(desk + " "):
                endpoints[k[len(desk) + 1 :].rsplit(" ", 1)[0]] += n
        total = sum(endpoints.values()) - outcome.probes[desk]  # the sidecar's requests, not the sampler's
        per_ticket = total / created if created else 0.0
        if desk == "jira" and endpoints:
            busiest, on_it = endpoints.most_common(1)[0]
            carried = DESK_RATE * created / on_it
            bound = f"{busiest}: {on_it / created if created else 0:.1f} per ticket at {DESK_RATE:g}/s"
        else:
            carried = WALDUR_PACE / per_ticket if per_ticket else 0.0
            bound = f"waldur.requests_per_second {WALDUR_PACE:g}"
        out.append((desk, total, per_ticket, carried, bound))
    return out


def cpu_line(outcome: Outcome) -> str:
    """The sidecar's CPU use and how much the machine starved it (other work on the same cores)."""
    samples = outcome.samples
    wall = samples[-1]["t"] if samples else 0.0
    cpu = float(outcome.store.get("sidecar_cpu_seconds", 0.0))
    done = sum(v["count"] for k, v in outcome.store.get("jobs", {}).items() if k.endswith(" done"))
    wait = statistics.median(s["sidecar_runqueue_wait_percent"] for s in samples) if samples else 0.0
    load = statistics.median(s["machine_load1"] for s in samples) if samples else 0.0
    per_job = f", {1000 * cpu / done:.0f} ms per desk job done ({done:,})" if done else ""
    rig = outcome.store.get("rig", {})
    others = ", ".join(
        f"{name} {use['cpu_seconds']:,.0f} s (peak {use['peak_rss_mb']:,.0f} MB)" for name, use in rig.items()
    )
    return (
        f"sidecar CPU {cpu:,.0f} s over {wall:,.0f} s ({100 * cpu / wall if wall else 0:.0f}% of a core){per_job};"
        f" its loop runnable but waiting for a CPU {wait:.0f}% of the time (median); machine load1 median {load:.1f}"
        f" on {os.cpu_count()} cores" + (f"; the rig's processes: {others}" if others else "")
    )


def rig_growth(samples: list[dict[str, float]], warmup: float, duration: float, span: float = 300.0) -> str:
    """Each rig process's CPU share (% of a core) in the first `span` seconds after warm-up and in the last
    `span` of the driving: a simulator whose cost grows with its history starves the sidecar beside it."""
    names = [k for k in (samples[0] if samples else {}) if k.startswith("rig_") and k.endswith("_cpu_s")]

    def share(name: str, start: float, end: float) -> float | None:
        inside = [s for s in samples if start <= s["t"] <= end]
        if len(inside) < 2 or inside[-1]["t"] <= inside[0]["t"]:
            return None
        return 100 * (inside[-1][name] - inside[0][name]) / (inside[-1]["t"] - inside[0]["t"])

    parts = []
    for name in names:
        first, last = share(name, warmup, warmup + span), share(name, duration - span, duration)
        if first is not None and last is not None:
            parts.append(f"{name[4:-6]} {first:.0f}% -> {last:.0f}%")
    return f"the rig's CPU share, first vs last {span:g} s judged: " + ", ".join(parts) if parts else ""


def summary(outcome: Outcome, args: argparse.Namespace, paths: tuple[Path, Path]) -> str:
    c = outcome.counts
    lines = [
        f"== soak: {args.duration:g} s at {args.rate:g} tickets/s (seed {args.seed}, warm-up {args.warmup:g} s)",
        f"  tickets created {c.created:,}; updates on chain {c.chain_updates:,}, at the desks"
        f" {sum(c.desk_updates.values()):,} ({dict(c.desk_updates)}; {c.deferred_desk:,} waits for a link)",
    ]
    if c.refused:
        lines.append(f"  refused: {dict(c.refused)}")
    if outcome.sampler_errors:
        lines.append(f"  missed samples: {dict(outcome.sampler_errors)}")
    for f in figures(outcome, args.duration, args.warmup):
        lines.append(f"  {f.name:<26} {f.value:,.2f} {f.unit}")
    drained = f"{outcome.drained_in:g} s" if outcome.drained_in is not None else f"not within {args.drain:g} s"
    lines.append(f"  backlog drained after the driving stopped: {drained}")
    open_work = {
        k: v["count"] for k, v in outcome.store.get("jobs", {}).items() if not k.endswith((" done", " skipped"))
    }
    lines.append(f"  open desk jobs at the end: {open_work or 'none'}")
    lines.append("  " + cpu_line(outcome))
    if growth := rig_growth(outcome.samples, args.warmup, args.duration):
        lines.append("  " + growth)
    lines.append(f"  sidecar stop: {outcome.store.get('sidecar_stop', 'unknown')}")
    for desk, total, per_ticket, carried, bound in desk_arithmetic(outcome):
        if outcome.drained_in is None:  # work left undone: requests per ticket would understate the cost
            lines.append(f"  {desk}: {total:,} requests; the backlog did not drain, so no cost per ticket")
            continue
        lines.append(
            f"  {desk}: {total:,} requests, {per_ticket:.1f} per ticket created"
            f" -> carries {carried:.1f} tickets/s (bound: {bound})"
        )
    busiest = outcome.requests.most_common(8)
    lines.append("  desk requests (most frequent): " + "; ".join(f"{k}: {v:,}" for k, v in busiest))
    lines += ["  " + t.describe(UNITS[t.name]) for t in outcome.trends]
    upward = [t.name for t in outcome.trends if t.upward]
    lines.append(f"  verdict: {'FAIL: ' + ', '.join(upward) + ' trend upward' if upward else 'pass'}")
    lines.append(f"  -> {paths[0]}, {paths[1]}")
    return "\n".join(lines)


# The least a run must leave to judge after its warm-up (the suite's short soak judges 30 s at a low rate): a
# trend fitted over fewer samples is a guess.
MIN_JUDGED = 30.0
# What the ramp takes beyond the spread: open fds rise while the desks' connection pools fill, which ended 55 s
# and 66 s into runs at 12 tickets/s with the default 60 s spread (a 120 s run judged from 24 s failed on it).
RAMP_MARGIN = 30.0


def default_warmup(duration: float, spread: float) -> float:
    """The seconds not judged when --warmup is not given: a fifth of the run, at most 300 s, but never before the
    ramp is over (the spread, until which the tickets being changed still grow, plus RAMP_MARGIN)."""
    return max(spread + RAMP_MARGIN, min(300.0, duration / 5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds not judged (default: 1/5 of the run, at most 300 s, and never under the spread plus 30 s)",
    )
    parser.add_argument("--rate", type=float, default=12.0, help="tickets created per second")
    parser.add_argument(
        "--spread", type=float, default=SPREAD, help="seconds over which each ticket's six changes are made"
    )
    parser.add_argument("--drain", type=float, default=120.0, help="seconds allowed to drain after the load")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where soak.json and soak.png go")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = default_warmup(args.duration, args.spread)
    if args.duration - args.warmup < MIN_JUDGED:
        parser.error(
            f"--duration {args.duration:g} leaves {max(0.0, args.duration - args.warmup):g} s after a warm-up of"
            f" {args.warmup:g} s; at least {MIN_JUDGED:g} s must be judged (a longer --duration or a shorter --warmup)"
        )
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        outcome = run(args.duration, args.warmup, args.rate, args.seed, args.drain, Path(tmp), args.spread)
    paths = write(outcome, args, args.out)
    print(summary(outcome, args, paths))
    upward = [t for t in outcome.trends if t.upward]
    for t in upward:
        print(f"FAIL {t.describe(UNITS[t.name])}", file=sys.stderr)
    return 1 if upward else 0


if __name__ == "__main__":
    sys.exit(main())
