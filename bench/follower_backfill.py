"""Backfill of a 5,000-block range holding >= 10,000 support events: the follower (real sidecar
process) against a bare client, in the same run on the same node, that only fetches and parses
`block_results` on httpx in JSON-RPC batches as large as the follower's, as many in flight (the goal's
baseline). (FollowerSettings: 9 heights and the node's status a batch, 4 in flight; the bare client asks 10
heights a batch, so it needs fewer requests for the range than the follower.) The sidecar runs as an
operator's does, with its support key (the devnet `sidecar` account's box key, to which every ticket of the
range is sealed), so it opens each payload to check it and the mirror records it as decrypted; without
the key (BENCH_SUPPORT_KEY=0) every event instead becomes a placeholder with an audit row, a misconfigured
sidecar's cost, not the one the goal is about. Goal: >= 0.8x, peak RSS
(the follower process's VmHWM: the whole sidecar process, imports included, over its life up to the
moment the cursor reaches the last height) under 100 MB. `follower_cpu` is the CPU seconds each side
spent on the range (the sidecar process from its first committed height; the bench process for the
bare client), which the load of a shared machine moves far less than the wall clock.

A third client sends the same batches written by hand (no HTTP library) for the node's own serving rate
(`node_serving_blocks_per_s`): through the empty heights the bare client is bound by httpx's CPU, not by the
node, so this figure says how far the goal's baseline is from what the node could serve. The follower's own
node client is not httpx but sidecar/chain/node_http.py (a fifth of httpx's CPU per request): the goal's
baseline stays the httpx client it was set against, and `follower_vs_node_serving` compares the follower
with the hand-written one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.loadgen import read_answer
from bench.proc import cpu_seconds, memory_kb
from bench.results import Figure, report
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.keys import TestAccount, genesis_app_state
from devnet.waiting import wait_until
from sidecar.chain.follower import FollowerSettings

BLOCKS = int(os.environ.get("BENCH_BLOCKS", "5000"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "10000"))
SUPPORT_KEY = os.environ.get("BENCH_SUPPORT_KEY", "1") != "0"


def build_chain(node: DevnetNode) -> int:
    """Put EVENTS tickets on chain early, then let empty blocks run the range up to BLOCKS."""
    support = DevAccount.from_name("sidecar").box_public
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as driver:
        for start in range(0, EVENTS, 1000):
            driver.create_tickets(min(1000, EVENTS - start), [support], per_tx=100, timeout=300)
    print(f"  chain: {EVENTS} tickets created at height {node.height()}, waiting for height {BLOCKS}", flush=True)
    return node.wait_for_height(BLOCKS, timeout=3600)


async def bare_batched(rpc_url: str, last: int) -> tuple[float, int]:
    """(seconds, support events) for heights 1..last fetched in batches of as many calls as the follower's (all
    of them heights) with as many in flight, parsed, kept nowhere."""
    chunk, window = FollowerSettings().chunk + 1, FollowerSettings().window
    starts = iter(range(1, last + 1, chunk))
    events = 0

    async def lane(client: httpx.AsyncClient) -> None:
        nonlocal events
        for first in starts:  # one shared iterator: `window` lanes, each with one batch in flight
            body = [
                {"jsonrpc": "2.0", "id": h, "method": "block_results", "params": {"height": str(h)}}
                for h in range(first, min(last, first + chunk - 1) + 1)
            ]
            docs = (await client.post("/", json=body)).json()
            for doc in docs if isinstance(docs, list) else [docs]:
                for tx in doc["result"].get("txs_results") or []:
                    events += sum(1 for e in tx.get("events") or [] if e["type"] == "support_event")

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=rpc_url, timeout=30) as client:
        await asyncio.gather(*(lane(client) for _ in range(window)))
    return time.perf_counter() - started, events


async def raw_batched(rpc_url: str, last: int) -> tuple[float, int]:
    """(seconds, support events) for the same batches and lanes as `bare_batched`, each request written and its
    answer read by hand on one kept-alive connection per lane (Content-Length or chunked, as the node sends it),
    parsed with json: the node's own serving rate, with no HTTP library's cost in the way."""
    url = httpx.URL(rpc_url)
    chunk, window = FollowerSettings().chunk + 1, FollowerSettings().window
    starts = iter(range(1, last + 1, chunk))
    events = 0

    async def lane() -> None:
        nonlocal events
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            for first in starts:
                body = json.dumps(
                    [
                        {"jsonrpc": "2.0", "id": h, "method": "block_results", "params": {"height": str(h)}}
                        for h in range(first, min(last, first + chunk - 1) + 1)
                    ]
                ).encode()
                head = b"POST / HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                writer.write(head % len(body) + body)
                _, answer, _ = await read_answer(reader)
                docs = json.loads(answer)
                found = 0
                for doc in docs if isinstance(docs, list) else [docs]:
                    for tx in doc["result"].get("txs_results") or []:
                        found += sum(1 for e in tx.get("events") or [] if e["type"] == "support_event")
                events += found
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(window)))
    return time.perf_counter() - started, events


def cursor(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        row = conn.execute("SELECT height FROM cursor").fetchone()
        conn.close()
        return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0


def peak_rss_mb(pid: int) -> float:
    try:
        return memory_kb(pid, "VmHWM") / 1024
    except RuntimeError:
        return float("nan")


def support_secret() -> str:
    """The devnet `sidecar` account's X25519 box key, as the sidecar's support_private_key secret: the
    tickets of the range are sealed to its public key."""
    return base64.b64encode(bytes(DevAccount.from_name("sidecar").box_key)).decode()


def run_follower(
    rpc_url: str, last: int, workdir: Path, *, with_key: bool | None = None
) -> tuple[float, float, int, float]:
    """(seconds from the first committed height to `last`, peak RSS MB, events stored, CPU seconds used)."""
    import subprocess

    db = workdir / "sidecar.db"
    env = {
        **os.environ,
        "VIRTENGINE_SERVICEDESK_STORE_PATH": str(db),
        "VIRTENGINE_SERVICEDESK_CHAIN_START_HEIGHT": "1",
        "VIRTENGINE_SERVICEDESK_SYNC_MAX_PENDING": "10000000",
    }
    env.pop("VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY", None)
    if SUPPORT_KEY if with_key is None else with_key:
        env["VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY"] = support_secret()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar",
            "run",
            "--chain-rpc-url",
            rpc_url,
            "--webhook-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--observe-listen",
            "",
            "--chain-poll-interval",
            "200ms",
        ],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: cursor(db) >= 1, timeout=60, what="the follower to start", interval=0.01)
        started, cpu_started = time.perf_counter(), cpu_seconds(proc.pid)
        wait_until(lambda: cursor(db) >= last, timeout=3600, what=f"cursor >= {last}", interval=0.01)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu_started
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    conn = sqlite3.connect(db)
    events = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE height <= ?", (last,)).fetchone()[0]
    conn.close()
    return elapsed, rss, events, cpu


def decrypted_tickets(db: Path) -> int:
    conn = sqlite3.connect(db)
    count = conn.execute("SELECT COUNT(*) FROM tickets WHERE content_state = 'decrypted'").fetchone()[0]
    conn.close()
    return int(count)


def measure(node: DevnetNode, workdir: Path) -> list[Figure]:
    """Build the range on `node`, then time the bare batched client and the follower over it."""
    last = build_chain(node)
    cpu_started = time.process_time()
    bare_time, bare_events = asyncio.run(bare_batched(node.rpc_url, last))
    bare_cpu = time.process_time() - cpu_started
    raw_time, raw_events = asyncio.run(raw_batched(node.rpc_url, last))
    assert raw_events == bare_events, f"the raw client saw {raw_events} events, the bare client {bare_events}"
    follow_time, rss, events, cpu = run_follower(node.rpc_url, last, workdir)
    assert events == bare_events, f"follower stored {events} events, the bare scan saw {bare_events}"
    if SUPPORT_KEY:  # the configuration measured is the one described: every payload sealed to the key opened
        opened = decrypted_tickets(workdir / "sidecar.db")
        assert opened >= EVENTS, f"the follower opened {opened} payloads of the {EVENTS} sealed to its key"
    return [
        *figures(last, events, bare_events, bare_time, follow_time, rss),
        # On a shared machine the wall clock wanders with the load; CPU time says what each side costs.
        Figure("follower_cpu", cpu, "s", bare_cpu, bare_cpu / cpu if cpu else None),
        # The node's own serving rate (no HTTP library): what "the node is the limit" would mean.
        Figure("node_serving_blocks_per_s", last / raw_time, "blocks/s", last / bare_time, bare_time / raw_time),
        Figure("follower_vs_node_serving", last / follow_time, "blocks/s", last / raw_time, raw_time / follow_time),
    ]


def figures(last: int, events: int, bare_events: int, bare_time: float, follow_time: float, rss: float) -> list[Figure]:
    return [
        Figure("blocks", last, "blocks"),
        Figure("support_events", events, "events"),
        Figure("follower_blocks_per_s", last / follow_time, "blocks/s", last / bare_time, bare_time / follow_time),
        Figure(
            "follower_events_per_s",
            events / follow_time,
            "events/s",
            bare_events / bare_time,
            bare_time / follow_time,
        ),
        Figure("follower_peak_rss", rss, "MB"),
    ]


def main() -> None:
    accounts = [TestAccount.from_name(n) for n in ("customer", "agent", "sidecar")]
    with tempfile.TemporaryDirectory(prefix="bench-follower-") as tmp:
        node = DevnetNode(
            genesis_app_state(accounts, agents=accounts[1:]),
            home=Path(tmp) / "node",
            timeout_commit="5ms",
            log_level="error",
        ).start()
        try:
            found = measure(node, Path(tmp))
        finally:
            node.cleanup()
    report("follower_backfill", found)
    rate = next(f for f in found if f.name == "follower_blocks_per_s")
    rss = next(f for f in found if f.name == "follower_peak_rss")
    print(
        f"  follower {rate.ratio:.2f}x the bare batched client (goal >= 0.8x), peak RSS {rss.value:.1f} MB (goal < 100)"
    )


if __name__ == "__main__":
    main()
