"""RedriveIntent over a real grpc.aio server on loopback: a ref whose registration died is queued again and
lands on the real devnet node once the cause is gone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2

from devnet.cometbft import DevnetNode
from devnet.driver import DevAccount
from sidecar.store.refs import RefRow, record_ref_txn
from sidecar.sync.registration import register_refs_as
from tests.sidecar.chain.signer_kit import chain_refs, create_tickets, db_rows, open_rig, settle
from tests.sidecar.control.kit import desk_deps, dial, loopback, running_server

pytestmark = pytest.mark.node
SIDECAR = DevAccount.from_name("sidecar")
CUSTOMER = DevAccount.from_name("customer")


async def test_a_dead_ref_registration_is_redriven_and_lands(devnet_node: DevnetNode, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    ticket_id = f"{CUSTOMER.address}/support/1"  # not on chain yet: its registration dies ("not found")
    rig = await open_rig(db, devnet_node.rpc_url)
    try:
        async with running_server(desk_deps(rig.store, inbound=())) as server:
            register = register_refs_as(SIDECAR.address)

            def record(conn: sqlite3.Connection) -> None:  # as outbound sync records a new desk ref
                ref = record_ref_txn(conn, RefRow(ticket_id, "jira", "10001", "SD-1", None, False), time.time())
                register(conn, ref, time.time())

            await rig.store.write("record ref", record)
            counts = await settle(rig)
            assert counts["dead"] == 1
            ((dead_id, log),) = db_rows(db, "SELECT id, log FROM tx_intents WHERE state = 'dead'")
            assert "not found" in log

            async with dial(loopback(server)) as control:
                for request, code in (
                    (control_pb2.RedriveIntentRequest(), grpc.StatusCode.INVALID_ARGUMENT),
                    (control_pb2.RedriveIntentRequest(id=dead_id, all_dead=True), grpc.StatusCode.INVALID_ARGUMENT),
                    (control_pb2.RedriveIntentRequest(id=dead_id + 100), grpc.StatusCode.NOT_FOUND),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await control.RedriveIntent(request)
                    assert refused.value.code() == code
                assert db_rows(db, "SELECT state FROM tx_intents") == [("dead",)]  # a refused call changed nothing

                await asyncio.to_thread(create_tickets, devnet_node, 1)  # the cause is gone
                answer = await control.RedriveIntent(control_pb2.RedriveIntentRequest(id=dead_id))
                assert answer.redriven == 1
                assert db_rows(db, "SELECT state, attempts, code FROM tx_intents") == [("queued", 0, None)]
                counts = await settle(rig)
                assert counts["included"] == 1 and counts["dead"] == 0

                with pytest.raises(grpc.aio.AioRpcError) as refused:  # only a dead intent can be re-driven
                    await control.RedriveIntent(control_pb2.RedriveIntentRequest(id=dead_id))
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                listed = await control.ListTxIntents(control_pb2.ListTxIntentsRequest())
                assert [(i.id, i.state) for i in listed.intents] == [(dead_id, "included")]
            audits = db_rows(db, "SELECT details_json FROM audit WHERE event_type = 'intents_redriven'")
            assert [json.loads(a[0]) for a in audits] == [{"intent_id": dead_id, "count": 1}]
    finally:
        await rig.close()
    refs = await asyncio.to_thread(chain_refs, devnet_node, ticket_id)
    assert [(r.external_system, r.external_ticket_id) for r in refs] == [("jira", "10001")]
