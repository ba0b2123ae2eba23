"""Slow clients are cut off: a body a byte a second gets 408 and a closed connection, headers that never
finish get a closed connection, and connections beyond the limit get 503.

Raw sockets against the real receivers (real store, real uvicorn) on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devnet.waiting import async_wait_until
from sidecar.config_schema import WebhookConfig
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.db import Store
from sidecar.web.server import ServerLimits, WebServer, build_web_app
from sidecar.web.webhooks import WebhookReceiver

READ_TIMEOUT = 1.5
BODY_SIZE = 120  # at a byte a second, two minutes: far longer than the deadline


@dataclass
class Served:
    port: int


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, limits: ServerLimits) -> AsyncIterator[Served]:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    metrics = Metrics()
    secrets = {"jira": "jira-hook-secret", "waldur": "waldur-hook-secret"}
    receiver = WebhookReceiver(WebhookConfig(), secrets, store, Auditor(store), metrics)  # type: ignore[arg-type]
    health = HealthState()
    health.chain.reachable = True  # healthy: health answers 200, so a 503 is the connection limit's
    web = WebServer(build_web_app("/webhooks", store, health, metrics, receiver), "127.0.0.1:0", limits)
    task = asyncio.create_task(web.serve())
    await asyncio.wait_for(web.wait_started(), 10)
    try:
        yield Served(web.port)
    finally:
        web.stop()
        await asyncio.wait_for(task, 15)
        await store.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path, ServerLimits(read_timeout=READ_TIMEOUT)) as running:
        yield running


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def test_a_body_sent_a_byte_a_second_is_cut_off_with_408(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    head = (
        "POST /webhooks/jira HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature: sha256={'0' * 64}\r\nContent-Length: {BODY_SIZE}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    sent = 0

    async def trickle() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            while sent < BODY_SIZE:
                writer.write(b" ")
                await writer.drain()
                sent += 1
                await asyncio.sleep(1.0)

    sender = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(read_until_closed(reader), 60)
    finally:
        sender.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert b"connection: close" in answer.lower()
    assert sent < BODY_SIZE  # the server closed the connection long before the body was complete


async def test_headers_that_never_finish_are_cut_off(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    sent = 0

    async def trickle() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            while True:  # an endless header, a line at a time
                writer.write(f"X-Slow-{sent}: x\r\n".encode() if sent else b"GET /webhooks/health HTTP/1.1\r\n")
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.3)

    sender = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(read_until_closed(reader), 60)
    finally:
        sender.cancel()
        writer.close()
    assert answer == b""  # closed without an answer: no request was ever complete
    assert sent > 1


async def test_connections_beyond_the_limit_are_answered_503(tmp_path: Path) -> None:
    limits = ServerLimits(read_timeout=60, max_connections=2)
    async with serving(tmp_path, limits) as served:
        held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
        for _, writer in held:
            writer.write(b"GET /webhooks/health HTTP/1.1\r\n")  # and never the rest
            await writer.drain()
        url = f"http://127.0.0.1:{served.port}/webhooks/health"
        async with httpx.AsyncClient(timeout=10) as client:
            refused = await client.get(url)
        for _, writer in held:
            writer.close()

        async def served_again() -> bool:
            async with httpx.AsyncClient(timeout=10) as client:
                return (await client.get(url)).status_code == 200

        await async_wait_until(served_again, timeout=20, what="a request served once the held connections closed")
    assert (refused.status_code, refused.text) == (503, "Service Unavailable")
