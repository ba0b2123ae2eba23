"""The chain app's state on disk: each block appends what it touched, a restart replays it to the same
state (values and table order) and app hash, a torn last record is dropped, damage is named, and a
query never sees a finalized block's state before its Commit."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2
from cosmpy.protos.tendermint.abci import types_pb2 as abci
from virtengine.support.v1 import query_pb2, tx_pb2

from devnet import state_log
from devnet.app_state import decode_state, encode_state
from devnet.chain_app import SIMULATE_PATH, ChainApp
from devnet.keys import TestAccount, genesis_app_state
from devnet.state_log import HEADER, META_FILE, StateLogError
from devnet.support_module import STATUS_NUMBERS
from tests.devnet.chain_helpers import vector_payload
from tests.devnet.inproc import InProcessChain, payloads

DAY = 86400


@pytest.fixture
def app_state(devnet_accounts: dict[str, TestAccount]) -> dict[str, Any]:
    return genesis_app_state(devnet_accounts.values(), agents=[devnet_accounts["agent"], devnet_accounts["sidecar"]],
                             archive_after=90 * DAY, purge_after=365 * DAY)


def create(who: TestAccount) -> tx_pb2.MsgCreateSupportRequest:
    return tx_pb2.MsgCreateSupportRequest(sender=who.address, category="technical", priority="high",
                                         payload=vector_payload(1))


def ref(cls: Any, who: TestAccount, ticket_id: str, system: str, **extra: str) -> Any:
    return cls(sender=who.address, resource_id=ticket_id, resource_type="support_request", external_system=system,
               **extra)


def ticket_ids(block: abci.ResponseFinalizeBlock) -> list[str]:
    return [p["ticket_id"] for result in block.tx_results for p in payloads(result.events)
            if p["event_type"] == "support_request_created"]


def history(chain: InProcessChain, accounts: dict[str, TestAccount]) -> None:
    """Blocks of several txs: creations, replies, refs added, removed and re-added (a key leaving a table and
    coming back at its end), a tx whose last msg fails after others added entries, retention archiving and
    purging (entries leaving every table), and empty blocks."""
    customer, customer2, agent, sidecar = (accounts[n] for n in ("customer", "customer2", "agent", "sidecar"))
    first = chain.block([chain.sign(customer, [create(customer), create(customer)]),
                         chain.sign(customer2, [create(customer2)])])
    t1, t2, t3 = ticket_ids(first)
    register = tx_pb2.MsgRegisterExternalTicket
    chain.block([
        chain.sign(agent, [tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=t1,
                                                          status=STATUS_NUMBERS["assigned"]),
                           tx_pb2.MsgAddSupportResponse(sender=agent.address, ticket_id=t2,
                                                        payload=vector_payload(2))]),
        chain.sign(sidecar, [ref(register, sidecar, t1, "jira", external_ticket_id="SD-1"),
                             ref(register, sidecar, t2, "jira", external_ticket_id="SD-2"),
                             ref(register, sidecar, t1, "waldur", external_ticket_id="W-1")]),
    ])
    failing = chain.sign(agent, [create(agent), ref(register, agent, t3, "jira", external_ticket_id="SD-3"),
                                 tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=t3, priority="x")])
    block = chain.block([failing, chain.sign(customer, [create(customer)])])
    assert [r.code for r in block.tx_results] == [2, 0]
    # A tx reads a ticket that does not exist yet (and fails), then another creates it after an earlier one:
    # the table's order is the order of creation, not of first touch.
    mine = sum(1 for t in chain.state["tickets"] if t.startswith(customer.address + "/"))
    early = tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=f"{customer.address}/support/{mine + 2}",
                                           priority="low")
    block = chain.block([chain.sign(agent, [early]), chain.sign(customer, [create(customer), create(customer)])])
    assert block.tx_results[0].code != 0 and block.tx_results[1].code == 0
    assert ticket_ids(block) == [f"{customer.address}/support/{mine + n}" for n in (1, 2)]
    chain.block([chain.sign(sidecar, [ref(tx_pb2.MsgRemoveExternalTicket, sidecar, t2, "jira"),
                                      ref(register, sidecar, t2, "jira", external_ticket_id="SD-2b")])])
    chain.block([])
    chain.block([chain.sign(agent, [tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=t1,
                                                                   status=STATUS_NUMBERS["resolved"])])])
    assert chain.block([], advance=90 * DAY).events  # t1 archived
    assert chain.block([], advance=365 * DAY).events  # t1 purged: its ticket, responses and refs go
    assert t1 not in chain.state["tickets"] and t1 not in chain.state["refs"]
    chain.block([chain.sign(customer2, [create(customer2)])])


def lived(tmp_path: Path, app_state: dict[str, Any], accounts: dict[str, TestAccount]) -> tuple[InProcessChain, Path]:
    """A chain through the history, and its block log (one snapshot: the log holds every block after the first)."""
    chain = InProcessChain(tmp_path / "app", app_state)
    history(chain, accounts)
    return chain, tmp_path / "app" / "blocks-1.log"


def restarted(chain: InProcessChain, app_state: dict[str, Any]) -> InProcessChain:
    return InProcessChain(chain.state_dir, app_state, init=False)


@pytest.mark.parametrize("compact_below", [state_log.COMPACT_MIN_BYTES, 0])
def test_a_restart_replays_to_the_same_state_order_and_hash(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount],
    monkeypatch: pytest.MonkeyPatch, compact_below: int,
) -> None:
    """compact_below 0: a new snapshot whenever the log outgrows the last one (several during the history)."""
    monkeypatch.setattr(state_log, "COMPACT_MIN_BYTES", compact_below)
    chain = InProcessChain(tmp_path / "app", app_state)
    history(chain, devnet_accounts)
    snapshots = sorted(p.name for p in (tmp_path / "app").glob("snapshot-*.bin"))
    assert len(snapshots) == 1  # older pairs are removed once the meta names the new one
    assert (snapshots[0] == "snapshot-1.bin") == (compact_below > 0)
    again = restarted(chain, app_state)
    info, live = again.app.info(abci.RequestInfo()), chain.app.info(abci.RequestInfo())
    assert (info.last_block_height, info.last_block_app_hash) == (live.last_block_height, live.last_block_app_hash)
    assert again.app.block_time == chain.app.block_time
    assert encode_state(again.state) == encode_state(chain.state)  # every value, and every table's key order


def test_the_same_blocks_give_the_same_hashes_whenever_snapshots_are_taken(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashes = []
    for name, compact_below in (("a", state_log.COMPACT_MIN_BYTES), ("b", 0)):
        monkeypatch.setattr(state_log, "COMPACT_MIN_BYTES", compact_below)
        chain = InProcessChain(tmp_path / name, app_state)
        history(chain, devnet_accounts)
        hashes.append(chain.app.last_hash)
    assert hashes[0] == hashes[1]


def test_a_block_writes_only_what_it_touched(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]
) -> None:
    """A reply to one of 300 tickets appends a record naming that ticket's entries alone, not the state."""
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    chain = InProcessChain(tmp_path / "app", app_state)
    created: list[str] = []
    for _ in range(6):
        created += ticket_ids(chain.block([chain.sign(customer, [create(customer)] * 50, gas=20_000_000)]))
    log_path = tmp_path / "app" / "blocks-1.log"
    before = log_path.stat().st_size
    chain.block([chain.sign(agent, [tx_pb2.MsgAddSupportResponse(sender=agent.address, ticket_id=created[7],
                                                                 payload=vector_payload(2))])])
    body = log_path.read_bytes()[before + HEADER.size:]
    record = decode_state(body)
    assert record["height"] == chain.height
    changes = decode_state(record["changes"])
    assert {(table, key) for table, key, _ in changes["values"]} <= {
        ("tickets", created[7]), ("responses", created[7]), ("counters", "event_sequence")}
    assert len(body) < len(encode_state(chain.state)) / 20


