"""The inbound engine on a real store against the Jira simulator: what the agent does at the desk becomes
the right Msgs, once, with echoes, internal comments and parked conflicts left out.

The outbound worker creates the desk issue first (so the ref, its claim and the field bases are what a
running sidecar would have); then the agent acts through the simulator's agent account and the engine
re-reads the issue. The chain is not involved here: the queued tx intents are decoded and checked (the
devnet tests, tests/sidecar/sync/test_inbound_e2e.py, land them on a real node).
"""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from virtengine.support.v1 import tx_pb2

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from sidecar.chain.envelope import EnvelopeKey
from sidecar.config_schema import ConflictStrategy
from sidecar.desks.jira import JiraDesk
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import Metrics
from sidecar.store.inbound import enqueue_issue_txn, list_conflicts, resolve_conflict_txn
from sidecar.store.intents import dead_letter_txn, record_included_txn, record_signed_txn
from sidecar.store.jobs import queue_update_job_txn
from sidecar.store.records import RequestUpdated
from sidecar.store.webhooks import Delivery, record_delivery_txn
from sidecar.sync.inbound import IN_FLIGHT_RECHECK_SECONDS, InboundEngine, InboundSettings
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.sync.rig import AGENT, Rig, created, ticket_id

SIDECAR = "virtengine1sidecar0000000000000000000000000000"
STATUS = {1: "open", 2: "assigned", 3: "in_progress", 4: "waiting_customer", 5: "waiting_support", 6: "resolved"}


def support_key() -> EnvelopeKey:
    return EnvelopeKey.from_base64(base64.b64encode(os.urandom(32)).decode())


async def open_pair(
    tmp_path: Path,
    rigs: list[Rig],
    sim: JiraSim,
    clock: ManualClock,
    strategy: ConflictStrategy = "on_chain_wins",
) -> tuple[Rig, InboundEngine]:
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    rig, engine = await engine_over(tmp_path, rigs, desk, clock, InboundSettings(strategy=strategy, idle_wait=999.0))
    await rig.chain(created(1))
    await rig.run_due()
    return rig, engine


async def engine_over(
    tmp_path: Path, rigs: list[Rig], desk: JiraDesk, clock: ManualClock, settings: InboundSettings, **rigged: Any
) -> tuple[Rig, InboundEngine]:
    """A rig (store and outbound worker; `rigged` its fields) over `desk`, and the inbound engine beside it."""
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock, **rigged)
    rigs.append(rig)
    engine = InboundEngine(
        [desk],
        rig.store,
        Auditor(rig.store, clock=clock),
        Metrics(),
        rig.retry,
        settings,
        sender=SIDECAR,
        key=support_key(),
        outbound_desks=["jira"],
        clock=clock,
    )
    return rig, engine


async def linked_issue(
    make_jira_sim: Callable[..., JiraSim],
    clock: ManualClock,
    rigs: list[Rig],
    tmp_path: Path,
    strategy: ConflictStrategy = "on_chain_wins",
) -> tuple[JiraSim, Rig, InboundEngine, str, str]:
    """A Jira simulator, the rig and engine over it, and a chain ticket's issue created by outbound:
    (sim, rig, engine, issue id, issue key)."""
    sim = make_jira_sim(clock=clock)
    rig, engine = await open_pair(tmp_path, rigs, sim, clock, strategy)
    external_id, key = await issue_key(rig)
    return sim, rig, engine, external_id, key


async def issue_key(rig: Rig) -> tuple[str, str]:
    [(external_id, key)] = await rig.query("SELECT external_id, external_key FROM external_refs")
    return str(external_id), str(key)


async def hint(rig: Rig, external_id: str, delivery: str) -> None:
    """A verified webhook delivery naming the issue, as the receiver records it."""
    row = Delivery("jira", delivery, "jira:issue_updated", external_id, delivery, "accepted")
    await rig.store.write("delivery", record_delivery_txn, row, None, rig.clock())


async def run(engine: InboundEngine) -> None:
    for _ in range(20):
        if await engine.step() > 0:
            return
    raise AssertionError("the engine never became idle")


async def msgs(rig: Rig) -> list[tuple[str, object]]:
    """Every inbound intent, in queue order: (type name, decoded Msg)."""
    rows = await rig.query("SELECT msg_type, msg_bytes FROM tx_intents WHERE dedupe_key LIKE 'inbound:%' ORDER BY id")
    decoded: list[tuple[str, object]] = []
    for msg_type, data in rows:
        name = str(msg_type).rsplit(".", 1)[-1]
        msg = getattr(tx_pb2, name)()
        msg.ParseFromString(data)
        decoded.append((name, msg))
    return decoded


