"""The one metrics registry: the guide's names, types and labels; series that exist from the start; bounded labels."""

from __future__ import annotations

import asyncio
import hashlib
import platform
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import sidecar
from devnet.cometbft import DevnetNode
from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim
from sidecar.loops import run_loop
from sidecar.observe.metrics import Metrics
from tests.sidecar.chain.scan import support_secret
from tests.sidecar.harness import app_flags, running_app
from tests.sidecar.observe.support import metric_value

GUIDE = {
    "servicedesk_sync_events": ("counter", {"direction", "status"}),
    "servicedesk_sync_latency_seconds": ("histogram", {"direction", "service"}),
    "servicedesk_api_requests": ("counter", {"service", "method", "status"}),
    "servicedesk_queue_pending": ("gauge", set()),
    "servicedesk_queue_failed": ("gauge", set()),
    "servicedesk_health_check": ("gauge", set()),
}
# Every label the sidecar exports, with every value it may take. A new label must be added here, bounded.
BOUNDED = {
    "direction": {"inbound", "outbound"},
    "status": {"success", "failed", "skipped", "2xx", "3xx", "4xx", "5xx", "error"},
    "service": {"jira", "waldur"},
    "desk": {"jira", "waldur"},
    "method": {"GET", "POST", "PUT", "PATCH", "DELETE"},
    "state": {"queued", "signed", "broadcast", "included", "failed", "dead", "pending"},
    "field": {"status", "priority", "assignee"},
    "rule": {"on_chain_wins", "external_wins", "newest_wins", "manual", "transition_not_allowed", "other"},
    "outcome": {"accepted", "duplicate", "echo", "bad_signature", "stale", "forbidden_source", "rate_limited",
                "too_large", "malformed", "overloaded"},
    "loop": {
        "chain-follower",
        "dispatcher",
        "chain-signer",
        "desk-jira",
        "desk-jira-health",
        "desk-waldur",
        "desk-waldur-health",
        "health",
        "audit-retention",
        "webhook-rejections",
        "inbound",
        "inbound-sweep",
    },
    "source": {"websocket", "poll"},
    "le": None,  # histogram buckets: fixed in code
    "version": {sidecar.__version__},
    "python": None,  # the interpreter's version: one value per process
}


def scrape(metrics: Metrics) -> dict[str, tuple[str, list[Sample]]]:
    families = text_string_to_metric_families(metrics.render().decode())
    return {f.name: (f.type, list(f.samples)) for f in families}


value = metric_value


def test_guide_metrics_have_the_guides_types_and_labels() -> None:
    families = scrape(Metrics())
    for name, (kind, labels) in GUIDE.items():
        assert name in families, name
        family_type, samples = families[name]
        assert family_type == kind, name
        assert samples, f"{name} has no series before the first event"
        for sample in samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)


def test_bounded_label_combinations_exist_at_zero_from_the_start() -> None:
    metrics = Metrics()
    for direction in ("inbound", "outbound"):
        for status in ("success", "failed", "skipped"):
            assert value(metrics, "servicedesk_sync_events_total", direction=direction, status=status) == 0
        for service in ("jira", "waldur"):
            assert value(metrics, "servicedesk_sync_latency_seconds_count", direction=direction, service=service) == 0
    assert value(metrics, "servicedesk_api_requests_total", service="waldur", method="PATCH", status="5xx") == 0
    assert value(metrics, "servicedesk_webhook_deliveries_total", desk="jira", outcome="bad_signature") == 0
    assert value(metrics, "servicedesk_tx_intents", state="dead") == 0
    assert value(metrics, "servicedesk_health_check") == 0
    build = {"version": sidecar.__version__, "python": platform.python_version()}
    assert value(metrics, "servicedesk_build_info", **build) == 1


