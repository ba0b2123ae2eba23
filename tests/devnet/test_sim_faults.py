"""The simulators' faults over real loopback HTTP: rate-limit faults, outages on a test-driven clock, and the
faults that let the desk apply a request and then lose its answer (the case a retried create must survive)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from devnet.jira_sim import JiraSim
from devnet.sim_faults import FAULT_KINDS, FaultPlan, Fired, LostAnswer, ManualClock, TokenBucket
from devnet.waiting import wait_until
from devnet.waldur_sim import WaldurSim
from tests.devnet.test_jira_sim import client, new_issue
from tests.devnet.test_waldur_sim import client as waldur_client
from tests.devnet.test_waldur_sim import create as waldur_create

CREATE = "/rest/api/3/issue"
WALDUR_CREATE = "/api/support-issues/"


def test_a_429_fault_answers_like_the_rate_limiter(jira_sim: JiraSim) -> None:
    jira_sim.faults.inject("429", retry_after=3)
    jira_sim.faults.inject("429")
    with client(jira_sim) as c:
        first, second, third = (c.get("/rest/api/3/myself") for _ in range(3))
    assert first.status_code == 429 and first.headers["retry-after"] == "3"
    assert "ratelimit-reason" in first.headers and first.json()["errorMessages"]
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert third.status_code == 200


def test_an_outage_fails_everything_until_its_clock_runs_out(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()
    sim = make_jira_sim(faults=FaultPlan(clock=clock))
    sim.faults.outage("503", 60.0, retry_after=1)
    with client(sim) as c:
        during = [c.get("/rest/api/3/myself").status_code for _ in range(5)]
        clock.advance(59.9)
        still = c.get("/rest/api/3/myself").status_code
        clock.advance(0.1)
        after = c.get("/rest/api/3/myself").status_code
    assert during == [503] * 5 and still == 503 and after == 200
    assert not sim.faults.in_outage()
    assert sim.faults.fired == [Fired("503", "GET", "/rest/api/3/myself")] * 6


def test_the_rate_limiter_refills_only_as_its_clock_moves() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    assert bucket.take()[0] is True
    allowed, wait, _ = bucket.take()
    assert allowed is False and wait == pytest.approx(2.0)
    clock.advance(1.9)
    assert bucket.take()[0] is False
    clock.advance(0.2)
    assert bucket.take()[0] is True


def test_apply_drop_commits_the_create_and_resets_the_connection(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim()
    sim.faults.inject("apply-drop", method="POST", path_contains=CREATE)
    with client(sim) as c:
        with pytest.raises(httpx.TransportError):  # the client never learns the create happened
            new_issue(c, labels=["ve-sup-000001"])
        (issue,) = sim.list_issues()  # ...but it did
        assert c.get(f"{CREATE}/{issue.key}").status_code == 200
        assert new_issue(c, labels=["ve-sup-000001"])  # a blind retry makes a second issue
    assert sim.creates_for_label("ve-sup-000001") == 2
    assert sim.faults.fired == [Fired("apply-drop", "POST", CREATE)]
    assert sim.faults.lost_answers == [LostAnswer("apply-drop", "POST", CREATE, 201)]
    assert sim.faults.lost_on("POST", CREATE, 201) == sim.faults.lost_answers
    assert sim.requests[0].outcome == "fault:apply-drop" and sim.requests[0].status is None


def test_apply_delay_commits_the_create_and_answers_after_the_client_gave_up(
    make_jira_sim: Callable[..., JiraSim],
) -> None:
    sim = make_jira_sim(faults=FaultPlan(hang_seconds=600))  # released when the simulator stops
    sim.faults.inject("apply-delay", method="POST")
    with client(sim) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post(CREATE, json={"fields": {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"},
                                            "summary": "late", "labels": ["ve-sup-000002"]}}, timeout=1.0)
        wait_until(lambda: sim.faults.lost_answers, timeout=30, what="the create to be applied")
        assert sim.creates_for_label("ve-sup-000002") == 1
        assert c.get("/rest/api/3/myself").status_code == 200  # only the faulted request hangs
    assert sim.faults.fired_on("POST", CREATE) == [Fired("apply-delay", "POST", CREATE)]
    assert sim.faults.lost_on("POST", CREATE, 201) == [LostAnswer("apply-delay", "POST", CREATE, 201)]


def test_a_rejected_request_under_an_apply_fault_applies_nothing(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(validate=False)
    sim.faults.inject("apply-drop", method="POST")
    with client(sim) as c, pytest.raises(httpx.TransportError):
        c.post(CREATE, json={"fields": {"project": {"key": "NOPE"}, "summary": "x"}})
    assert sim.list_issues() == []
    assert sim.faults.lost_on("POST", CREATE) == [LostAnswer("apply-drop", "POST", CREATE, 400)]
    assert sim.faults.lost_on("POST", CREATE, 201) == []


def test_waldur_apply_drop_commits_the_issue_and_a_retry_meets_the_unique_remote_id(
    make_waldur_sim: Callable[..., WaldurSim],
) -> None:
    sim = make_waldur_sim()
    sim.faults.inject("apply-drop", method="POST", path_contains=WALDUR_CREATE)
    with waldur_client(sim) as c:
        with pytest.raises(httpx.TransportError):
            waldur_create(c, sim, remote_id="virtengine:7")
        assert len(sim.by_remote_id("virtengine:7")) == 1
        retry = waldur_create(c, sim, remote_id="virtengine:7")
    assert retry.status_code == 400 and "remote_id" in retry.text
    assert len(sim.list_issues()) == 1
    assert sim.faults.lost_on("POST", WALDUR_CREATE, 201) == [LostAnswer("apply-drop", "POST", WALDUR_CREATE, 201)]


def test_random_faults_may_include_the_apply_kinds_and_are_reproducible() -> None:
    def run(seed: int) -> list[str | None]:
        plan = FaultPlan(probability=0.5, kinds=FAULT_KINDS, seed=seed)
        return [f.kind if (f := plan.pick("POST", CREATE)) else None for _ in range(60)]

    first = run(11)
    assert first == run(11)
    assert {"apply-drop", "apply-delay"} <= set(first)


def test_unknown_fault_kinds_are_refused() -> None:
    plan = FaultPlan()
    for bad in (lambda: plan.inject("apply"), lambda: plan.outage("404", 1.0), lambda: FaultPlan(kinds=("x",))):
        with pytest.raises(ValueError, match="unknown fault kind"):
            bad()


def test_hung_requests_are_released_when_the_simulator_stops() -> None:
    sim = JiraSim(faults=FaultPlan(hang_seconds=600)).start()
    sim.faults.inject("apply-delay")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with client(sim, timeout=600) as c:
                c.get("/rest/api/3/myself")
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: sim.faults.lost_answers, timeout=10, what="the request to be held")
    sim.stop()
    caller.join(timeout=30)
    assert not caller.is_alive(), "the held request outlived the simulator"


def test_an_exact_path_fault_skips_other_requests_under_that_path(jira_sim: JiraSim) -> None:
    jira_sim.faults.inject("apply-drop", method="POST", path=CREATE)
    with client(jira_sim) as c:
        key = jira_sim.agent_create_issue("by hand")
        comment = c.post(f"{CREATE}/{key}/comment", json={"body": {"type": "doc", "version": 1, "content": []}})
        assert comment.status_code == 201  # POST under /rest/api/3/issue, but not the create itself
        with pytest.raises(httpx.TransportError):
            new_issue(c)
    assert jira_sim.faults.fired == [Fired("apply-drop", "POST", CREATE)]


def test_an_apply_fault_meeting_the_rate_limiter_waits_for_a_request_the_desk_applies(
    make_jira_sim: Callable[..., JiraSim],
) -> None:
    """A 429 from the limiter applies nothing, so no answer is lost there: the scripted fault goes back to the
    queue and is spent on the next create the desk applies (a test scripting lost creates always gets them)."""
    clock = ManualClock()
    sim = make_jira_sim(faults=FaultPlan(clock=clock), rate_per_second=1.0, burst=1, clock=clock)
    with client(sim) as c:
        assert new_issue(c, labels=["ve-sup-000004"])  # the create endpoint's one token of burst
        sim.faults.inject("apply-drop", method="POST", path=CREATE)
        limited = c.post(CREATE, json={"fields": {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"},
                                                  "summary": "limited", "labels": ["ve-sup-000003"]}})
        assert limited.status_code == 429
        assert sim.faults.fired == [] and sim.faults.lost_answers == []
        clock.advance(2.0)
        with pytest.raises(httpx.TransportError):
            new_issue(c, labels=["ve-sup-000003"])
    assert sim.creates_for_label("ve-sup-000003") == 1
    assert sim.faults.fired == [Fired("apply-drop", "POST", CREATE)]
    assert sim.faults.lost_on("POST", CREATE) == [LostAnswer("apply-drop", "POST", CREATE, 201)]
