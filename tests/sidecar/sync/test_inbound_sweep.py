"""The inbound sweep finds what no webhook announced, and its stored high-water mark survives a restart.

Real store, real desk clients, the simulators on loopback and wall-clock time (the sweep asks the desks
for changes since a time, and the simulators stamp changes with theirs). No webhook is delivered here:
everything the engine does, the sweep found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from virtengine.support.v1 import tx_pb2

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from sidecar.desks.base import Desk
from sidecar.desks.jira import JiraDesk
from sidecar.desks.waldur import WaldurDesk
from sidecar.errors import DeskError
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import Metrics
from sidecar.store.inbound import sweep_mark
from sidecar.store.pauses import PauseBook
from sidecar.sync.inbound import InboundEngine, InboundSettings
from sidecar.sync.sweep import Sweeper
from tests.sidecar.desks.support import JIRA_TOKEN, WALDUR_TOKEN, jira_config, waldur_config
from tests.sidecar.sync.rig import Rig, TamperingTransport, created, ticket_id
from tests.sidecar.sync.test_attach_in import bench, opened, pdf
from tests.sidecar.sync.test_inbound_engine import SIDECAR, STATUS, msgs, run, support_key

WALL = cast(ManualClock, time.time)  # the rig's clock type; the wall clock here


async def open_rig(
    tmp_path: Path, rigs: list[Rig], desk: Desk, pauses: PauseBook | None = None
) -> tuple[Rig, InboundEngine]:
    """A rig whose ticket 1 already has its issue at `desk`, and an inbound engine over it (honouring `pauses`)."""
    rig = await Rig.open(tmp_path / "sidecar.db", desk, WALL)
    rigs.append(rig)
    engine = InboundEngine(
        [desk],  # type: ignore[list-item]  # JiraDesk / WaldurDesk read changes back
        rig.store,
        Auditor(rig.store),
        Metrics(),
        rig.retry,
        InboundSettings(idle_wait=999.0),
        sender=SIDECAR,
        key=support_key(),
        outbound_desks=[desk.name],
        pauses=pauses,
    )
    await rig.chain(created(1))
    await rig.run_due()  # outbound sync creates the issue
    return rig, engine


def sweeper(rig: Rig, desk: Any) -> Sweeper:
    return Sweeper([desk], rig.store, interval=1.0)


async def test_a_jira_change_without_a_webhook_is_found_by_the_sweep_and_the_mark_survives_a_restart(
    make_jira_sim: Callable[..., JiraSim], rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim()
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig, engine = await open_rig(tmp_path, rigs, desk)
    [(issue_id, key)] = await rig.query("SELECT external_id, external_key FROM external_refs")
    sim.agent_transition(str(key), "In Progress")
    # Jira's index still shows the old `updated`: this sweep misses the change ...
    assert await sweeper(rig, desk).sweep(desk) == 0
    sim.flush_index()  # ... the index catches up; the next sweep reaches back past the lag and finds it
    before = time.time()
    assert await sweeper(rig, desk).sweep(desk) == 1
    await run(engine)
    assert [STATUS[m.status] for _, m in await msgs(rig)] == ["in_progress"]  # type: ignore[attr-defined]
    mark = await rig.store.read("mark", sweep_mark, "jira")
    assert mark is not None and before - 1 <= mark <= time.time()

    # "down" for a while: the agent re-prioritises; a new sweeper (a restart) starts from the stored mark
    sim.agent_update(str(key), priority="Highest")
    sim.flush_index()
    assert await sweeper(rig, desk).sweep(desk) == 1
    await run(engine)
    found = await msgs(rig)
    assert [m.priority for _, m in found[1:]] == ["urgent"]  # type: ignore[attr-defined]
    # the overlap lists it again, but the re-read already found that change: nothing is queued ...
    assert await sweeper(rig, desk).sweep(desk) == 0
    assert await rig.query("SELECT COUNT(*) FROM inbound_queue") == [(0,)]
    # ... until the desk shows a later one
    sim.agent_update(str(key), priority="Low")
    sim.flush_index()
    assert await sweeper(rig, desk).sweep(desk) == 1
    assert await rig.query("SELECT external_id, reason FROM inbound_queue") == [(str(issue_id), "sweep")]


async def test_a_waldur_comment_which_no_hook_announces_reaches_the_chain_by_polling(
    make_waldur_sim: Callable[..., WaldurSim], rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_waldur_sim()
    desk = WaldurDesk(waldur_config(sim), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig, engine = await open_rig(tmp_path, rigs, desk)
    await desk.check()  # learns the sidecar's own user, as the running app's health loop does
    [(uuid,)] = await rig.query("SELECT external_id FROM external_refs")
    async with httpx.AsyncClient(headers={"Authorization": f"Token {sim.agent_token}"}) as agent:
        for text, public in (("We are on it", True), ("internal: check the logs", False)):
            answer = await agent.post(
                f"{sim.api_url}/support-issues/{uuid}/comment/", json={"description": text, "is_public": public}
            )
            assert answer.status_code == 201, answer.text
    assert await sweeper(rig, desk).sweep(desk) == 1
    await run(engine)
    found = await msgs(rig)
    assert [n for n, _ in found] == ["MsgAddSupportResponse"]
    assert isinstance(found[0][1], tx_pb2.MsgAddSupportResponse) and found[0][1].sender == SIDECAR
    await rig.run_due()  # the sidecar's own notes at Waldur (none here) and nothing echoed
    assert await sweeper(rig, desk).sweep(desk) == 1
    await run(engine)
    assert len(await msgs(rig)) == 1, "the polled comment was sent twice"


async def test_a_waldur_attachment_whose_hook_is_lost_is_found_by_the_sweep_and_recorded_once(
    make_waldur_sim: Callable[..., WaldurSim], rigs: list[Rig], tmp_path: Path
) -> None:
    """#15: adding an attachment does not save the Waldur issue, so only the attachment listing finds it;
    a sweep whose listing fails keeps its mark; the overlap's second look records nothing twice."""
    sim = make_waldur_sim()
    tamper = TamperingTransport()
    desk = WaldurDesk(waldur_config(sim), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=tamper)
    b = await bench(tmp_path, rigs, desk, WALL)
    await desk.check()
    issue = sim.get_issue(b.issue.external_id)
    with sim.lock:  # the issue and its comments were last touched an hour ago: no listing names them now
        issue.modified -= timedelta(hours=1)
        for comment in sim.comments:
            comment.created -= timedelta(hours=1)
    sweep = sweeper(b.rig, desk)
    assert await sweep.sweep(desk) == 0
    mark = await b.rig.store.read("mark", sweep_mark, "waldur")
    assert mark is not None

    content = pdf(4096)
    att_uuid = sim.agent_attach(b.issue.external_id, "report.pdf", content)  # its attachment_created hook is lost
    assert sim.get_issue(b.issue.external_id).modified == issue.modified
    tamper.rewrite("GET", "/api/support-attachments/", lambda body: b'{"detail": "nope"}')
    with pytest.raises(DeskError):
        await sweep.sweep(desk)
    assert tamper.tampered
    assert await b.rig.store.read("mark", sweep_mark, "waldur") == mark, "the mark moved past an unread listing"

    assert await sweep.sweep(desk) == 1
    await b.run()
    assert [r[:4] for r in await b.rows()] == [("inbound", "done", None, att_uuid)]
    [(key, msg)] = await b.responses()
    assert key.endswith(":attachment:" + att_uuid) and msg.ticket_id == ticket_id(1)
    assert (await opened(b, msg))[1] == content, "the recorded file is not the agent's"
    later = await b.rig.store.read("mark", sweep_mark, "waldur")
    assert later is not None and later > mark

    assert await sweep.sweep(desk) == 1  # the overlap sees the file again ...
    await b.run()
    assert len(await b.rows()) == 1 and len(await b.responses()) == 1  # ... and records nothing new
    assert len(await b.rig.audit("attachment_synced")) == 1


