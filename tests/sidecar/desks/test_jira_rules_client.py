"""The Jira client against the simulator holding the real Jira's rules (devnet/jira_rules.py): it sends what
Jira accepts, and what Jira refuses for good becomes a recorded outcome instead of a retry loop.

Client-level tests call the desk directly; worker-level tests drive the real DeskWorker on a real SQLite
store with a manual clock (tests/sidecar/sync/rig.py), contract validation on throughout.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devnet.jira_rules import ISSUE_SCREEN
from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from sidecar.desks.base import DeskNote, DeskOutcome, collecting_notes
from sidecar.desks.jira import JiraDesk, ticket_label
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, approval_workflow, jira_config, ticket
from tests.sidecar.sync.rig import Rig, created, status_changed, ticket_id

TRANSITIONS = "/transitions"
JSM = {"service_desk_id": "7", "request_type_id": "25"}
MakeDesk = Callable[..., JiraDesk]


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[JiraDesk] = []

    def make(sim: JiraSim, **config: Any) -> JiraDesk:
        desk = JiraDesk(jira_config(sim, **config), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


def requests(sim: JiraSim, method: str, contains: str) -> list[str]:
    with sim.lock:
        return [r.path for r in sim.requests if r.method == method and contains in r.path]


def request_bodies(sim: JiraSim, method: str, path: str) -> list[Any]:
    with sim.lock:
        return [json.loads(r.body) for r in sim.requests if r.method == method and r.path == path]


# summary ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("jsm", [False, True])
async def test_a_summary_with_line_breaks_is_flattened_and_accepted(
    jira_sim: JiraSim, make_desk: MakeDesk, jsm: bool
) -> None:
    if jsm:
        jira_sim.add_request_type("7", "25")
    desk = make_desk(jira_sim, **(JSM if jsm else {}))
    ref = await desk.create(ticket(subject="Lease 42\nunreachable\r\n\tsince\x00 10:00\u2028today"))
    assert jira_sim.issue(ref.key).summary == "[SUP-000123] Lease 42 unreachable since 10:00 today"


# transitions ------------------------------------------------------------------------------------


async def test_a_status_two_steps_away_is_reached_with_the_resolution_filled(
    jira_sim: JiraSim, make_desk: MakeDesk
) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    await desk.set_status(ref, "resolved")  # Open -> In Progress -> Resolved (its screen requires a resolution)
    issue = jira_sim.issue(ref.key)
    assert (issue.status, issue.resolution) == ("Resolved", "Done")
    moves = request_bodies(jira_sim, "POST", f"/rest/api/3/issue/{ref.key}{TRANSITIONS}")
    assert [m["transition"]["id"] for m in moves] == ["11", "41"]
    assert "fields" not in moves[0]  # Start progress has no screen: nothing is set on it
    assert moves[1]["fields"] == {"resolution": {"name": "Done"}}
    await desk.set_status(ref, "closed")  # Resolved -> Closed: no screen, the resolution is kept
    issue = jira_sim.issue(ref.key)
    assert (issue.status, issue.resolution) == ("Closed", "Done")


async def test_the_configured_resolution_is_the_one_set(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim, resolution="Won't Do")
    ref = await desk.create(ticket())
    await desk.set_status(ref, "closed")  # Open -> Closed is "Cancel request", whose screen requires one
    issue = jira_sim.issue(ref.key)
    assert (issue.status, issue.resolution) == ("Closed", "Won't Do")


async def test_a_walk_never_passes_through_a_done_status(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    await desk.set_status(ref, "waiting_support")  # Open -> In Progress -> Waiting for Customer -> Waiting for Support
    assert jira_sim.issue(ref.key).status == "Waiting for Support"
    assert jira_sim.issue(ref.key).resolution is None


async def test_a_walk_explores_only_mapped_statuses(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    """A status_map value the workflow lacks (a typo, another project's status) moves nothing."""
    desk = make_desk(jira_sim, status_map=(("open", "Open"), ("waiting_customer", "Blocked by Legal")))
    ref = await desk.create(ticket())
    with pytest.raises(DeskOutcome) as err:
        await desk.set_status(ref, "waiting_customer")
    assert "no transition from 'Open' to 'Blocked by Legal'" in str(err.value)
    assert "'Start progress' -> 'In Progress'" in str(err.value)
    assert jira_sim.issue(ref.key).status == "Open"
    assert requests(jira_sim, "POST", TRANSITIONS) == []


# edit screen ------------------------------------------------------------------------------------


async def test_priority_off_the_edit_screen_is_skipped_and_the_labels_still_change(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim(screen=ISSUE_SCREEN - {"priority"})
    desk = make_desk(sim)
    with collecting_notes() as notes:
        ref = await desk.create(ticket())  # the create screen lacks it too: created without
        await desk.update_fields(ref, ticket(category="billing", priority="urgent"))
    issue = sim.issue(ref.key)
    assert issue.labels == ["ve-sup-000123", "ve-category-billing"]
    assert issue.priority == "Medium"  # Jira's default: the sidecar could not set it
    edits = request_bodies(sim, "PUT", f"/rest/api/3/issue/{ref.key}")
    assert len(edits) == 2 and "priority" in edits[0]["fields"] and "fields" not in edits[1]
    assert edits[1]["update"] == edits[0]["update"]  # the label change was sent again, without the priority
    assert notes == [
        DeskNote("field_skipped", {"field": "priority", "reason": "not on the issue's create screen"}),
        DeskNote("field_skipped", {"field": "priority", "external_key": ref.key,
                                   "reason": "not on the issue's edit screen"}),
    ]


# JSM --------------------------------------------------------------------------------------------


async def test_a_jsm_request_is_created_without_labels_then_edited_once(
    jira_sim: JiraSim, make_desk: MakeDesk
) -> None:
    jira_sim.add_request_type("7", "25")  # a default request type: summary and description only
    desk = make_desk(jira_sim, **JSM)
    assert desk.finishes_creates
    ref = await desk.create(ticket())
    [sent] = request_bodies(jira_sim, "POST", "/rest/servicedeskapi/request")
    assert set(sent["requestFieldValues"]) == {"summary", "description"}
    assert jira_sim.issue(ref.key).labels == []
    with collecting_notes() as notes:
        await desk.finish_create(ref, ticket())
    issue = jira_sim.issue(ref.key)
    assert issue.labels == ["ve-sup-000123", "ve-category-technical"]
    assert issue.properties["virtengine"] == {"ticket_id": "ticket-0123-id", "ticket_number": "SUP-000123"}
    assert [n.details["field"] for n in notes] == ["priority"]  # not on a request type's edit screen here
    assert len(request_bodies(jira_sim, "PUT", f"/rest/api/3/issue/{ref.key}")) == 2  # the edit, then without it


async def test_a_jsm_request_with_priority_on_its_screen_gets_everything_in_one_edit(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim(request_screen=ISSUE_SCREEN)
    sim.add_request_type("7", "25")
    desk = make_desk(sim, **JSM)
    ref = await desk.create(ticket())
    with collecting_notes() as notes:
        await desk.finish_create(ref, ticket())
    assert notes == []
    issue = sim.issue(ref.key)
    assert (issue.priority, issue.labels[0]) == ("High", "ve-sup-000123")
    assert len(request_bodies(sim, "PUT", f"/rest/api/3/issue/{ref.key}")) == 1
    assert requests(sim, "PUT", "/properties/") == []  # the claim went in the edit


async def test_a_jsm_request_whose_answer_was_lost_is_found_by_its_summary(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim(search_delay=0)
    sim.add_request_type("7", "25")
    other = sim.agent_create_issue("[SUP-0001234] someone else's", ())  # a longer number, never adopted
    sim.faults.inject("apply-drop", method="POST", path_contains="/rest/servicedeskapi/request")
    desk = make_desk(sim, **JSM)
    with pytest.raises(DeskError) as lost:  # applied, but the answer is lost on the way back
        await desk.create(ticket())
    assert lost.value.retryable
    [made] = [i for i in sim.list_issues() if i.key != other]
    assert made.labels == []  # created, never labelled: a label search cannot find it
    found = await make_desk(sim, **JSM).find(ticket())
    assert found is not None and found.key == made.key
    assert made.labels[:1] == [ticket_label("SUP-000123")] and made.properties["virtengine"]["ticket_id"]
    assert sim.issue(other).labels == []


# the worker ---------------------------------------------------------------------------------------


async def open_rig(tmp_path: Path, rigs: list[Rig], sim: JiraSim, clock: ManualClock, **config: Any) -> Rig:
    desk = JiraDesk(jira_config(sim, index_lag=10.0, **config), JIRA_TOKEN, metrics=Metrics(),
                    allow_insecure_http=True)
    rig = await Rig.open(tmp_path / f"sidecar-{len(rigs)}.db", desk, clock)
    rigs.append(rig)
    return rig


async def test_an_unreachable_status_is_audited_and_its_job_finished_not_retried(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    approval = approval_workflow()
    sim = make_jira_sim(workflow=approval, clock=clock, search_delay=0)
    rig = await open_rig(tmp_path, rigs, sim, clock, status_map=(("open", "Open"), ("in_progress", "Approved")))
    await rig.chain(created(1))
    await rig.chain(status_changed(1, "open", "in_progress"))
    await rig.run_due()
    jobs = await rig.jobs()
    assert [(j.kind, j.state, j.attempts) for j in jobs] == [("create", "done", 0), ("status", "done", 0)]
    [outcome] = await rig.audit("status_unreachable")
    assert (outcome["ticket_id"], outcome["status"]) == (ticket_id(1), "skipped")
    assert outcome["details"]["current_status"] == "Open" and outcome["details"]["target_status"] == "Approved"
    assert outcome["details"]["available_transitions"] == ["Approve -> Approved"]
    assert "'Approve' requires customfield_10050" in outcome["error"]
    moves = len(requests(sim, "GET", TRANSITIONS))
    clock.advance(3600)
    await rig.run_due()
    assert len(requests(sim, "GET", TRANSITIONS)) == moves  # finished: never tried again


async def test_a_jsm_follow_up_that_fails_is_retried_on_the_same_issue(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock, search_delay=0)
    sim.add_request_type("7", "25")
    rig = await open_rig(tmp_path, rigs, sim, clock, **JSM)
    sim.faults.inject("500", method="PUT", path_contains="/rest/api/3/issue/")  # the follow-up edit fails
    await rig.chain(created(1))
    await rig.run_due()
    [issue] = sim.list_issues()
    assert issue.labels == [] and "virtengine" not in issue.properties
    [(ref_key,)] = await rig.query("SELECT external_key FROM external_refs WHERE ticket_id = ?", ticket_id(1))
    assert ref_key == issue.key  # recorded before the follow-up
    [job] = await rig.jobs()
    assert (job.state, job.attempts) == ("pending", 1)
    clock.advance(60)
    await rig.run_due()
    [issue] = sim.list_issues()  # exactly one issue
    assert issue.labels == ["ve-sup-000001", "ve-category-technical"]
    assert issue.properties["virtengine"]["ticket_id"] == ticket_id(1)
    [job] = await rig.jobs()
    assert job.state == "done"
    assert await rig.query("SELECT * FROM create_marks") == []
    assert [len(await rig.audit(e)) for e in ("external_ticket_created", "external_ticket_adopted")] == [1, 0]
    skipped = await rig.audit("field_skipped")
    assert skipped and all(s["details"]["field"] == "priority" for s in skipped)


async def test_a_revoked_token_holds_jobs_without_spending_attempts_until_fixed(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock, search_delay=0)
    rig = await open_rig(tmp_path, rigs, sim, clock)
    assert rig.worker is not None
    worker = rig.worker
    metrics, health = worker._metrics, worker._health
    sim.revoke_token()
    await rig.chain(created(1), created(2))
    for _ in range(6):  # far past retry.max_retries (5) worth of rounds
        await rig.run_due()
        clock.advance(120)
    jobs = await rig.jobs()
    assert jobs and all((j.state, j.attempts) == ("pending", 0) for j in jobs)
    assert all("401" in (j.last_error or "") and JIRA_TOKEN not in (j.last_error or "") for j in jobs)
    assert health.desks["jira"] == "unauthorized" and not health.healthy
    assert "401" in health.problems["jira_auth"]
    assert metrics.registry.get_sample_value("servicedesk_desk_auth_failed", {"desk": "jira"}) == 1
    assert await rig.audit("sync_failed") == [] and sim.list_issues() == []

    sim.set_token(JIRA_TOKEN)  # the operator fixed the token
    clock.advance(600)
    await rig.run_due()
    assert [j.state for j in await rig.jobs()] == ["done", "done"]
    assert len(sim.list_issues()) == 2
    assert health.desks["jira"] == "healthy" and "jira_auth" not in health.problems
    assert metrics.registry.get_sample_value("servicedesk_desk_auth_failed", {"desk": "jira"}) == 0


async def test_a_jsm_request_type_without_labels_on_its_edit_screen_still_gets_its_claim(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """Labels off the request's edit screen refuse the whole follow-up edit: it is sent again without them
    (and without the priority), so the claim lands and the ticket's later jobs are not blocked."""
    sim = make_jira_sim(clock=clock, search_delay=0, request_screen=ISSUE_SCREEN - {"labels", "priority"})
    sim.add_request_type("7", "25")
    rig = await open_rig(tmp_path, rigs, sim, clock, **JSM)
    await rig.chain(created(1))
    await rig.run_due()
    [issue] = sim.list_issues()
    assert issue.properties["virtengine"]["ticket_id"] == ticket_id(1) and issue.labels == []
    assert [j.state for j in await rig.jobs()] == ["done"]
    assert await rig.query("SELECT * FROM create_marks") == []
    assert sorted(s["details"]["field"] for s in await rig.audit("field_skipped")) == ["labels", "priority"]


async def test_a_follow_up_the_desk_refuses_for_good_is_given_up_and_later_jobs_go_on(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """A follow-up edit refused for a reason no retry mends (a priority Jira does not have) dead-letters the
    create job once; the ticket's next job gives the follow-up up (audited, mark cleared) and does its work."""
    sim = make_jira_sim(clock=clock, search_delay=0, request_screen=ISSUE_SCREEN)
    sim.add_request_type("7", "25")
    bogus = tuple((chain, "No Such Priority") for chain in ("low", "normal", "high", "urgent"))
    rig = await open_rig(tmp_path, rigs, sim, clock, priority_map=bogus, **JSM)
    await rig.chain(created(1))
    await rig.run_due()
    [issue] = sim.list_issues()
    assert [j.state for j in await rig.jobs()] == ["dead"]
    await rig.chain(status_changed(1, "open", "in_progress"))
    await rig.run_due()
    assert [j.state for j in await rig.jobs()] == ["dead", "done"]
    assert [i.key for i in sim.list_issues()] == [issue.key]  # exactly one issue
    assert sim.issue(issue.key).status == "In Progress"
    assert await rig.query("SELECT * FROM create_marks") == []
    [given_up] = await rig.audit("create_follow_up_failed")
    assert given_up["details"]["external_key"] == issue.key
