"""Signed Jira webhooks durably accepted per second, beside a bare Starlette endpoint on plain uvicorn.

The bench process serves, on loopback: the bare endpoint, a plain Starlette app on uvicorn as anyone would
run it (one route that reads the body and answers 200 {}, no middleware, no access log: the same uvicorn and
HTTP implementation, and a port of its own); and, through the product's WebServer and app (its middleware
and header/body deadlines included), three receivers: `/grouped/webhooks/jira` (the real receiver, deliveries
sharing commits), `/single/webhooks/jira` (the real receiver with group commit off: each delivery its own
durable transaction, the former path) and `/unrecorded/webhooks/jira` (the real receiver and group commit whose
group transaction records nothing: the intake's rate without its durable record, so the run itself tells the
record's share of the distance to bare from the rest's). Each receiver has its own SQLite file
(synchronous=FULL). The load comes from bench.loadgen in its own process, so client and servers never share an
event loop or a GIL: BENCH_CONNECTIONS kept-alive connections, every request a fresh delivery id and a freshly
signed ~1.1 KB body stamped now. Rounds alternate the four targets so a neighbour's load spreads over all of
them; the median round is reported.

Afterwards the rows each recording receiver stored are counted against the 200s it answered: they must be
equal (no duplicate stored, none lost), and each database's audit chain must verify; the unrecorded one must
hold none. The server's CPU per answer is reported whole (`*_cpu`: the process, both servers and the writer
threads) and split (`*_loop_cpu`: the event loop's thread, HTTP and the receiver; `*_writer_cpu`: the SQLite
writer threads), from Linux's per-thread counters, with the times the writer threads waited per answer
(`*_writer_waits`: for the interpreter lock or for work).

Two figures describe the machine rather than the product: `thread_hop_cpu` and `thread_hop_wall`, one round trip
from the event loop to a worker thread and back for a no-op, as the writer's every group takes. Two machines of
the same description can differ here several times over (a virtual machine's wake-ups). The bare endpoint hands
nothing to a thread; `unrecorded` pays the same hop as `grouped`, so its ratio says what the hop costs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import secrets
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.proc import stat_cpu_seconds, voluntary_switches
from bench.results import Figure, report
from sidecar.config_schema import WebhookConfig
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.logs import setup_logging
from sidecar.observe.metrics import Metrics
from sidecar.store.audit import verify_audit
from sidecar.store.db import GroupCommit, Store, WriteSlots
from sidecar.store.webhooks import Recording
from sidecar.web.server import WebServer, build_web_app
from sidecar.web.webhooks import MAX_GROUP, WebhookReceiver

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ROOT = Path(__file__).resolve().parent.parent
# Budgets opened so that only the database can say no: rate limits far above what one host can send,
# and room in the intake for every connection's delivery (the default webhook.max_queued_writes, 64, is
# already enough at 32 connections; set BENCH_MAX_QUEUED_WRITES=8 to see the answers 503 the intake gives
# when it is full).
SETTINGS = replace(
    WebhookConfig(),
    rate_limit_per_second=100_000,
    rate_limit_per_source=100_000,
    max_queued_writes=int(os.environ.get("BENCH_MAX_QUEUED_WRITES", str(max(64, 2 * CONNECTIONS)))),
)
# The product logs at info in JSON by default: every accepted delivery writes its "external callback" line.
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "info")
RECORDING = ("grouped", "single")
RECEIVERS = (*RECORDING, "unrecorded")
TARGETS = ("bare", *RECEIVERS)


@dataclass
class Receiving:
    """One receiver under test: its store, its receiver, and what the load generator was answered."""

    store: Store
    receiver: WebhookReceiver
    ok: int = 0
    accepted: int = 0


def nothing_recorded(conn: sqlite3.Connection, recordings: Sequence[Recording]) -> list[bool]:
    """The unrecorded receiver's group transaction: every delivery taken as new, nothing written (the BEGIN
    IMMEDIATE and COMMIT around it still run, in the writer thread, as for a recorded group)."""
    return [True] * len(recordings)


async def bare(request: Request) -> Response:
    await request.body()
    return JSONResponse({})


class BareServer:
    """The baseline: a plain Starlette app on uvicorn's defaults (access log off, as a bare endpoint has none),
    on a loopback socket of its own. The socket is made as uvicorn's own `host`/`port` binding makes it
    (IPPROTO_TCP, so asyncio sets TCP_NODELAY on its connections, as WebServer's also are)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        app = Starlette(routes=[Route("/bare", bare, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True

    async def wait_started(self) -> None:
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)


