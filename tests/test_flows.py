"""The operations guide's flows end to end, where no other test already covers one in full: the devnet node,
both desk simulators and the sidecar as a real process (`python -m sidecar run`), operated with the real CLI
as a subprocess. Each test asserts on the chain (over RPC), the desks (over their APIs, through
bench.chaos_check, the chaos run's independent checker) and the sidecar's own records (its database read-only,
its audit chain verified by its own command).

The flow -> test index is in README.md; inbound and conflict resolution are tests/sidecar/sync/
test_inbound_e2e.py. One node for the module with 20 ms blocks, so "down for 500 blocks" takes seconds.
Wall time, lightly loaded 2-core machine: outbound ~37 s, manual sync ~9 s (disaster recovery measured only
under heavy load so far); every wait is a deadline on a condition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import query_pb2

from bench.chaos import endpoints_of
from bench.chaos_check import JIRA_STATUS, WALDUR_STATUS, Report, check
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from devnet.waldur_sim import WaldurSim
from tests.sidecar.sync.inbound_kit import (
    AGENT,
    CUSTOMER,
    JIRA_PRIORITY,
    OPEN_WORK,
    RECIPIENTS,
    SIDECAR,
    WALDUR_PRIORITIES,
    Sidecar,
    chain_ticket,
    count,
    create_ticket,
    failures,
    linked_keys,
    rows,
    settle,
    waldur_issue_of,
)

pytestmark = pytest.mark.node
DOWN_FOR = 500  # blocks the sidecar misses in the disaster-recovery flow
EXTERNAL_REFS = "/virtengine.support.v1.Query/ExternalTicketRefs"
SUPPORT_REQUEST = "/virtengine.support.v1.Query/SupportRequest"


@pytest.fixture(scope="module")
def node(module_fast_node: DevnetNode) -> DevnetNode:
    return module_fast_node


Rig = tuple[Sidecar, JiraSim, WaldurSim]


@pytest.fixture
def make_rig(
    node: DevnetNode,
    tmp_path: Path,
    make_jira_sim: Callable[..., JiraSim],
    make_waldur_sim: Callable[..., WaldurSim],
) -> Iterator[Callable[..., Rig]]:
    """A sidecar process over both desks (not started; config `flags` on top), following the chain from now
    on (the module's earlier tickets belong to earlier tests' desks); killed at teardown if it still runs."""
    made: list[Sidecar] = []

    def make(**flags: str) -> Rig:
        jira, waldur = make_jira_sim(), make_waldur_sim(priorities=WALDUR_PRIORITIES)
        settings = {"chain.start_height": str(node.height()), **flags}
        made.append(Sidecar(tmp_path, node, jira, waldur, settings))
        return made[-1], jira, waldur

    yield make
    for sidecar in made:
        sidecar.kill()


def plan_of(tickets: list[str], **writes: Any) -> dict[str, Any]:
    """What the checker compares against: the tickets and what each side wrote last (chaos.Plan's shape)."""
    return {"rule": "on_chain_wins", "tickets": tickets, "last_priority": {}, "last_status": {}, "replies": {}} | writes


def independent_check(sidecar: Sidecar, jira: JiraSim, waldur: WaldurSim, plan: dict[str, Any]) -> Report:
    """The chaos run's checker over this test's tickets: one issue per desk, one ref per desk on chain,
    fields agreeing through the maps, each reply once per side, no conflict lost, the audit chain whole."""
    report = check(plan, endpoints_of(sidecar, jira, waldur), every_ticket=False)
    assert report.differences == [], report.differences
    assert report.checked["chain tickets"] == len(plan["tickets"])
    assert report.checked["audit chain verifications"] == 1
    return report


def cli(sidecar: Sidecar, *args: str) -> dict[str, Any]:
    """`servicedesk-sidecar ARGS --json` as the operator runs it: its own process, the sidecar's configuration,
    the running sidecar's control address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTENGINE_SERVICEDESK_")} | sidecar.env
    command = [sys.executable, "-m", "sidecar", *args, "--json", "--control", f"127.0.0.1:{sidecar.grpc_port}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=sidecar.tmp_path, timeout=60)
    assert done.returncode == 0, f"{args}: exit {done.returncode}: {done.stderr[-500:]}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def chain_refs(node: DevnetNode, ticket_id: str) -> dict[str, tuple[str, str]]:
    """desk -> (external id, creator) of the ticket's refs on chain."""
    with ChainDriver(node.rpc_url, CUSTOMER) as chain:
        raw = chain.abci_query(EXTERNAL_REFS, query_pb2.QueryExternalTicketRefsRequest(resource_id=ticket_id))
    refs = query_pb2.QueryExternalTicketRefsResponse.FromString(raw).refs
    return {r.external_system: (r.external_ticket_id, r.created_by) for r in refs}


def last_change(node: DevnetNode, ticket_id: str) -> tuple[int, int]:
    """(updated_at, response_count) of the ticket on chain: any Msg that touched it moves one of them."""
    with ChainDriver(node.rpc_url, CUSTOMER) as chain:
        raw = chain.abci_query(SUPPORT_REQUEST, query_pb2.QuerySupportRequestRequest(ticket_id=ticket_id))
    ticket = query_pb2.QuerySupportRequestResponse.FromString(raw).request
    return int(ticket.updated_at), int(ticket.response_count)


def on_chain(node: DevnetNode, call: Callable[[ChainDriver], Any]) -> Any:
    with ChainDriver(node.rpc_url, AGENT) as agent:
        return call(agent)


async def linked_at_both(sidecar: Sidecar, waldur: WaldurSim, tids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each ticket's Jira key and Waldur uuid once outbound made them and the refs are on chain, the sidecar idle."""

    def done() -> bool:
        keys = linked_keys(sidecar.db)
        return all(t in keys and waldur_issue_of(waldur, t) and len(chain_refs(sidecar.node, t)) == 2 for t in tids)

    await async_wait_until(done, timeout=90, what="every ticket at both desks with its refs on chain", interval=0.3)
    await quiet(sidecar)
    keys = linked_keys(sidecar.db)
    return {t: keys[t] for t in tids}, {t: str(waldur_issue_of(waldur, t)) for t in tids}


OUTBOUND_WORK = {name: sql for name, sql in OPEN_WORK.items() if name in ("desk jobs", "chain inbox", "intents")}


async def quiet(sidecar: Sidecar) -> None:
    """inbound_kit.settle; for a sidecar without inbound (no sweeps; webhooks it takes in but never reads),
    idle means the chain read to the current height and no outbound job, inbox entry or tx left open."""
    if sidecar.desks:
        await settle(sidecar)
        return
    height = sidecar.node.height()

    def idle() -> bool:
        behind = int(rows(sidecar.db, "SELECT height FROM cursor")[0][0]) < height
        assert not failures(sidecar.db), failures(sidecar.db)
        return not behind and not any(count(sidecar.db, sql) for sql in OUTBOUND_WORK.values())

    await async_wait_until(idle, timeout=60, what="the sidecar's outbound work done", interval=0.1)


def audit_events(db: Path, ticket_id: str) -> list[str]:
    return [str(r[0]) for r in rows(db, "SELECT event_type FROM audit WHERE ticket_id = ? ORDER BY id", ticket_id)]


# outbound -------------------------------------------------------------------------------------------------
async def test_outbound_a_chain_ticket_gets_one_issue_per_desk_and_its_refs_on_chain(
    make_rig: Callable[..., Rig],
) -> None:
    sidecar, jira, waldur = make_rig()
    sidecar.start()
    tids = [create_ticket(sidecar.node, f"outbound {n}", priority) for n, priority in enumerate(("high", "low"))]
    keys, uuids = await linked_at_both(sidecar, waldur, tids)
    on_chain(sidecar.node, lambda a: a.reply(tids[0], "flow-out-1: we are on it", RECIPIENTS))
    on_chain(sidecar.node, lambda a: a.update(tids[1], priority="urgent"))
    await async_wait_until(
        lambda: jira.issue(keys[tids[1]]).priority == "Highest", timeout=60, what="the new priority at Jira"
    )
    await settle(sidecar)

    # the desks: one issue each, the chain's fields and reply; the checker reads them over their APIs
    plan = plan_of(tids, last_priority={tids[1]: {"chain": "urgent"}}, replies={tids[0]: ["flow-out-1"]})
    independent_check(sidecar, jira, waldur, plan)
    assert (jira.issue(keys[tids[0]]).priority, jira.issue(keys[tids[0]]).status) == ("High", "Waiting for Customer")
    assert waldur.get_issue(uuids[tids[0]]).status == WALDUR_STATUS["waiting_customer"]
    # the chain: the refs name these issues and were registered by the sidecar's own account
    for tid in tids:
        refs = chain_refs(sidecar.node, tid)
        assert refs["jira"][0] in (keys[tid], jira.issue(keys[tid]).id)
        assert refs["waldur"][0].replace("-", "") == uuids[tid]
        assert {creator for _, creator in refs.values()} == {SIDECAR.address}
    # the sidecar's records: both refs verified and registered, each issue created once, nothing given up
    registered = "SELECT COUNT(*) FROM external_refs WHERE ticket_id = ? AND verified = 1 AND registered_on_chain = 1"
    assert [count(sidecar.db, registered, tid) for tid in tids] == [2, 2]
    created = "SELECT COUNT(*) FROM jobs WHERE ticket_id = ? AND kind = 'create' AND state = 'done'"
    assert [count(sidecar.db, created, tid) for tid in tids] == [2, 2]
    assert len(jira.list_issues()) == len(waldur.list_issues()) == 2
    sidecar.stop()


# manual sync over the CLI ------------------------------------------------------------------------------------
async def test_manual_sync_over_the_cli_puts_both_desks_back_to_the_chain_s_values(
    make_rig: Callable[..., Rig],
) -> None:
    """The guide's manual sync (`--direction=outbound`) where the desks mirror the chain: a sidecar with
    inbound sync off (it still signs: the refs). Agents change both issues by hand, nothing brings them back
    by itself; `servicedesk-sidecar sync <id>` (outbound, every desk) does."""
    sidecar, jira, waldur = make_rig(**{"sync.enable_inbound": "false"})
    sidecar.desks = []  # no inbound, so no desk sweeps for `settle` to wait for
    sidecar.start()
    tid = create_ticket(sidecar.node, "manual sync")
    keys, uuids = await linked_at_both(sidecar, waldur, [tid])
    key, uuid = keys[tid], uuids[tid]
    before = last_change(sidecar.node, tid)
    jira.agent_update(key, priority="Highest")
    jira.agent_transition(key, "Resolved")
    waldur.agent_set_status(uuid, "Resolved")

    answer = cli(sidecar, "sync", tid, "--direction", "outbound")
    assert sorted((j["desk"], j["kind"]) for j in answer["jobs"]) == [("jira", "update"), ("waldur", "update")]

    def desks() -> tuple[str, str, str]:
        return jira.issue(key).status, jira.issue(key).priority, waldur.get_issue(uuid).status

    try:
        await async_wait_until(
            lambda: desks() == ("Open", "Medium", "Open"), timeout=60, what="both desks set back to the chain's values"
        )
    except AssertionError as exc:
        jobs = cli(sidecar, "jobs", "--ticket", tid, "--all")
        raise AssertionError(f"{exc}: the desks hold {desks()}; jobs {jobs}") from None
    await quiet(sidecar)

    # the chain: untouched by the hand edits (no Msg changed the ticket since)
    assert (chain_ticket(sidecar.node, tid).status, chain_ticket(sidecar.node, tid).priority) == ("open", "normal")
    assert last_change(sidecar.node, tid) == before, "the hand edits reached the chain"
    # the sidecar's records, as the operator reads them: the manual jobs done, the request audited
    view = cli(sidecar, "ticket", tid)
    assert {(r["desk"]) for r in view["refs"]} == {"jira", "waldur"}
    jobs = cli(sidecar, "jobs", "--ticket", tid, "--all")["jobs"]
    assert jobs and all(j["state"] == "done" for j in jobs), jobs
    assert "manual_sync" in audit_events(sidecar.db, tid)
    independent_check(sidecar, jira, waldur, plan_of([tid]))
    sidecar.stop()


# disaster recovery -------------------------------------------------------------------------------------------
async def test_disaster_recovery_after_500_blocks_down_reconciles_everything_once(
    make_rig: Callable[..., Rig],
) -> None:
    """The sidecar is SIGKILLed; for 500 blocks the chain and both desks' agents change tickets (and a new
    ticket is created); restarted, it catches up on both sides with nothing duplicated."""
    sidecar, jira, waldur = make_rig()
    node = sidecar.node
    sidecar.start()
    tids = [create_ticket(node, f"recovery {n}") for n in range(4)]
    keys, uuids = await linked_at_both(sidecar, waldur, tids)
    sidecar.kill()
    down_at = node.height()

    t_status, t_priority, t_reply, t_desks = tids
    on_chain(node, lambda a: a.update(t_status, status="in_progress"))
    on_chain(node, lambda a: a.update(t_status, status="resolved"))
    on_chain(node, lambda a: a.update(t_priority, priority="high"))
    jira.agent_comment(keys[t_priority], "flow-dr-2: please retry", public=True)
    on_chain(node, lambda a: a.reply(t_reply, "flow-dr-3: send the logs", RECIPIENTS))
    jira.agent_update(keys[t_desks], priority=JIRA_PRIORITY["urgent"])
    waldur.agent_set_status(uuids[t_desks], "Resolved")
    waldur.agent_comment(uuids[t_status], "flow-dr-4: fixed on our side", is_public=True)
    born_down = create_ticket(node, "created while the sidecar was down")
    await async_wait_until(lambda: node.height() >= down_at + DOWN_FOR, timeout=60, what="500 blocks", interval=0.2)

    sidecar.start()
    born_keys, born_uuids = await linked_at_both(sidecar, waldur, [born_down])
    keys, uuids = keys | born_keys, uuids | born_uuids
    await settle(sidecar)
    await settle(sidecar)  # the chain's answers to inbound come back as events: once more

    # the chain, and the desks through the maps: every change on one side is on the others
    wanted = {  # a reply by an agent (at a desk or on chain) moves the ticket to waiting_customer
        t_status: ("in_progress", "normal"),  # resolved on chain, then the Waldur agent's reply reopened it
        t_priority: ("waiting_customer", "high"),
        t_reply: ("waiting_customer", "normal"),
        t_desks: ("resolved", "urgent"),
        born_down: ("open", "normal"),
    }
    for tid, (status, priority) in wanted.items():
        ticket = chain_ticket(node, tid)
        assert (ticket.status, ticket.priority) == (status, priority), tid
        assert (jira.issue(keys[tid]).status, jira.issue(keys[tid]).priority) == (
            JIRA_STATUS[status],
            JIRA_PRIORITY[priority],
        ), tid
        assert waldur.get_issue(uuids[tid]).status == WALDUR_STATUS[status], tid
    # nothing duplicated, nothing lost: one issue per desk, one ref per desk, each reply once on each side
    plan = plan_of(
        [*tids, born_down],
        last_priority={t_priority: {"chain": "high"}, t_desks: {"jira": "urgent"}},
        replies={t_priority: ["flow-dr-2"], t_reply: ["flow-dr-3"], t_status: ["flow-dr-4"]},
    )
    report = independent_check(sidecar, jira, waldur, plan)
    assert report.checked["reply presence checks"] == 9
    assert len(jira.list_issues()) == len(waldur.list_issues()) == 5
    # the sidecar's records: it read every block it missed, gave up on nothing, and audited what it signed
    assert int(rows(sidecar.db, "SELECT height FROM cursor")[0][0]) >= down_at + DOWN_FOR
    assert "inbound_synced" in audit_events(sidecar.db, t_desks)
    assert audit_events(sidecar.db, born_down), "the ticket born while down left no audit row"
    sidecar.stop()
