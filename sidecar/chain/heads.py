"""Where the chain's head is: a websocket hint plus the /status poll, whichever is higher.

The websocket is only a hint (CometBFT drops events for slow subscribers); a dropped or silent
socket is replaced on a new connection, and the follower catches up from its cursor either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

import websockets
from websockets.exceptions import WebSocketException

from sidecar.observe.metrics import Metrics

log = logging.getLogger(__name__)
QUERY = "tm.event='NewBlockHeader'"


class HeadTracker:
    """The highest height seen by any source, and when it last moved."""

    def __init__(self) -> None:
        self.height = 0
        self.moved_at = time.monotonic()
        self.changed = asyncio.Event()

    def silent_for(self) -> float:
        return time.monotonic() - self.moved_at

    def observe(self, height: int) -> None:
        if height > self.height:
            self.height = height
            self.moved_at = time.monotonic()
            self.changed.set()

    async def wait_change(self, timeout: float) -> None:
        """Return when the head moves, or after `timeout` seconds."""
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return


def websocket_url(rpc_url: str) -> str:
    base = rpc_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/websocket"
    return "ws://" + base.removeprefix("http://") + "/websocket"


class HeadWatcher:
    """Subscribes to new block headers; reconnects with jittered backoff, and when the socket falls silent."""

    def __init__(
        self, url: str, heads: HeadTracker, metrics: Metrics, no_block_alarm: float, ping_interval: float = 10.0
    ) -> None:
        self.url = url
        self._heads = heads
        self._metrics = metrics
        self._alarm_after = no_block_alarm
        self._ping_interval = ping_interval

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                failures = 0
            except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                failures += 1
                if failures == 1:
                    log.info("block header websocket down; reconnecting", extra={"error": type(exc).__name__})
            if stop.is_set():
                return
            self._metrics.count_ws_reconnect()
            delay = min(30.0, 0.25 * 2 ** min(failures, 7)) * random.uniform(0.7, 1.3)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue

    async def _session(self, stop: asyncio.Event) -> None:
        async with websockets.connect(
            self.url,
            max_size=32 * 1024 * 1024,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_interval,
            open_timeout=10,
            close_timeout=2,
        ) as socket:
            await socket.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"query": QUERY}})
            )
            last_message = time.monotonic()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=min(self._alarm_after, 5.0))
                except TimeoutError:
                    if time.monotonic() - last_message > self._alarm_after:
                        log.info("block header websocket silent; reconnecting", extra={"url": self.url})
                        return  # a stalled or half-open socket: replace it with a new one
                    continue
                last_message = time.monotonic()
                self._handle(json.loads(raw))

    def _handle(self, message: dict[str, Any]) -> None:
        data = (message.get("result") or {}).get("data") or {}
        header = (data.get("value") or {}).get("header") or {}
        if header.get("height"):
            self._heads.observe(int(header["height"]))
