"""The Jira desk client against the Jira simulator over loopback HTTP, contract validation on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from devnet.jira_model import adf_to_text
from devnet.jira_sim import JiraSim
from devnet.waiting import wait_until
from sidecar.config_schema import JiraConfig
from sidecar.desks.base import DeskComment, DeskOutcome, ExternalTicket, UnmappedValue
from sidecar.desks.jira import JiraDesk, ticket_label
from sidecar.errors import ConfigError, DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, api_requests, approval_workflow, jira_config, ticket

MakeDesk = Callable[..., JiraDesk]


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[JiraDesk] = []

    def make(sim: JiraSim, *, metrics: Metrics | None = None, token: str = JIRA_TOKEN, **config: Any) -> JiraDesk:
        desk = JiraDesk(jira_config(sim, **config), token, metrics=metrics or Metrics(), allow_insecure_http=True)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


async def test_create_sets_every_field(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    metrics = Metrics()
    desk = make_desk(jira_sim, metrics=metrics)
    ref = await desk.create(ticket())
    issue = jira_sim.issue(ref.key)
    assert (ref.desk, ref.external_id, ref.url) == ("jira", issue.id, f"{jira_sim.base_url}/browse/{ref.key}")
    assert issue.summary == "[SUP-000123] Lease 42 unreachable"
    assert (issue.project, issue.issuetype, issue.priority) == ("VESUPPORT", "Service Request", "High")
    assert issue.labels == ["ve-sup-000123", "ve-category-technical"]
    assert issue.properties == {"virtengine": {"ticket_id": "ticket-0123-id", "ticket_number": "SUP-000123"}}
    text = adf_to_text(issue.description)
    for fact in ("SUP-000123", "ticket-0123-id", "technical", "high (High)", "virtengine1qypq", "kind=lease",
                 "The lease does not answer.", "Since 10:00."):
        assert fact in text
    assert api_requests(metrics, "jira", "POST", "2xx") == 1


async def test_encrypted_content_gets_a_placeholder(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    sealed = ticket(subject="", description="", content_available=False, content_reason="encrypted for the provider")
    ref = await make_desk(jira_sim).create(sealed)
    issue = jira_sim.issue(ref.key)
    assert issue.summary == "[SUP-000123] (encrypted content not available to the desk)"
    assert "Content not available: encrypted for the provider." in adf_to_text(issue.description)


async def test_fetch_update_and_mapping_overrides(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    overrides = (("low", "Lowest"), ("normal", "Low"), ("high", "Medium"), ("urgent", "Highest"))
    desk = make_desk(jira_sim, priority_map=overrides, default_priority="High")
    ref = await desk.create(ticket(priority="normal"))
    assert jira_sim.issue(ref.key).priority == "Low"
    moved = ticket(priority="urgent", category="billing")
    await desk.update_fields(ref, moved)
    issue = jira_sim.issue(ref.key)
    assert issue.priority == "Highest" and issue.labels == ["ve-sup-000123", "ve-category-billing"]
    state = await desk.fetch(ref)
    assert (state.status, state.priority, state.labels) == ("Open", "Highest", tuple(issue.labels))
    assert state.properties["virtengine"]["ticket_id"] == "ticket-0123-id" and state.updated


async def test_unmapped_priority_takes_the_default_and_is_reported(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim, default_priority="Low")
    odd = ticket(priority="critical", status="escalated")
    assert desk.unmapped(odd) == (
        UnmappedValue("jira", "priority", "critical", "Low"),
        UnmappedValue("jira", "status", "escalated", None),
    )
    assert desk.unmapped(ticket()) == ()
    ref = await desk.create(odd)
    assert jira_sim.issue(ref.key).priority == "Low"


async def test_find_pages_and_checks_the_property(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    desk.page_size = 2
    label = ticket_label("SUP-000123")
    fields = {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": "other", "labels": [label]}
    async with httpx.AsyncClient(base_url=jira_sim.base_url, auth=(jira_sim.email, JIRA_TOKEN)) as raw:
        for i in range(4):  # the same label, claimed by other tickets (e.g. a devnet that was reset)
            claim = [{"key": "virtengine", "value": {"ticket_id": f"other-{i}"}}]
            made = await raw.post("/rest/api/3/issue", json={"fields": fields, "properties": claim})
            assert made.status_code == 201
    jira_sim.flush_index()  # search is eventually consistent: this test is about paging, not lag
    assert await desk.find(ticket()) is None
    ref = await desk.create(ticket())
    jira_sim.flush_index()
    searches = jira_sim.request_count("POST", "/rest/api/3/search/jql")
    fresh = make_desk(jira_sim)
    fresh.page_size = 2
    assert await fresh.find(ticket()) == ref
    assert jira_sim.request_count("POST", "/rest/api/3/search/jql") - searches == 3  # 5 hits, 2 per page


async def test_find_adopts_an_unclaimed_labelled_issue(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    key = jira_sim.agent_create_issue("made by hand", labels=(ticket_label("SUP-000123"),))
    jira_sim.flush_index()
    found = await make_desk(jira_sim).find(ticket())
    assert found is not None and found.key == key


async def test_find_right_after_create_uses_reconcile(make_jira_sim: Callable[..., JiraSim],
                                                      make_desk: MakeDesk) -> None:
    sim = make_jira_sim(search_delay=30)
    desk = make_desk(sim)
    ref = await desk.create(ticket())
    assert await desk.find(ticket()) == ref  # this process remembers what it created
    restarted = make_desk(sim)
    assert await restarted.find(ticket()) is None  # the index has not caught up
    assert await restarted.find(ticket(), known_ids=(ref.external_id,)) == ref


async def test_a_create_whose_answer_was_lost_is_found_not_repeated(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim(latency=0.6)
    desk = make_desk(sim, timeout=0.3)
    with pytest.raises(DeskError) as lost:
        await desk.create(ticket())
    assert lost.value.retryable is True
    label = ticket_label("SUP-000123")
    await asyncio.to_thread(wait_until, lambda: sim.creates_for_label(label), timeout=5, what="the lost create")
    sim.flush_index()  # once search shows it (the worker's create mark waits for that), it is found
    retry = make_desk(sim, timeout=5.0)
    found = await retry.find(ticket())
    assert found is not None
    assert sim.creates_for_label(label) == 1


async def test_status_goes_through_the_matching_transition(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    await desk.set_status(ref, "in_progress")
    assert jira_sim.issue(ref.key).status == "In Progress"
    await desk.set_status(ref, "assigned")  # maps to the status it already has: nothing to do
    await desk.set_status(ref, "waiting_customer")
    assert jira_sim.issue(ref.key).status == "Waiting for Customer"


async def test_unreachable_status_names_current_target_and_available(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    approval = approval_workflow()
    sim = make_jira_sim(workflow=approval)
    desk = make_desk(sim, status_map=(("open", "Open"), ("in_progress", "Approved")))
    ref = await desk.create(ticket())
    with pytest.raises(DeskOutcome) as err:
        await desk.set_status(ref, "in_progress")
    message = str(err.value)
    assert err.value.retryable is False and err.value.event == "status_unreachable"
    assert "no transition from 'Open' to 'Approved'" in message and "'Approve' -> 'Approved'" in message
    assert "'Approve' requires customfield_10050" in message
    assert err.value.details["current_status"] == "Open" and err.value.details["target_status"] == "Approved"
    assert err.value.details["available_transitions"] == ["Approve -> Approved"]
    assert sim.issue(ref.key).status == "Open"  # nothing was moved


async def test_comments_internal_notes_and_markers(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    await desk.add_comment(ref, DeskComment("resp-1", "virtengine1abc", False, "Any news?\n\nStill down."))
    await desk.add_comment(ref, DeskComment("resp-2", "virtengine1agent", True, "Checked the node.", internal=True))
    jira_sim.agent_comment(ref.key, "ve-response:resp-3")  # someone else's text is not our marker
    public, note, _ = jira_sim.issue(ref.key).comments
    assert public.public and adf_to_text(public.body).startswith("Customer virtengine1abc wrote:")
    assert "Still down." in adf_to_text(public.body)
    assert not note.public and adf_to_text(note.body).startswith("Agent virtengine1agent wrote:")
    assert await desk.has_comment(ref, "resp-1") and await desk.has_comment(ref, "resp-2")
    assert not await desk.has_comment(ref, "resp-3") and not await desk.has_comment(ref, "resp")


async def test_close_says_why_once_and_transitions(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    await desk.close(ref, "archived on chain")
    await desk.close(ref, "archived on chain")  # a retried close adds nothing
    issue = jira_sim.issue(ref.key)
    assert issue.status == "Closed" and len(issue.comments) == 1
    assert "archived on chain" in adf_to_text(issue.comments[0].body)


async def test_check_and_a_missing_issue(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    await desk.check()
    missing = ExternalTicket("jira", "99999", "VESUPPORT-999", "")
    with pytest.raises(DeskError) as err:
        await desk.fetch(missing)
    assert err.value.status == 404 and err.value.retryable is False
    assert "Issue does not exist" in str(err.value)


def test_plain_http_needs_the_development_flag(jira_sim: JiraSim) -> None:
    with pytest.raises(ConfigError, match=r"jira.base_url must use https://"):
        JiraDesk(JiraConfig(base_url=jira_sim.base_url), JIRA_TOKEN, metrics=Metrics())
