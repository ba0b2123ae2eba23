"""Inbound sync end to end: the real node, both desk simulators, and the sidecar as a real process.

An agent works at a desk through the simulator's agent account (not the sidecar's credential); the
sidecar hears of it by webhooks (Jira's signed ones; Waldur's issue events, with the shared secret the
deployment's proxy adds) and by its sweep every 2 s (Waldur sends no comment events; a sidecar that is
down misses every webhook). What landed is read back from
the chain itself (its committed ticket, its responses opened with the customer's key, and its events
from block_results), never from the sidecar's mirror.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from devnet.waldur_sim import WaldurSim
from tests.sidecar.sync.inbound_kit import (
    AGENT,
    JIRA_PRIORITY,
    SIDECAR,
    WALDUR_PRIORITIES,
    ChainTicket,
    Sidecar,
    chain_responses,
    chain_ticket,
    count,
    create_ticket,
    field_changes,
    jira_texts,
    linked_keys,
    rows,
    settle,
    support_events,
    waldur_issue_of,
    waldur_texts,
)

pytestmark = pytest.mark.node
# (sidecar, jira, waldur, ticket id, Jira key, Waldur uuid) of a ticket linked at both desks
Linked = tuple[Sidecar, JiraSim, WaldurSim, str, str, str]


@pytest.fixture
def sidecars() -> Iterator[list[Sidecar]]:
    """Every sidecar a test starts is killed at teardown if it is still running."""
    made: list[Sidecar] = []
    yield made
    for sidecar in made:
        sidecar.kill()


def both_desks(
    tmp_path: Path,
    node: DevnetNode,
    make_jira_sim: Callable[..., JiraSim],
    make_waldur_sim: Callable[..., WaldurSim],
    sidecars: list[Sidecar],
) -> tuple[Sidecar, JiraSim, WaldurSim]:
    """A sidecar serving both desks, with the agent account mapped at each (so assignments go both ways)."""
    jira = make_jira_sim()
    waldur = make_waldur_sim(priorities=WALDUR_PRIORITIES)
    flags = {
        "jira.assignee_map": f"{AGENT.address}={jira.agent.account_id}",
        "waldur.assignee_map": f"{AGENT.address}={waldur.http_agent_support.uuid.hex}",
    }
    sidecar = Sidecar(tmp_path, node, jira, waldur, flags)
    sidecars.append(sidecar)
    return sidecar, jira, waldur


async def linked(sidecar: Sidecar, waldur: WaldurSim | None, ticket_id: str) -> tuple[str, str | None]:
    """The ticket's Jira key (and Waldur uuid) once outbound created them, with the sidecar idle."""

    def found() -> tuple[str, str | None] | None:
        key = linked_keys(sidecar.db).get(ticket_id)
        uuid = waldur_issue_of(waldur, ticket_id) if waldur is not None else None
        return (key, uuid) if key and (waldur is None or uuid) else None

    pair = await async_wait_until(found, timeout=60, what="the ticket's desk issues")
    await settle(sidecar)
    return pair


