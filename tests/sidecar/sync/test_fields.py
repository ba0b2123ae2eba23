"""Inbound's pure field decisions: reverse maps (many-to-one, archived, unmapped, unassigned), every row of the
three-way table under each strategy, value hashes, and update Msgs the devnet chain's keeper accepts."""

from __future__ import annotations

from typing import Any

import pytest
from virtengine.support.v1 import tx_pb2

from devnet.app_state import genesis_state
from devnet.envelope import payload_from_json, payload_to_proto
from devnet.keys import TestAccount
from devnet.support_module import BlockContext, SupportError, SupportKeeper
from sidecar.chain.transitions import STATUS_CODES, path
from sidecar.config_schema import JiraConfig, WaldurConfig
from sidecar.desks.mapping import jira_mapping, waldur_mapping
from sidecar.sync.fields import NO_BASE, Decision, Outcome, ReverseMapped, chain_value, decide, update_msg, value_hash
from tests.vectors import load

AGENT_A = TestAccount.from_name("fields-agent-a").address
AGENT_B = TestAccount.from_name("fields-agent-b").address
AGENT_C = TestAccount.from_name("fields-agent-c").address
JIRA = jira_mapping(JiraConfig(assignee_map=((AGENT_A, "acct-1"), (AGENT_B, "acct-1"), (AGENT_C, "acct-2"))))
WALDUR = waldur_mapping(WaldurConfig())


# --- reverse maps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desk_value", "current", "expected"),
    [
        ("In Progress", "assigned", "assigned"),  # many-to-one: the chain's value already maps there, kept
        ("In Progress", "in_progress", "in_progress"),
        ("In Progress", "open", "in_progress"),  # the desk's own name decides
        ("in progress", "waiting_customer", "in_progress"),  # desk names compare case-insensitively
        ("Closed", "in_progress", "closed"),  # never archived while closed stands for it too
        ("Closed", "archived", "archived"),  # already agrees: nothing to send
        ("Waiting for Customer", "open", "waiting_customer"),
        ("Resolved", None, "resolved"),
    ],
)
def test_jira_status_reverse(desk_value: str, current: str | None, expected: str) -> None:
    assert chain_value("status", desk_value, current, JIRA) == ReverseMapped(expected)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("assigned", "assigned"),
        ("waiting_support", "waiting_support"),
        ("resolved", "in_progress"),  # a reopening: the chain reaches in_progress, never open again
        ("closed", "open"),  # nothing reachable: the desk's name, which the caller finds has no path
        (None, "open"),
    ],
)
def test_waldur_open_stands_for_five_statuses(current: str | None, expected: str) -> None:
    assert chain_value("status", "Open", current, WALDUR) == ReverseMapped(expected)


def test_archived_is_never_chosen_while_another_candidate_exists() -> None:
    # A table listing archived first for the desk's "Done": to_chain alone would answer archived.
    done = jira_mapping(JiraConfig(status_map=(("open", "Open"), ("archived", "Done"), ("closed", "Done"))))
    assert done.status.to_chain("Done") == "archived"
    for current in (None, "open", "in_progress", "resolved"):
        assert chain_value("status", "Done", current, done) == ReverseMapped("closed")
    assert chain_value("status", "Done", "archived", done) == ReverseMapped("archived")
    only = jira_mapping(JiraConfig(status_map=(("open", "Open"), ("archived", "Gone"))))
    assert chain_value("status", "Gone", "open", only) == ReverseMapped("archived")  # the only candidate


def test_the_base_is_kept_when_the_desk_still_stands_for_it() -> None:
    # Waldur says "Open" as it did at the base (waiting_customer); the chain moved on to resolved. The desk did
    # not change, so it is the base, and the decision is outbound's, not a conflict.
    got = chain_value("status", "Open", "resolved", WALDUR, base="waiting_customer")
    assert got == ReverseMapped("waiting_customer")
    assert decide("waiting_customer", "resolved", got.value, "manual", 1.0, 2.0).outcome is Outcome.TO_DESK
    # ...but the chain's current value comes first: both stand for "In Progress", so they agree.
    assert chain_value("status", "In Progress", "in_progress", JIRA, base="assigned") == ReverseMapped("in_progress")


