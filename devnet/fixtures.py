"""pytest plugin: the real devnet node. Without the pinned cometbft binary node tests skip, saying
how to install it, unless SIDECAR_REQUIRE_COMETBFT=1 (CI), where a missing binary fails the run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet.cometbft import INSTALL_HINT, CometBFTMissing, DevnetNode, ensure_cometbft
from devnet.keys import TestAccount, genesis_app_state

ACCOUNT_NAMES = ("customer", "customer2", "agent", "sidecar", "outsider")
AGENT_NAMES = ("agent", "sidecar")

NodeFactory = Callable[..., DevnetNode]


@pytest.fixture(scope="session")
def cometbft_bin() -> Path:
    """The pinned cometbft binary (never installed from here: `make cometbft` does that)."""
    try:
        return ensure_cometbft(install=False)
    except CometBFTMissing as exc:
        if os.environ.get("SIDECAR_REQUIRE_COMETBFT") == "1":
            pytest.fail(f"SIDECAR_REQUIRE_COMETBFT=1 but {exc}", pytrace=False)
        pytest.skip(f"cometbft v0.38.25 is not installed; {INSTALL_HINT}")


@pytest.fixture(scope="session")
def devnet_accounts() -> dict[str, TestAccount]:
    """customer, customer2, agent and sidecar (both support agents), outsider: all funded at genesis."""
    return {name: TestAccount.from_name(name) for name in ACCOUNT_NAMES}


@pytest.fixture
def devnet_app_state(devnet_accounts: dict[str, TestAccount]) -> dict[str, Any]:
    """The default genesis app_state; override this fixture in a test module to change it."""
    return genesis_app_state(devnet_accounts.values(), agents=[devnet_accounts[n] for n in AGENT_NAMES])


@pytest.fixture
def devnet_node_factory(cometbft_bin: Path, tmp_path: Path, devnet_app_state: dict[str, Any]) -> Iterator[NodeFactory]:
    """Build and start nodes with DevnetNode keyword options; all are stopped at teardown."""
    nodes: list[DevnetNode] = []

    def make(app_state: dict[str, Any] | None = None, **options: Any) -> DevnetNode:
        home = tmp_path / f"node{len(nodes)}"
        node = DevnetNode(devnet_app_state if app_state is None else app_state, binary=cometbft_bin, home=home,
                          **options)
        nodes.append(node)
        return node.start()

    yield make
    for node in nodes:
        node.cleanup()


@pytest.fixture
def devnet_node(devnet_node_factory: NodeFactory) -> DevnetNode:
    """A fresh single-validator node (chain id virtengine-devnet-1) at height >= 1."""
    return devnet_node_factory()


@pytest.fixture(scope="module")
def module_fast_node(
    cometbft_bin: Path, tmp_path_factory: pytest.TempPathFactory, devnet_accounts: dict[str, TestAccount]
) -> Iterator[DevnetNode]:
    """One node for a whole test module, committing a block every ~25 ms: for modules whose tests each
    need hundreds of blocks (an outage of 500 blocks) and can share a chain."""
    state = genesis_app_state(devnet_accounts.values(), agents=[devnet_accounts[n] for n in AGENT_NAMES])
    made = DevnetNode(state, binary=cometbft_bin, home=tmp_path_factory.mktemp("node"), timeout_commit="20ms")
    made.start()
    yield made
    made.cleanup()
