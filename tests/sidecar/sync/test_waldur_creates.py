"""Waldur refuses a second issue with the same remote_id, so the worker creates without looking first: one
request per new ticket. A create whose answer was lost is sent again, refused as a duplicate, and the issue the
first one made is adopted: still exactly one issue, recorded as adopted, the create mark cleared.

A real store, the real Waldur client and worker, and the Waldur simulator (its remote_id uniqueness rule).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.desks.waldur import remote_id
from tests.sidecar.sync.rig import Rig, created, ticket_id, waldur_rig

ISSUES = "/api/support-issues/"


def issue_requests(sim: WaldurSim) -> list[str]:
    """The requests to the issue collection itself (creates and lookups), in order."""
    with sim.lock:
        return [f"{r.method} {r.status}" for r in sim.requests if r.path == ISSUES]


async def test_a_new_ticket_is_created_without_a_lookup(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_waldur_sim()
    rig = await waldur_rig(tmp_path, rigs, sim, clock)
    await rig.chain(created(1))
    await rig.run_due()
    assert [j.state for j in await rig.jobs()] == ["done"]
    assert issue_requests(sim) == ["POST 201"]
    [issue] = sim.by_remote_id(remote_id(ticket_id(1)))
    assert [e["details"]["external_id"] for e in await rig.audit("external_ticket_created")] == [issue.uuid.hex]


async def test_a_create_whose_answer_was_lost_is_refused_again_and_its_issue_adopted(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_waldur_sim()
    rig = await waldur_rig(tmp_path, rigs, sim, clock)
    sim.faults.inject("apply-drop", method="POST", path_contains=ISSUES)
    await rig.chain(created(1))
    await rig.run_due()
    assert len(sim.faults.lost_on("POST", ISSUES)) == 1, "the create was not applied-then-lost"
    [job] = await rig.jobs()
    assert (job.state, job.attempts) == ("pending", 1)

    clock.advance(60.0)
    await rig.run_due()
    [job] = await rig.jobs()
    assert job.state == "done", job.last_error
    [issue] = sim.by_remote_id(remote_id(ticket_id(1)))
    # The retry's create is refused as a duplicate (400 on remote_id); only then is the issue looked up.
    assert issue_requests(sim)[-2:] == ["POST 400", "GET 200"]
    refs = await rig.query("SELECT ticket_id, external_id, verified FROM external_refs")
    assert refs == [(ticket_id(1), issue.uuid.hex, 1)]
    assert await rig.query("SELECT * FROM create_marks") == []
    assert [e["details"]["external_id"] for e in await rig.audit("external_ticket_adopted")] == [issue.uuid.hex]
    assert await rig.audit("external_ticket_created") == []
