"""Whatever one desk job raises stays with that job: it is dead-lettered with a safe reason and the
worker goes on to the next ticket. Only cancellation and a failing database leave the worker.

The desk answers are the simulator's, rewritten on the way back through the client's transport seam
(a field missing, hostile nesting, a conflicting id, a library raising something unexpected).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waiting import async_wait_until
from sidecar.desks.jira import JiraDesk, ticket_label
from sidecar.errors import StoreError
from sidecar.observe.metrics import Metrics
from sidecar.sync.failures import is_store_failure, job_failure_reason
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config
from tests.sidecar.sync.rig import Rig, TamperingTransport, created

CREATE = "/rest/api/3/issue"


@pytest.fixture
async def rig(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, tmp_path: Path
) -> AsyncIterator[tuple[Rig, JiraSim, TamperingTransport]]:
    sim = make_jira_sim(clock=clock)
    transport = TamperingTransport()
    desk = JiraDesk(
        jira_config(sim, index_lag=0.0), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=transport
    )
    made = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    yield made, sim, transport
    await made.close()


def without(field: str) -> Callable[[bytes], bytes]:
    def change(body: bytes) -> bytes:
        answer = json.loads(body)
        del answer[field]
        return json.dumps(answer).encode()

    return change


def raising(exc: BaseException) -> Callable[[bytes], bytes]:
    def change(body: bytes) -> bytes:
        raise exc

    return change


CASES = {
    "answer without id": (without("id"), "answer lacks a valid 'id'"),
    "answer nested 1,200 deep": (lambda body: b"[" * 1200 + b"]" * 1200, "JSON nests over 128 levels deep"),
    "answer over the size limit": (lambda body: b'{"id": "' + b"9" * (17 * 1024 * 1024) + b'"}', "over the limit"),
    "library raising KeyError": (raising(KeyError("fields")), "KeyError at test_job_failures.py"),
    "library raising with content": (raising(RuntimeError("Lease 42 unreachable")), "RuntimeError at"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_desk_answer_dead_letters_one_job_and_the_next_ticket_syncs(
    rig: tuple[Rig, JiraSim, TamperingTransport], case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    worker, sim, transport = rig
    change, expected = CASES[case]
    transport.rewrite("POST", CREATE, change)
    await worker.chain(created(1))
    await worker.run_due()
    assert transport.tampered == [f"POST {CREATE}"]
    await worker.chain(created(2))
    await worker.run_due()
    first, second = await worker.jobs()
    assert first.state == "dead" and expected in (first.last_error or ""), first.last_error
    assert "Lease 42" not in (first.last_error or "")  # ticket content never reaches the reason
    assert second.state == "done"
    assert sim.creates_for_label(ticket_label("SUP-000002")) == 1
    [failed] = await worker.audit("sync_failed")
    assert failed["error"] == first.last_error and failed["status"] == "dead"
    # What the operations guide's `grep "sync failed"` finds: the one dead job, by id, without its content.
    [line] = [r for r in caplog.records if "sync failed" in r.getMessage()]
    assert (line.getMessage(), line.levelname) == ("outbound sync failed: desk job dead-lettered", "ERROR")
    assert (getattr(line, "job_id", None), getattr(line, "error", None)) == (first.id, first.last_error)
    assert not [r for r in caplog.records if "Lease 42" in str(vars(r))]  # message and extra fields alike


async def test_a_desk_answer_that_conflicts_with_a_recorded_ref_dead_letters_its_job(
    rig: tuple[Rig, JiraSim, TamperingTransport],
) -> None:
    """The desk answers ticket 2's create with ticket 1's issue: recording it violates the unique key."""
    worker, _, transport = rig
    await worker.chain(created(1))
    await worker.run_due()
    [(issue_id, key)] = await worker.query("SELECT external_id, external_key FROM external_refs")

    def as_first(body: bytes) -> bytes:
        return json.dumps({**json.loads(body), "id": issue_id, "key": key}).encode()

    transport.rewrite("POST", CREATE, as_first)
    await worker.chain(created(2))
    await worker.chain(created(3))
    await worker.run_due()
    states = {j.ticket_id: (j.state, j.last_error or "") for j in await worker.jobs()}
    state, error = states["ticket-0002"]
    assert state == "dead" and error.startswith("IntegrityError at") and "UNIQUE constraint failed" in error
    assert states["ticket-0003"][0] == "done"
    assert len(await worker.query("SELECT * FROM external_refs")) == 2


async def test_a_failing_store_is_not_one_jobs_fault(rig: tuple[Rig, JiraSim, TamperingTransport]) -> None:
    worker, _, transport = rig

    async def close_store(body: bytes) -> bytes:
        await worker.store.close()
        return body

    transport.rewrite("POST", CREATE, close_store)
    await worker.chain(created(1))
    assert worker.worker is not None
    with pytest.raises(StoreError, match="store is closed"):
        await worker.worker.step()


async def test_cancellation_leaves_the_job_to_be_resumed(
    make_jira_sim: Callable[..., JiraSim], clock: ManualClock, tmp_path: Path
) -> None:
    sim = make_jira_sim(clock=clock)
    desk = JiraDesk(jira_config(sim, index_lag=0.0), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    worker = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    try:
        sim.faults.inject("timeout", method="POST", path_contains=CREATE)
        await worker.chain(created(1))
        assert worker.worker is not None
        step = asyncio.create_task(worker.worker.step())
        await async_wait_until(lambda: sim.faults.fired_on("POST", CREATE), timeout=10, what="the create to hang")
        step.cancel()
        with pytest.raises(asyncio.CancelledError):
            await step
        [job] = await worker.jobs()
        assert (job.state, job.attempts) == ("running", 0)  # released at the next start, not dead-lettered
    finally:
        await worker.close()


def test_store_failures_and_safe_reasons() -> None:
    assert is_store_failure(StoreError("x")) and is_store_failure(sqlite3.OperationalError("disk I/O error"))
    assert not is_store_failure(sqlite3.IntegrityError("UNIQUE constraint failed: t.c"))
    assert not is_store_failure(KeyError("id"))
    try:
        {"a": 1}["subject line with words"]
    except KeyError as exc:
        reason = job_failure_reason(exc)
    assert reason.startswith("KeyError at test_job_failures.py:") and "subject" not in reason
    try:
        raise ValueError("the customer's secret text")
    except ValueError as exc:
        reason = job_failure_reason(exc)
    assert "secret" not in reason and reason.startswith("ValueError at")
