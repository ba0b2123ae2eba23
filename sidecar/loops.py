"""Background loops as step functions, run by one helper that handles errors and stopping.

A step returns how long to wait before the next step. Retryable errors (ChainRpcError,
DeskError with retryable=True) are logged, counted and backed off; anything else propagates
and stops the TaskGroup, i.e. the process, with a message. A loop given a Wake (sidecar/wakeups.py)
ends its idle wait when a producer rings it; an error's backoff is never cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sidecar.errors import ChainRpcError, DeskError
from sidecar.observe.metrics import Metrics
from sidecar.wakeups import Wake

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[float]]


STOP_GRACE = 5.0  # how long a step in progress may go on after stop is set before it is cancelled


class _Abandoned(Exception):
    """The step was cancelled because stop was set and it did not finish within the grace period."""


async def run_loop(
    name: str,
    step: Step,
    stop: asyncio.Event,
    metrics: Metrics,
    *,
    max_backoff: float = 30.0,
    grace: float = STOP_GRACE,
    wake: Wake | None = None,
) -> None:
    """Run `step` until `stop` is set; back off exponentially on retryable errors. A step still running
    `grace` seconds after stop is set (a long catch-up, a slow desk) is cancelled, so shutdown is bounded:
    every step commits through single transactions, so a cancelled step leaves nothing half-written.
    `wake`: a ring ends the wait after a step (one of at most wake.up_to seconds), not an error's backoff."""
    failures = 0
    while not stop.is_set():
        woken_by = wake
        try:
            if wake is not None:
                wake.take()
            delay = await _step_within(step, stop, grace)
            failures = 0
        except _Abandoned:
            log.info("loop step cancelled at shutdown", extra={"loop": name, "grace_s": grace})
            break
        except (ChainRpcError, DeskError) as exc:
            if not exc.retryable:
                raise
            failures += 1
            woken_by = None
            metrics.count_loop_error(name)
            delay = min(max_backoff, 0.5 * 2 ** min(failures, 10))
            if failures == 1 or failures % 20 == 0:
                log.warning("loop step failed, retrying", extra={"loop": name, "error": str(exc), "failures": failures})
        await _wait(stop, delay, woken_by)
    log.debug("loop stopped", extra={"loop": name})


async def _wait(stop: asyncio.Event, delay: float, wake: Wake | None = None) -> None:
    """Sleep `delay` seconds or until stop is set (or `wake` rings, for a wait it may cut), whichever first."""
    if delay <= 0:
        await asyncio.sleep(0)
        return
    if wake is None or delay > wake.up_to:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        return
    if wake.rung:  # rung while the step ran: it may have looked before the work was there
        await asyncio.sleep(0)
        return
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _step_within(step: Step, stop: asyncio.Event, grace: float) -> float:
    """One step; if stop is set while it runs, it gets `grace` seconds more, then it is cancelled."""
    running = asyncio.ensure_future(step())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            await asyncio.wait({running}, timeout=grace)
        if not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            raise _Abandoned
        return running.result()
    finally:
        stopped.cancel()
        if not running.done():  # our own task was cancelled (the TaskGroup is failing): take the step with us
            running.cancel()
