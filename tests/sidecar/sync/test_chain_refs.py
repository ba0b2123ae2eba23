"""Refs registered on chain are untrusted: any agent can register one. The worker validates the id,
checks the desk ticket's claim before adopting it, and otherwise audits it and writes nothing there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.desks.jira import JiraDesk, ticket_label
from sidecar.desks.waldur import WaldurDesk, remote_id
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, WALDUR_TOKEN, jira_config, ticket, waldur_config
from tests.sidecar.sync.rig import Rig, created, linked, status_changed, ticket_id

OWN_ISSUE_PATH = re.compile(r"^/rest/api/3/issue/(?:[0-9]+|VESUPPORT-[0-9]+)(?:/[a-z]+(?:/virtengine)?)?$")


async def jira_rig(tmp_path: Path, rigs: list[Rig], sim: JiraSim, clock: ManualClock) -> Rig:
    desk = JiraDesk(jira_config(sim, index_lag=0.0), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    return rig


def requests(sim: JiraSim | WaldurSim) -> list[tuple[str, str]]:
    with sim.lock:
        return [(r.method, r.path) for r in sim.requests]


async def test_a_path_traversal_ref_sends_nothing_outside_the_projects_issues(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig = await jira_rig(tmp_path, rigs, sim, clock)
    await rig.chain(created(1), linked(1, "jira", "../../2/issue/OTHER-9"))
    await rig.chain(created(2))
    await rig.run_due()
    sent = requests(sim)
    assert sent, "the worker sent nothing at all"
    for method, path in sent:
        assert "OTHER" not in path and "/2/issue" not in path, (method, path)
        if path.startswith("/rest/api/3/issue/"):
            assert OWN_ISSUE_PATH.fullmatch(path), (method, path)
    [refused] = await rig.audit("external_ref_refused")
    assert refused["ticket_id"] == ticket_id(1) and "not a Jira issue id" in refused["error"]
    # Each ticket still gets its own issue, the next normal ticket included.
    assert [j.state for j in await rig.jobs()] == ["done", "done"]
    assert {sim.creates_for_label(ticket_label(f"SUP-{n:06d}")) for n in (1, 2)} == {1}
    refs = await rig.query("SELECT ticket_id, verified FROM external_refs ORDER BY ticket_id")
    assert refs == [(ticket_id(1), 1), (ticket_id(2), 1)]


async def test_a_ref_to_an_issue_without_our_claim_is_never_written_to(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    foreign = sim.agent_create_issue("someone else's issue")  # in the project, no claim
    foreign_id = sim.issue(foreign).id
    rig = await jira_rig(tmp_path, rigs, sim, clock)
    await rig.chain(created(1), linked(1, "jira", foreign), status_changed(1, "open", "in_progress"))
    await rig.chain(created(2), linked(2, "jira", foreign_id), status_changed(2, "open", "in_progress"))
    await rig.chain(created(3))
    await rig.run_due()
    writes = [(m, p) for m, p in requests(sim) if m != "GET" and (foreign in p or foreign_id in p.split("/"))]
    assert writes == []
    assert sim.issue(foreign).status == "Open" and "virtengine" not in sim.issue(foreign).properties
    refused = await rig.audit("external_ref_refused")
    assert [r["ticket_id"] for r in refused] == [ticket_id(1), ticket_id(2)]
    assert all("claim" in r["error"] for r in refused) and len(refused) == 2
    assert [j.state for j in await rig.jobs()] == ["done"] * 5
    moved = [i for i in sim.list_issues() if i.key != foreign and i.status == "In Progress"]
    assert len(moved) == 2  # the status changes went to each ticket's own issue
    assert len(sim.list_issues()) == 4  # the foreign issue plus one per ticket


async def test_a_ref_whose_issue_carries_our_claim_is_adopted(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """E.g. the issue another validator's sidecar created for the ticket and registered on chain."""
    sim = make_jira_sim(clock=clock)
    other = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    try:
        made = await other.create(ticket(1, ticket_id=ticket_id(1), ticket_number="SUP-000001"))
    finally:
        await other.aclose()
    rig = await jira_rig(tmp_path, rigs, sim, clock)
    await rig.chain(created(1), linked(1, "jira", made.external_id))
    await rig.run_due()
    assert [j.state for j in await rig.jobs()] == ["done"]
    assert len(sim.list_issues()) == 1
    assert await rig.query("SELECT external_id, external_key, verified FROM external_refs") == [
        (made.external_id, made.key, 1)
    ]
    [adopted] = await rig.audit("external_ticket_adopted")
    assert adopted["details"]["source"] == "chain"
    assert await rig.audit("external_ref_refused") == []


async def test_a_chain_ref_holding_our_new_issues_id_yields_to_it(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """An agent registers the id Jira will give the next issue on another ticket: the create still records."""
    sim = make_jira_sim(clock=clock)
    rig = await jira_rig(tmp_path, rigs, sim, clock)
    next_id = str(int(sim.issue(sim.agent_create_issue("probe")).id) + 1)
    await rig.chain(created(1), created(2), linked(2, "jira", next_id))
    await rig.run_due()
    assert sorted(j.state for j in await rig.jobs()) == ["done", "done"]
    refs = dict(await rig.query("SELECT ticket_id, external_id FROM external_refs"))
    assert len(set(refs.values())) == 2 and set(refs) == {ticket_id(1), ticket_id(2)}
    assert len(await rig.audit("external_ref_refused")) >= 1


async def test_waldur_refs_must_be_uuids_with_our_remote_id(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_waldur_sim()
    desk = WaldurDesk(waldur_config(sim), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    mine = await desk.create(ticket(3, ticket_id=ticket_id(3), ticket_number="SUP-000003"))
    theirs = await desk.create(ticket(9, ticket_id="someone-else", ticket_number="SUP-000009"))
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    await rig.chain(created(1), linked(1, "waldur", "../support-issues/"))
    await rig.chain(created(2), linked(2, "waldur", theirs.external_id))
    await rig.chain(created(3), linked(3, "waldur", str(uuid4()).upper()))
    await rig.run_due()
    assert [j.state for j in await rig.jobs()] == ["done"] * 3
    assert all("/support-issues/../" not in p and ".." not in p for _, p in requests(sim))
    refused = {r["ticket_id"]: r["error"] for r in await rig.audit("external_ref_refused")}
    assert "not a Waldur issue UUID" in refused[ticket_id(1)]
    assert "claim" in refused[ticket_id(2)] and "claim" in refused[ticket_id(3)]
    refs = dict(await rig.query("SELECT ticket_id, external_id FROM external_refs"))
    assert refs[ticket_id(3)] == mine.external_id  # found by its remote_id, not created again
    assert len(sim.by_remote_id(remote_id(ticket_id(3)))) == 1
    assert sim.comments_of(theirs.external_id) == []  # nothing was written to the issue it does not own
