"""The create mark closes Jira's duplicate window: a create whose answer was lost while search lags is
searched for again (without spending attempts) until the index-lag bound, and only then re-sent.

A real store, the real Jira client and worker, and the Jira simulator with its search index lagging on
a manual clock shared with the worker: time moves only when the test moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from sidecar.desks.jira import JiraDesk, ticket_label
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.sync.rig import Rig, created, ticket_id

CREATE = "/rest/api/3/issue"
JSM_CREATE = "/rest/servicedeskapi/request"
SEARCH = "/rest/api/3/search/jql"
INDEX_LAG = 60.0  # the sidecar's bound (jira.index_lag)
SEARCH_DELAY = 30.0  # how far behind the simulator's index runs: inside the bound, as on a busy site


async def open_rig(tmp_path: Path, rigs: list[Rig], sim: JiraSim, clock: ManualClock, **config: object) -> Rig:
    desk = JiraDesk(
        jira_config(sim, index_lag=INDEX_LAG, **config), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True
    )
    rig = await Rig.open(tmp_path / f"sidecar-{len(rigs)}.db", desk, clock)
    rigs.append(rig)
    return rig


def paths(sim: JiraSim, method: str) -> list[str]:
    with sim.lock:
        return [f"{r.path}:{r.status}" for r in sim.requests if r.method == method]


@pytest.mark.parametrize("create_path", [CREATE, JSM_CREATE])
async def test_a_create_applied_but_unanswered_while_search_lags_makes_one_issue(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path, create_path: str
) -> None:
    sim = make_jira_sim(clock=clock, search_delay=SEARCH_DELAY)
    jsm: dict[str, object] = {}
    if create_path == JSM_CREATE:
        sim.add_request_type("7", "25", "Service Request")
        jsm = {"service_desk_id": "7", "request_type_id": "25"}
    rig = await open_rig(tmp_path, rigs, sim, clock, **jsm)
    sim.faults.inject("apply-drop", method="POST", path_contains=create_path)
    await rig.chain(created(1))
    await rig.run_due()
    assert len(sim.faults.lost_on("POST", create_path)) == 1, "the create was not applied-then-lost"
    label = ticket_label("SUP-000001")
    assert len(sim.list_issues()) == 1  # (a JSM request gets its label only by the edit after the create)
    [job] = await rig.jobs()
    assert (job.state, job.attempts) == ("pending", 1)  # the lost answer is one failed attempt

    searches = sim.request_count("POST", SEARCH)
    for _ in range(3):  # retries inside the bound, index still behind: search again, wait, create nothing
        clock.advance(5.0)
        await rig.run_due()
        [job] = await rig.jobs()
        assert job.state == "pending" and job.attempts == 1, "waiting for the index spent an attempt"
        assert "search does not show it" in (job.last_error or "")
    assert sim.request_count("POST", SEARCH) > searches
    assert len(sim.list_issues()) == 1

    clock.advance(SEARCH_DELAY)  # the index catches up (still inside the bound): the issue is found
    await rig.run_due()
    [job] = await rig.jobs()
    assert job.state == "done"
    [issue] = sim.list_issues()
    assert sim.creates_for_label(label) == 1
    refs = await rig.query("SELECT ticket_id, external_id, verified FROM external_refs")
    assert refs == [(ticket_id(1), issue.id, 1)]
    assert await rig.query("SELECT * FROM create_marks") == []
    assert [e["details"]["external_id"] for e in await rig.audit("external_ticket_adopted")] == [issue.id]


async def test_the_bound_passing_with_nothing_found_leads_to_a_create(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock, search_delay=SEARCH_DELAY)
    rig = await open_rig(tmp_path, rigs, sim, clock)
    sim.faults.inject("503", method="POST", path_contains=CREATE)  # refused before Jira applied anything
    await rig.chain(created(1))
    await rig.run_due()
    assert [p for p in paths(sim, "POST") if p.startswith(CREATE + ":")] == [f"{CREATE}:503"]
    clock.advance(5.0)
    await rig.run_due()
    [job] = await rig.jobs()
    assert job.state == "pending" and "search does not show it" in (job.last_error or "")
    assert sim.list_issues() == []

    clock.advance(INDEX_LAG)  # the bound has passed since the mark and search still shows nothing
    await rig.run_due()
    [job] = await rig.jobs()
    assert (job.state, job.attempts) == ("done", 1)
    [issue] = sim.list_issues()
    assert sim.creates_for_label(ticket_label("SUP-000001")) == 1
    creates = [p for p in paths(sim, "POST") if p.startswith(CREATE + ":")]
    assert creates == [f"{CREATE}:503", f"{CREATE}:201"]
    assert await rig.query("SELECT external_id FROM external_refs") == [(issue.id,)]
    assert await rig.query("SELECT * FROM create_marks") == []


async def test_the_mark_is_durable_so_a_new_process_waits_too(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """A restarted worker (new client, no memory of the create) still finds the mark and waits."""
    sim = make_jira_sim(clock=clock, search_delay=SEARCH_DELAY)
    first = await open_rig(tmp_path, rigs, sim, clock)
    sim.faults.inject("apply-drop", method="POST", path_contains=CREATE)
    await first.chain(created(1))
    await first.run_due()
    assert len(sim.faults.lost_on("POST", CREATE)) == 1
    db = first.store.path
    await first.close()
    rigs.remove(first)

    desk = JiraDesk(jira_config(sim, index_lag=INDEX_LAG), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    second = await Rig.open(Path(db), desk, clock)
    rigs.append(second)
    clock.advance(5.0)
    await second.run_due()
    [job] = await second.jobs()
    assert job.state == "pending" and "search does not show it" in (job.last_error or "")
    assert len(sim.list_issues()) == 1
    sim.flush_index()
    clock.advance(5.0)
    await second.run_due()
    assert [j.state for j in await second.jobs()] == ["done"]
    assert len(sim.list_issues()) == 1


async def test_a_create_refused_outright_clears_the_mark_and_is_retried_without_waiting(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """A 429 answer to the create means Jira made nothing: the retry after Retry-After creates at once
    instead of waiting out the index-lag bound (rate limits are routine on busy sites)."""
    sim = make_jira_sim(clock=clock, search_delay=SEARCH_DELAY)
    rig = await open_rig(tmp_path, rigs, sim, clock)
    sim.faults.inject("429", method="POST", path_contains=CREATE, retry_after=2)
    await rig.chain(created(1))
    await rig.run_due()
    assert [p for p in paths(sim, "POST") if p.startswith(CREATE + ":")] == [f"{CREATE}:429"]
    assert await rig.query("SELECT * FROM create_marks") == []
    clock.advance(2.0)
    await rig.run_due()
    [job] = await rig.jobs()
    assert (job.state, job.attempts) == ("done", 0)
    creates = [p for p in paths(sim, "POST") if p.startswith(CREATE + ":")]
    assert creates == [f"{CREATE}:429", f"{CREATE}:201"]
    assert len(sim.list_issues()) == 1
