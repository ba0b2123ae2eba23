"""Wake-ups between loops: a loop that made work for another ends that loop's idle wait early.

Every loop polls (sidecar/loops.py): its step says how long to wait before the next. Across a pipeline
(follower -> dispatcher -> desk workers, re-read -> signer -> report) the latency is those idle waits
stacked. A Wake is one consuming loop's doorbell; producers ring it when they made work. It is a hint
only: the consumer's step still reads the store for what to do, so a ring that is lost or comes early
costs one poll interval at most, never work, and the idle waits stay as the fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

Step = Callable[[], Awaitable[float]]


class Wake:
    """One consuming loop's doorbell. A ring ends the loop's wait in progress, or the next one when it
    comes during a step (the step may have looked before the work was there); run_loop takes the ring
    just before each step. Only waits of at most `up_to` seconds are cut short: a longer wait is a
    backoff the step asked for (a full mempool, a refusing node), which a ring must not undo."""

    def __init__(self, up_to: float = 1.0) -> None:
        self.up_to = up_to
        self.rings = 0  # how often producers rang (for tests and benchmarks)
        self._event = asyncio.Event()

    def ring(self) -> None:
        self.rings += 1
        self._event.set()

    @property
    def rung(self) -> bool:
        return self._event.is_set()

    def take(self) -> None:
        """The loop is about to look for work: rings so far are answered by that look."""
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()


def ringing(step: Step, progress: Callable[[], object], wakes: Sequence[Wake]) -> Step:
    """`step`, ringing every one of `wakes` after a step at whose end `progress()` differs from its value
    at the start (a cursor that moved, a counter of work handed on). Also after a step that raised: what
    it committed before failing is there for the consumers."""

    async def run() -> float:
        before = progress()
        try:
            return await step()
        finally:
            if progress() != before:
                for wake in wakes:
                    wake.ring()

    return run
