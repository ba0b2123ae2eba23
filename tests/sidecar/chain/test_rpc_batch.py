"""Batches against the real node. broadcast_txs_sync: one call past the node's rpc.max_request_batch_size (10) is
split, the node checks every tx in order and each gets its own CheckTx answer, a wrong sequence in the middle
included. block_results_checked: the heights and the node's status in one request, or split past the limit.
Small: one node, one block of tickets, a few seconds."""

from __future__ import annotations

import asyncio

import pytest

from devnet.cometbft import DevnetNode
from devnet.waiting import async_wait_until
from sidecar.chain.rpc import CometRpc
from sidecar.chain.txbuild import Account, build_tx, encode_msg, query_account
from sidecar.errors import ChainRpcError
from tests.sidecar.chain.node_proxy import NodeProxy
from tests.sidecar.chain.signer_kit import FEE, devnet_key, external_id, register_msg, tickets

pytestmark = pytest.mark.node


async def test_a_batch_of_broadcasts_is_checked_in_order_each_with_its_own_answer(devnet_node: DevnetNode) -> None:
    ids = await tickets(devnet_node, 11)
    key = devnet_key("sidecar")
    rpc = CometRpc(devnet_node.rpc_url, 10.0)
    try:
        account = await query_account(rpc, key.address)
        head = (await rpc.status()).latest_height
        # Sequences s..s+4, then one far ahead (refused), then s+5..s+10: the check state only moves on the good ones.
        offsets = [0, 1, 2, 3, 4, 99, 5, 6, 7, 8, 9, 10]
        txs = [
            build_tx(
                key,
                [encode_msg(register_msg(key.address, ticket, external_id(ticket)))],
                chain_id=devnet_node.chain_id,
                account=Account(account.number, account.sequence + offset),
                gas_limit=200_000,
                fee=FEE,
                timeout_height=head + 50,
            ).tx_bytes
            for ticket, offset in zip([*ids[:5], ids[5], *ids[5:]], offsets, strict=True)
        ]
        answers = await rpc.broadcast_txs_sync(txs)
        codes = [a if isinstance(a, ChainRpcError) else int(a["code"]) for a in answers]
        assert codes[:5] == [0] * 5 and codes[6:] == [0] * 6, codes
        assert codes[5] == 32 and "expected" in str(answers[5]["log"])  # type: ignore[index]
        # Sent again: the node's cache answers each call with its own error, which comes back in its place.
        again = await rpc.broadcast_txs_sync(txs[:2])
        assert all(isinstance(a, ChainRpcError) and "already exists in cache" in str(a) for a in again), again

        async def landed() -> bool:
            return (await query_account(rpc, key.address)).sequence == account.sequence + 11

        await async_wait_until(landed, timeout=30, what="the eleven accepted txs in blocks")
    finally:
        await rpc.aclose()


async def test_block_results_come_with_the_status_of_the_node_that_served_them(devnet_node: DevnetNode) -> None:
    await asyncio.to_thread(devnet_node.wait_for_height, 11, 60.0)
    async with NodeProxy(devnet_node.rpc_url).running() as proxy:
        rpc = CometRpc(proxy.url, 10.0)
        try:
            # Nine heights and the status: ten calls, the node's limit, in one request.
            results, status = await rpc.block_results_checked(1, 9)
            assert [int(r["height"]) for r in results] == list(range(1, 10))
            assert status.chain_id == devnet_node.chain_id and status.latest_height >= 11
            assert proxy.batches == [["block_results"] * 9 + ["status"]]
            # Ten heights and the status are past the limit: the node refuses the batch, the heights are split
            # and the status is asked after them (never before: it must vouch for what was already read).
            proxy.batches.clear()
            results, status = await rpc.block_results_checked(1, 10)
            assert [int(r["height"]) for r in results] == list(range(1, 11))
            assert status.chain_id == devnet_node.chain_id
            assert proxy.batches[0] == ["block_results"] * 10 + ["status"]
            assert proxy.batches[-1] == ["status"]
            assert sorted(m for batch in proxy.batches[1:-1] for m in batch) == ["block_results"] * 10
        finally:
            await rpc.aclose()
