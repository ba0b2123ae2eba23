"""Shared fixtures: the devnet node and desk simulators come from devnet's pytest plugins."""

from __future__ import annotations

import pytest

pytest_plugins = ["devnet.fixtures", "devnet.sim_fixtures", "devnet.s3_fixtures"]

# `make test` runs modules on two workers (--dist loadfile), in collection order. The longest modules are
# named last (tests/test_*.py), so one worker used to run them alone at the end; they start first instead.
LONGEST_FIRST = (
    "tests/test_chaos.py",
    "tests/sidecar/sync/test_outbound_e2e.py",
    "tests/test_soak.py",
    "tests/sidecar/chain/test_follower_node_swap.py",
    "tests/test_flows.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    # A stable sort: every other module keeps its place.
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(LONGEST_FIRST)))