async def test_an_agent_transition_becomes_status_updates_along_the_chain_table_once(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_transition(key, "Resolved")
    await hint(rig, external_id, "d-1")
    await hint(rig, external_id, "d-2")  # a duplicate hint for the same change
    await run(engine)
    found = await msgs(rig)
    assert [(n, STATUS[m.status], m.sender) for n, m in found] == [  # type: ignore[attr-defined]
        ("MsgUpdateSupportRequest", "in_progress", SIDECAR),
        ("MsgUpdateSupportRequest", "resolved", SIDECAR),
    ], "open -> resolved is not allowed on chain: it goes through in_progress"
    await rig.store.write("again", enqueue_issue_txn, "jira", external_id, "sweep", clock())
    await run(engine)
    assert len(await msgs(rig)) == 2, "a re-read of the same change queued it again"
    states = await rig.query("SELECT state FROM webhook_deliveries ORDER BY id")
    assert states == [("processed",), ("processed",)]


async def test_public_comments_are_sealed_once_and_internal_and_own_comments_stay(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_comment(key, "please reboot the node", public=True)
    sim.agent_comment(key, "customer looks confused", public=False)
    await hint(rig, external_id, "c-1")
    await run(engine)
    found = await msgs(rig)
    assert [n for n, _ in found] == ["MsgAddSupportResponse"]
    await hint(rig, external_id, "c-2")
    await run(engine)
    assert len(await msgs(rig)) == 1, "the same comment was sent twice"
    outcomes = sorted(r[0] for r in await rig.query("SELECT outcome FROM inbound_comments"))
    assert outcomes == ["internal", "sent"]
    audit = await rig.query("SELECT details_json FROM audit WHERE direction = 'inbound'")
    assert all("reboot" not in str(r[0]) and "confused" not in str(r[0]) for r in audit), "comment text in audit"


async def test_an_unlinked_issue_hint_is_recorded_and_ignored(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig, engine = await open_pair(tmp_path, rigs, sim, clock)
    await hint(rig, "99999", "u-1")
    await run(engine)
    assert await rig.query("SELECT state, reason FROM webhook_deliveries") == [
        ("ignored", "issue not linked to a chain ticket")
    ]
    assert await msgs(rig) == []


async def chain_priority(rig: Rig, priority: str) -> None:
    """The chain changes the ticket's priority (another agent's MsgUpdateSupportRequest)."""
    await chain_priority_by(rig, priority, AGENT)


async def chain_priority_by(rig: Rig, priority: str, sender: str, sequence: int = 10) -> None:
    """A MsgUpdateSupportRequest of `sender` changing the ticket's priority, committed at the next height."""
    event = RequestUpdated(
        event_id=f"updated-1-{priority}-{sequence}",
        event_type="support_request_updated",
        height=0,
        position=0,
        sequence=sequence,
        ticket_id=ticket_id(1),
        sender=sender,
        timestamp=int(rig.clock()),
        payload={},
        updated_by=sender,
        priority=priority,
        status="open",
        category="technical",
    )
    await rig.chain(event)


async def edit_priority_on_both_sides(rig: Rig, engine: InboundEngine, sim: JiraSim) -> str:
    """The chain moves high -> urgent (its job not run yet) while the agent moves the issue High -> Low; the
    engine then re-reads the issue. Returns the issue key."""
    external_id, key = await issue_key(rig)
    await chain_priority(rig, "urgent")
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "both-sides")
    await run(engine)
    return key


async def test_on_chain_wins_sets_the_desk_back_and_audits_hashes_not_values(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig, engine = await open_pair(tmp_path, rigs, sim, clock, "on_chain_wins")
    key = await edit_priority_on_both_sides(rig, engine, sim)
    assert await msgs(rig) == [], "the desk's value was sent although the chain wins"
    [conflict] = await rig.store.read("conflicts", list_conflicts, True, 10)
    assert (conflict.field, conflict.winner, conflict.state) == ("priority", "chain", "resolved")
    await rig.run_due()  # the outbound jobs (the chain event's and the repair) set the desk back
    assert sim.issue(key).priority == "Highest"
    [entry] = await rig.audit("conflict_resolved")
    assert entry["details"]["rule"] == "on_chain_wins"
    assert "urgent" not in str(entry) and "Low" not in str(entry) and "low" not in str(entry["details"])


async def test_manual_parks_the_field_until_an_operator_keeps_the_desk(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    rig, engine = await open_pair(tmp_path, rigs, sim, clock, "manual")
    key = await edit_priority_on_both_sides(rig, engine, sim)
    [conflict] = await rig.store.read("conflicts", list_conflicts, False, 10)
    assert conflict.state == "open" and conflict.winner is None
    await rig.run_due()  # outbound leaves the parked field alone
    assert sim.issue(key).priority == "Low", "outbound overwrote a parked field"
    await rig.store.write("resolve", resolve_conflict_txn, conflict.id, "desk", "ops", clock(), None)
    await run(engine)
    found = await msgs(rig)
    assert [(n, m.priority) for n, m in found] == [("MsgUpdateSupportRequest", "low")]  # type: ignore[attr-defined]


async def test_a_comment_past_the_chains_200_responses_is_audited_and_not_retried(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)

    def full(conn: sqlite3.Connection) -> None:  # the chain's mirror says the ticket has its 200 responses
        conn.execute("UPDATE tickets SET response_count = 200")

    await rig.store.write("full", full)
    sim.agent_comment(key, "one more thing", public=True)
    await hint(rig, external_id, "cap-1")
    await run(engine)
    await hint(rig, external_id, "cap-2")
    await run(engine)
    assert await msgs(rig) == []
    [entry] = await rig.audit("comment_not_synced")
    assert entry["details"]["reason"] == "response_cap_reached" and entry["status"] == "skipped"


async def test_a_desk_outage_pauses_re_reads_without_spending_attempts_and_they_resume(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_update(key, priority="Low")
    sim.faults.outage("503", 60.0)
    await hint(rig, external_id, "o-1")
    calls = []
    for _ in range(8):  # the desk is down for 60 s; the engine is stepped every 2 s of it
        await engine.step()
        calls.append(sim.request_count("GET", f"/rest/api/3/issue/{external_id}"))
        clock.advance(2.0)
    assert 1 <= calls[-1] < 8, f"the down desk was asked on every step (or never): {calls}"
    [(state, attempts)] = await rig.query("SELECT state, attempts FROM inbound_queue")
    assert (state, attempts) == ("pending", 0), "an outage spent attempts"
    clock.advance(120.0)  # the desk is back
    await run(engine)
    assert [(n, m.priority) for n, m in await msgs(rig)] == [  # type: ignore[attr-defined]
        ("MsgUpdateSupportRequest", "low")
    ]


async def test_a_field_seen_first_without_a_base_adopts_the_desk_value_and_sends_nothing(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """A ticket synced before inbound ran has no bases: what the sides last agreed on is unknown, so a desk
    value that differs from the chain is not sent (it may be a value the desk could never take, e.g. Waldur's
    fixed priority); it becomes the base and the chain's value is written back by outbound."""
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)

    def forget(conn: sqlite3.Connection) -> None:  # as a store written before inbound sync existed
        conn.execute("DELETE FROM field_state")

    await rig.store.write("forget", forget)
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "nb-1")
    await run(engine)
    assert await msgs(rig) == []
    [entry] = await rig.audit("field_base_adopted")
    assert entry["details"]["field"] == "priority"
    await rig.run_due()  # the repair job
    assert sim.issue(key).priority == "High"


async def land_inbound_intents(rig: Rig, height: int) -> None:
    """The signer's view: every queued inbound intent is in one tx, included at `height` (which the follower,
    and so the mirror, may not have reached yet)."""

    def land(conn: sqlite3.Connection) -> None:
        ids = [r[0] for r in conn.execute("SELECT id FROM tx_intents WHERE state = 'queued' ORDER BY id")]
        batch = record_signed_txn(conn, ids, f"TX{height}", b"tx", height, height + 100)
        record_included_txn(conn, batch, height)

    await rig.store.write("land", land)


async def test_a_change_included_before_the_mirror_holds_it_is_not_mistaken_for_a_conflict(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """The agent sets Low, then Medium. The first change's tx is included (the signer saw it) before the
    follower folded its block: the mirror still says high while the base already moved to low. Deciding the
    field then would find high vs low vs medium, a "conflict" that is only the first change's echo, and
    on_chain_wins would set the agent's Medium back (the SIGKILL chaos test caught it: a restarted follower
    lags the signer). It waits for the mirror instead; outbound leaves the field alone meanwhile; then the
    agent's Medium goes to the chain and stays at the desk."""
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "p-1")
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low"]  # type: ignore[attr-defined]
    landing = rig.height + 1
    await land_inbound_intents(rig, landing)
    sim.agent_update(key, priority="Medium")
    await hint(rig, external_id, "p-2")
    await run(engine)
    assert await rig.store.read("conflicts", list_conflicts, True, 10) == []
    assert len(await msgs(rig)) == 1, "the second change was decided before the first reached the mirror"
    [(state, reason)] = await rig.query("SELECT state, last_error FROM inbound_queue")
    assert state == "pending" and "previous change" in reason, "the re-read was dropped instead of deferred"
    await rig.store.write("repair", queue_update_job_txn, "repair-1", "jira", ticket_id(1), "test", clock())
    await rig.run_due()
    assert sim.issue(key).priority == "Medium", "outbound wrote the stale mirror over the agent's change"
    await chain_priority_by(rig, "low", SIDECAR)  # the first change's block, folded: its own outbound job runs
    assert rig.height == landing
    await rig.run_due()
    assert sim.issue(key).priority == "Medium", "the first change's echo overwrote the agent's second"
    clock.advance(IN_FLIGHT_RECHECK_SECONDS)
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low", "normal"]  # type: ignore[attr-defined]
    assert await rig.store.read("conflicts", list_conflicts, True, 10) == []


async def test_re_reads_wait_while_the_mirror_is_behind_the_chain_and_keep_their_hints(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """While the follower is behind (at start, after an outage) the mirror may lack a chain change: deciding a
    desk change then would see "the chain did not move" and send the desk's value over it, losing the conflict.
    The engine keeps the hint and decides once the follower has caught up."""
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    behind = True
    engine.chain_ready = lambda: not behind
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "w-1")
    await run(engine)
    assert await msgs(rig) == [], "a re-read was decided against a mirror behind the chain"
    assert await rig.query("SELECT state FROM inbound_queue") == [("pending",)]
    behind = False
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low"]  # type: ignore[attr-defined]


async def test_a_change_the_chain_refuses_for_good_is_set_back_at_the_desk(
    make_jira_sim: Callable[..., JiraSim],
    clock: ManualClock,
    rigs: list[Rig],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The agent sets Low; the chain refuses the Msg until the signer gives it up (dead: the chain's own
    refusal, e.g. a status transition the chain no longer allows because it moved meanwhile). The chain's
    value stands, so the desk is set back to it, once; before this the two sides disagreed until someone
    changed the field again (the 10-minute chaos run found a ticket left so)."""
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "refused-1")
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low"]  # type: ignore[attr-defined]
    await rig.run_due()
    assert sim.issue(key).priority == "Low", "outbound touched a field whose change was on its way"

    def refuse(conn: sqlite3.Connection) -> None:
        ids = [r[0] for r in conn.execute("SELECT id FROM tx_intents WHERE dedupe_key LIKE 'inbound:%'")]
        dead_letter_txn(conn, ids, 5, "invalid status transition", [], now=clock())

    await rig.store.write("refuse", refuse)
    await run(engine)  # the report sees the dead intent
    [entry] = await rig.audit("inbound_failed")
    assert entry["details"]["item"] == "priority"
    failed = [r.getMessage() for r in caplog.records if "sync failed" in r.getMessage()]  # the guide's grep
    assert failed == ["external callback sync failed: not accepted by the chain"]
    await rig.run_due()
    assert sim.issue(key).priority == "High", "the desk kept a value the chain refused"
    await run(engine)
    assert len(await rig.query("SELECT id FROM jobs WHERE dedupe_key LIKE 'inbound-refused:%'")) == 1


async def test_one_endpoints_burst_limit_defers_that_re_read_without_pausing_the_desk(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """Jira's burst 429 (RateLimit-Reason jira-burst-based) is one endpoint's limit: the re-read that met it
    waits out its Retry-After without spending an attempt, and the desk is not paused for the others."""
    sim, rig, engine, external_id, key = await linked_issue(make_jira_sim, clock, rigs, tmp_path)
    sim.agent_update(key, priority="Low")
    sim.faults.inject("429", method="GET", path=f"/rest/api/3/issue/{external_id}", retry_after=5)
    await hint(rig, external_id, "burst-1")
    await engine.step()
    assert sim.faults.fired_on("GET", f"/rest/api/3/issue/{external_id}", "429"), "the burst limit never answered"
    [(state, attempts, due)] = await rig.query("SELECT state, attempts, next_run_at FROM inbound_queue")
    assert (state, attempts) == ("pending", 0), "an endpoint's rate limit spent an attempt"
    assert due >= clock() + 5 - 0.01, "the re-read did not wait out the Retry-After"
    assert not engine.desk_paused("jira"), "one endpoint's limit paused the whole desk"
    clock.advance(6.0)
    await run(engine)
    assert [(n, m.priority) for n, m in await msgs(rig)] == [  # type: ignore[attr-defined]
        ("MsgUpdateSupportRequest", "low")
    ]


async def test_re_reads_keep_the_desks_max_concurrency_in_flight_refilling_freed_slots(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """Twelve hinted issues, six slots, 0.3 s per desk answer: one step runs them all (a slot a finished re-read
    frees is claimed again at once, not after the slowest of a batch), never more than six reads at a time."""
    latency, slots, issues = 0.3, 6, 12
    sim = make_jira_sim(clock=clock)
    config = jira_config(sim, requests_per_second=1000.0, max_concurrency=slots)  # the pace is not measured
    desk = JiraDesk(config, JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    settings = InboundSettings(desk_concurrency={"jira": slots}, idle_wait=999.0, step_span=30.0)
    rig, engine = await engine_over(tmp_path, rigs, desk, clock, settings)
    await rig.chain(*(created(n) for n in range(1, issues + 1)))
    await rig.run_due()
    refs = await rig.query("SELECT external_id FROM external_refs")
    assert len(refs) == issues
    for (external_id,) in refs:
        await hint(rig, str(external_id), f"w-{external_id}")
    sim.latency = latency
    with sim.lock:
        sim.requests.clear()
    rung: list[int] = []
    engine.on_worked = lambda: rung.append(engine.worked)
    await engine.step()
    assert await rig.query("SELECT COUNT(*) FROM inbound_queue") == [(0,)], "a re-read waited for another step"
    with sim.lock:
        reads = sorted(r.at for r in sim.requests if r.method == "GET" and "/issue/" in r.path)
    assert len(reads) >= issues
    in_flight = max(sum(1 for other in reads if start <= other < start + latency) for start in reads)
    assert in_flight == slots, f"{in_flight} reads at once"
    assert rung and rung[-1] == issues and len(rung) > 1, "the signer is woken as re-reads finish, not once at the end"


async def test_the_desks_own_change_back_from_the_chain_costs_that_desk_no_request(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, rigs: list[Rig], tmp_path: Path
) -> None:
    """The agent sets Low at Jira; the sidecar's Msg lands and its event comes back to every desk. Jira is
    known to hold the ticket's fields already (the bases its re-read set): that job finishes without asking
    Jira anything. The same values changed on chain by someone else still get a job that reads the desk."""
    sim = make_jira_sim(clock=clock)
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    settings = InboundSettings(idle_wait=999.0)
    rig, engine = await engine_over(tmp_path, rigs, desk, clock, settings, own_senders=(SIDECAR,))
    await rig.chain(created(1))
    await rig.run_due()
    external_id, key = await issue_key(rig)
    sim.agent_update(key, priority="Low")
    await hint(rig, external_id, "own-1")
    await run(engine)
    assert [m.priority for _, m in await msgs(rig)] == ["low"]  # type: ignore[attr-defined]
    await land_inbound_intents(rig, rig.height + 1)
    with sim.lock:
        sim.requests.clear()
    await chain_priority_by(rig, "low", SIDECAR)
    await rig.run_due()
    with sim.lock:
        asked = [f"{r.method} {r.path}" for r in sim.requests]
    assert asked == [], f"the origin desk was asked {asked}"
    assert [(j.kind, j.state) for j in await rig.jobs()][-1] == ("update", "done")
    synced = await rig.audit("ticket_synced")
    assert synced[-1]["status"] == "ok"
    # Someone else's change to the same values: the desk is read (and found holding them).
    await chain_priority_by(rig, "low", AGENT, sequence=11)
    await rig.run_due()
    with sim.lock:
        asked = [f"{r.method} {r.path}" for r in sim.requests]
    assert any(a.startswith("GET /rest/api/3/issue/") for a in asked), f"the desk was not read: {asked}"
    assert sim.issue(key).priority == "Low"
