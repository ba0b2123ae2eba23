"""The benchmarks' own logic, at a small size: a benchmark that silently measures something else is worse
than none. (Figures are never asserted: `make bench` reports them.)"""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.outbound_drain as outbound_drain
from devnet.jira_sim import JiraSim


async def test_outbound_drain_sends_one_search_and_one_create_per_ticket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound_drain, "TICKETS", 30)
    with JiraSim(latency=0.0, validate=True) as sim:
        _, requests = await outbound_drain.drain(tmp_path, sim)
        labels = sorted(label for issue in sim.list_issues() for label in issue.labels if label.startswith("ve-sup-"))
        violations = list(sim.contract_violations)
    assert requests == 60
    assert labels == [f"ve-sup-{n:06d}" for n in range(1, 31)]
    assert violations == []