@pytest.mark.parametrize(
    ("desk_value", "current", "expected"),
    [("Highest", "low", "urgent"), ("medium", None, "normal"), ("Low", "low", "low")],
)
def test_priority_reverse(desk_value: str, current: str | None, expected: str) -> None:
    assert chain_value("priority", desk_value, current, JIRA) == ReverseMapped(expected)


@pytest.mark.parametrize(
    ("account", "current", "expected"),
    [
        ("acct-1", AGENT_B, AGENT_B),  # several agents share the account: the current one is kept
        ("acct-1", AGENT_C, AGENT_A),  # not among them: the table's first
        ("acct-1", None, AGENT_A),
        ("ACCT-1", None, AGENT_A),
        ("acct-2", AGENT_A, AGENT_C),
    ],
)
def test_assignee_reverse(account: str, current: str | None, expected: str) -> None:
    assert chain_value("assignee", account, current, JIRA) == ReverseMapped(expected)


def test_unmapped_and_unassigned_are_reported_not_guessed() -> None:
    assert chain_value("status", "Escalated", "open", JIRA) == ReverseMapped(None, "unmapped")
    assert chain_value("priority", "Blocker", "low", JIRA) == ReverseMapped(None, "unmapped")
    assert chain_value("priority", "High", "low", WALDUR) == ReverseMapped(None, "unmapped")  # Waldur: no priorities
    assert chain_value("assignee", "acct-9", AGENT_A, JIRA) == ReverseMapped(None, "unmapped")
    assert chain_value("status", None, "open", JIRA) == ReverseMapped(None, "unmapped")
    assert chain_value("assignee", None, AGENT_A, JIRA) == ReverseMapped(None, "unassigned")
    with pytest.raises(ValueError, match="category"):
        chain_value("category", "Bug", "other", JIRA)


# --- the three-way decision -----------------------------------------------------------------------

STRATEGIES = ("on_chain_wins", "external_wins", "newest_wins", "manual")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("base", "chain", "desk", "outcome", "value"),
    [
        ("open", "open", "open", Outcome.IN_SYNC, "open"),
        ("open", "closed", "closed", Outcome.IN_SYNC, "closed"),  # both moved the same way: the base follows
        (NO_BASE, "open", "open", Outcome.IN_SYNC, "open"),
        ("open", "in_progress", "open", Outcome.TO_DESK, "in_progress"),
        ("open", "open", "in_progress", Outcome.TO_CHAIN, "in_progress"),
        (NO_BASE, "open", "in_progress", Outcome.TO_CHAIN, "in_progress"),  # first sight: the base is the chain's
        (None, None, AGENT_A, Outcome.TO_CHAIN, AGENT_A),  # None is a value: nobody assigned at the base
        (AGENT_A, AGENT_B, AGENT_A, Outcome.TO_DESK, AGENT_B),
    ],
)
def test_one_sided_rows_ignore_the_strategy(
    strategy: Any, base: Any, chain: str | None, desk: str | None, outcome: Outcome, value: str | None
) -> None:
    got = decide(base, chain, desk, strategy, 100.0, 200.0)
    assert (got.outcome, got.value, got.winner) == (outcome, value, None)


@pytest.mark.parametrize(
    ("strategy", "winner", "value", "rule"),
    [
        ("on_chain_wins", "chain", "resolved", "on_chain_wins"),
        ("external_wins", "desk", "closed", "external_wins"),
        ("newest_wins", "desk", "closed", "newest_wins: desk newer"),
        ("manual", None, None, "manual"),
    ],
)
def test_conflicts_by_strategy(strategy: Any, winner: Any, value: str | None, rule: str) -> None:
    got = decide("in_progress", "resolved", "closed", strategy, chain_changed_at=100.0, desk_changed_at=200.0)
    assert got == Decision(Outcome.CONFLICT, value, rule, winner)


def test_a_conflict_needs_a_base_of_its_own() -> None:
    # None as a base is a value (unassigned at the last sync); both sides assigned someone else since.
    got = decide(None, AGENT_A, AGENT_B, "on_chain_wins", 1.0, 2.0)
    assert (got.outcome, got.winner, got.value) == (Outcome.CONFLICT, "chain", AGENT_A)


