"""Where the chain's head is: a websocket hint plus the /status poll, whichever is higher.

The websocket is only a hint (CometBFT drops events for slow subscribers); a dropped or silent
socket is replaced on a new connection, and the follower catches up from its cursor either way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sidecar.chain.subscription import Subscription
from sidecar.digits import is_decimal
from sidecar.observe.metrics import Metrics

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


def head_subscription(url: str, heads: HeadTracker, metrics: Metrics, no_block_alarm: float) -> Subscription:
    """New block headers feed `heads`; a socket silent for longer than the no-block alarm is replaced."""

    def on_header(result: dict[str, Any]) -> None:
        data = result.get("data")
        value = data.get("value") if isinstance(data, dict) else None
        header = value.get("header") if isinstance(value, dict) else None
        height = str(header.get("height")) if isinstance(header, dict) else ""
        # A hint only: a height that is not a decimal int64 is ignored, the /status poll still runs.
        if is_decimal(height) and len(height) <= 18:
            heads.observe(int(height))

    return Subscription(url, QUERY, on_header, metrics, name="block header", silence_limit=no_block_alarm)
