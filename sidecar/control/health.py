"""Standard grpc.health.v1 for the control API, tied to the chain follower.

SERVING means the sidecar is doing its job: the node answers, is not catching up, and the cursor
trails the node's head by at most chain.max_lag_blocks. Desk trouble does not make the control API
unhealthy: it is exactly when an operator needs it.
"""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2

from sidecar.observe.health import HealthState
from sidecar.store.db import Store
from sidecar.store.inbox import load_cursor

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FOLLOWER_PROBLEMS = ("chain", "follower")  # the probe's and the follower's own reasons to stop


def follower_serving(state: HealthState, cursor_height: int | None, max_lag_blocks: int) -> bool:
    """True when the follower is connected and within its lag bound."""
    chain = state.chain
    if not chain.reachable or chain.catching_up or any(p in state.problems for p in FOLLOWER_PROBLEMS):
        return False
    if chain.head_height is None or cursor_height is None:
        return False
    return chain.head_height - cursor_height <= max_lag_blocks


class ControlHealth:
    """The Health servicer and what sets it: refresh() reads the cursor and sets every service name."""

    def __init__(self, state: HealthState, store: Store, max_lag_blocks: int, services: tuple[str, ...]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._state = state
        self._store = store
        self._max_lag = max_lag_blocks
        self._services = ("", *services)

    async def refresh(self) -> bool:
        """Set SERVING or NOT_SERVING from the health state and the stored cursor; True when serving."""
        cursor = await self._store.read("control health cursor", load_cursor)
        serving = follower_serving(self._state, cursor.height if cursor is not None else None, self._max_lag)
        for service in self._services:
            await self.servicer.set(service, SERVING if serving else NOT_SERVING)
        return serving

    async def stop(self) -> None:
        """NOT_SERVING for good: watchers learn the server is going away before it does."""
        await self.servicer.enter_graceful_shutdown()