async def test_a_jira_attachment_whose_hook_is_lost_is_found_through_the_issues_updated(
    make_jira_sim: Callable[..., JiraSim], rigs: list[Rig], tmp_path: Path
) -> None:
    """Jira needs no attachment poll (attachments_since is []): attaching bumps the issue's `updated`, so
    the JQL sweep finds it and the re-read records the file, once."""
    sim = make_jira_sim()
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    b = await bench(tmp_path, rigs, desk, WALL)
    before = sim.issue(b.issue.key).updated
    content = pdf(4096)
    att_id = sim.agent_attach(b.issue.key, "report.pdf", content, "application/pdf")  # no hook delivered
    assert sim.issue(b.issue.key).updated > before
    sim.flush_index()
    assert await desk.attachments_since(0.0) == []
    sweep = sweeper(b.rig, desk)
    assert await sweep.sweep(desk) == 1
    await b.run()
    assert [r[:4] for r in await b.rows()] == [("inbound", "done", None, att_id)]
    assert await sweep.sweep(desk) == 0  # the overlap lists the issue again; its re-read already saw the change
    await b.run()
    assert len(await b.rows()) == 1 and len(await b.responses()) == 1


async def test_a_sweep_the_desk_fails_is_logged_as_a_failed_sync_keeps_its_mark_and_runs_again_next_interval(
    make_jira_sim: Callable[..., JiraSim], rigs: list[Rig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = make_jira_sim()
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig, _ = await open_rig(tmp_path, rigs, desk)
    sim.agent_update(str((await rig.query("SELECT external_key FROM external_refs"))[0][0]), priority="Low")
    sim.flush_index()
    clock = ManualClock(time.time())
    sweeps = Sweeper([desk], rig.store, interval=60.0, clock=clock)
    sim.faults.inject("503", 50, path_contains="/search")
    assert await sweeps.step() == 60.0  # failed: the loop goes on, due again in one interval
    assert [f for f in sim.faults.fired if f.kind == "503"], "the desk's search never failed"
    failed = [r for r in caplog.records if "sync failed" in r.getMessage()]
    assert [(r.getMessage(), getattr(r, "desk", None)) for r in failed] == [
        ("inbound sync failed: sweep retried next interval", "jira")
    ]
    assert await rig.store.read("mark", sweep_mark, "jira") is None  # nothing skipped
    assert await rig.query("SELECT COUNT(*) FROM inbound_queue") == [(0,)]
    sim.faults.clear()
    assert 0 < await sweeps.step() <= 60.0  # not due yet: the desk is not asked
    assert await rig.query("SELECT COUNT(*) FROM inbound_queue") == [(0,)]
    clock.advance(60.0)
    await sweeps.step()
    assert await rig.query("SELECT COUNT(*) FROM inbound_queue") == [(1,)]
    assert len([r for r in caplog.records if "sync failed" in r.getMessage()]) == 1