@pytest.mark.parametrize(
    ("chain_at", "desk_at", "winner", "rule"),
    [
        (100.0, 200.0, "desk", "newest_wins: desk newer"),
        (200.0, 100.0, "chain", "newest_wins: chain newer"),
        (100.0, 100.0, "chain", "newest_wins: tie: chain kept"),
        (100.0, 100.9, "chain", "newest_wins: tie: chain kept"),  # block times are whole seconds
        (100.0, 101.0, "desk", "newest_wins: desk newer"),
        (100.0, None, "chain", "newest_wins: desk time unknown: chain kept"),
        (100.0, float("nan"), "chain", "newest_wins: desk time unknown: chain kept"),
        (None, 100.0, "chain", "newest_wins: chain time unknown: chain kept"),
    ],
)
def test_newest_wins(chain_at: float | None, desk_at: float | None, winner: str, rule: str) -> None:
    got = decide("low", "high", "urgent", "newest_wins", chain_at, desk_at)
    assert (got.outcome, got.winner, got.rule) == (Outcome.CONFLICT, winner, rule)
    assert got.value == ("high" if winner == "chain" else "urgent")


def test_target_says_which_side_is_written() -> None:
    assert decide("a", "a", "a", "manual", None, None).target is None
    assert decide("a", "b", "a", "manual", None, None).target == "desk"
    assert decide("a", "a", "b", "manual", None, None).target == "chain"
    assert decide("a", "b", "c", "on_chain_wins", None, None).target == "desk"
    assert decide("a", "b", "c", "external_wins", None, None).target == "chain"
    assert decide("a", "b", "c", "manual", None, None).target is None


def test_value_hash() -> None:
    assert value_hash(None) != value_hash("")
    assert value_hash("open") == value_hash("open") != value_hash("closed")
    assert len(value_hash("open")) == 64 and int(value_hash("open"), 16) >= 0
    assert "open" not in value_hash("open")


# --- update Msgs ----------------------------------------------------------------------------------


def test_update_msg_fields() -> None:
    msg = update_msg("virtengine1sender", "t/support/1", status="waiting_customer", priority="high")
    assert (msg.status, msg.priority, msg.assigned_agent) == (4, "high", "")
    assert tx_pb2.MsgUpdateSupportRequest.FromString(msg.SerializeToString()) == msg
    only_agent = update_msg("s", "t", assigned_agent=AGENT_A)
    assert (only_agent.status, only_agent.priority, only_agent.assigned_agent) == (0, "", AGENT_A)


@pytest.mark.parametrize("kwargs", [{}, {"status": "archived"}, {"status": "escalated"}, {"priority": ""}])
def test_update_msg_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        update_msg("s", "t", **kwargs)


def _keeper_with_ticket() -> tuple[SupportKeeper, str, str]:
    customer, agent = TestAccount.from_name("fields-customer").address, AGENT_A
    state = genesis_state({"support_agents": [agent, AGENT_B]}, "devnet-test")
    keeper = SupportKeeper(state, BlockContext(height=1, time=1_700_000_000))
    payload = payload_to_proto(payload_from_json(load("envelopes.json")["cases"][0]["payload"]))
    created, _ = keeper.execute(
        tx_pb2.MsgCreateSupportRequest(sender=customer, category="technical", priority="normal", payload=payload)
    )
    assert isinstance(created, tx_pb2.MsgCreateSupportRequestResponse)
    return keeper, agent, created.ticket_id


def test_a_path_of_update_msgs_is_accepted_by_the_devnet_chain() -> None:
    keeper, agent, ticket_id = _keeper_with_ticket()
    steps = path("open", "resolved")
    assert steps == ("in_progress", "resolved")
    for status in steps:
        keeper.execute(update_msg(agent, ticket_id, status=status))
    keeper.execute(update_msg(agent, ticket_id, priority="urgent", assigned_agent=AGENT_B))
    ticket = keeper.state["tickets"][ticket_id]
    assert (ticket["status"], ticket["priority"], ticket["assigned_agent"]) == (
        STATUS_CODES["resolved"],
        "urgent",
        AGENT_B,
    )
    with pytest.raises(SupportError, match="invalid status transition"):  # what path() exists to avoid
        keeper.execute(update_msg(agent, ticket_id, status="waiting_customer"))
