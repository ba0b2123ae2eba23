"""Keep the health view of the node current: reachable, chain id, head, catching up.

The full follower (cursor, inbox) builds on this; the probe alone lets the sidecar say clearly
that the chain is unreachable, and retry, instead of crashing.
"""

from __future__ import annotations

import logging
import time

from sidecar.chain.rpc import CometRpc, NodeStatus
from sidecar.errors import ChainRpcError
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.urls import public_url

log = logging.getLogger(__name__)


class ChainProbe:
    def __init__(self, rpc: CometRpc, health: HealthState, metrics: Metrics, expected_chain_id: str) -> None:
        self._rpc = rpc
        self._health = health
        self._metrics = metrics
        self._expected = expected_chain_id

    async def check(self) -> NodeStatus | None:
        """Poll /status once; update health; None when the node did not answer."""
        chain = self._health.chain
        chain.checked_at = time.time()
        try:
            status = await self._rpc.status()
        except ChainRpcError as exc:
            if chain.reachable or chain.last_error is None:
                shown = {"rpc_url": public_url(self._rpc.url), "error": str(exc)}
                log.warning("chain unreachable; retrying", extra=shown)
            chain.reachable = False
            chain.last_error = str(exc)
            self._health.set_problem("chain", f"chain unreachable at {public_url(self._rpc.url)}")
            self._metrics.set_health(self._health.healthy, False)
            return None
        if not chain.reachable:
            log.info("chain reachable", extra={"chain_id": status.chain_id, "height": status.latest_height})
        chain.reachable = True
        chain.last_error = None
        chain.chain_id = status.chain_id
        chain.head_height = status.latest_height
        chain.catching_up = status.catching_up
        if self._expected and status.chain_id != self._expected:
            problem = f"node serves chain {status.chain_id!r}, configured chain.chain_id is {self._expected!r}"
            if self._health.problems.get("chain") != problem:
                log.error("wrong chain", extra={"node_chain_id": status.chain_id, "expected": self._expected})
            self._health.set_problem("chain", problem)
        elif status.catching_up:
            self._health.set_problem("chain", "node is catching up")
        else:
            self._health.set_problem("chain", None)
        self._metrics.set_chain(None, status.latest_height)
        self._metrics.set_health(self._health.healthy, True)
        return status
