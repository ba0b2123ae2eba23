"""The one metrics registry: the guide's names, types and labels; series that exist from the start; bounded labels."""

from __future__ import annotations

import asyncio
import hashlib
import platform
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import sidecar
from devnet.cometbft import DevnetNode
from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.desks.jira import JiraDesk
from sidecar.errors import DeskError
from sidecar.loops import run_loop
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.observe.metrics import Metrics
from sidecar.store.jobs import queue_manual_sync_txn
from sidecar.sync.content import ContentOpener
from sidecar.sync.outbound import DeskWorker, WorkerSettings
from tests.sidecar.chain.scan import support_secret
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.harness import app_flags, running_app
from tests.sidecar.observe.support import metric_value
from tests.sidecar.sync.rig import IDLE, Rig, created, ticket_id

GUIDE = {
    "servicedesk_sync_events": ("counter", {"direction", "status"}),
    "servicedesk_sync_latency_seconds": ("histogram", {"direction", "service"}),
    "servicedesk_api_requests": ("counter", {"service", "method", "status"}),
    "servicedesk_queue_pending": ("gauge", set()),
    "servicedesk_queue_failed": ("gauge", set()),
    "servicedesk_health_check": ("gauge", set()),
}
# The loops the app runs with every part on (chain, both desks, the signer); `webhook-rejections` runs only
# with the webhook receiver on, which the test of the running app below does not count on.
APP_LOOPS = {
    "chain-follower",
    "dispatcher",
    "chain-signer",
    "desk-jira",
    "desk-jira-health",
    "desk-waldur",
    "desk-waldur-health",
    "health",
    "audit-retention",
    "inbound",
    "inbound-sweep",
}
# Every label the sidecar exports, with every value it may take. A new label must be added here, bounded.
BOUNDED = {
    "direction": {"inbound", "outbound"},
    "status": {"success", "failed", "skipped", "2xx", "3xx", "4xx", "5xx", "error"},
    "service": {"jira", "waldur"},
    "desk": {"jira", "waldur", "all"},  # `all`: servicedesk_paused's pause of every desk
    "method": {"GET", "POST", "PUT", "PATCH", "DELETE"},
    "state": {"queued", "signed", "broadcast", "included", "failed", "dead", "pending", "running"},
    "field": {"status", "priority", "assignee"},
    "rule": {"on_chain_wins", "external_wins", "newest_wins", "manual", "transition_not_allowed", "other"},
    "outcome": {
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
    },
    "loop": APP_LOOPS | {"webhook-rejections", "artifact-gc"},  # artifact-gc: only while attachments are synced
    "source": {"websocket", "poll"},
    "cause": {"token_bucket", "retry_after"},
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
    assert (
        value(metrics, "servicedesk_sync_latency_seconds_bucket", direction="inbound", service="waldur", le="0.25") == 0
    )
    assert (
        value(metrics, "servicedesk_sync_latency_seconds_bucket", direction="inbound", service="waldur", le="0.5") == 1
    )
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
    flags = app_flags(
        tmp_path,
        devnet_node.rpc_url,
        **{
            "jira.base_url": jira_sim.base_url,
            "jira.username": jira_sim.email,
            "jira.account_id": jira_sim.me.account_id,
            "waldur.base_url": waldur_sim.api_url,
            "waldur.organization_uuid": next(iter(waldur_sim.customers)).hex,
            "sync.allow_insecure_http": "true",
        },
    )
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
    assert loops >= APP_LOOPS, loops
    metrics = Metrics()
    for loop in loops:
        metrics.count_loop_error(loop)
    assert_bounded(scrape(metrics))
    families = text_string_to_metric_families(exported)
    assert_bounded({f.name: (f.type, list(f.samples)) for f in families})  # what the running app exports


# --- the operator's view of the queue, pauses, rate limits and outbound latency -------------------
def series(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every exported series of one sample name: sorted labels -> value."""
    samples = [s for _, family in scrape(metrics).values() for s in family if s.name == name]
    return {tuple(sorted(s.labels.items())): float(s.value) for s in samples}


def test_job_gauges_hold_the_stores_counts_per_desk_and_state() -> None:
    metrics = Metrics()
    assert set(series(metrics, "servicedesk_jobs").values()) == {0.0}  # every desk and state from the start
    assert len(series(metrics, "servicedesk_jobs")) == 6
    metrics.set_jobs({("jira", "pending"): 5, ("jira", "dead"): 2, ("waldur", "running"): 1})
    metrics.set_jobs(
        {
            ("jira", "pending"): 4,
            ("jira", "dead"): 2,
            ("waldur", "running"): 1,
            ("github", "dead"): 9,
            ("jira", "done"): 40,
        }
    )  # the second read replaces the first; unbounded desks/states stay out
    assert value(metrics, "servicedesk_jobs", desk="jira", state="pending") == 4
    assert value(metrics, "servicedesk_jobs", desk="jira", state="dead") == 2
    assert value(metrics, "servicedesk_jobs", desk="jira", state="running") == 0
    assert value(metrics, "servicedesk_jobs", desk="waldur", state="running") == 1
    assert len(series(metrics, "servicedesk_jobs")) == 6
    metrics.set_jobs({})
    assert set(series(metrics, "servicedesk_jobs").values()) == {0.0}


def test_a_paused_series_exists_only_while_its_pause_holds() -> None:
    metrics = Metrics()
    assert series(metrics, "servicedesk_paused") == {}
    metrics.set_paused([("inbound", ""), ("outbound", "jira"), ("sideways", "jira"), ("inbound", "github")])
    assert series(metrics, "servicedesk_paused") == {
        (("desk", "all"), ("direction", "inbound")): 1.0,
        (("desk", "jira"), ("direction", "outbound")): 1.0,
    }
    metrics.set_paused([("outbound", "jira")])  # inbound resumed for every desk
    assert series(metrics, "servicedesk_paused") == {(("desk", "jira"), ("direction", "outbound")): 1.0}
    metrics.set_paused([])
    assert series(metrics, "servicedesk_paused") == {}


def waits(metrics: Metrics, cause: str) -> tuple[float, float]:
    """(requests held back, seconds) of jira's rate-limit waits by `cause`."""
    count = value(metrics, "servicedesk_desk_rate_limit_waits_total", desk="jira", cause=cause)
    seconds = value(metrics, "servicedesk_desk_rate_limit_wait_seconds_total", desk="jira", cause=cause)
    return count, seconds


async def test_the_wait_counter_grows_when_the_desks_token_bucket_holds_requests_back(
    make_jira_sim: Callable[..., JiraSim],
) -> None:
    """The real desk client against the Jira simulator: 12 concurrent calls through a bucket of 10 per second
    (burst 10) make the last ones wait; the same calls without pacing, or within a large burst, wait for nothing."""
    sim = make_jira_sim()
    for rate, waited in ((0.0, False), (1000.0, False), (10.0, True)):
        metrics = Metrics()
        desk = JiraDesk(
            jira_config(sim, requests_per_second=rate), JIRA_TOKEN, metrics=metrics, allow_insecure_http=True
        )
        try:
            await asyncio.gather(*(desk.check() for _ in range(12)))
        finally:
            await desk.aclose()
        count, seconds = waits(metrics, "token_bucket")
        assert value(metrics, "servicedesk_api_requests_total", service="jira", method="GET", status="2xx") == 12
        if waited:  # the 11th waits ~0.1 s for a token, the 12th for the 11th and its own token (~0.2 s)
            assert 1 <= count <= 2 and 0.05 <= seconds < 5, (rate, count, seconds)
        else:
            assert (count, seconds) == (0, 0), rate
        assert waits(metrics, "retry_after") == (0, 0)
        assert value(metrics, "servicedesk_desk_rate_limit_waits_total", desk="waldur", cause="token_bucket") == 0


async def test_a_429_retry_after_counts_the_wait_the_desk_asked_for(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim()
    metrics = Metrics()
    desk = JiraDesk(jira_config(sim, requests_per_second=0.0), JIRA_TOKEN, metrics=metrics, allow_insecure_http=True)
    try:
        sim.faults.inject("429", retry_after=7)
        with pytest.raises(DeskError) as err:
            await desk.check()
        assert (err.value.status, err.value.retry_after) == (429, 7.0)
        assert waits(metrics, "retry_after") == (1, 7)
        sim.faults.inject("503", retry_after=9)  # an outage, not a rate limit
        with pytest.raises(DeskError) as err:
            await desk.check()
        assert (err.value.status, err.value.retry_after) == (503, 9.0)
        await desk.check()
    finally:
        await desk.aclose()
    assert waits(metrics, "retry_after") == (1, 7)
    assert waits(metrics, "token_bucket") == (0, 0)


async def test_outbound_latency_runs_from_the_events_block_time_to_the_desks_answer(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, tmp_path: Path
) -> None:
    """A real desk worker on a real store and the Jira simulator, on a manual clock: the create job of an event
    whose block time is 100 s before the worker's clock is observed as 100 s; a manual sync job, made by no
    event, and an event without a block time are not observed."""
    sim = make_jira_sim(clock=clock)
    desk = JiraDesk(jira_config(sim, index_lag=0.0), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    metrics = Metrics()  # the rig's worker, with a registry this test reads
    rig.worker = DeskWorker(
        desk,
        rig.store,
        ContentOpener(rig.store, None),
        Auditor(rig.store, clock=clock),
        metrics,
        HealthState(),
        rig.retry,
        WorkerSettings(idle_wait=IDLE),
        clock=clock,
    )
    try:
        block_time = int(clock()) - 100
        await rig.chain(replace(created(1), timestamp=block_time, payload={"timestamp": block_time}))
        await rig.run_due()
        await rig.store.write("manual sync", queue_manual_sync_txn, ticket_id(1), ["jira"], clock())
        await rig.chain(created(2))  # no block time in its payload
        await rig.run_due()
    finally:
        await rig.close()
    assert value(metrics, "servicedesk_sync_events_total", direction="outbound", status="success") == 3
    assert value(metrics, "servicedesk_sync_latency_seconds_count", direction="outbound", service="jira") == 1
    observed = value(metrics, "servicedesk_sync_latency_seconds_sum", direction="outbound", service="jira")
    assert observed == pytest.approx(clock() - block_time) and 100 <= observed < 101
    assert value(metrics, "servicedesk_sync_latency_seconds_count", direction="inbound", service="jira") == 0