def cpu_used(who: int) -> float:
    """CPU seconds used so far by this process (RUSAGE_SELF: both servers and the writer threads) or by its
    finished children (RUSAGE_CHILDREN: the load generator runs)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def threads_sum(native_ids: list[int], read: Callable[[Path], float], file: str) -> float:
    """`read` of each of this process's threads `native_ids` from its /proc/self/task/<id>/`file`, summed (0 for a
    thread whose counters Linux does not let us read)."""
    total = 0.0
    for tid in native_ids:
        try:
            total += read(Path(f"/proc/self/task/{tid}/{file}"))
        except OSError:
            continue
    return total


def thread_cpu(native_ids: list[int]) -> float:
    """CPU seconds used so far by this process's threads `native_ids`."""
    return threads_sum(native_ids, stat_cpu_seconds, "stat")


def thread_waits(native_ids: list[int]) -> float:
    """Voluntary context switches so far of this process's threads `native_ids`."""
    return threads_sum(native_ids, voluntary_switches, "status")


async def thread_hop(hops: int = 2_000) -> tuple[float, float]:
    """CPU and wall microseconds of one no-op round trip from the event loop to a worker thread and back
    (the process's CPU: both threads' share of the hand-over, the loop's wake-up included)."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-hop") as pool:
        await loop.run_in_executor(pool, int)  # the thread started
        used, started = cpu_used(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(hops):
            await loop.run_in_executor(pool, int)
        wall = time.perf_counter() - started
        cpu = cpu_used(resource.RUSAGE_SELF) - used
    return cpu * 1e6 / hops, wall * 1e6 / hops


def writer_threads() -> list[int]:
    """The stores' SQLite writer threads (Store names its writer executor's threads `sqlite-writer`)."""
    return [t.native_id for t in threading.enumerate() if t.name.startswith("sqlite-writer") and t.native_id]


async def load(url: str, secret: str) -> dict[str, Any]:
    """One run of bench.loadgen in its own process against `url`; its JSON summary."""
    env = {**os.environ, "BENCH_JIRA_SECRET": secret, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "bench.loadgen", url, "--connections", str(CONNECTIONS), "--seconds", str(SECONDS)]
    proc = await asyncio.create_subprocess_exec(*args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.loadgen exited {proc.returncode} against {url}")
    result: dict[str, Any] = json.loads(out)
    return result


async def measure(tmp: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Receiving]]:
    secret = secrets.token_hex(16)
    metrics = Metrics()
    receiving: dict[str, Receiving] = {}
    for name in RECEIVERS:
        store = await Store.open(str(tmp / f"{name}.db"))
        receiver = WebhookReceiver(
            SETTINGS, {"jira": secret, "waldur": None}, store, Auditor(store), metrics, group_commit=name != "single"
        )
        if name == "unrecorded":
            slots = WriteSlots(SETTINGS.max_queued_writes)
            receiver.intake = GroupCommit(store, "record webhooks", nothing_recorded, slots, MAX_GROUP)
        receiving[name] = Receiving(store, receiver)
    # The product's app with the grouped receiver, and the others beside it under /single and /unrecorded: all
    # behind the product's server and middleware. The bare endpoint has its own plain server.
    grouped = receiving["grouped"]
    app = build_web_app("/grouped/webhooks", grouped.store, HealthState(), metrics, grouped.receiver)
    for name in RECEIVERS[1:]:
        app.router.routes += receiving[name].receiver.routes(f"/{name}/webhooks")
        app.direct.update(receiving[name].receiver.endpoints(f"/{name}/webhooks"))  # taken as the grouped one is
    server, plain = WebServer(app, "127.0.0.1:0"), BareServer()
    serving = [asyncio.create_task(server.serve()), asyncio.create_task(plain.serve())]
    runs: dict[str, list[dict[str, Any]]] = {target: [] for target in TARGETS}
    try:
        await server.wait_started()
        await plain.wait_started()
        urls = {
            "bare": f"http://127.0.0.1:{plain.port}/bare",
            **{name: f"http://127.0.0.1:{server.port}/{name}/webhooks/jira" for name in RECEIVERS},
        }
        loop_thread, writers = [threading.get_native_id()], writer_threads()
        for _ in range(ROUNDS):
            for target in TARGETS:
                used, client_used = cpu_used(resource.RUSAGE_SELF), cpu_used(resource.RUSAGE_CHILDREN)
                loop_used, writer_used = thread_cpu(loop_thread), thread_cpu(writers)
                writer_waited = thread_waits(writers)
                result = await load(urls[target], secret)
                answered = max(1, result["answered"])
                result["server_cpu_us"] = (cpu_used(resource.RUSAGE_SELF) - used) * 1e6 / answered
                result["loop_cpu_us"] = (thread_cpu(loop_thread) - loop_used) * 1e6 / answered
                result["writer_cpu_us"] = (thread_cpu(writers) - writer_used) * 1e6 / answered
                result["writer_waits"] = (thread_waits(writers) - writer_waited) / answered
                result["client_cpu_us"] = (cpu_used(resource.RUSAGE_CHILDREN) - client_used) * 1e6 / answered
                runs[target].append(result)
                if target in receiving:
                    receiving[target].ok += result["statuses"].get("200", 0)
                    receiving[target].accepted += result["accepted"]
    finally:
        server.stop()
        plain.stop()
        await asyncio.gather(*serving)
        for r in receiving.values():
            await r.store.close()
    return runs, receiving


def stored(db: Path) -> tuple[int, int, bool]:
    """Delivery rows, webhook audit rows, and whether the audit chain verifies."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0]
        audited = conn.execute("SELECT COUNT(*) FROM audit WHERE event_type = 'webhook_accepted'").fetchone()[0]
        return int(rows), int(audited), verify_audit(conn).ok
    finally:
        conn.close()


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


