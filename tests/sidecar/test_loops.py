"""run_loop stops cleanly: a step in progress may finish within the grace period, else it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sidecar.loops import run_loop
from sidecar.observe.metrics import Metrics


def endless_step(started: asyncio.Event, seen: list[str]) -> Callable[[], Awaitable[float]]:
    """A step that never ends on its own (a catch-up without end); it notes its cancellation in `seen`."""

    async def endless() -> float:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return 0.0

    return endless


async def test_a_step_that_outlives_the_grace_period_is_cancelled_and_the_loop_ends() -> None:
    stop, started, seen = asyncio.Event(), asyncio.Event(), []
    endless = endless_step(started, seen)

    loop = asyncio.create_task(run_loop("endless", endless, stop, Metrics(), grace=0.05))
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(loop, timeout=10)  # a deadline on the test, not a timing assertion
    assert seen == ["cancelled"]


async def test_a_step_that_finishes_within_the_grace_period_completes() -> None:
    stop = asyncio.Event()
    release = asyncio.Event()
    done: list[int] = []

    async def slow() -> float:
        stop.set()  # stop arrives while this step runs
        await release.wait()
        done.append(1)
        return 0.0

    loop = asyncio.create_task(run_loop("slow", slow, stop, Metrics(), grace=60))
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(loop, timeout=10)
    assert done == [1]


async def test_cancelling_the_loop_cancels_its_step() -> None:
    stop, started, seen = asyncio.Event(), asyncio.Event(), []
    endless = endless_step(started, seen)

    loop = asyncio.create_task(run_loop("endless", endless, stop, Metrics()))
    await asyncio.wait_for(started.wait(), timeout=10)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await asyncio.sleep(0)
    assert seen == ["cancelled"]
