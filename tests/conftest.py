"""Shared fixtures: the devnet node and desk simulators come from devnet's pytest plugins."""

from __future__ import annotations

import pytest

pytest_plugins = ["devnet.fixtures", "devnet.sim_fixtures", "devnet.s3_fixtures"]

# `make test` runs modules on two workers (--dist loadfile), in collection order. The longest modules are
# named last (tests/test_*.py), so one worker used to run them alone at the end. Every module that takes more
# than about half a minute starts first, longest first (seconds from a full run on the 2-core machine), and
# the short ones fill in behind them: the two workers then finish within a short module of each other.
LONGEST_FIRST = (
    "tests/test_chaos.py",  # 133
    "tests/sidecar/sync/test_outbound_e2e.py",  # 125
    "tests/sidecar/sync/test_inbound_e2e.py",  # 100
    "tests/test_soak.py",  # 92
    "tests/devnet/test_devnet_signals.py",  # 56
    "tests/sidecar/chain/test_follower_node_swap.py",  # 52
    "tests/devnet/test_seaweedfs.py",  # 52
    "tests/sidecar/sync/test_inbound_chaos.py",  # 50
    "tests/test_bench_smoke.py",  # 50
    "tests/test_flows.py",  # 47
    "tests/sidecar/chain/test_follower_node.py",  # 37
    "tests/sidecar/chain/test_signer_node.py",  # 34
    "tests/sidecar/control/test_reconcile.py",  # 33
    "tests/sidecar/artifacts/test_store.py",  # 29
    "tests/sidecar/web/test_webhook_flood.py",  # 29
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    # A stable sort: every other module keeps its place.
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(LONGEST_FIRST)))