def test_a_record_cut_short_by_a_crash_is_dropped_and_the_chain_goes_on(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]
) -> None:
    chain, log_path = lived(tmp_path, app_state, devnet_accounts)
    whole = log_path.stat().st_size
    with open(log_path, "ab") as fh:
        fh.write(HEADER.pack(500, 0) + b"half a block")
    again = restarted(chain, app_state)
    assert (again.app.height, again.app.last_hash) == (chain.app.height, chain.app.last_hash)
    assert log_path.stat().st_size == whole
    customer = devnet_accounts["customer"]
    again.sequences = dict(chain.sequences)
    assert again.block([again.sign(customer, [create(customer)])]).tx_results[0].code == 0
    assert restarted(again, app_state).app.last_hash == again.app.last_hash


def test_a_damaged_record_before_the_end_stops_the_load_naming_file_and_offset(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]
) -> None:
    _, log_path = lived(tmp_path, app_state, devnet_accounts)
    data = bytearray(log_path.read_bytes())
    data[HEADER.size + 3] ^= 0xFF  # inside the first record's body
    log_path.write_bytes(bytes(data))
    with pytest.raises(StateLogError, match=r"blocks-1\.log: damaged record at offset 0"):
        ChainApp(tmp_path / "app")


def test_state_of_an_older_devnet_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / META_FILE).write_text(json.dumps({"height": 5, "app_hash": "00", "block_time": 0}))
    with pytest.raises(StateLogError, match="another devnet version"):
        ChainApp(tmp_path / "app")


