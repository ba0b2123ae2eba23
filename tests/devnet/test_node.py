"""DevnetNode lifecycle on the real binary: config, fast blocks, kill -9 and restart with state intact,
and the pruned / ABCI-response-discarding variants follower tests rely on."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import tx_pb2

from devnet import cometbft
from devnet.cometbft import COMETBFT_VERSION, CometBFTMissing, DevnetNode, ensure_cometbft
from devnet.keys import TestAccount
from tests.devnet.chain_helpers import Wallet, account_info, ticket, vector_payload, wait_tx


def create_msg(who: TestAccount) -> tx_pb2.MsgCreateSupportRequest:
    return tx_pb2.MsgCreateSupportRequest(sender=who.address, category="account", payload=vector_payload(0))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def block_time(node: DevnetNode, height: int) -> datetime:
    text = node.rpc("block", height=height)["block"]["header"]["time"]
    return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")


@pytest.mark.node
def test_fresh_node_is_configured_for_tests(devnet_node: DevnetNode) -> None:
    status = devnet_node.rpc("status")
    assert status["node_info"]["network"] == "virtengine-devnet-1"
    assert status["node_info"]["version"] == COMETBFT_VERSION
    assert status["node_info"]["listen_addr"] == f"tcp://127.0.0.1:{devnet_node.p2p_port}"
    config = (devnet_node.home / "config" / "config.toml").read_text()
    for line in ("pex = false", 'timeout_commit = "200ms"', f'proxy_app = "{devnet_node.abci_address}"',
                 "max_subscriptions_per_client = 100"):
        assert line in config
    devnet_node.wait_for_height(4)
    assert block_time(devnet_node, 4) > block_time(devnet_node, 3)
    assert set(devnet_node.pids) == {"chain_app", "cometbft"}
    assert devnet_node.app_log.exists() and devnet_node.node_log.exists()


@pytest.mark.node
def test_state_survives_kill_9_of_both_processes(devnet_node: DevnetNode,
                                                 devnet_accounts: dict[str, TestAccount]) -> None:
    wallet = Wallet(devnet_node, devnet_accounts["customer"])
    wallet.send([create_msg(wallet.account)])
    before = int(devnet_node.rpc("abci_info")["response"]["last_block_height"])
    first_block = devnet_node.rpc("block", height=1)["block_id"]["hash"]
    pids = devnet_node.pids
    devnet_node.kill()
    assert not any(alive(pid) for pid in pids.values())
    devnet_node.start()
    info = devnet_node.rpc("abci_info")["response"]
    assert int(info["last_block_height"]) >= before
    assert devnet_node.rpc("block", height=1)["block_id"]["hash"] == first_block
    stored = ticket(devnet_node, f"{wallet.address}/support/1")
    assert stored is not None and stored.ticket_number == "SUP-000001"
    assert account_info(devnet_node, wallet.address) == (0, 1)
    assert wallet.send([create_msg(wallet.account)])["tx_result"]["code"] == 0
    assert ticket(devnet_node, f"{wallet.address}/support/2") is not None


@pytest.mark.node
def test_graceful_restart_continues_the_chain(devnet_node: DevnetNode,
                                              devnet_accounts: dict[str, TestAccount]) -> None:
    """Same chain after a SIGTERM restart: its id, its first block, its app state; not a new genesis."""
    wallet = Wallet(devnet_node, devnet_accounts["customer"])
    committed = int(wallet.send([create_msg(wallet.account)])["height"])
    height = devnet_node.wait_for_height(committed + 1)
    first_block = devnet_node.rpc("block", height=1)["block_id"]["hash"]
    ticket_block = devnet_node.rpc("block", height=committed)["block_id"]["hash"]
    app_hash = devnet_node.rpc("block", height=height)["block"]["header"]["app_hash"]
    devnet_node.restart()
    status = devnet_node.rpc("status")
    assert status["node_info"]["network"] == "virtengine-devnet-1"
    assert int(status["sync_info"]["earliest_block_height"]) == 1
    assert int(devnet_node.rpc("abci_info")["response"]["last_block_height"]) >= height
    assert devnet_node.rpc("block", height=1)["block_id"]["hash"] == first_block
    assert devnet_node.rpc("block", height=committed)["block_id"]["hash"] == ticket_block
    assert devnet_node.rpc("block", height=height)["block"]["header"]["app_hash"] == app_hash
    stored = ticket(devnet_node, f"{wallet.address}/support/1")
    assert stored is not None and stored.ticket_number == "SUP-000001"
    assert account_info(devnet_node, wallet.address) == (0, 1)  # the sequence survived with the state
    assert devnet_node.wait_for_height(height + 2) >= height + 2
    assert wallet.send([create_msg(wallet.account)])["tx_result"]["code"] == 0
    assert ticket(devnet_node, f"{wallet.address}/support/2") is not None


@pytest.mark.node
def test_discarding_node_has_no_old_block_results(devnet_node_factory: Any,
                                                  devnet_accounts: dict[str, TestAccount]) -> None:
    node: DevnetNode = devnet_node_factory(discard_abci_responses=True)
    wallet = Wallet(node, devnet_accounts["customer"])
    committed = wallet.send([create_msg(wallet.account)])
    node.wait_for_height(int(committed["height"]) + 2)
    for params in ({"height": int(committed["height"])}, {}):
        with pytest.raises(RuntimeError, match="not persisting finalize block responses"):
            node.rpc("block_results", **params)
    assert wait_tx(node, wallet.submit([create_msg(wallet.account)]))["tx_result"]["code"] == 0


@pytest.mark.node
def test_pruned_node_drops_old_blocks(devnet_node_factory: Any) -> None:
    node: DevnetNode = devnet_node_factory(retain_blocks=3)
    node.wait_for_height(8)
    assert int(node.rpc("status")["sync_info"]["earliest_block_height"]) > 1
    with pytest.raises(RuntimeError, match="block_results"):
        node.rpc("block_results", height=1)


@pytest.mark.node
def test_a_first_start_whose_port_was_taken_moves_to_free_ports(
    cometbft_bin: Path, tmp_path: Path, devnet_app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]
) -> None:
    """free_port's answer can be stale by the time the node binds: the first start picks new ports."""
    node = DevnetNode(devnet_app_state, binary=cometbft_bin, home=tmp_path / "node")
    taken = node.rpc_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            node.start()
            assert node.rpc_port != taken and node.height() >= 1
            assert "address already in use" in node.log_tail("cometbft", lines=200).lower()
            wallet = Wallet(node, devnet_accounts["customer"])
            assert wallet.send([create_msg(wallet.account)])["tx_result"]["code"] == 0
        finally:
            node.cleanup()


def test_missing_binary_is_reported_with_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cometbft, "CACHE_DIR", tmp_path / "nothing-here")
    with pytest.raises(CometBFTMissing, match="make cometbft"):
        ensure_cometbft(install=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CometBFTMissing, match="go"):
        ensure_cometbft(install=True)
    assert cometbft.main(["frobnicate"]) == 2
