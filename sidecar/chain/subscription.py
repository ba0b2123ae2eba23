"""One CometBFT websocket subscription kept alive for as long as the app runs.

Client pings detect a half-open socket; an optional silence limit replaces a socket that stopped
delivering (for queries that must fire regularly, like new blocks); every failure reconnects on a
new socket after a jittered backoff. Events are hints: each user keeps a polling path for what a
dropped or late event would have told it (CometBFT drops events for slow subscribers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.exceptions import WebSocketException

from sidecar import boundedjson
from sidecar.observe.metrics import Metrics
from sidecar.urls import public_url

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # a Tx event carries the whole tx; the library's 1 MiB default is too small


def websocket_url(rpc_url: str) -> str:
    base = rpc_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/websocket"
    return "ws://" + base.removeprefix("http://") + "/websocket"


class Subscription:
    """`on_event` receives the `result` of every event message. `epoch` counts confirmed subscriptions:
    a user that saw the same epoch before and after a period knows no reconnect (no gap) happened."""

    def __init__(
        self,
        url: str,
        query: str,
        on_event: Callable[[dict[str, Any]], None],
        metrics: Metrics,
        *,
        name: str,
        silence_limit: float | None = None,
        ping_interval: float = 10.0,
    ) -> None:
        self.url = url
        self.query = query
        self.name = name
        self._on_event = on_event
        self._metrics = metrics
        self._silence_limit = silence_limit
        self._ping_interval = ping_interval
        self.epoch = 0
        self.live = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                failures = 0
            except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                failures += 1
                if failures == 1:
                    log.info(f"{self.name} websocket down; reconnecting", extra={"error": type(exc).__name__})
            finally:
                self.live.clear()
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
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_interval,
            open_timeout=10,
            close_timeout=2,
        ) as socket:
            await socket.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"query": self.query}})
            )
            last_message = time.monotonic()
            wait = min(self._silence_limit or 5.0, 5.0)
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=wait)
                except TimeoutError:
                    if self._silence_limit is not None and time.monotonic() - last_message > self._silence_limit:
                        log.info(f"{self.name} websocket silent; reconnecting", extra={"url": public_url(self.url)})
                        return  # a stalled or half-open socket: replace it with a new one
                    continue
                last_message = time.monotonic()
                # JsonLimitError is a ValueError: a frame we cannot read replaces the socket.
                self._handle(boundedjson.loads(raw, max_bytes=MAX_MESSAGE_BYTES))

    def _handle(self, message: Any) -> None:
        if not isinstance(message, dict):
            raise ValueError(f"{self.name} websocket frame is not a JSON object")
        if message.get("error"):
            raise ValueError(f"{self.name} subscription refused: {message['error']}")
        result = message.get("result") or {}
        if not isinstance(result, dict):
            raise ValueError(f"{self.name} websocket frame has a result that is not an object")
        if message.get("id") == 1 and not result.get("data"):
            self.epoch += 1  # the node confirmed the subscription: events flow from here on
            self.live.set()
            return
        if result.get("data"):
            self._on_event(result)
