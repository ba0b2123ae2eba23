"""One metrics registry, declared in one place, used through typed methods.

Names, labels and types of the operations guide are kept exactly; no label carries an unbounded
value (never a ticket id).
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

import sidecar

Direction = Literal["inbound", "outbound"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_events = Counter("servicedesk_sync_events", "Total sync events", ["direction", "status"], registry=r)
        self.sync_latency = Histogram(
            "servicedesk_sync_latency_seconds",
            "Sync latency from chain event or webhook receipt to the effect landing",
            ["direction", "service"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=r,
        )
        self.api_requests = Counter(
            "servicedesk_api_requests", "API requests to the desks", ["service", "method", "status"], registry=r
        )
        self.queue_pending = Gauge("servicedesk_queue_pending", "Pending events in queue", registry=r)
        self.queue_failed = Gauge("servicedesk_queue_failed", "Failed events", registry=r)
        self.health_check = Gauge("servicedesk_health_check", "1 when the sidecar is healthy, else 0", registry=r)
        self.chain_reachable = Gauge("servicedesk_chain_reachable", "1 when the node's RPC answers", registry=r)
        self.follower_height = Gauge("servicedesk_follower_height", "Last height fully read from the chain", registry=r)
        self.chain_head_height = Gauge("servicedesk_chain_head_height", "Latest height the node reports", registry=r)
        self.follower_lag = Gauge("servicedesk_follower_lag_blocks", "Head height minus cursor height", registry=r)
        self.ws_reconnects = Counter("servicedesk_chain_ws_reconnects", "Websocket reconnects", registry=r)
        self.tx_intents = Gauge("servicedesk_tx_intents", "Chain tx intents by state", ["state"], registry=r)
        self.signer_sequence = Gauge("servicedesk_signer_sequence", "Next account sequence of the signer", registry=r)
        self.webhook_deliveries = Counter(
            "servicedesk_webhook_deliveries", "Webhook deliveries by desk and outcome", ["desk", "outcome"], registry=r
        )
        self.loop_errors = Counter(
            "servicedesk_loop_errors", "Errors raised by a background loop step", ["loop"], registry=r
        )
        self.build_info = Info("servicedesk_build", "Build information", registry=r)
        self.build_info.info({"version": sidecar.__version__})
        self.health_check.set(0)

    def set_queue(self, pending: int, failed: int) -> None:
        self.queue_pending.set(pending)
        self.queue_failed.set(failed)

    def set_health(self, healthy: bool, chain_reachable: bool) -> None:
        self.health_check.set(1 if healthy else 0)
        self.chain_reachable.set(1 if chain_reachable else 0)

    def set_chain(self, cursor: int | None, head: int | None) -> None:
        if head is not None:
            self.chain_head_height.set(head)
        if cursor is not None:
            self.follower_height.set(cursor)
        if cursor is not None and head is not None:
            self.follower_lag.set(max(0, head - cursor))

    def count_sync(self, direction: Direction, status: Literal["success", "failed", "skipped"]) -> None:
        self.sync_events.labels(direction=direction, status=status).inc()

    def count_loop_error(self, loop: str) -> None:
        self.loop_errors.labels(loop=loop).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