async def chain_shows(
    node: DevnetNode, ticket_id: str, wanted: Callable[[ChainTicket], bool], what: str, timeout: float = 60
) -> ChainTicket:
    def check() -> ChainTicket | None:
        ticket = chain_ticket(node, ticket_id)
        return ticket if wanted(ticket) else None

    try:
        return await async_wait_until(check, timeout=timeout, what=what, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the chain holds {chain_ticket(node, ticket_id)}") from None


def audit_details(db: Path, event_type: str, ticket_id: str) -> list[dict[str, object]]:
    found = rows(
        db, "SELECT details_json FROM audit WHERE event_type = ? AND ticket_id = ? ORDER BY id", event_type, ticket_id
    )
    return [json.loads(r[0]) for r in found]


def hints_used(db: Path, desk: str) -> int:
    """Verified webhook deliveries of the desk that became re-reads (the hooks are signed and reach the sidecar)."""
    return count(db, "SELECT COUNT(*) FROM webhook_deliveries WHERE desk = ? AND state = 'processed'", desk)


def assert_content_kept_out(sidecar: Sidecar, *texts: str) -> None:
    """Ticket content never reaches the sidecar's logs or its audit rows."""
    logs = "".join(sidecar.all_lines())
    audit = "\n".join(str(r) for r in rows(sidecar.db, "SELECT error, details_json FROM audit"))
    for text in texts:
        assert text not in logs, "comment text in the sidecar's log"
        assert text not in audit, "comment text in the audit log"


@pytest.fixture
def linked_ticket(
    tmp_path: Path,
    devnet_node: DevnetNode,
    make_jira_sim: Callable[..., JiraSim],
    make_waldur_sim: Callable[..., WaldurSim],
    sidecars: list[Sidecar],
) -> Callable[[str], Awaitable[Linked]]:
    """Starts a sidecar over both desks and creates a chain ticket (with this subject) linked at both."""

    async def make(subject: str) -> Linked:
        sidecar, jira, waldur = both_desks(tmp_path, devnet_node, make_jira_sim, make_waldur_sim, sidecars)
        sidecar.start()
        tid = create_ticket(devnet_node, subject)
        key, uuid = await linked(sidecar, waldur, tid)
        assert uuid is not None
        return sidecar, jira, waldur, tid, key, uuid

    return make


@dataclass(frozen=True)
class DeskAgent:
    """The agent's own account at one desk, working on the ticket's issue there through the simulator."""

    signature: str  # how the chain's copy of their reply starts: their name and desk
    email: str  # theirs, which must never reach the chain
    set_fields: Callable[[str], object]  # sets the priority (the chain's name), assigns themself, resolves
    comment: Callable[[str, bool], object]  # (text, public)
    texts: Callable[[], list[str]]  # the text of every comment of the issue


def jira_agent(jira: JiraSim, key: str) -> DeskAgent:
    def set_fields(priority: str) -> None:
        jira.agent_update(key, priority=JIRA_PRIORITY[priority])
        jira.agent_update(key, assignee={"accountId": jira.agent.account_id})
        jira.agent_transition(key, "Resolved")  # Open -> In Progress -> Resolved, as a person clicks through

    def comment(text: str, public: bool) -> None:
        jira.agent_comment(key, text, public=public)

    def texts() -> list[str]:
        return [text for _, _, text in jira_texts(jira, key)]

    return DeskAgent(f"{jira.agent.display_name} (Jira agent):", jira.agent.email, set_fields, comment, texts)


def waldur_agent(waldur: WaldurSim, uuid: str) -> DeskAgent:
    def set_fields(priority: str) -> None:
        waldur.agent_update(uuid, priority=JIRA_PRIORITY[priority])  # this Waldur's priorities are Jira's
        waldur.agent_update(uuid, assignee=waldur.http_agent_support)
        waldur.agent_set_status(uuid, "Resolved")

    def comment(text: str, public: bool) -> None:
        waldur.agent_comment(uuid, text, is_public=public)  # Waldur sends no event for a comment: the sweep finds it

    def texts() -> list[str]:
        return [text for _, _, text in waldur_texts(waldur, uuid)]

    return DeskAgent(f"{waldur.agent.full_name} (Waldur agent):", waldur.agent.email, set_fields, comment, texts)


async def agent_works(
    sidecar: Sidecar, tid: str, at: DeskAgent, other: DeskAgent, priority: str, public: str, internal: str
) -> list[tuple[str, str]]:
    """The agent, `at` one desk, sets the priority, assigns themself and resolves the issue; once the chain
    shows that, comments there in public and internally. Waits until the public comment is on chain and at
    the `other` desk, and for two rounds of sweeps and re-reads (nothing new may come of the second). Then
    checks the chain got each change and the reply once, signed with the agent's name but not their email;
    returns the sidecar's field changes in chain order."""
    node = sidecar.node
    before, first = chain_ticket(node, tid), node.height()
    at.set_fields(priority)
    wanted = ("resolved", priority, AGENT.address)
    await chain_shows(node, tid, lambda t: (t.status, t.priority, t.agent) == wanted, "the agent's fields")
    await settle(sidecar)

    at.comment(public, True)
    at.comment(internal, False)
    await chain_shows(node, tid, lambda t: t.response_count >= 1, "the public comment on chain")
    await async_wait_until(
        lambda: any(public in t for t in other.texts()), timeout=60, what="the comment at the other desk"
    )
    await settle(sidecar)
    await settle(sidecar)  # one more round of sweeps and re-reads: nothing new may come of it

    # The chain: each change once; the reply on the resolved ticket reopened it (the chain's rule).
    assert chain_ticket(node, tid) == ChainTicket("in_progress", priority, AGENT.address, 1)
    changes = field_changes(support_events(node, first, node.height()), tid, before, SIDECAR.address)
    assert sorted(changes) == sorted(
        [("status", "in_progress"), ("status", "resolved"), ("priority", priority), ("agent", AGENT.address)]
    ), changes
    [reply] = chain_responses(node, tid)  # opened with the customer's key
    assert (reply.author, reply.is_agent) == (SIDECAR.address, True)
    assert reply.message.startswith(at.signature) and public in reply.message
    assert at.email not in reply.message, "the agent's email reached the chain"
    assert internal not in reply.message, "an internal comment reached the chain"
    return changes


async def test_a_jira_agent_s_work_lands_on_chain_once_and_reaches_waldur_but_not_jira_again(
    linked_ticket: Callable[[str], Awaitable[Linked]],
) -> None:
    public = "Rebooting the validator fixed it on our side; please try again."
    internal = "Customer seems to run an outdated client, check before answering."
    sidecar, jira, waldur, tid, key, uuid = await linked_ticket("the node will not start")
    changes = await agent_works(
        sidecar, tid, jira_agent(jira, key), waldur_agent(waldur, uuid), "low", public, internal
    )
    assert changes.index(("status", "in_progress")) < changes.index(("status", "resolved"))
    # Jira keeps only the agent's two comments: the chain's copy of the reply is not posted back.
    assert jira_texts(jira, key) == [(jira.agent.account_id, True, public), (jira.agent.account_id, False, internal)]
    # Waldur gets the public comment once and the internal one never; its fields follow the chain.
    texts = [text for _, _, text in waldur_texts(waldur, uuid)]
    assert sum(public in t for t in texts) == 1, texts
    assert not any(internal in t for t in texts), "an internal Jira comment reached Waldur"
    issue = waldur.get_issue(uuid)
    # Waldur's API keeps priority read-only after create: the issue keeps its first one (the sidecar notes it).
    assert (issue.priority, issue.assignee_uuid) == ("Medium", waldur.http_agent_support.uuid)
    outcomes = sorted(r[0] for r in rows(sidecar.db, "SELECT outcome FROM inbound_comments WHERE desk = 'jira'"))
    assert outcomes == ["internal", "sent"]
    assert hints_used(sidecar.db, "jira") > 0, "no Jira webhook was used"
    assert len(audit_details(sidecar.db, "inbound_synced", tid)) == 5, "each Msg that landed is audited once"
    assert_content_kept_out(sidecar, public, internal)
    sidecar.stop()


async def test_a_waldur_agent_s_work_lands_on_chain_once_and_reaches_jira_but_not_waldur_again(
    linked_ticket: Callable[[str], Awaitable[Linked]],
) -> None:
    sidecar, jira, waldur, tid, key, uuid = await linked_ticket("rewards are missing")
    public = "The payout job was stuck; it ran now and your rewards are there."
    internal = "Payout cron needs a watchdog, filed OPS-12."
    await agent_works(sidecar, tid, waldur_agent(waldur, uuid), jira_agent(jira, key), "high", public, internal)
    # Waldur keeps only the agent's two comments; the sidecar's status notes carry no ticket text.
    agent_comments = [(u, p, t) for u, p, t in waldur_texts(waldur, uuid) if u == waldur.agent.username]
    assert agent_comments == [(waldur.agent.username, True, public), (waldur.agent.username, False, internal)]
    texts = [text for _, _, text in waldur_texts(waldur, uuid)]
    assert sum(public in t for t in texts) == 1 and sum(internal in t for t in texts) == 1, texts
    # Jira gets the public comment once, the internal one never; its fields follow the chain.
    jira_comments = [t for _, _, t in jira_texts(jira, key)]
    assert sum(public in t for t in jira_comments) == 1, jira_comments
    assert not any(internal in t for t in jira_comments), "an internal Waldur comment reached Jira"
    assert (jira.issue(key).priority, jira.issue(key).assignee) == ("High", jira.agent.account_id)
    assert hints_used(sidecar.db, "waldur") > 0, "no Waldur web hook was used"
    # The event of the sidecar's own create names its user (the request user Waldur logs): an echo, not re-read.
    created = (
        "SELECT state, reason FROM webhook_deliveries WHERE desk = 'waldur' AND external_id = ? AND event_type = ?"
    )
    assert rows(sidecar.db, created, uuid, "issue_creation_succeeded") == [("ignored", "the sidecar's own change")]
    assert len(audit_details(sidecar.db, "inbound_synced", tid)) == 5, "each Msg that landed is audited once"
    assert_content_kept_out(sidecar, public, internal)
    sidecar.stop()


# conflicts ------------------------------------------------------------------------------------------
CASES = {
    # case: (strategy, the side that edits last, the chain's priority once decided, winner, rule)
    "on_chain_wins": ("on_chain_wins", "desk", "high", "chain", "on_chain_wins"),
    "external_wins": ("external_wins", "chain", "low", "desk", "external_wins"),
    "newest_wins-desk-newer": ("newest_wins", "desk", "low", "desk", "newest_wins: desk newer"),
    "newest_wins-chain-newer": ("newest_wins", "chain", "high", "chain", "newest_wins: chain newer"),
    "manual": ("manual", "desk", "high", None, "manual"),
}


async def later_second(after: float, seconds: int = 1) -> None:
    """Wait until the wall clock is `seconds` whole seconds past `after` (newest_wins compares whole seconds)."""
    await async_wait_until(
        lambda: int(time.time()) >= int(after) + seconds, timeout=seconds + 2, what="a later second", interval=0.02
    )


def conflict_rows(db: Path, ticket_id: str) -> list[dict[str, object]]:
    names = (
        "id",
        "field",
        "base_value",
        "chain_value",
        "desk_value",
        "strategy",
        "state",
        "rule",
        "winner",
        "resolved_by",
    )
    found = rows(db, f"SELECT {', '.join(names)} FROM conflicts WHERE ticket_id = ? ORDER BY id", ticket_id)
    return [dict(zip(names, row, strict=True)) for row in found]


@pytest.mark.parametrize("case", list(CASES))
async def test_a_priority_changed_on_chain_and_at_the_desk_is_decided_by_the_strategy(
    case: str,
    devnet_node: DevnetNode,
    make_jira_sim: Callable[..., JiraSim],
    tmp_path: Path,
    sidecars: list[Sidecar],
) -> None:
    """Both sides change the priority while the sidecar is down (it cannot have synced either), from the
    base "normal": the chain's agent to high, the Jira agent to Low. Then the sidecar starts."""
    strategy, last, chain_final, winner, rule = CASES[case]
    jira = make_jira_sim()
    sidecar = Sidecar(tmp_path, devnet_node, jira, flags={"sync.conflict_resolution": strategy})
    sidecars.append(sidecar)
    sidecar.start()
    tid = create_ticket(devnet_node, "which priority is it")
    key, _ = await linked(sidecar, None, tid)
    base = rows(
        sidecar.db,
        "SELECT base_value FROM field_state WHERE ticket_id = ? AND desk = 'jira' AND field = 'priority'",
        tid,
    )
    assert base == [("normal",)], f"the desk's priority was not read back after its create: {base}"
    sidecar.stop()

    def chain_edit() -> None:
        with ChainDriver(devnet_node.rpc_url, AGENT) as agent:
            agent.update(tid, priority="high")

    if last == "desk":
        await asyncio.to_thread(chain_edit)  # returns once included: its block time is already past
        await later_second(time.time())
        jira.agent_update(key, priority="Low")
    else:
        jira.agent_update(key, priority="Low")
        # A block's time is its proposer's (CometBFT: the median of the previous commit's votes), a little
        # before the tx reached it: two seconds of margin put it in a later whole second than the desk's.
        await later_second(time.time(), 2)
        await asyncio.to_thread(chain_edit)
    both_edited, restart = chain_ticket(devnet_node, tid), devnet_node.height()
    sidecar.start()

    def detected() -> list[dict[str, object]] | None:
        return conflict_rows(sidecar.db, tid) or None

    await async_wait_until(detected, timeout=60, what="the conflict to be detected")
    await settle(sidecar)
    [row] = conflict_rows(sidecar.db, tid)
    expected = {
        "field": "priority",
        "base_value": "normal",
        "chain_value": "high",
        "desk_value": "low",
        "strategy": strategy,
        "rule": rule,
        "winner": winner,
    }
    assert {k: row[k] for k in expected} == expected
    assert row["state"] == ("open" if winner is None else "resolved")
    assert chain_ticket(devnet_node, tid).priority == chain_final
    assert jira.issue(key).priority == JIRA_PRIORITY[chain_final if winner is not None else "low"]
    [audit] = audit_details(sidecar.db, "conflict_parked" if winner is None else "conflict_resolved", tid)
    assert audit["rule"] == rule and audit["field"] == "priority"
    assert {"base_sha256", "chain_sha256", "desk_sha256"} <= set(audit)
    assert not {"high", "low", "normal", "High", "Low"} & {str(v) for v in audit.values()}, "a value in the audit"

    if winner is None:
        await parked_until_resolved(sidecar, devnet_node, jira, tid, key, int(str(row["id"])))
    desk_kept = winner != "chain"  # the operator keeps the desk's value of the parked field
    events = support_events(devnet_node, restart, devnet_node.height())
    changes = field_changes(events, tid, both_edited, SIDECAR.address)
    assert changes == ([("priority", "low")] if desk_kept else []), changes
    sidecar.stop()


async def operator(sidecar: Sidecar, *args: str) -> dict[str, Any]:
    """`servicedesk-sidecar ARGS --json` in a process of its own, as the operator types it against the
    running sidecar's control address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTENGINE_SERVICEDESK_")} | sidecar.env
    command = [sys.executable, "-m", "sidecar", *args, "--json", "--control", f"127.0.0.1:{sidecar.grpc_port}"]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, cwd=sidecar.tmp_path, timeout=60
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}: {done.stderr[-500:]}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def parked_until_resolved(
    sidecar: Sidecar, node: DevnetNode, jira: JiraSim, tid: str, key: str, conflict_id: int
) -> None:
    """A parked field is written by neither side, through more sweeps, until an operator keeps the desk's
    value with the CLI (`conflicts`, then `resolve ID --keep desk`); then the chain gets it."""
    await settle(sidecar)  # another full sweep and re-read of the issue
    assert (chain_ticket(node, tid).priority, jira.issue(key).priority) == ("high", "Low")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        control = control_pb2_grpc.ControlStub(channel)
        listed = await control.ListConflicts(control_pb2.ListConflictsRequest())
        assert [(c.id, c.ticket_id, c.field, c.state) for c in listed.conflicts] == [
            (conflict_id, tid, "priority", "open")
        ]
    shown = (await operator(sidecar, "conflicts"))["conflicts"]
    assert [(int(c["id"]), c["ticket_id"], c["field"], c["state"]) for c in shown] == [
        (conflict_id, tid, "priority", "open")
    ]
    answer = await operator(sidecar, "resolve", str(conflict_id), "--keep", "desk", "--operator", "e2e-operator")
    assert answer["conflict"]["state"] == "resolved"
    await chain_shows(node, tid, lambda t: t.priority == "low", "the desk's value on chain")
    await settle(sidecar)
    assert (chain_ticket(node, tid).priority, jira.issue(key).priority) == ("low", "Low")
    [row] = conflict_rows(sidecar.db, tid)
    assert (row["state"], row["winner"], row["resolved_by"]) == ("resolved", "desk", "e2e-operator")
