"""A rolling window of concurrent work items, shared by the outbound desk workers and inbound re-reads.

A batch claimed and awaited together runs at the pace of its slowest item; here a slot an item frees is
claimed again at once, for up to `span` seconds, so a desk at 100 ms per answer keeps `slots` requests in
flight instead of idling behind one slow read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

Work = Coroutine[Any, Any, None]


async def run_window(
    first: Sequence[Work],
    refill: Callable[[int], Awaitable[Sequence[Work]]],
    slots: int,
    span: float,
    finished: Callable[[int], None] = lambda n: None,
) -> None:
    """Run `first`, then refill each freed slot (`refill(free)` claims up to `free` more, maybe none) until
    `span` seconds have passed; then let the running items finish. `finished(n)` hears
    of each round of finished items as they finish. An item that raises stops the window: the others are
    cancelled and the exception goes on (items keep their own failures, so only a store failure or a
    cancellation gets here)."""
    until = time.monotonic() + span
    running = {asyncio.ensure_future(work) for work in first}
    try:
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            finished(len(done))
            for task in done:
                task.result()
            free = slots - len(running)
            if free > 0 and time.monotonic() < until:
                running |= {asyncio.ensure_future(work) for work in await refill(free)}
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
