"""Outbound sync end to end: the real node, the sidecar, and both desk simulators (contracts validated).

Every ticket must end up exactly once at each desk, with its fields, comments and status. Jira's search
lags behind its writes here as it does in production (JIRA_SEARCH_LAG), so a retried create cannot lean
on an instantly consistent index.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.jira_sim import JiraSim
from devnet.sim_faults import APPLIED_KINDS, FAULT_KINDS, FaultPlan
from devnet.waiting import async_wait_until
from devnet.waldur_sim import WaldurSim
from sidecar.config_schema import WaldurConfig
from sidecar.desks.base import text_marker
from tests.sidecar.chain.scan import support_secret
from tests.sidecar.chain.signer_kit import db_counts
from tests.sidecar.harness import app_flags, cursor_height, read_rows, running_app
from tests.sidecar.process import SidecarProcess

pytestmark = pytest.mark.node
RECIPIENTS = [DevAccount.from_name("customer").box_public, DevAccount.from_name("sidecar").box_public]
JIRA_CREATE = "/rest/api/3/issue"
JSM_CREATE = "/rest/servicedeskapi/request"
WALDUR_CREATE = "/api/support-issues/"
# Seconds before Jira's search sees a write. Atlassian documents search as eventually consistent (hence the
# `reconcileIssues` parameter of POST /rest/api/3/search/jql); a few seconds of index lag is common.
JIRA_SEARCH_LAG = 5.0


@pytest.fixture
def jira_sim(make_jira_sim: Callable[..., JiraSim]) -> JiraSim:
    """The Jira simulator with a realistic search lag (overrides the plugin's instant-index fixture)."""
    return make_jira_sim(search_delay=JIRA_SEARCH_LAG)


def desk_env(jira: JiraSim, waldur: WaldurSim | None) -> dict[str, str]:
    env = {
        "VIRTENGINE_SERVICEDESK_SUPPORT_PRIVATE_KEY": support_secret(),
        "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": str(jira.api_token),
        "VIRTENGINE_SERVICEDESK_WEBHOOK_REQUIRE_SIGNATURE": "false",
    }
    if waldur is not None:
        env["VIRTENGINE_SERVICEDESK_WALDUR_TOKEN"] = str(waldur.token)
    return env


def desk_flags(tmp_path: Path, node: DevnetNode, jira: JiraSim, waldur: WaldurSim | None, **extra: object
               ) -> dict[str, object]:
    flags: dict[str, object] = {
        "chain.start_height": "1", "jira.base_url": jira.base_url, "jira.username": jira.email,
        "jira.account_id": jira.me.account_id, "sync.allow_insecure_http": "true",
        "retry.initial_backoff": "100ms", "retry.max_backoff": "2s", "retry.max_retries": "30",
        "jira.requests_per_second": "200", "jira.max_concurrency": "8",
        # Twice the simulator's search lag: a lost create is re-sent only once search would show it.
        "jira.index_lag": f"{2 * JIRA_SEARCH_LAG:g}s",
    }
    if waldur is not None:
        flags.update({"waldur.base_url": waldur.api_url, "waldur.organization_uuid": next(iter(waldur.customers)).hex,
                      "waldur.requests_per_second": "200", "waldur.max_concurrency": "8"})
    flags.update(extra)
    return app_flags(tmp_path, node.rpc_url, **flags)


def jobs_left(db: Path, height: int) -> int:
    """Desk work still to do, or -1 while the follower has not yet read the chain up to `height`."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        cursor = conn.execute("SELECT height FROM cursor").fetchone()
        if cursor is None or cursor[0] < height:
            return -1
        pending = conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
        inbox = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
        return int(pending) + int(inbox)
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


def dead_jobs(db: Path) -> list[tuple[str, str]]:
    return read_rows(db, "SELECT kind, last_error FROM jobs WHERE state = 'dead'")


async def drive_tickets(node: DevnetNode, count: int) -> tuple[list[str], set[str]]:
    """Create tickets; the agent answers every third and moves every fifth to in_progress."""

    def run() -> tuple[list[str], set[str]]:
        with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as customer:
            ids = customer.create_tickets(count, RECIPIENTS, per_tx=25)
        with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as agent:  # a tx per change, few blocks
            replies = [[agent.reply_msg(tid, f"Looking into {tid}", RECIPIENTS)] for tid in ids[::3]]
            agent.send_pipelined([*replies, *([agent.update_msg(tid, status="in_progress")] for tid in ids[::5])])
        return ids, set(ids[::3])

    return await asyncio.to_thread(run)


async def settled(db: Path, node: DevnetNode, timeout: float) -> None:
    """Wait until the sidecar has read every block committed so far and finished every desk job."""
    height = await asyncio.to_thread(node.height)

    async def done() -> bool:
        return await asyncio.to_thread(jobs_left, db, height) == 0

    await async_wait_until(done, timeout=timeout, what="every desk job to finish")


JIRA_STATUS = {"open": "Open", "assigned": "In Progress", "in_progress": "In Progress",
               "waiting_customer": "Waiting for Customer", "waiting_support": "Waiting for Support",
               "resolved": "Resolved", "closed": "Closed", "archived": "Closed"}


def mirror(db: Path) -> dict[str, tuple[str, str]]:
    """ticket id -> (ticket number, current chain status), from the sidecar's mirror."""
    return {r[0]: (r[1], r[2]) for r in read_rows(db, "SELECT ticket_id, ticket_number, status FROM tickets")}


def assert_jira_exactly_once(jira: JiraSim, db: Path, ids: list[str], answered: set[str]) -> None:
    issues = jira.list_issues()
    assert len(issues) == len(ids), f"{len(issues)} Jira issues for {len(ids)} tickets"
    by_label = {label: issue for issue in issues for label in issue.labels if label.startswith("ve-sup-")}
    assert len(by_label) == len(ids), "a ticket has two Jira issues, or one has none"
    tickets = mirror(db)
    for tid in ids:
        number, status = tickets[tid]
        label = "ve-" + number.lower()
        assert jira.creates_for_label(label) == 1, f"{label} was created {jira.creates_for_label(label)} times"
        issue = by_label[label]
        assert issue.summary.startswith(f"[{number}] devnet ticket"), issue.summary
        assert issue.status == JIRA_STATUS[status], (tid, issue.status, status)
        assert len(issue.comments) == (1 if tid in answered else 0), (tid, len(issue.comments))


WALDUR_STATUS = dict(WaldurConfig().status_map)
WALDUR_PRIORITY = dict(WaldurConfig().priority_map)
WALDUR_DEFAULT_PRIORITY = WaldurConfig().default_priority
WALDUR_TYPE = dict(WaldurConfig().type_map)


def mirror_rows(db: Path) -> dict[str, dict[str, str]]:
    """ticket id -> the sidecar mirror's row (number, status, priority, category)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT ticket_id, ticket_number, status, priority, category FROM tickets")
        return {r["ticket_id"]: dict(r) for r in rows}
    finally:
        conn.close()


def assert_waldur_exactly_once(waldur: WaldurSim, db: Path, ids: list[str], answered: set[str]) -> None:
    """One issue per ticket with the ticket's fields; every comment and note posted once."""
    assert ids, "no tickets to check"
    assert len(waldur.list_issues()) == len(ids), f"{len(waldur.list_issues())} Waldur issues for {len(ids)} tickets"
    tickets = mirror_rows(db)
    for tid in ids:
        found = waldur.by_remote_id(f"virtengine:{tid}")
        assert len(found) == 1, (tid, len(found))
        issue, row = found[0], tickets[tid]
        assert issue.summary.startswith(f"[{row['ticket_number']}] devnet ticket"), issue.summary
        assert f"Ticket ID: {tid}" in issue.description
        wanted = WALDUR_PRIORITY.get(row["priority"], WALDUR_DEFAULT_PRIORITY)
        assert issue.priority == wanted, (tid, issue.priority, row["priority"])
        assert issue.type == WALDUR_TYPE[row["category"]], (tid, issue.type, row["category"])
        texts = [c.description for c in waldur.comments_of(issue.uuid)]
        assert len(texts) == len(set(texts)), f"{tid}: a comment was posted twice"
        markers = [m for m in (text_marker(t) for t in texts) if m is not None]
        assert len(markers) == len(texts), f"{tid}: a comment without the sidecar's marker"
        replies = [t for t in texts if " wrote:" in t]
        assert len(replies) == (1 if tid in answered else 0), (tid, len(replies))
        status_notes = [m for m in markers if m.startswith("status:")]
        if WALDUR_STATUS[row["status"]] == issue.status:
            assert status_notes == [] or status_notes[-1] == f"status:{row['status']}", (tid, status_notes)
        else:  # Waldur's API cannot set the status: the newest note must state the chain's
            assert status_notes and status_notes[-1] == f"status:{row['status']}", (tid, status_notes, row["status"])


async def test_tickets_reach_both_desks_exactly_once(
    devnet_node: DevnetNode, jira_sim: JiraSim, waldur_sim: WaldurSim, tmp_path: Path
) -> None:
    async with running_app(desk_flags(tmp_path, devnet_node, jira_sim, waldur_sim), desk_env(jira_sim, waldur_sim)):
        ids, answered = await drive_tickets(devnet_node, 500)
        await settled(tmp_path / "sidecar.db", devnet_node, timeout=600)
    assert dead_jobs(tmp_path / "sidecar.db") == []
    assert_jira_exactly_once(jira_sim, tmp_path / "sidecar.db", ids, answered)
    assert_waldur_exactly_once(waldur_sim, tmp_path / "sidecar.db", ids, answered)
    conn = sqlite3.connect(tmp_path / "sidecar.db")
    done = conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchone()[0]
    conn.close()
    assert len(audit_rows(tmp_path / "sidecar.db", "ticket_synced")) == done  # every sync is audited


def lossy_faults(seed: int) -> FaultPlan:
    """Random faults of every kind, before and after the desk applies a request; a held answer outlasts the
    sidecar's 1 s client timeout."""
    return FaultPlan(probability=0.3, kinds=FAULT_KINDS, seed=seed, hang_seconds=3.0)


def script_lost_creates(plan: FaultPlan, path: str) -> None:
    """The next creates are applied by the desk and their answers lost (dropped, then held too long)."""
    for kind in APPLIED_KINDS:
        plan.inject(kind, count=2, method="POST", path=path)


def assert_lost_creates(plan: FaultPlan, path: str) -> None:
    """The desk applied creates whose answers the sidecar never got: the case a retried create must survive."""
    lost = {a.kind for a in plan.lost_on("POST", path, 201)}
    assert lost == set(APPLIED_KINDS), f"creates applied with their answer lost on {path}: {lost}"


async def test_faults_and_rate_limits_lose_and_duplicate_nothing(
    devnet_node: DevnetNode, make_jira_sim: Callable[..., JiraSim], make_waldur_sim: Callable[..., WaldurSim],
    tmp_path: Path
) -> None:
    jira = make_jira_sim(faults=lossy_faults(7), rate_per_second=40.0, burst=10, search_delay=JIRA_SEARCH_LAG)
    waldur = make_waldur_sim(faults=lossy_faults(8), rate_per_second=40.0, burst=10)
    script_lost_creates(jira.faults, JIRA_CREATE)
    script_lost_creates(waldur.faults, WALDUR_CREATE)
    db = tmp_path / "sidecar.db"
    flags = desk_flags(tmp_path, devnet_node, jira, waldur, **{"jira.timeout": "1s", "waldur.timeout": "1s"})
    async with running_app(flags, desk_env(jira, waldur)):
        ids, answered = await drive_tickets(devnet_node, 40)
        await settled(db, devnet_node, timeout=400)
    assert dead_jobs(db) == []
    assert {f.kind for f in jira.faults.fired} == set(FAULT_KINDS)
    assert {f.kind for f in waldur.faults.fired} == set(FAULT_KINDS)
    assert_lost_creates(jira.faults, JIRA_CREATE)
    assert_lost_creates(waldur.faults, WALDUR_CREATE)
    assert_jira_exactly_once(jira, db, ids, answered)
    assert_waldur_exactly_once(waldur, db, ids, answered)


async def test_crash_between_desk_answer_and_local_record_makes_no_duplicate(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None)
    args = ["run"]
    env: dict[str, Any] = {**desk_env(jira_sim, None), "SIDECAR_TEST_CRASH_POINT": "after_desk_create"}
    env.update({_env(k): str(v) for k, v in flags.items()})
    ids, _ = await drive_tickets(devnet_node, 3)
    crashing = SidecarProcess(args, env, cwd=tmp_path)
    try:
        code = await asyncio.to_thread(crashing.proc.wait, 60)
    finally:
        crashing.close()
    assert code == -9, "the crash point did not fire"
    # The desk has issues the sidecar never recorded (jobs of several tickets run concurrently).
    assert len(jira_sim.list_issues()) >= 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM external_refs").fetchone()[0] == 0
    conn.close()
    env.pop("SIDECAR_TEST_CRASH_POINT")
    proc = SidecarProcess(args, env, cwd=tmp_path)
    try:
        proc.wait_for_log("started")
        await settled(db, devnet_node, timeout=120)
        assert proc.terminate() == 0
    finally:
        proc.close()
    assert_jira_exactly_once(jira_sim, db, ids, {ids[0]})


def _env(path: str) -> str:
    from sidecar.config import KEYS_BY_PATH

    return KEYS_BY_PATH[path].env


def audit_rows(db: Path, event_type: str) -> list[tuple[str | None, str | None, str]]:
    sql = "SELECT ticket_id, error, details_json FROM audit WHERE event_type = ? ORDER BY id"
    return read_rows(db, sql, (event_type,))


async def wait_dead(db: Path, count: int, app: Any) -> list[tuple[str, str]]:
    async def dead() -> list[tuple[str, str]] | None:
        rows = await asyncio.to_thread(dead_jobs, db)
        return rows if len(rows) >= count else None

    try:
        return await async_wait_until(dead, timeout=90, what=f"{count} dead-lettered job(s)")
    except AssertionError as exc:
        async with httpx.AsyncClient() as client:
            verbose = (await client.get(f"http://127.0.0.1:{app.web_port}/webhooks/health?verbose=1")).text
        raise AssertionError(f"{exc}; sidecar health: {verbose}") from None


async def test_a_desk_down_past_the_retry_budget_is_caught_up_when_it_returns(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    """An outage well over the whole retry budget (5 retries at 0.25, 0.5, 1, 2, 2 s backoff: under 6 s; the
    guide's policy, 1 s to 10 s, spends 25 s the same way) spends no attempts: every job lands once the desk is
    back. The jobs wait on the desk's health probe, not on their attempts, so the budget's size is not what holds
    them; a small one keeps the outage, and the test, short."""
    jira_sim.faults.outage("503", 15.0)
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{
        "retry.max_retries": "5", "retry.initial_backoff": "250ms", "retry.max_backoff": "2s"})
    async with running_app(flags, desk_env(jira_sim, None)) as app:
        ids, answered = await drive_tickets(devnet_node, 20)

        async def desk_unhealthy() -> bool:
            return (await app_health(app))["jira_status"] == "unhealthy"

        await async_wait_until(desk_unhealthy, timeout=60, what="health to report the desk down")
        await async_wait_until(lambda: not jira_sim.faults.in_outage(), timeout=180,
                               what="the outage to run its course")
        assert dead_jobs(tmp_path / "sidecar.db") == []
        await settled(tmp_path / "sidecar.db", devnet_node, timeout=120)
        assert (await app_health(app))["jira_status"] == "healthy"
    assert dead_jobs(tmp_path / "sidecar.db") == []
    assert_jira_exactly_once(jira_sim, tmp_path / "sidecar.db", ids, answered)
    probes_during_outage = len(jira_sim.faults.fired)
    assert probes_during_outage < 100, f"{probes_during_outage} requests hammered a desk that was down"


async def app_health(app: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        doc: dict[str, Any] = (await client.get(f"http://127.0.0.1:{app.web_port}/webhooks/health", timeout=5)).json()
    return doc


async def test_an_unreachable_status_is_audited_and_its_job_finished(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{
        "jira.status_map": "open=Open,waiting_customer=Blocked by Legal,in_progress=In Progress"})
    db = tmp_path / "sidecar.db"
    async with running_app(flags, desk_env(jira_sim, None)):
        await asyncio.to_thread(_create_and_answer, devnet_node)  # the reply moves it to waiting_customer
        await settled(db, devnet_node, timeout=90)  # every job finishes: none is retried or dead-lettered
    assert dead_jobs(db) == []
    unreachable = audit_rows(db, "status_unreachable")
    assert unreachable, "the unreachable status was not audited"
    for _, error, details in unreachable:
        assert "to 'Blocked by Legal'" in (error or "") and "available:" in (error or "")
        assert '"target_status":"Blocked by Legal"' in details and '"available_transitions":[' in details


def _create_and_answer(node: DevnetNode) -> None:
    with ChainDriver(node.rpc_url, DevAccount.from_name("customer")) as customer:
        (tid,) = customer.create_tickets(1, RECIPIENTS)
    with ChainDriver(node.rpc_url, DevAccount.from_name("agent")) as agent:
        agent.reply(tid, "Please send the logs.", RECIPIENTS)


async def test_unknown_priority_uses_the_default_and_is_audited(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{
        "jira.priority_map": "low=Low,high=High", "jira.default_priority": "Medium"})
    db = tmp_path / "sidecar.db"
    async with running_app(flags, desk_env(jira_sim, None)):
        await drive_tickets(devnet_node, 2)  # bulk tickets have priority "normal": not in the map
        await settled(db, devnet_node, timeout=60)
    assert {issue.priority for issue in jira_sim.list_issues()} == {"Medium"}
    unmapped = audit_rows(db, "field_unmapped")
    assert unmapped and all('"chain_value":"normal"' in d and '"used":"Medium"' in d for _, _, d in unmapped)


async def test_a_revoked_token_holds_the_queue_until_it_is_fixed_without_leaking_it(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    env = desk_env(jira_sim, None)  # the sidecar holds the token the operator configured...
    jira_sim.revoke_token()  # ...which Jira no longer accepts
    async with running_app(desk_flags(tmp_path, devnet_node, jira_sim, None), env) as app:
        ids, answered = await drive_tickets(devnet_node, 1)

        async def refused() -> bool:
            return (await app_health(app))["jira_status"] == "unauthorized"

        await async_wait_until(refused, timeout=60, what="health to report the desk unauthorized")

        def waiting() -> list[tuple[str, int, str]]:
            return read_rows(db, "SELECT state, attempts, COALESCE(last_error, '') FROM jobs WHERE desk = 'jira'")

        async def job_refused() -> list[tuple[str, int, str]] | None:
            rows = await asyncio.to_thread(waiting)
            return rows if any("401" in error for _, _, error in rows) else None

        rows = await async_wait_until(job_refused, timeout=60, what="a job refused with 401")
        assert all(state in ("pending", "running") and attempts == 0 for state, attempts, _ in rows), rows
        assert all("jira-test-token" not in error for _, _, error in rows)
        assert dead_jobs(db) == []
        async with httpx.AsyncClient() as client:
            base = f"http://127.0.0.1:{app.web_port}"
            metrics = (await client.get(f"{base}/metrics", timeout=5)).text
            verbose = (await client.get(f"{base}/webhooks/health?verbose=1", timeout=5)).json()
        assert 'servicedesk_desk_auth_failed{desk="jira"} 1.0' in metrics
        assert "401" in verbose["problems"]["jira_auth"] and "jira-test-token" not in str(verbose)

        jira_sim.set_token("jira-test-token")  # the operator fixed the token: the queue drains by itself
        await settled(db, devnet_node, timeout=90)
        assert dead_jobs(db) == []
        assert (await app_health(app))["jira_status"] == "healthy"
    assert_jira_exactly_once(jira_sim, db, ids, answered)
    conn = sqlite3.connect(db)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "jira-test-token" not in dump


async def test_new_desk_refs_are_registered_on_chain_by_the_signer(
    devnet_node: DevnetNode, jira_sim: JiraSim, waldur_sim: WaldurSim, tmp_path: Path
) -> None:
    import hashlib

    env = {**desk_env(jira_sim, waldur_sim),
           "VIRTENGINE_SERVICEDESK_SIGNING_KEY": hashlib.sha256(b"devnet-account:sidecar").hexdigest()}
    db = tmp_path / "sidecar.db"
    async with running_app(desk_flags(tmp_path, devnet_node, jira_sim, waldur_sim), env) as app:
        ids, _ = await drive_tickets(devnet_node, 20)
        await settled(db, devnet_node, timeout=120)

        async def registered() -> bool:
            # Two observers, each in its own time: the follower sees the link events in blocks, the signer
            # learns its txs' fate from its subscription or its settle pass (a block or two apart).
            rows = await asyncio.to_thread(_refs, db)
            states = await asyncio.to_thread(db_counts, db)
            return len(rows) == 40 and all(on_chain for _, _, on_chain in rows) and states == {"included": 40}

        await async_wait_until(registered, timeout=120, what="every desk ref linked on chain, its intent included")
        port = app.grpc_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            listed = await control_pb2_grpc.ControlStub(channel).ListTxIntents(
                control_pb2.ListTxIntentsRequest(state="included", limit=100))
    rows = _refs(db)
    assert {(t, d) for t, d, _ in rows} == {(t, d) for t in ids for d in ("jira", "waldur")}
    conn = sqlite3.connect(db)
    linked = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE event_type = 'support_external_ticket_linked'"
                          ).fetchone()[0]
    conn.close()
    assert db_counts(db) == {"included": 40}  # and still so after the sidecar stopped
    assert len(listed.intents) == 40
    assert all(i.tx_hash and i.height > 0 and i.msg_type == "MsgRegisterExternalTicket" for i in listed.intents)
    assert linked == 40  # each ref registered exactly once, seen back through the follower


def _refs(db: Path) -> list[tuple[str, str, int]]:
    return read_rows(db, "SELECT ticket_id, desk, registered_on_chain FROM external_refs")


async def test_follower_pauses_while_the_queue_is_full_and_resumes_when_it_drains(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    jira_sim.faults.inject("503", count=100_000)  # the desk is down: nothing drains
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{"sync.max_pending": "30"})
    async with running_app(flags, desk_env(jira_sim, None)) as app:
        ids, answered = await drive_tickets(devnet_node, 60)

        async def paused() -> str | None:
            async with httpx.AsyncClient() as client:
                doc = (await client.get(f"http://127.0.0.1:{app.web_port}/webhooks/health?verbose=1")).json()
            problem: str | None = doc["problems"].get("backpressure")
            return problem

        problem = await async_wait_until(paused, timeout=60, what="the follower to pause")
        assert "(max 30)" in problem
        stalled = await asyncio.to_thread(cursor_height, db)
        assert await asyncio.to_thread(_desk_backlog, db) >= 30
        # Work lands above the stalled cursor, and the chain moves on well past it: a follower that was
        # merely slow would read some of it; a paused one reads none, as long as the queue stays full.
        more, more_answered = await drive_tickets(devnet_node, 5)
        landed = await asyncio.to_thread(devnet_node.height)
        assert landed > stalled
        await asyncio.to_thread(devnet_node.wait_for_height, landed + 10)
        assert await asyncio.to_thread(cursor_height, db) == stalled, "the cursor moved while the queue was full"
        assert await asyncio.to_thread(_desk_backlog, db) >= 30

        async def lag_shown() -> bool:  # the lag gauge keeps up with the head while the cursor stands
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{app.web_port}/metrics")).text
            lag = [line for line in text.splitlines() if line.startswith("servicedesk_follower_lag_blocks ")]
            return bool(lag) and float(lag[0].split()[1]) >= landed + 10 - stalled

        await async_wait_until(lag_shown, timeout=30, what="the lag gauge to show the paused follower's lag")
        assert "(max 30)" in (await paused() or "")
        jira_sim.faults.clear()
        await async_wait_until(lambda: _cursor_at_least(db, landed), timeout=120, what="the follower to resume")
        await settled(db, devnet_node, timeout=180)

        async def unpaused() -> bool:  # cleared by the follower's next step, which may come after `settled`
            return await paused() is None

        await async_wait_until(unpaused, timeout=30, what="the backpressure problem to clear once drained")
    assert dead_jobs(db) == []
    assert_jira_exactly_once(jira_sim, db, ids + more, answered | more_answered)


def _desk_backlog(db: Path) -> int:
    """What holds the follower back: inbox events not yet turned into jobs, and the Jira jobs not yet done."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        inbox = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
        jobs = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE desk = 'jira' AND state IN ('pending', 'running')").fetchone()[0]
        return int(inbox) + int(jobs)
    finally:
        conn.close()


async def _cursor_at_least(db: Path, height: int) -> bool:
    return await asyncio.to_thread(cursor_height, db) >= height


async def test_assignee_follows_the_chain_where_the_agent_is_mapped(
    devnet_node: DevnetNode, jira_sim: JiraSim, waldur_sim: WaldurSim, tmp_path: Path
) -> None:
    agent, sidecar = DevAccount.from_name("agent"), DevAccount.from_name("sidecar")
    jira_sim.add_user("5b10ac8d82e05b22cc7d4ef5", "Devnet Agent")
    waldur_user = waldur_sim.add_support_user("Devnet Agent")
    flags = desk_flags(tmp_path, devnet_node, jira_sim, waldur_sim, **{
        "jira.assignee_map": f"{agent.address}=5b10ac8d82e05b22cc7d4ef5",
        "waldur.assignee_map": f"{agent.address}={waldur_user.hex}"})
    db = tmp_path / "sidecar.db"

    def drive() -> list[str]:
        with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer")) as customer:
            ids = customer.create_tickets(2, RECIPIENTS)
        with ChainDriver(devnet_node.rpc_url, agent) as driver:
            driver.update(ids[0], assigned_agent=agent.address)
            driver.update(ids[1], assigned_agent=sidecar.address)  # an agent nobody mapped
        return ids

    async with running_app(flags, desk_env(jira_sim, waldur_sim)):
        mapped, unmapped = await asyncio.to_thread(drive)
        await settled(db, devnet_node, timeout=120)
    assert dead_jobs(db) == []
    numbers = {tid: number for tid, (number, _) in mirror(db).items()}
    by_label = {label: issue for issue in jira_sim.list_issues() for label in issue.labels}
    assert by_label["ve-" + numbers[mapped].lower()].assignee == "5b10ac8d82e05b22cc7d4ef5"
    assert by_label["ve-" + numbers[unmapped].lower()].assignee is None
    (waldur_mapped,) = waldur_sim.by_remote_id(f"virtengine:{mapped}")
    (waldur_unmapped,) = waldur_sim.by_remote_id(f"virtengine:{unmapped}")
    assert waldur_mapped.assignee_uuid == waldur_user and waldur_unmapped.assignee_uuid is None
    unmapped_rows = [d for _, _, d in audit_rows(db, "field_unmapped") if '"field":"assignee"' in d]
    assert unmapped_rows and all(sidecar.address in d for d in unmapped_rows)


async def test_jsm_request_type_creates_customer_requests_exactly_once(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    jira_sim.add_request_type("7", "25", "Service Request")
    script_lost_creates(jira_sim.faults, JSM_CREATE)  # requests JSM made but whose answers were lost
    # A held answer outlasts the client's timeout (2 s here, so the lost create is noticed without a 30 s wait).
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None, **{
        "jira.service_desk_id": "7", "jira.request_type_id": "25", "jira.timeout": "2s"})
    db = tmp_path / "sidecar.db"
    async with running_app(flags, desk_env(jira_sim, None)):
        ids, answered = await drive_tickets(devnet_node, 6)
        await settled(db, devnet_node, timeout=120)
    assert dead_jobs(db) == []
    assert_lost_creates(jira_sim.faults, JSM_CREATE)
    assert_jira_exactly_once(jira_sim, db, ids, answered)
    assert {issue.request_type_id for issue in jira_sim.list_issues()} == {"25"}


async def test_agent_internal_notes_stay_internal_at_both_desks(
    devnet_node: DevnetNode, jira_sim: JiraSim, waldur_sim: WaldurSim, tmp_path: Path
) -> None:
    def drive() -> str:
        with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer")) as customer:
            (tid,) = customer.create_tickets(1, RECIPIENTS)
            customer.reply(tid, "It still fails.", RECIPIENTS, internal=True)  # a customer cannot hide a reply
        with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("agent")) as agent:
            agent.reply(tid, "Suspect the provider's firewall.", RECIPIENTS, internal=True)
            agent.reply(tid, "We are on it.", RECIPIENTS)
        return tid

    db = tmp_path / "sidecar.db"
    async with running_app(desk_flags(tmp_path, devnet_node, jira_sim, waldur_sim), desk_env(jira_sim, waldur_sim)):
        tid = await asyncio.to_thread(drive)
        await settled(db, devnet_node, timeout=120)
    assert dead_jobs(db) == []
    (issue,) = jira_sim.list_issues()
    assert [c.public for c in issue.comments] == [True, False, True]
    (witem,) = waldur_sim.by_remote_id(f"virtengine:{tid}")
    public = [c.is_public for c in waldur_sim.comments_of(witem.uuid) if " wrote:" in c.description]
    assert public == [True, False, True]
