"""The benchmarks' own logic, at a small size: a benchmark that silently measures something else is worse
than none. (Figures are never asserted: `make bench` reports them.)"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import httpcore
import httpx
import pytest
from nacl.public import PrivateKey

import bench.attachment_path as attachment_path
import bench.desk_requests as desk_requests
import bench.follower_backfill as follower_backfill
import bench.inbound_latency as inbound_latency
import bench.loadgen as loadgen
import bench.outbound_drain as outbound_drain
import bench.outbound_latency as outbound_latency
import bench.signer_throughput as signer_throughput
import bench.webhook_intake as webhook_intake
from devnet.cometbft import DevnetNode
from devnet.jira_sim import JiraSim
from sidecar.artifacts.local import LocalStore
from sidecar.artifacts.sealed import open_object
from sidecar.chain.envelope import EnvelopeKey
from sidecar.http_transport import _Pool


async def test_outbound_drain_sends_one_search_and_one_create_per_ticket_through_429s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound_drain, "TICKETS", 30)
    # The full run's path, rate limit included (Jira's, per endpoint and method): the client paces each endpoint
    # at 100 requests/s, the simulator allows 20 per endpoint after a burst of 2, so the desk worker meets 429s
    # and must go on through them (eight jobs start at once). 6 to 13 s.
    with JiraSim(latency=0.0, rate_per_second=20.0, burst=2, validate=True) as sim:
        _, requests = await outbound_drain.drain(tmp_path, sim)
        labels = sorted(label for issue in sim.list_issues() for label in issue.labels if label.startswith("ve-sup-"))
        violations = list(sim.contract_violations)
        answered = [(r.path.split("?")[0], r.outcome) for r in sim.requests]
    assert any(outcome == "rate:burst" for _, outcome in answered)  # the simulator answered 429s
    assert requests == len(answered) and {outcome for _, outcome in answered} == {"ok", "rate:burst"}
    created = sum(1 for path, outcome in answered if path == "/rest/api/3/issue" and outcome == "ok")
    searched = sum(1 for path, outcome in answered if path == "/rest/api/3/search/jql" and outcome == "ok")
    assert created == 30 and searched >= 30  # per ticket one create, after at least one label lookup
    assert labels == [f"ve-sup-{n:06d}" for n in range(1, 31)]
    assert violations == []


def test_desk_requests_measures_each_client_on_its_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every client is answered with the endpoint's body each time (measure raises otherwise), and the desk run
    goes through the desks' transport while the baseline keeps httpx's own pool."""
    pools: dict[str, type] = {}
    made = {"desk": desk_requests.desk_client, "httpx": desk_requests.httpx_client}
    for name, make in made.items():

        def watched(port: int, make: Callable[[int], httpx.AsyncClient] = make, name: str = name) -> httpx.AsyncClient:
            client = make(port)
            pools[name] = type(client._transport._pool)  # type: ignore[attr-defined]
            return client

        monkeypatch.setattr(desk_requests, f"{name}_client", watched)
    found = desk_requests.measure(128, 1)
    assert set(found) == {(c, lanes) for c in ("desk", "httpx", "raw") for lanes in desk_requests.LANES}
    assert all(len(values) == 1 and values[0] > 0 for values in found.values())
    assert pools == {"desk": _Pool, "httpx": httpcore.AsyncConnectionPool}


def test_the_drain_floor_counts_the_free_burst() -> None:
    assert outbound_drain.floor_seconds(20_000, 100.0, 100) == 199.0
    assert outbound_drain.floor_seconds(50, 100.0, 100) == 0.0
    # Jira's limit is per endpoint: searches and creates fill their buckets in parallel; the slowest one bounds.
    assert outbound_drain.endpoint_floor({"label search": 10_000, "create": 10_000}, 100.0, 100) == 99.0
    assert outbound_drain.endpoint_floor({"label search": 10_000, "create": 150}, 100.0, 100) == 99.0


def test_follower_backfill_stores_every_event_the_bare_batched_client_sees(
    devnet_node: DevnetNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_backfill, "EVENTS", 20)
    monkeypatch.setattr(follower_backfill, "BLOCKS", devnet_node.height() + 25)
    figures = {f.name: f for f in follower_backfill.measure(devnet_node, tmp_path)}
    # measure() asserts the follower's stored events equal the bare client's count (both saw all 20) and,
    # run as the full benchmark is, with the support key, that the follower opened every payload sealed to it.
    assert follower_backfill.SUPPORT_KEY
    assert figures["support_events"].value == 20
    assert figures["blocks"].value >= follower_backfill.BLOCKS
    assert figures["follower_peak_rss"].value > 0
    assert figures["follower_blocks_per_s"].baseline is not None and figures["follower_blocks_per_s"].ratio is not None
    assert figures["node_serving_blocks_per_s"].value > 0  # the raw client read the same events (measure asserts)


def test_signer_throughput_includes_every_intent_at_the_default_batch_size(
    devnet_node: DevnetNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signer_throughput, "INTENTS", 12)
    figures = {f.name: f for f in signer_throughput.measure(devnet_node, tmp_path)}
    # run_signer asserts every intent was included; the figures say how, at both batch sizes.
    assert figures["intents"].value == 12
    assert figures["txs_used"].value >= 1 and figures["blocks_until_all_included"].value >= 1
    assert figures["sequence_errors_unresolved"].value == 0
    assert figures["sequence_errors_unresolved_100_per_tx"].value == 0
    assert 0 < figures["seconds_until_all_in_mempool"].value <= figures["seconds_until_all_included"].value


