"""The benchmarks' own logic, at a small size: a benchmark that silently measures something else is worse
than none. (Figures are never asserted: `make bench` reports them.)"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from nacl.public import PrivateKey

import bench.attachment_path as attachment_path
import bench.inbound_latency as inbound_latency
import bench.outbound_drain as outbound_drain
import bench.webhook_intake as webhook_intake
from devnet.jira_sim import JiraSim
from sidecar.artifacts.local import LocalStore
from sidecar.artifacts.sealed import open_object
from sidecar.chain.envelope import EnvelopeKey


async def test_outbound_drain_sends_one_search_and_one_create_per_ticket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound_drain, "TICKETS", 30)
    with JiraSim(latency=0.0, validate=True) as sim:
        _, requests = await outbound_drain.drain(tmp_path, sim)
        labels = sorted(label for issue in sim.list_issues() for label in issue.labels if label.startswith("ve-sup-"))
        violations = list(sim.contract_violations)
    assert requests == 60  # per ticket: the lookup and the create (outbound alone keeps no bases)
    assert labels == [f"ve-sup-{n:06d}" for n in range(1, 31)]
    assert violations == []


async def test_webhook_intake_stores_each_accepted_delivery_once_with_its_audit_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_intake, "SECONDS", 0.5)
    monkeypatch.setattr(webhook_intake, "ROUNDS", 1)
    runs, receiving = await webhook_intake.measure(tmp_path)
    for name in webhook_intake.RECEIVERS:
        rows, audited, chain_ok = webhook_intake.stored(tmp_path / f"{name}.db")
        ok = receiving[name].ok
        assert ok > 0 and rows == ok == audited and chain_ok, (name, ok, rows, audited, chain_ok)
    assert all(run["answered"] > 0 for target in runs for run in runs[target])


async def test_the_inbound_sweep_bench_queues_exactly_the_changed_one_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbound_latency, "SWEEP_ISSUES", 300)
    figures = {f.name: f for f in await inbound_latency.sweep_run(tmp_path)}
    assert figures["sweep_queued"].value == 3 and figures["sweep_requests"].value == 1


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
