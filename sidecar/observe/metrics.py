"""One metrics registry, declared in one place, used through typed methods.

Names, labels and types of the operations guide are kept exactly. Every label takes its values
from one of the Literal sets below (never a ticket id, URL or error text), and every combination
is created at start, so series exist (at 0) before the first event and `increase()` sees the first.
The one exception is `servicedesk_paused`: a series exists only while its pause does.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from itertools import product
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

import sidecar

Direction = Literal["inbound", "outbound"]
SyncStatus = Literal["success", "failed", "skipped"]
Service = Literal["jira", "waldur"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
StatusClass = Literal["2xx", "3xx", "4xx", "5xx", "error"]
TxState = Literal["queued", "signed", "broadcast", "included", "failed", "dead"]
WebhookOutcome = Literal[
    "accepted",
    "duplicate",
    "echo",
    "bad_signature",
    "stale",
    "forbidden_source",
    "rate_limited",
    "too_large",
    "malformed",
    "overloaded",
]
TxConfirmation = Literal["websocket", "poll"]
SyncField = Literal["status", "priority", "assignee"]
ConflictRule = Literal["on_chain_wins", "external_wins", "newest_wins", "manual", "transition_not_allowed", "other"]
JobState = Literal["pending", "running", "dead"]  # the outbound job states an operator watches (not done/skipped)
# Why a desk request waited: the sidecar's own pacing (`<desk>.requests_per_second`), or the desk's 429 Retry-After.
WaitCause = Literal["token_bucket", "retry_after"]
EVERY_DESK = "all"  # servicedesk_paused's desk for a pause of every desk
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


def status_class(status: int | None) -> StatusClass:
    """An HTTP status as a bounded label value; None means no response (timeout, connection error)."""
    if status is None or not 200 <= status < 600:
        return "error"
    classes: tuple[StatusClass, ...] = ("2xx", "3xx", "4xx", "5xx")
    return classes[status // 100 - 2]


class Metrics:
    def __init__(self) -> None:
        # `*_created` series would double the exposition and nothing here alerts on them (process-wide switch).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_events = Counter("servicedesk_sync_events", "Total sync events", ["direction", "status"], registry=r)
        self.sync_latency = Histogram(
            "servicedesk_sync_latency_seconds",
            "Sync latency from chain event or webhook receipt to the effect landing",
            ["direction", "service"],
            buckets=LATENCY_BUCKETS,
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
        self.tx_confirmations = Counter(
            "servicedesk_signer_confirmations",
            "Included txs of the signer, by how inclusion was learnt",
            ["source"],
            registry=r,
        )
        self.signer_sequence = Gauge("servicedesk_signer_sequence", "Next account sequence of the signer", registry=r)
        self.signer_paused = Gauge(
            "servicedesk_signer_paused", "1 while signing waits for the account to afford its fees", registry=r
        )
        self.signer_unproven_txs = Gauge(
            "servicedesk_signer_unproven_txs",
            "Txs past their timeout height not yet proven lost or landed",
            registry=r,
        )
        self.signer_node_refused = Gauge(
            "servicedesk_signer_node_refused",
            "1 while the signer refuses the node (another chain or an older height)",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "servicedesk_webhook_deliveries", "Webhook deliveries by desk and outcome", ["desk", "outcome"], registry=r
        )
        # Each (desk, outcome)'s child, looked up once: `labels()` takes a lock and builds a key per call, and
        # every webhook delivery counts one (the intake's hot path).
        self._webhook_children: dict[tuple[Service, WebhookOutcome], Counter] = {}
        self.desk_auth_failed = Gauge(
            "servicedesk_desk_auth_failed",
            "1 while the desk refuses the sidecar's credentials (HTTP 401), else 0",
            ["desk"],
            registry=r,
        )
        self.loop_errors = Counter(
            "servicedesk_loop_errors", "Errors raised by a background loop step", ["loop"], registry=r
        )
        self.conflicts = Counter(
            "servicedesk_sync_conflicts",
            "Fields changed on the chain and at a desk since their last synced value, by the rule that decided",
            ["desk", "field", "rule"],
            registry=r,
        )
        self.conflicts_open = Gauge(
            "servicedesk_sync_conflicts_open", "Conflicts parked for an operator (manual strategy)", registry=r
        )
        self.inbound_queue = Gauge(
            "servicedesk_inbound_queue",
            "Desk issues waiting for an inbound re-read, by state",
            ["desk", "state"],
            registry=r,
        )
        self.jobs = Gauge(
            "servicedesk_jobs",
            "Outbound desk jobs by desk and state: pending (waiting or deferred), running, dead (dead-lettered)",
            ["desk", "state"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            "servicedesk_desk_rate_limit_waits",
            "Desk requests held back by a rate limit: the sidecar's own pacing or the desk's 429 Retry-After",
            ["desk", "cause"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            "servicedesk_desk_rate_limit_wait_seconds",
            "Seconds desk requests were held back by a rate limit (pacing: waited; retry_after: the desk's ask)",
            ["desk", "cause"],
            registry=r,
        )
        self.paused = Gauge(
            "servicedesk_paused",
            "1 while an operator's pause holds a direction at a desk (desk all: every desk); absent when not paused",
            ["direction", "desk"],
            registry=r,
        )
        self._paused: set[tuple[str, str]] = set()
        self.build_info = Info("servicedesk_build", "Build information", registry=r)
        self.build_info.info({"version": sidecar.__version__, "python": platform.python_version()})
        self.health_check.set(0)
        self._preinitialise()

    def _preinitialise(self) -> None:
        for direction, status in product(get_args(Direction), get_args(SyncStatus)):
            self.sync_events.labels(direction=direction, status=status)
        for direction, service in product(get_args(Direction), get_args(Service)):
            self.sync_latency.labels(direction=direction, service=service)
        for service, method, cls in product(get_args(Service), get_args(HttpMethod), get_args(StatusClass)):
            self.api_requests.labels(service=service, method=method, status=cls)
        for state in get_args(TxState):
            self.tx_intents.labels(state=state)
        for source in get_args(TxConfirmation):
            self.tx_confirmations.labels(source=source)
        for desk, outcome in product(get_args(Service), get_args(WebhookOutcome)):
            self.webhook_deliveries.labels(desk=desk, outcome=outcome)
        for desk in get_args(Service):
            self.desk_auth_failed.labels(desk=desk).set(0)
        for desk, field, rule in product(get_args(Service), get_args(SyncField), get_args(ConflictRule)):
            self.conflicts.labels(desk=desk, field=field, rule=rule)
        for desk, state in product(get_args(Service), ("pending", "dead")):
            self.inbound_queue.labels(desk=desk, state=state).set(0)
        for desk, job_state in product(get_args(Service), get_args(JobState)):
            self.jobs.labels(desk=desk, state=job_state).set(0)
        for desk, cause in product(get_args(Service), get_args(WaitCause)):
            self.rate_limit_waits.labels(desk=desk, cause=cause)
            self.rate_limit_wait_seconds.labels(desk=desk, cause=cause)

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

    def count_ws_reconnect(self) -> None:
        self.ws_reconnects.inc()

    def count_sync(self, direction: Direction, status: SyncStatus) -> None:
        self.sync_events.labels(direction=direction, status=status).inc()

    def observe_sync_latency(self, direction: Direction, service: Service, seconds: float) -> None:
        """From the chain event's or webhook's receipt to the effect landing at the other side."""
        self.sync_latency.labels(direction=direction, service=service).observe(max(0.0, seconds))

    def count_api_request(self, service: Service, method: HttpMethod, status: int | None) -> None:
        """One desk API call; `status` is the HTTP status, or None when no response came."""
        self.api_requests.labels(service=service, method=method, status=status_class(status)).inc()

    def set_tx_intents(self, counts: Mapping[TxState, int]) -> None:
        """Counts by state from the store; a state missing from `counts` is 0."""
        for state in get_args(TxState):
            self.tx_intents.labels(state=state).set(counts.get(state, 0))

    def count_tx_confirmation(self, source: TxConfirmation) -> None:
        self.tx_confirmations.labels(source=source).inc()

    def set_signer_sequence(self, sequence: int) -> None:
        self.signer_sequence.set(sequence)

    def set_signer_alarms(self, *, paused: bool, unproven_txs: int, node_refused: bool) -> None:
        """The signer's alarms: each one holds signing (or its intents) back until it clears."""
        self.signer_paused.set(1 if paused else 0)
        self.signer_unproven_txs.set(unproven_txs)
        self.signer_node_refused.set(1 if node_refused else 0)

    def count_webhook(self, desk: Service, outcome: WebhookOutcome) -> None:
        child = self._webhook_children.get((desk, outcome))
        if child is None:
            child = self._webhook_children[(desk, outcome)] = self.webhook_deliveries.labels(desk=desk, outcome=outcome)
        child.inc()

    def set_desk_auth_failed(self, desk: Service, failed: bool) -> None:
        """Raised while the desk answers 401 (an expired or revoked token), cleared once it answers again."""
        self.desk_auth_failed.labels(desk=desk).set(1 if failed else 0)

    def count_conflict(self, desk: Service, field: SyncField, rule: ConflictRule) -> None:
        self.conflicts.labels(desk=desk, field=field, rule=rule).inc()

    def set_inbound(self, open_conflicts: int, queue: Mapping[tuple[str, str], int]) -> None:
        """Open conflicts and the inbound re-read queue by (desk, state), from the store."""
        self.conflicts_open.set(open_conflicts)
        for desk, state in product(get_args(Service), ("pending", "dead")):
            running = queue.get((desk, "running"), 0) if state == "pending" else 0  # being read: still pending
            self.inbound_queue.labels(desk=desk, state=state).set(queue.get((desk, state), 0) + running)

    def set_jobs(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Outbound jobs by (desk, state), from the store; a pair missing from `counts` is 0, and a desk or
        state outside the bounded sets is not exported."""
        for desk, state in product(get_args(Service), get_args(JobState)):
            self.jobs.labels(desk=desk, state=state).set(counts.get((desk, state), 0))

    def count_rate_limit_wait(self, desk: Service, cause: WaitCause, seconds: float) -> None:
        """One desk request held back: `seconds` it waited for a token, or the desk's Retry-After."""
        self.rate_limit_waits.labels(desk=desk, cause=cause).inc()
        self.rate_limit_wait_seconds.labels(desk=desk, cause=cause).inc(max(0.0, seconds))

    def set_paused(self, pauses: Iterable[tuple[str, str]]) -> None:
        """The pauses in force as (direction, desk), desk "" for every desk (exported as `all`). A series is
        1 while its pause holds and removed once resumed; a pair outside the bounded sets is not exported."""
        desks = (*get_args(Service), "")
        now = {(d, desk or EVERY_DESK) for d, desk in pauses if d in get_args(Direction) and desk in desks}
        for direction, desk in self._paused - now:
            self.paused.remove(direction, desk)
        for direction, desk in now:
            self.paused.labels(direction=direction, desk=desk).set(1)
        self._paused = now

    def count_loop_error(self, loop: str) -> None:
        """`loop` is a name fixed in code (app.py's run_loop calls), never data."""
        self.loop_errors.labels(loop=loop).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
