"""Run the real App in-process (real servers on port 0, a real SQLite file) for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sidecar.app import App
from sidecar.config import load_config


def app_flags(tmp_path: Path, rpc_url: str, **extra: object) -> dict[str, object]:
    flags: dict[str, object] = {
        "chain.rpc_url": rpc_url,
        "chain.poll_interval": "200ms",
        "store.path": str(tmp_path / "sidecar.db"),
        "webhook.listen_addr": "127.0.0.1:0",
        "grpc.listen": "127.0.0.1:0",
        "observe.listen": "",  # one port, as these tests expect; tests/sidecar/web/test_observe.py splits them
    }
    flags.update(extra)
    return flags


@contextlib.asynccontextmanager
async def running_app(flags: Mapping[str, object], environ: Mapping[str, str] | None = None) -> AsyncIterator[App]:
    """Start the app, wait until it listens, and stop it cleanly on exit (failing if it crashed)."""
    app = App(load_config(environ=dict(environ or {}), flags=dict(flags)))
    task = asyncio.create_task(app.run(), name="app-under-test")
    ready = asyncio.create_task(app.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises what stopped the app
        raise AssertionError("app stopped before it was ready")
    if ready not in done:
        ready.cancel()
        task.cancel()
        raise AssertionError("app did not become ready within 30s")
    try:
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, timeout=30)


def read_rows(db: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """`sql`'s rows as tuples, read from a sidecar's database read-only (it may be running)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def cursor_height(db: Path) -> int:
    """The height a sidecar has read the chain up to (0 before its first commit). /metrics' lag gauge is the
    follower's own view; this is what it committed."""
    return int(read_rows(db, "SELECT COALESCE(MAX(height), 0) FROM cursor")[0][0])
