"""An outbound job's read-back comes from the desk's answer to its write where that answer shows the issue
(Jira's edit with returnIssue, Waldur's set_status), and from its own earlier read where it wrote nothing:
no GET repeats what the job has just seen. The guarantee stays: a field's base is recorded only when the desk
holds the chain's value, so an agent's change landing right after the write is decided by inbound, not taken
as agreed. Real store, real simulators on loopback, manual clock; each test takes a second or two.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.desks.jira import JiraDesk
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import Metrics
from sidecar.store.inbound import list_conflicts
from sidecar.sync.inbound import InboundEngine, InboundSettings
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.sync.inbound_kit import CHAIN_PRIORITY, WALDUR_PRIORITIES
from tests.sidecar.sync.rig import Rig, TamperingTransport, created, status_changed, ticket_id, waldur_rig
from tests.sidecar.sync.test_inbound_engine import SIDECAR, chain_priority, hint, issue_key, msgs, run, support_key


async def open_pair(
    tmp_path: Path, rigs: list[Rig], sim: JiraSim, clock: ManualClock, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[Rig, InboundEngine]:
    """The rig and inbound engine over one Jira desk (through `transport`), ticket 1's issue created."""
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=transport)
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    settings = InboundSettings(strategy="on_chain_wins", idle_wait=999.0)
    auditor = Auditor(rig.store, clock=clock)
    engine = InboundEngine(
        [desk], rig.store, auditor, Metrics(), rig.retry, settings,
        sender=SIDECAR, key=support_key(), outbound_desks=["jira"], clock=clock,
    )  # fmt: skip
    await rig.chain(created(1))
    await rig.run_due()
    return rig, engine


async def base_of(rig: Rig, desk: str, name: str) -> str | None:
    rows = await rig.query(
        "SELECT base_value FROM field_state WHERE ticket_id = ? AND desk = ? AND field = ?", ticket_id(1), desk, name
    )
    return rows[0][0] if rows else None


def issue_requests(sim: JiraSim | WaldurSim, since: int) -> list[str]:
    """Method and path (query left out) of the simulator's requests on one issue after index `since`."""
    return [f"{r.method} {r.path}" for r in sim.requests[since:] if "/issue/" in r.path or "support-issues/" in r.path]


