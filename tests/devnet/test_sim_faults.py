"""The simulators' rate-limit fault and timed outages, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable

from devnet.jira_sim import JiraSim
from devnet.waiting import wait_until
from tests.devnet.test_jira_sim import client


def test_a_429_fault_answers_like_the_rate_limiter(jira_sim: JiraSim) -> None:
    jira_sim.faults.inject("429", retry_after=3)
    jira_sim.faults.inject("429")
    with client(jira_sim) as c:
        first, second, third = (c.get("/rest/api/3/myself") for _ in range(3))
    assert first.status_code == 429 and first.headers["retry-after"] == "3"
    assert "ratelimit-reason" in first.headers and first.json()["errorMessages"]
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert third.status_code == 200


def test_an_outage_fails_everything_until_it_ends(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim()
    sim.faults.outage("503", 1.0, retry_after=1)
    with client(sim) as c:
        during = [c.get("/rest/api/3/myself").status_code for _ in range(5)]
        wait_until(lambda: not sim.faults.in_outage(), timeout=5, what="the outage to end")
        after = c.get("/rest/api/3/myself").status_code
    assert during == [503] * 5 and after == 200
    assert [kind for kind, _, _ in sim.faults.fired] == ["503"] * 5
