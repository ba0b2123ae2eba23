"""The rolling window outbound jobs and inbound re-reads run in, and `together`, on plain coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from devnet.waiting import async_wait_until
from sidecar.sync.window import Work, run_window
from sidecar.together import together


class Items:
    """Work items that each wait for their own release; counts how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.done: list[int] = []
        self.cancelled: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def item(self, n: int) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        gate = self.gates.setdefault(n, asyncio.Event())
        try:
            await gate.wait()
            if n < 0:
                raise RuntimeError("a store failure")
            self.done.append(n)
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise
        finally:
            self.running -= 1

    def release(self, n: int) -> None:
        self.gates.setdefault(n, asyncio.Event()).set()


async def until(condition: Callable[[], bool], what: str) -> None:
    await async_wait_until(condition, timeout=5, what=what, interval=0.001)


async def test_a_freed_slot_is_refilled_while_a_slow_item_still_runs() -> None:
    items = Items()
    queue = list(range(2, 8))
    finished: list[int] = []

    async def refill(free: int) -> list[Work]:
        taken, queue[:] = queue[:free], queue[free:]
        return [items.item(n) for n in taken]

    window = asyncio.create_task(run_window([items.item(0), items.item(1)], refill, 2, 60.0, finished.append))
    for n in range(1, 8):  # item 0 is slow: every other one passes it
        await until(lambda n=n: n in items.gates, f"item {n} started")
        items.release(n)
    await until(lambda: items.done == list(range(1, 8)), "the quick items done")
    assert not window.done() and items.running == 1, "the slow item holds one slot, the other kept working"
    items.release(0)
    await asyncio.wait_for(window, 5)
    assert items.peak == 2 and sum(finished) == 8 and sorted(items.done) == list(range(8))


async def test_no_refill_after_the_span_and_the_running_items_finish() -> None:
    items = Items()
    asked: list[int] = []

    async def refill(free: int) -> list[Work]:
        asked.append(free)
        return [items.item(10 + len(asked))]

    window = asyncio.create_task(run_window([items.item(1)], refill, 1, 0.0, lambda n: None))
    await until(lambda: 1 in items.gates, "item 1 started")
    items.release(1)
    await asyncio.wait_for(window, 5)
    assert asked == [] and items.done == [1]


async def test_a_failing_item_cancels_the_others_and_is_raised_as_itself() -> None:
    items = Items()

    async def refill(free: int) -> list[Work]:
        return []

    window = asyncio.create_task(run_window([items.item(-1), items.item(2), items.item(3)], refill, 3, 60.0))
    await until(lambda: len(items.gates) == 3, "all started")
    items.release(-1)
    with pytest.raises(RuntimeError, match="a store failure"):
        await asyncio.wait_for(window, 5)
    assert sorted(items.cancelled) == [2, 3] and items.running == 0


async def test_together_returns_in_order_and_a_failure_cancels_the_rest_unwrapped() -> None:
    async def value(v: int) -> int:
        await asyncio.sleep(0.01 * (3 - v))
        return v

    assert await together(value(1), value(2), value(3)) == (1, 2, 3)
    items = Items()
    pending = asyncio.create_task(together(items.item(-1), items.item(5)))
    await until(lambda: len(items.gates) == 2, "both started")
    items.release(-1)
    with pytest.raises(RuntimeError, match="a store failure"):  # not an ExceptionGroup
        await asyncio.wait_for(pending, 5)
    assert items.cancelled == [5]
