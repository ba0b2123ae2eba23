"""The signer's check of the node on every step: the chain it signs for, at a height never below one seen.

A node re-genesised (height back near 1), an RPC endpoint that now answers for another chain, or one
behind the heights already seen (a lagging node behind a load balancer) is refused: nothing it says
may move the account sequence or settle an intent. The highest height survives restarts through the
blocks that hold our txs, and the chain id through the store's `signer.chain_id`.
"""

from __future__ import annotations

import logging

from sidecar.chain.rpc import NodeStatus
from sidecar.errors import ChainRpcError

log = logging.getLogger(__name__)


class NodeRefused(ChainRpcError):
    """The node is not the chain (or not at the height) the signer's state belongs to."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem, retryable=True)


class NodeGuard:
    def __init__(self, chain_id: str, floor: int) -> None:
        self.chain_id = chain_id
        self.highest = floor
        self.problem: str | None = None

    def check(self, node: NodeStatus) -> int:
        """The node's head when it may be used; raise NodeRefused (once logged) when not."""
        problem = None
        if node.chain_id != self.chain_id:
            problem = f"node answers for chain {node.chain_id!r}, the signer signs for {self.chain_id!r}"
        elif node.latest_height < self.highest:
            problem = (
                f"node is at height {node.latest_height}, below height {self.highest} seen before "
                "(re-genesised, or another node)"
            )
        if problem is not None:
            if self.problem is None:
                log.error("signer refuses the node: %s", problem)
            self.problem = problem
            raise NodeRefused(problem)
        if self.problem is not None:
            log.info("signer accepts the node again", extra={"height": node.latest_height})
        self.problem = None
        self.highest = node.latest_height
        return node.latest_height
