"""CPU per desk request: the desks' HTTP client (httpx with sidecar/http_transport.py's pool and asyncio
streams, no cookie jar) beside httpx's own AsyncClient as anyone would build it, in the same process, against
the same plain endpoint served by another process (uvicorn, answering a small JSON body), so only the
client's CPU is counted.

Both clients hold DESK_CONNECTIONS (32, the soak's `max_concurrency`) and are driven by `lanes` tasks that
each send requests one after the other: 8 lanes (a pool mostly idle) and 64 (requests waiting for a
connection, as the desk workers and inbound re-reads do under load). Rounds alternate the clients so a
neighbour's load spreads over both; the median round is reported. A raw asyncio client (HTTP/1.1 written by
hand, keep-alive, one connection per lane up to the same 32) shows the floor: what the requests cost
without any HTTP library.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from bench.loadgen import read_answer
from bench.results import Figure, report
from sidecar.http_transport import CookielessClient, pooled_transport

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "4000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DESK_CONNECTIONS = 32
LANES = (8, 64)
BODY = b'{"fields":{"summary":"x","priority":{"name":"High"},"status":{"name":"Open"}}}'
ROOT = Path(__file__).resolve().parent.parent
# The endpoint's process: a bare ASGI app on uvicorn, keep-alive long enough for a whole run.
SERVER = """
import socket, sys, uvicorn
BODY = %r
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
# The inherited listening socket as itself (uvicorn's fd= would take it for a Unix socket: no TCP_NODELAY).
sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=120)
uvicorn.Server(config).run(sockets=[sock])
"""


@contextlib.contextmanager
def endpoint() -> Iterator[int]:
    """The endpoint's port, served by a child process for the block's duration."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER % BODY, str(sock.fileno())], pass_fds=[sock.fileno()], cwd=ROOT
    )
    sock.close()
    try:
        deadline = time.monotonic() + 30
        while True:  # answered once uvicorn serves
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the benchmark's endpoint did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        child.terminate()
        child.wait(timeout=10)


def desk_client(port: int) -> httpx.AsyncClient:
    """The client a desk uses (DeskHttp's, without its pacing and metrics layer)."""
    limits = httpx.Limits(max_connections=DESK_CONNECTIONS, max_keepalive_connections=DESK_CONNECTIONS)
    return CookielessClient(base_url=f"http://127.0.0.1:{port}", transport=pooled_transport(limits))


def httpx_client(port: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=DESK_CONNECTIONS, max_keepalive_connections=DESK_CONNECTIONS)
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits)


async def through(make: Callable[[int], httpx.AsyncClient], port: int, lanes: int, requests: int) -> tuple[float, int]:
    """(client CPU seconds, answers 200) for `requests` POSTs over `lanes` tasks through one client."""
    async with make(port) as client:
        await asyncio.gather(*(client.get("/warm") for _ in range(DESK_CONNECTIONS)))  # every connection open
        ok = 0

        async def lane(count: int) -> None:
            nonlocal ok
            for _ in range(count):
                response = await client.post("/rest/api/3/issue/KEY-1", content=BODY)
                ok += response.status_code == 200 and response.content == BODY

        started = time.process_time()
        await asyncio.gather(*(lane(requests // lanes) for _ in range(lanes)))
        return time.process_time() - started, ok


async def raw(port: int, lanes: int, requests: int) -> tuple[float, int]:
    """The floor: the same requests written and read by hand on up to DESK_CONNECTIONS kept-alive connections."""
    head = b"POST /rest/api/3/issue/KEY-1 HTTP/1.1\r\nHost: desk\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    ok = 0
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(min(lanes, DESK_CONNECTIONS)):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    async def lane(count: int) -> None:
        nonlocal ok
        for _ in range(count):
            reader, writer = await pool.get()
            writer.write(head + BODY)
            status, answer, _ = await read_answer(reader)
            ok += status == 200 and answer == BODY
            pool.put_nowait((reader, writer))

    started = time.process_time()
    await asyncio.gather(*(lane(requests // lanes) for _ in range(lanes)))
    used = time.process_time() - started
    while not pool.empty():
        pool.get_nowait()[1].close()
    return used, ok


Run = Callable[[int, int, int], Awaitable[tuple[float, int]]]
CLIENTS: dict[str, Run] = {
    "desk": lambda port, lanes, n: through(desk_client, port, lanes, n),
    "httpx": lambda port, lanes, n: through(httpx_client, port, lanes, n),
    "raw": raw,
}


def measure(requests: int, rounds: int) -> dict[tuple[str, int], list[float]]:
    """Microseconds of client CPU per request, per (client, lanes), one value per round. Raises when a client
    was not answered 200 with the endpoint's body every time."""
    per_request: dict[tuple[str, int], list[float]] = {(c, lanes): [] for c in CLIENTS for lanes in LANES}
    with endpoint() as port:
        for _ in range(rounds):
            for lanes in LANES:
                for name, run in CLIENTS.items():
                    sent = requests // lanes * lanes
                    used, ok = asyncio.run(run(port, lanes, requests))
                    if ok != sent:
                        raise RuntimeError(f"{name} client with {lanes} lanes: {ok} good answers of {sent}")
                    per_request[(name, lanes)].append(used * 1e6 / sent)
    return per_request


def main() -> None:
    found = measure(REQUESTS, ROUNDS)
    cpu = {key: statistics.median(values) for key, values in found.items()}
    figures = [Figure("requests_per_run", REQUESTS, "requests"), Figure("connections", DESK_CONNECTIONS, "connections")]
    for lanes in LANES:
        desk, plain, floor = cpu[("desk", lanes)], cpu[("httpx", lanes)], cpu[("raw", lanes)]
        figures += [
            Figure(f"desk_client_cpu_{lanes}_lanes", desk, "us/request", plain, desk / plain),
            Figure(f"httpx_client_cpu_{lanes}_lanes", plain, "us/request"),
            Figure(f"raw_client_cpu_{lanes}_lanes", floor, "us/request", desk, floor / desk),
        ]
    report("desk_requests", figures)


if __name__ == "__main__":
    main()
