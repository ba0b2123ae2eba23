"""Wake-ups between loops: a ring ends a loop's idle wait, a ring during a step is kept for the wait after
it, and no ring cuts a backoff short. Each test takes well under a second; steps ask for waits of an hour,
so a loop that was not woken would fail the test's deadline rather than pass slowly."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.errors import DeskError
from sidecar.loops import run_loop
from sidecar.observe.metrics import Metrics
from sidecar.wakeups import Wake, ringing

HOUR = 3600.0


async def settle_loop() -> None:
    """Let every task that can run now run (a woken waiter, the step it lets go): no clock involved."""
    for _ in range(100):
        await asyncio.sleep(0)


class Counted:
    """A step that counts its calls, asks for `delay`, and lets a test wait for the n-th call."""

    def __init__(self, delay: float = HOUR, ring: Wake | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.ring = ring  # rung from inside the first step: a producer ringing while the step runs
        self._called = asyncio.Condition()

    async def __call__(self) -> float:
        self.calls += 1
        if self.ring is not None and self.calls == 1:
            self.ring.ring()
        async with self._called:
            self._called.notify_all()
        return self.delay

    async def reach(self, calls: int) -> None:
        async with self._called:
            await asyncio.wait_for(self._called.wait_for(lambda: self.calls >= calls), timeout=10)


async def stopped(loop: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(loop, timeout=10)


async def test_a_ring_ends_an_idle_wait_of_an_hour() -> None:
    stop, wake, step = asyncio.Event(), Wake(up_to=HOUR), Counted()
    loop = asyncio.create_task(run_loop("woken", step, stop, Metrics(), wake=wake))
    await step.reach(1)
    wake.ring()
    await step.reach(2)
    await stopped(loop, stop)
    assert step.calls == 2


async def test_a_ring_during_a_step_ends_the_wait_after_it() -> None:
    stop, wake = asyncio.Event(), Wake(up_to=HOUR)
    step = Counted(ring=wake)  # the first step's own look may have come before the work
    loop = asyncio.create_task(run_loop("rung-while-busy", step, stop, Metrics(), wake=wake))
    await step.reach(2)
    await settle_loop()
    await stopped(loop, stop)
    assert step.calls == 2  # the ring was answered by the second step; nothing rang again


async def test_a_ring_before_a_step_is_answered_by_that_step() -> None:
    stop, wake, step = asyncio.Event(), Wake(up_to=HOUR), Counted()
    wake.ring()  # rung before the loop started: its first step looks anyway
    loop = asyncio.create_task(run_loop("rung-early", step, stop, Metrics(), wake=wake))
    await step.reach(1)
    await settle_loop()
    await stopped(loop, stop)
    assert step.calls == 1


async def test_a_ring_does_not_cut_a_wait_longer_than_the_loops_idle_wait() -> None:
    stop, wake, step = asyncio.Event(), Wake(up_to=0.5), Counted(delay=HOUR)  # an hour: a backoff the step chose
    loop = asyncio.create_task(run_loop("backing-off", step, stop, Metrics(), wake=wake))
    await step.reach(1)
    wake.ring()
    await settle_loop()
    assert step.calls == 1
    await stopped(loop, stop)


async def test_a_ring_does_not_cut_the_backoff_after_a_retryable_error() -> None:
    stop, wake, calls = asyncio.Event(), Wake(up_to=HOUR), []

    async def failing() -> float:
        calls.append(1)
        raise DeskError("desk down", retryable=True)

    loop = asyncio.create_task(run_loop("failing", failing, stop, Metrics(), wake=wake, max_backoff=HOUR))
    await settle_loop()
    assert calls == [1]
    wake.ring()
    await settle_loop()
    assert calls == [1]
    await stopped(loop, stop)


async def test_stop_ends_a_wait_that_a_wake_could_cut() -> None:
    stop, wake, step = asyncio.Event(), Wake(up_to=HOUR), Counted()
    loop = asyncio.create_task(run_loop("stopping", step, stop, Metrics(), wake=wake))
    await step.reach(1)
    await stopped(loop, stop)  # within the test's deadline, not after the hour
    assert step.calls == 1


async def test_ringing_rings_every_wake_when_the_step_made_progress_and_none_when_not() -> None:
    counter = [0]
    first, second = Wake(), Wake()

    async def step() -> float:
        return 0.0

    async def producing() -> float:
        counter[0] += 1
        return 0.0

    idle = ringing(step, lambda: counter[0], [first, second])
    await idle()
    assert (first.rings, second.rings) == (0, 0)
    busy = ringing(producing, lambda: counter[0], [first, second])
    await busy()
    assert (first.rings, second.rings) == (1, 1) and first.rung and second.rung


async def test_ringing_rings_after_a_step_that_made_progress_and_then_failed() -> None:
    counter, wake = [0], Wake()

    async def half_done() -> float:
        counter[0] += 1  # committed work, then a failure
        raise DeskError("desk down", retryable=True)

    with pytest.raises(DeskError):
        await ringing(half_done, lambda: counter[0], [wake])()
    assert wake.rings == 1
