"""Background loops as step functions, run by one helper that handles errors and stopping.

A step returns how long to wait before the next step. Retryable errors (ChainRpcError,
DeskError with retryable=True) are logged, counted and backed off; anything else propagates
and stops the TaskGroup, i.e. the process, with a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sidecar.errors import ChainRpcError, DeskError
from sidecar.observe.metrics import Metrics

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[float]]


async def run_loop(name: str, step: Step, stop: asyncio.Event, metrics: Metrics, *, max_backoff: float = 30.0) -> None:
    """Run `step` until `stop` is set; back off exponentially on retryable errors."""
    failures = 0
    while not stop.is_set():
        try:
            delay = await step()
            failures = 0
        except (ChainRpcError, DeskError) as exc:
            if not exc.retryable:
                raise
            failures += 1
            metrics.count_loop_error(name)
            delay = min(max_backoff, 0.5 * 2 ** min(failures, 10))
            if failures == 1 or failures % 20 == 0:
                log.warning("loop step failed, retrying", extra={"loop": name, "error": str(exc), "failures": failures})
        await _wait(stop, delay)
    log.debug("loop stopped", extra={"loop": name})


async def _wait(stop: asyncio.Event, delay: float) -> None:
    """Sleep `delay` seconds or until stop is set, whichever comes first."""
    if delay <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