@contextlib.contextmanager
def product_logging() -> Iterator[None]:
    """Logging set up as the product's CLI does (formatted, then written nowhere); the process's as before after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with open(os.devnull, "w") as devnull:
        setup_logging(LOG_LEVEL, "json", stream=devnull)
        try:
            yield
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def main() -> None:
    with (
        product_logging(),
        tempfile.TemporaryDirectory(prefix="bench-webhooks-", dir=os.environ.get("BENCH_DIR")) as tmp,
    ):
        runs, receiving = asyncio.run(measure(Path(tmp)))
        hop_cpu, hop_wall = asyncio.run(thread_hop())
        counts = {name: stored(Path(tmp) / f"{name}.db") for name in RECEIVERS}
    rate = {target: median_of(runs[target], "ok_per_second") for target in TARGETS}
    # The server's CPU per answer: what a receiver costs, read apart from how busy the machine was.
    cpu = {target: median_of(runs[target], "server_cpu_us") for target in TARGETS}
    figures = [
        Figure("connections", CONNECTIONS, "connections"),
        Figure("bare", rate["bare"], "req/s"),
        Figure("bare_p50", median_of(runs["bare"], "p50_ms"), "ms"),
        Figure("bare_p99", median_of(runs["bare"], "p99_ms"), "ms"),
        Figure("bare_cpu", median_of(runs["bare"], "server_cpu_us"), "us/request"),
        Figure("bare_loop_cpu", median_of(runs["bare"], "loop_cpu_us"), "us/request"),
        Figure("client_cpu", median_of(runs["bare"], "client_cpu_us"), "us/request"),
        Figure("thread_hop_cpu", hop_cpu, "us/hop"),
        Figure("thread_hop_wall", hop_wall, "us/hop"),
    ]
    problems: list[str] = []
    for name in RECEIVERS:
        r = receiving[name]
        rows, audited, chain_ok = counts[name]
        expected = r.ok if name in RECORDING else 0  # the unrecorded receiver must have written nothing
        refused = sum(run["answered"] - run["statuses"].get("200", 0) for run in runs[name])
        figures += [
            Figure(f"{name}", rate[name], "accepted/s", rate["bare"], rate[name] / rate["bare"]),
            Figure(f"{name}_p50", median_of(runs[name], "p50_ms"), "ms"),
            Figure(f"{name}_p99", median_of(runs[name], "p99_ms"), "ms"),
            Figure(f"{name}_cpu", cpu[name], "us/request", cpu["bare"], cpu[name] / cpu["bare"]),
            Figure(f"{name}_loop_cpu", median_of(runs[name], "loop_cpu_us"), "us/request"),
            Figure(f"{name}_writer_cpu", median_of(runs[name], "writer_cpu_us"), "us/request"),
            Figure(f"{name}_writer_waits", median_of(runs[name], "writer_waits"), "waits/request"),
            Figure(f"{name}_rows_stored", rows, "rows", expected, rows / expected if expected else None),
            Figure(f"{name}_audit_rows", audited, "rows", expected, audited / expected if expected else None),
            Figure(f"{name}_not_200", refused, "answers"),
        ]
        if r.receiver.intake is not None and r.receiver.intake.groups:
            figures.append(Figure(f"{name}_mean_group", r.receiver.intake.written / r.receiver.intake.groups, "writes"))
        problems += [
            *([f"{name}: {rows} delivery rows stored for {expected} expected"] if rows != expected else []),
            *([f"{name}: {r.ok - r.accepted} answers 200 were not 'accepted'"] if r.accepted != r.ok else []),
            *([f"{name}: {audited} audit rows for {expected} expected"] if audited != expected else []),
            *([f"{name}: the audit chain does not verify"] if not chain_ok else []),
        ]
    figures.append(
        Figure("grouped_vs_single", rate["grouped"], "accepted/s", rate["single"], rate["grouped"] / rate["single"])
    )
    report("webhook_intake", figures)
    if problems:  # after the figures are shown: a loss or a duplicate fails the benchmark
        raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()