async def test_webhook_intake_stores_each_accepted_delivery_once_with_its_audit_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_intake, "SECONDS", 0.5)
    monkeypatch.setattr(webhook_intake, "ROUNDS", 1)
    # The load generator's templated bodies are jira_body's, byte for byte (n past the issue ids' wrap too).
    requests = loadgen.Requests("http://127.0.0.1:1/x", "secret", "run1")
    stamp = 1_700_000_000_123
    assert all(requests.body(n, stamp) == loadgen.jira_body(n, "run1", stamp) for n in (1, 5001))
    runs, receiving = await webhook_intake.measure(tmp_path)
    for name in webhook_intake.RECEIVERS:
        rows, audited, chain_ok = webhook_intake.stored(tmp_path / f"{name}.db")
        ok = receiving[name].ok
        expected = ok if name in webhook_intake.RECORDING else 0  # the unrecorded baseline writes nothing
        assert ok > 0 and rows == expected == audited and chain_ok, (name, ok, rows, audited, chain_ok)
    assert all(run["answered"] > 0 for target in runs for run in runs[target])
    assert all(run["writer_waits"] > 0 for name in webhook_intake.RECEIVERS for run in runs[name])
    hop_cpu, hop_wall = await webhook_intake.thread_hop(hops=200)
    assert hop_cpu >= 0 and hop_wall > 0


async def test_the_inbound_sweep_bench_queues_exactly_the_changed_one_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbound_latency, "SWEEP_ISSUES", 300)
    figures = {f.name: f for f in await inbound_latency.sweep_run(tmp_path)}
    assert figures["sweep_queued"].value == 3 and figures["sweep_requests"].value == 1


def test_outbound_latency_times_each_ticket_from_inclusion_to_its_own_issue_at_the_desk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The full run's path at 3 tickets (one unmeasured): its own node, the sidecar process, the simulator's
    # API polled by key and label (measure() fails on an issue carrying another ticket's label). ~15 s.
    monkeypatch.setattr(outbound_latency, "TICKETS", 2)
    monkeypatch.setattr(outbound_latency, "WARMUP", 1)
    monkeypatch.setattr(outbound_latency, "GAP", 0.2)
    figures = {f.name: f for f in outbound_latency.measure(tmp_path)}
    assert figures["tickets"].value == 2
    block = figures["block_time"].value
    assert block > 0
    for name in ("included_to_visible_p50", "included_to_visible_p99", "included_to_create_request_p50"):
        assert figures[name].value > 0 and figures[name].baseline == block, name
    # An issue is never visible before its create request, nor that before the tx was included.
    assert figures["included_to_visible_p50"].value >= figures["included_to_create_request_p50"].value


def test_inbound_latency_times_desk_changes_to_the_blocks_that_include_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The full run's path at 3 issues and 6 agent changes: its own node, the sidecar process, webhooks,
    # re-reads, signed txs; the figures come from the sidecar's records joined to block times. ~20 s.
    monkeypatch.setattr(inbound_latency, "ISSUES", 3)
    monkeypatch.setattr(inbound_latency, "CHANGES", 6)
    figures = {f.name: f for f in inbound_latency.latency_run(tmp_path)}
    assert figures["changes_made"].value == 6
    # Changes to one issue between two re-reads land as one intent: at least one, at most one per change.
    assert 1 <= figures["changes_on_chain"].value <= 6
    block = figures["block_time"].value
    assert block > 0 and figures["change_to_chain_p50"].baseline == block


async def test_the_attachment_bench_moves_the_same_bytes_both_ways_and_its_meter_sees_a_whole_copy(
    tmp_path: Path,
) -> None:
    size = 1024 * 1024 + 1000  # past the sniffed head, several sealed chunks and a short last one
    setup, results, sim = await asyncio.to_thread(attachment_path.run_all, tmp_path, size)
    at_desk = {a["id"]: a for a in sim["attachments"]}
    for uploaded in (results["outbound"]["attachment_id"], results["bare_upload"]["attachment_id"]):
        assert at_desk[uploaded]["size"] == size and at_desk[uploaded]["sha256"] == setup.sha256
    assert sim["violations"] == []
    inbound = results["inbound"]
    assert (inbound["size"], inbound["sha256"], inbound["type"]) == (size, setup.sha256, "image/png")
    key = EnvelopeKey(PrivateKey(bytes.fromhex(setup.support_key)))
    store = LocalStore(Path(setup.work) / "artifacts")
    digest = hashlib.sha256()
    async for piece in open_object(key, store.open(inbound["ref"]), max_plain=size):
        digest.update(piece)
    assert digest.hexdigest() == setup.sha256  # what the inbound path stored opens to the file
    assert (results["bare_download"]["size"], results["bare_download"]["sha256"]) == (size, setup.sha256)
    # The meter: a path that holds the file whole must show at least the file's size of growth.
    assert results["held_whole"]["rss_growth"] >= size * 0.95, results["held_whole"]
