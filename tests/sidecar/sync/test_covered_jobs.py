"""A finished update job covers the ticket's later update and status jobs whose events its snapshot already
held: under a backlog the desk gets the ticket's latest state once, not every step replayed, and each covered
job is still finished and audited. A create or close queued between stops it; so does an event the snapshot
could not hold (past the inbox horizon the job was claimed at). And a worker fills a slot as soon as its job
finishes, so one slow desk call holds back no other job. Real store, Jira simulator on loopback, manual
clock; each test takes about a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waiting import async_wait_until
from sidecar.desks.jira import JiraDesk, ticket_label
from sidecar.observe.metrics import Metrics
from sidecar.store.jobs import Job, finish_covered_txn
from sidecar.store.records import RequestArchived, RequestUpdated, ResponseAdded
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.sync.rig import AGENT, Rig, created, status_changed, ticket_id


def priority_changed(priority: str, sequence: int) -> RequestUpdated:
    return RequestUpdated(
        event_id=f"updated-1-{sequence}",
        event_type="support_request_updated",
        height=0,
        position=0,
        sequence=sequence,
        ticket_id=ticket_id(1),
        sender=AGENT,
        timestamp=0,
        payload={},
        updated_by=AGENT,
        priority=priority,
    )


async def open_rig(tmp_path: Path, rigs: list[Rig], sim: JiraSim, clock: ManualClock) -> Rig:
    """A worker over one Jira desk, ticket 1's issue created."""
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    await rig.chain(created(1))
    await rig.run_due()
    return rig


async def pending(rig: Rig) -> list[Job]:
    return [job for job in await rig.jobs() if job.state == "pending"]


async def test_one_update_job_sends_the_latest_state_and_finishes_the_jobs_it_covered(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig = await open_rig(tmp_path, rigs, sim, clock)
    [(key,)] = await rig.query("SELECT external_key FROM external_refs")
    # three changes reach the mirror before the worker looks (a backlog): each queued its own job
    await rig.chain(priority_changed("low", 10))
    await rig.chain(priority_changed("urgent", 11))
    await rig.chain(status_changed(1, "open", "in_progress"))
    first, *later = await pending(rig)
    assert [first.kind] + [j.kind for j in later] == ["update", "update", "status"]
    start = len(sim.requests)

    await rig.run_due()

    issue = sim.issue(key)
    assert (issue.priority, issue.status) == ("Highest", "In Progress")
    issue_path = f"/rest/api/3/issue/{key}"
    assert [f"{r.method} {r.path}" for r in sim.requests[start:]] == [
        f"GET {issue_path}", f"PUT {issue_path}",  # read, then priority (the answer is the read-back)
        f"GET {issue_path}/transitions", f"POST {issue_path}/transitions", f"GET {issue_path}",  # status, read back
    ], "the covered jobs went to the desk again"  # fmt: skip
    assert {j.id: j.state for j in await rig.jobs() if j.id >= first.id} == {j.id: "done" for j in [first, *later]}
    covered = [a["details"] for a in await rig.audit("ticket_synced") if "covered_by" in a["details"]]
    assert covered == [{"job_id": j.id, "kind": j.kind, "covered_by": first.id} for j in later]


async def test_a_create_or_close_between_and_events_past_the_horizon_are_not_covered(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig = await open_rig(tmp_path, rigs, sim, clock)
    await rig.chain(priority_changed("low", 10))
    reply = ResponseAdded("reply-1", "support_response_added", 0, 0, 11, ticket_id(1), AGENT, 0, {}, "r1", AGENT, True)
    await rig.chain(reply)
    await rig.chain(priority_changed("urgent", 12))
    archived = RequestArchived("archived-1", "support_request_archived", 0, 0, 13, ticket_id(1), AGENT, 0, {}, AGENT)
    await rig.chain(archived)
    await rig.chain(priority_changed("medium", 14))
    update, comment, covered, close, after_close = await pending(rig)
    assert [j.kind for j in (update, comment, covered, close, after_close)] == [
        "update", "comment", "update", "close", "update"
    ]  # fmt: skip
    [(horizon,)] = await rig.query("SELECT MAX(id) FROM chain_inbox")

    def finish(at: int) -> Callable[..., list[tuple[int, str]]]:
        return lambda conn: finish_covered_txn(conn, update, at, clock())

    # claimed before the second update's event was stored: its snapshot cannot hold it
    assert await rig.store.write("cover", finish(int(covered.inbox_id or 0) - 1)) == []
    # the comment is passed over (it touches no field); the close is not, nor anything after it
    assert await rig.store.write("cover", finish(int(horizon))) == [(covered.id, "update")]
    states = {j.id: j.state for j in await rig.jobs()}
    assert [states[j.id] for j in (comment, covered, close, after_close)] == ["pending", "done", "pending", "pending"]


class HoldingTransport(httpx.AsyncBaseTransport):
    """Real HTTP to the simulator, except that the create of the issue carrying `label` waits for `release`."""

    def __init__(self, label: str) -> None:
        self._inner = httpx.AsyncHTTPTransport(retries=0)
        self._marker = label.encode()
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/rest/api/3/issue" and self._marker in request.content:
            self.held.set()
            await self.release.wait()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_slow_job_does_not_hold_back_the_jobs_claimed_with_it(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """Four slots, seven tickets, the first ticket's create held at the desk: the other six are created while it
    waits (a freed slot is filled at once), where a batch that waited for its slowest job would stop at three."""
    sim = make_jira_sim(clock=clock, search_delay=0)
    hold = HoldingTransport(ticket_label(created(1).ticket_number))
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=hold)
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    rigs.append(rig)
    await rig.chain(*(created(n) for n in range(1, 8)))
    assert rig.worker is not None
    step = asyncio.create_task(rig.worker.step())
    try:
        await asyncio.wait_for(hold.held.wait(), 20)
        await async_wait_until(lambda: len(sim.issues) == 6, timeout=20, what="six issues besides the held one")
        assert not step.done(), "the step returned before its held job finished"
    finally:
        hold.release.set()
        await asyncio.wait_for(step, 20)
    await rig.run_due()
    assert {j.state for j in await rig.jobs()} == {"done"}
    assert len(sim.issues) == 7