def test_typed_methods_move_exactly_their_series() -> None:
    metrics = Metrics()
    metrics.count_sync("outbound", "failed")
    metrics.count_sync("outbound", "failed")
    metrics.observe_sync_latency("inbound", "waldur", 0.3)
    metrics.count_api_request("jira", "POST", 429)
    metrics.count_api_request("jira", "GET", 200)
    metrics.count_api_request("waldur", "GET", None)
    metrics.set_tx_intents({"queued": 4, "broadcast": 1})
    metrics.set_tx_intents({"included": 2})
    metrics.set_signer_sequence(17)
    metrics.count_webhook("jira", "duplicate")
    metrics.set_chain(90, 100)
    metrics.count_ws_reconnect()
    metrics.set_queue(3, 1)
    metrics.set_health(True, True)

    assert value(metrics, "servicedesk_sync_events_total", direction="outbound", status="failed") == 2
    assert value(metrics, "servicedesk_sync_events_total", direction="inbound", status="failed") == 0
    assert value(metrics, "servicedesk_sync_latency_seconds_count", direction="inbound", service="waldur") == 1
    assert value(metrics, "servicedesk_sync_latency_seconds_bucket", direction="inbound", service="waldur",
                 le="0.25") == 0
    assert value(metrics, "servicedesk_sync_latency_seconds_bucket", direction="inbound", service="waldur",
                 le="0.5") == 1
    assert value(metrics, "servicedesk_api_requests_total", service="jira", method="POST", status="4xx") == 1
    assert value(metrics, "servicedesk_api_requests_total", service="jira", method="GET", status="2xx") == 1
    assert value(metrics, "servicedesk_api_requests_total", service="waldur", method="GET", status="error") == 1
    assert value(metrics, "servicedesk_tx_intents", state="queued") == 0  # the second call replaced the first
    assert value(metrics, "servicedesk_tx_intents", state="included") == 2
    assert value(metrics, "servicedesk_signer_sequence") == 17
    assert value(metrics, "servicedesk_webhook_deliveries_total", desk="jira", outcome="duplicate") == 1
    assert value(metrics, "servicedesk_follower_height") == 90
    assert value(metrics, "servicedesk_chain_head_height") == 100
    assert value(metrics, "servicedesk_follower_lag_blocks") == 10
    assert value(metrics, "servicedesk_chain_ws_reconnects_total") == 1
    assert value(metrics, "servicedesk_queue_pending") == 3
    assert value(metrics, "servicedesk_queue_failed") == 1
    assert value(metrics, "servicedesk_health_check") == 1


def assert_bounded(families: dict[str, tuple[str, list[Sample]]]) -> None:
    samples = [sample for _, family in families.values() for sample in family]
    assert samples, "nothing was exported"
    for sample in samples:
        for label, label_value in sample.labels.items():
            assert label in BOUNDED, f"{sample.name} has an undeclared label {label!r}"
            allowed = BOUNDED[label]
            assert allowed is None or label_value in allowed, (sample.name, label, label_value)


def running_loops() -> set[str]:
    """The `loop` names of the run_loop tasks alive in this event loop (read from their coroutines)."""
    names = set()
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        code, frame = getattr(coro, "cr_code", None), getattr(coro, "cr_frame", None)
        if code is run_loop.__code__ and frame is not None:
            names.add(str(frame.f_locals["name"]))
    return names


@pytest.mark.node
async def test_every_label_is_declared_and_bounded(
    devnet_node: DevnetNode, jira_sim: JiraSim, waldur_sim: WaldurSim, tmp_path: Path
) -> None:
    """With every part on (chain, both desks, the signer), each loop the app runs may label an error."""
    flags = app_flags(tmp_path, devnet_node.rpc_url, **{
        "jira.base_url": jira_sim.base_url, "jira.username": jira_sim.email, "jira.account_id": jira_sim.me.account_id,
        "waldur.base_url": waldur_sim.api_url, "waldur.organization_uuid": next(iter(waldur_sim.customers)).hex,
        "sync.allow_insecure_http": "true"})
    env = {
        "VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY": support_secret(),
        "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": str(jira_sim.api_token),
        "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN": str(waldur_sim.token),
        "VIRTENGINE_SERVICEDESK_SIGNING_KEY": hashlib.sha256(b"devnet-account:sidecar").hexdigest(),
        "VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE": "false",
    }
    async with running_app(flags, env) as app:
        loops = running_loops()
        async with httpx.AsyncClient() as client:
            exported = (await client.get(f"http://127.0.0.1:{app.web_port}/metrics", timeout=10)).text
    assert {"chain-follower", "dispatcher", "chain-signer", "desk-jira", "desk-jira-health", "desk-waldur",
            "desk-waldur-health", "health", "audit-retention", "inbound", "inbound-sweep"} <= loops, loops
    metrics = Metrics()
    for loop in loops:
        metrics.count_loop_error(loop)
    assert_bounded(scrape(metrics))
    families = text_string_to_metric_families(exported)
    assert_bounded({f.name: (f.type, list(f.samples)) for f in families})  # what the running app exports