async def test_a_jira_edit_answer_is_the_read_back(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig, _ = await open_pair(tmp_path, rigs, sim, clock)
    _, key = await issue_key(rig)
    start = len(sim.requests)
    await chain_priority(rig, "urgent")
    await rig.run_due()
    assert issue_requests(sim, start) == [f"GET /rest/api/3/issue/{key}", f"PUT /rest/api/3/issue/{key}"]
    assert "returnIssue=true" in sim.requests[-1].query
    assert sim.issue(key).priority == "Highest"
    assert await base_of(rig, "jira", "priority") == "urgent"
    start = len(sim.requests)
    await chain_priority(rig, "urgent")  # an echo: the desk already holds it, nothing is sent
    await rig.run_due()
    assert issue_requests(sim, start) == [f"GET /rest/api/3/issue/{key}"]


async def test_an_agent_change_right_after_the_edit_is_left_to_inbound(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """The agent sets Low just after the sidecar's edit answered (the answer shows the chain's Highest): the base
    is the chain's value, so the agent's Low is a desk change that goes to the chain, not a conflict."""
    sim = make_jira_sim(clock=clock)
    tamper = TamperingTransport()
    rig, engine = await open_pair(tmp_path, rigs, sim, clock, transport=tamper)
    external_id, key = await issue_key(rig)

    def agent_after(body: bytes) -> bytes:
        sim.agent_update(key, priority="Low")
        return body

    tamper.rewrite("PUT", f"/rest/api/3/issue/{key}", agent_after)
    await chain_priority(rig, "urgent")
    await rig.run_due()
    assert tamper.tampered and sim.issue(key).priority == "Low"
    assert await base_of(rig, "jira", "priority") == "urgent", "the agent's value became the base"
    await hint(rig, external_id, "after-edit")
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low"]  # type: ignore[attr-defined]
    assert await rig.store.read("conflicts", list_conflicts, True, 10) == []


async def test_a_jira_that_answers_an_edit_without_the_issue_is_read_back(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    tamper = TamperingTransport()
    rig, _ = await open_pair(tmp_path, rigs, sim, clock, transport=tamper)
    _, key = await issue_key(rig)
    tamper.rewrite("PUT", f"/rest/api/3/issue/{key}", lambda body: b"", status=204)
    start = len(sim.requests)
    await chain_priority(rig, "urgent")
    await rig.run_due()
    issue = f"/rest/api/3/issue/{key}"
    assert issue_requests(sim, start) == [f"GET {issue}", f"PUT {issue}", f"GET {issue}"]
    assert await base_of(rig, "jira", "priority") == "urgent"


async def test_a_waldur_status_move_answer_is_the_read_back(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_waldur_sim(clock=clock)
    rig = await waldur_rig(tmp_path, rigs, sim, clock)
    start = len(sim.requests)
    await rig.chain(created(1))
    await rig.run_due()
    # created without a lookup (remote_id is unique), and the create's answer is the new issue: no read after it
    assert [r.split(" ")[0] for r in issue_requests(sim, start)] == ["POST"]
    assert await base_of(rig, "waldur", "status") == "open"
    [uuid] = [i.uuid.hex for i in sim.list_issues()]
    start = len(sim.requests)
    await rig.chain(status_changed(1, "open", "resolved"))
    await rig.run_due()
    path = f"/api/support-issues/{uuid}/"
    assert issue_requests(sim, start) == [f"GET {path}", f"POST {path}set_status/"]
    assert sim.issues[next(iter(sim.issues))].status == "Resolved"
    assert await base_of(rig, "waldur", "status") == "resolved"


async def test_a_value_waldur_refuses_queues_no_re_read(
    make_waldur_sim: Callable[..., WaldurSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """Waldur keeps its priority after create: the chain's new one goes into an internal note, and the read-back
    shows the priority the job's first read showed. Nothing moved at the desk during the job, so no re-read is
    queued (it would find the same, and its repair job would only post the same note check again); the base
    stays the value both sides last agreed on."""
    sim = make_waldur_sim(clock=clock, priorities=WALDUR_PRIORITIES)
    pairs = tuple((chain, desk) for desk, chain in CHAIN_PRIORITY.items())
    rig = await waldur_rig(tmp_path, rigs, sim, clock, priority_map=pairs)
    await rig.chain(created(1))
    await rig.run_due()
    assert await base_of(rig, "waldur", "priority") == "high"
    await chain_priority(rig, "urgent")
    await rig.run_due()
    [issue] = sim.list_issues()
    assert issue.priority == "High"
    assert ["Highest" in c.description for c in sim.comments_of(issue.uuid.hex)] == [True], "no note, or two"
    assert await rig.query("SELECT reason FROM inbound_queue") == []
    assert await base_of(rig, "waldur", "priority") == "high"


async def test_a_re_read_that_overlaps_an_outbound_job_at_the_issue_is_read_again_once_it_is_done(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """A desk read while the sidecar writes the issue may show one of its own hops (a Waldur status path has no
    actor to tell it by): the re-read is not decided then, but again after the job, with nothing lost."""
    sim = make_jira_sim(clock=clock)
    rig, engine = await open_pair(tmp_path, rigs, sim, clock)
    external_id, key = await issue_key(rig)
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "during-a-job")
    now = clock()
    await rig.store.write("a job writing the issue", lambda conn: conn.execute(
        "INSERT INTO jobs (dedupe_key, kind, desk, ticket_id, payload_json, state, next_run_at, created_at, updated_at)"
        " VALUES ('writing', 'update', 'jira', ?, '{}', 'running', ?, ?, ?)",
        (ticket_id(1), now, now, now),
    ))  # fmt: skip
    await run(engine)
    assert await msgs(rig) == [], "a read made while the sidecar wrote the issue was decided"
    assert await rig.query("SELECT state, last_error FROM inbound_queue") == [
        ("pending", "the sidecar was writing this issue while it was read")
    ]
    clock.advance(0.5)
    done = clock()
    await rig.store.write("the job done", lambda conn: conn.execute(
        "UPDATE jobs SET state = 'done', finished_at = ?, updated_at = ? WHERE dedupe_key = 'writing'", (done, done)
    ))  # fmt: skip
    clock.advance(1.0)  # the recheck is due; the job finished before this read began
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low"]  # type: ignore[attr-defined]
    assert await rig.query("SELECT COUNT(*) FROM inbound_queue") == [(0,)]
