"""A small HTTP/1.1 load generator (no wrk on this machine), run in its own process so it never shares the
server's event loop or GIL: `BENCH_JIRA_SECRET=S python -m bench.loadgen URL --connections 32 --seconds 10`.

Each connection is kept alive and sends one request at a time, as wrk does. Every request is a signed Jira
`jira:issue_updated` delivery of about 1.1 KB, stamped now, under a fresh X-Atlassian-Webhook-Identifier
and with a body of its own (a retry-free desk never sends the same bytes twice). Prints one JSON line:
answers by status, answers whose body says "accepted", requests per second and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TARGET_BODY_BYTES = 1100


def jira_doc(n: int, run: str, stamp_ms: int) -> dict[str, object]:
    """The delivery numbered `n` of run `run`, as Jira shapes an issue_updated hook."""
    return {
        "timestamp": stamp_ms,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Agent", "accountType": "atlassian"},
        "issue": {
            "id": str(10000 + n % 5000),
            "key": f"SUP-{n % 5000}",
            "self": f"https://example.atlassian.net/rest/api/3/issue/{10000 + n % 5000}",
            "fields": {
                "summary": "Lease 42 cannot reach its provider",
                "status": {"name": "In Progress", "id": "3"},
                "priority": {"name": "High"},
                "issuetype": {"name": "Service Request"},
                "project": {"key": "SUP", "id": "10000"},
                "labels": ["virtengine", "support"],
            },
        },
        "changelog": {
            "id": f"{run}-{n}",  # what makes each body unique, as Jira's changelog ids do
            "items": [{"field": "status", "fieldtype": "jira", "fromString": "Open", "toString": "In Progress"}],
        },
    }


def jira_body(n: int, run: str, stamp_ms: int | None = None) -> bytes:
    """A Jira issue_updated delivery numbered `n`, stamped now, padded to about TARGET_BODY_BYTES."""
    stamp = int(time.time() * 1000) if stamp_ms is None else stamp_ms
    return _padded(json.dumps(jira_doc(n, run, stamp), separators=(",", ":")))


def _padded(body: str) -> bytes:
    pad = TARGET_BODY_BYTES - len(body) - len(',"pad":""}') + 1
    return (body[:-1] + ',"pad":"' + "x" * max(pad, 0) + '"}').encode()


class Requests:
    """Requests to one URL, each a fresh delivery signed and stamped when made. The body is `jira_body`'s,
    byte for byte, filled into a template serialised once: serialising the document anew for every request
    would cost the client about as much as the bare endpoint costs the server, and on a small machine the
    client's CPU is the server's neighbour."""

    def __init__(self, url: str, secret: str, run: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._netloc, self._path, self._run = parts.netloc, parts.path, run
        self._key = secret.encode()
        doc = jira_doc(0, run, 0)
        doc["timestamp"] = "@@stamp@@"
        issue, changelog = doc["issue"], doc["changelog"]
        assert isinstance(issue, dict) and isinstance(changelog, dict)
        issue.update(id="@@id@@", key="@@key@@", self="@@self@@")
        changelog["id"] = "@@change@@"
        text = json.dumps(doc, separators=(",", ":")).replace('"@@stamp@@"', "@@stamp@@")
        # Literal text and field names alternate: text, field, text, ..., text.
        self._parts = text.replace("@@", "\x00").split("\x00")

    def body(self, n: int, stamp_ms: int | None = None) -> bytes:
        issue = 10000 + n % 5000
        values = {
            "stamp": str(int(time.time() * 1000) if stamp_ms is None else stamp_ms),
            "id": str(issue),
            "key": f"SUP-{n % 5000}",
            "self": f"https://example.atlassian.net/rest/api/3/issue/{issue}",
            "change": f"{self._run}-{n}",
        }
        parts = self._parts
        return _padded("".join(values[part] if i % 2 else part for i, part in enumerate(parts)))

    def request(self, n: int) -> bytes:
        body = self.body(n)
        signature = "sha256=" + hmac.new(self._key, body, hashlib.sha256).hexdigest()
        head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Atlassian-Webhook-Identifier: {self._run}-{n}\r\n"
            f"X-Atlassian-Webhook-Flow: Primary\r\nX-Atlassian-Webhook-Retry: 0\r\nX-Hub-Signature: {signature}\r\n\r\n"
        )
        return head.encode() + body


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: int = 0
    latencies: list[float] = field(default_factory=list)
    reconnects: int = 0
    numbers: int = 0

    def next_number(self) -> int:
        self.numbers += 1
        return self.numbers


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body (by its Content-Length, or its chunks) and whether the server will close the connection
    after this answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, closing, chunked = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            closing = True
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    return status, await (_chunks(reader) if chunked else reader.readexactly(length)), closing


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, joined (a large answer whose length the server did not know up front, as CometBFT's)."""
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF
    await reader.readuntil(b"\r\n")  # the empty trailer
    return b"".join(parts)


async def connection(requests: Requests, deadline: float, tally: Tally) -> None:
    """Send requests one after another on one kept-alive connection until the deadline; reconnect when the
    server closes it (counted)."""
    host, port = requests.host, requests.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            payload = requests.request(tally.next_number())
            started = time.perf_counter()
            try:
                writer.write(payload)
                status, body, closing = await read_answer(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                closing, status = True, 0
            else:
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses[status] += 1
                tally.accepted += b'"accepted"' in body
            if closing:
                writer.close()
                tally.reconnects += 1
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def run_load(url: str, connections: int, seconds: float, secret: str) -> dict[str, object]:
    tally = Tally()
    run = os.urandom(6).hex()
    started = time.monotonic()
    deadline = started + seconds
    requests = Requests(url, secret, run)
    await asyncio.gather(*(connection(requests, deadline, tally) for _ in range(connections)))
    elapsed = time.monotonic() - started  # requests in flight at the deadline are answered and counted
    answered = sum(tally.statuses.values())
    return {
        "url": url,
        "connections": connections,
        "seconds": elapsed,
        "answered": answered,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "accepted": tally.accepted,
        "reconnects": tally.reconnects,
        "requests_per_second": answered / elapsed,
        "ok_per_second": tally.statuses[200] / elapsed,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
        "max_ms": max(tally.latencies, default=float("nan")) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    secret = os.environ.get("BENCH_JIRA_SECRET", "")  # from the environment: a command line is visible to ps
    print(json.dumps(asyncio.run(run_load(args.url, args.connections, args.seconds, secret))))


if __name__ == "__main__":
    main()