def test_a_query_between_finalize_and_commit_answers_after_the_commit(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]
) -> None:
    customer, agent = devnet_accounts["customer"], devnet_accounts["agent"]
    chain = InProcessChain(tmp_path / "app", app_state)
    ticket_id = ticket_ids(chain.block([chain.sign(customer, [create(customer)])]))[0]
    update = tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id, priority="low")
    block = chain.app.finalize_block(abci.RequestFinalizeBlock(txs=[chain.sign(agent, [update])],
                                                               height=chain.height + 1))
    assert block.tx_results[0].code == 0, block.tx_results[0].log
    answers: list[abci.ResponseQuery] = []
    request = abci.RequestQuery(path="/virtengine.support.v1.Query/SupportRequest",
                                data=query_pb2.QuerySupportRequestRequest(ticket_id=ticket_id).SerializeToString())
    asking = threading.Thread(target=lambda: answers.append(chain.app.query(request)))
    asking.start()
    asking.join(timeout=0.3)
    assert asking.is_alive() and not answers  # held: the tables already hold the uncommitted block
    chain.app.commit(abci.RequestCommit())
    asking.join(timeout=10)
    assert len(answers) == 1 and answers[0].height == chain.height + 1
    answer = query_pb2.QuerySupportRequestResponse.FromString(answers[0].value)
    assert answer.request.priority == "low"


def test_simulate_leaves_the_committed_state_as_it_was(
    tmp_path: Path, app_state: dict[str, Any], devnet_accounts: dict[str, TestAccount]
) -> None:
    chain, _ = lived(tmp_path, app_state, devnet_accounts)
    before = encode_state(chain.state)
    agent, customer, sidecar = (devnet_accounts[n] for n in ("agent", "customer", "sidecar"))
    ticket_id = next(iter(chain.state["refs"]))
    for who, msgs in (
        (customer, [create(customer), create(customer)]),
        (agent, [create(agent), tx_pb2.MsgUpdateSupportRequest(sender=agent.address, ticket_id=ticket_id,
                                                                priority="x")]),
        (sidecar, [ref(tx_pb2.MsgRemoveExternalTicket, sidecar, ticket_id, "jira")]),
    ):
        tx = chain.sign(who, list(msgs), bump=False)
        answer = chain.app.query(abci.RequestQuery(
            path=SIMULATE_PATH, data=service_pb2.SimulateRequest(tx_bytes=tx).SerializeToString()))
        assert answer.code == (2 if who is agent else 0), answer.log
    assert encode_state(chain.state) == before
