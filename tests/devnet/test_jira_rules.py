"""Contract tests for the Jira Cloud rules the simulator holds (devnet/jira_rules.py).

Each test sends the refused request straight to the simulator over loopback HTTP and asserts the real
server's status and error text, then sends the accepted variant, so the simulator cannot silently become
lenient again. The error sentences are written out here on purpose, not imported from the simulator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from devnet.jira_model import Workflow
from devnet.jira_rules import ISSUE_SCREEN
from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock

AUTH = ("sidecar@example.com", "jira-test-token")
NOT_ON_SCREEN = "Field '{}' cannot be set. It is not on the appropriate screen, or unknown."
JSM_PREFIX = "Your request could not be created. Please check the fields have been correctly filled in."


def client(sim: JiraSim, auth: tuple[str, str] = AUTH) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, auth=auth, timeout=5.0)


@pytest.fixture
def sim(make_jira_sim: Callable[..., JiraSim]) -> JiraSim:
    return make_jira_sim()


@pytest.fixture
def http(sim: JiraSim) -> Iterator[httpx.Client]:
    with client(sim) as c:
        yield c


def create(c: httpx.Client, summary: str = "Lease 42 unreachable", **extra: Any) -> httpx.Response:
    fields = {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": summary, **extra}
    return c.post("/rest/api/3/issue", json={"fields": fields})


def new_issue(c: httpx.Client) -> str:
    resp = create(c, labels=["ve-sup-1"], priority={"name": "High"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def jsm_request(c: httpx.Client, values: dict[str, Any]) -> httpx.Response:
    body = {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": values}
    return c.post("/rest/servicedeskapi/request", json=body)


def move(c: httpx.Client, key: str, transition_id: str, **body: Any) -> httpx.Response:
    return c.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": transition_id}, **body})


def targets(c: httpx.Client, key: str) -> dict[str, str]:
    """Target status -> transition id of what the issue offers now."""
    options = c.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    return {t["to"]["name"]: t["id"] for t in options}


# rule 1: a summary with a newline ------------------------------------------------------------------
@pytest.mark.parametrize("summary", ["Lease 42\nunreachable", "Lease 42\r\nunreachable", "trailing\n"])
def test_summary_with_a_newline_is_refused_on_create(http: httpx.Client, sim: JiraSim, summary: str) -> None:
    refused = create(http, summary)
    assert refused.status_code == 400
    assert refused.json() == {
        "errorMessages": [],
        "errors": {"summary": "The summary is invalid because it contains newline characters."},
    }
    assert sim.list_issues() == []
    assert create(http, " ".join(summary.split())).status_code == 201  # the flattened summary is accepted


def test_summary_with_a_newline_is_refused_on_edit(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    refused = http.put(f"/rest/api/3/issue/{key}", json={"fields": {"summary": "two\nlines"}})
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"summary": "The summary is invalid because it contains newline characters."}
    assert sim.issue(key).summary == "Lease 42 unreachable"
    assert http.put(f"/rest/api/3/issue/{key}", json={"fields": {"summary": "two lines"}}).status_code == 204
    assert sim.issue(key).summary == "two lines"


def test_summary_with_a_newline_is_refused_by_jsm(http: httpx.Client, sim: JiraSim) -> None:
    sim.add_request_type("10", "25")
    refused = jsm_request(http, {"summary": "two\nlines", "description": "d"})
    assert refused.status_code == 400
    assert "The summary is invalid because it contains newline characters." in refused.json()["errorMessage"]
    assert sim.list_issues() == []
    assert jsm_request(http, {"summary": "two lines", "description": "d"}).status_code == 201


# rules 2-5: a workflow that is not fully connected, with a resolution screen -----------------------
def test_default_workflow_needs_two_steps_to_resolve(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    offered = targets(http, key)
    assert "Resolved" not in offered and "Waiting for Customer" not in offered
    refused = move(http, key, "41", fields={"resolution": {"name": "Done"}})  # Resolve this issue, from Open
    assert refused.status_code == 400
    assert refused.json() == {"errorMessages": ["Transition id '41' is not valid for this issue."], "errors": {}}
    assert sim.issue(key).status == "Open"
    assert move(http, key, offered["In Progress"]).status_code == 204
    assert "Resolved" in targets(http, key) and "Waiting for Customer" in targets(http, key)
    assert [t.name for t in sim.workflow.path("Open", "Resolved")] == ["Start progress", "Resolve this issue"]
    assert [t.name for t in sim.workflow.path("Open", "Waiting for Customer")] == [
        "Start progress",
        "Wait for customer",
    ]


def test_resolve_without_a_resolution_is_refused(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    assert move(http, key, "11").status_code == 204  # Start progress
    resolve = targets(http, key)["Resolved"]
    refused = move(http, key, resolve)
    assert refused.status_code == 400
    assert refused.json() == {"errorMessages": ["Field Resolution is required."], "errors": {}}
    assert sim.issue(key).status == "In Progress" and sim.issue(key).resolution is None
    assert move(http, key, resolve, fields={"resolution": {"name": "Done"}}).status_code == 204
    assert (sim.issue(key).status, sim.issue(key).resolution) == ("Resolved", "Done")
    got = http.get(f"/rest/api/3/issue/{key}", params={"fields": "resolution,status"}).json()["fields"]
    assert got["resolution"]["name"] == "Done" and got["status"]["name"] == "Resolved"
    assert move(http, key, targets(http, key)["Closed"]).status_code == 204  # Close: no screen, keeps it
    assert (sim.issue(key).status, sim.issue(key).resolution) == ("Closed", "Done")
    assert move(http, key, targets(http, key)["Open"]).status_code == 204  # Reopen clears it
    assert (sim.issue(key).status, sim.issue(key).resolution) == ("Open", None)


def test_cancel_request_from_open_also_requires_a_resolution(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    cancel = targets(http, key)["Closed"]
    assert move(http, key, cancel).json() == {"errorMessages": ["Field Resolution is required."], "errors": {}}
    update = {"resolution": [{"set": {"name": "Won't Do"}}]}  # the `update` form is accepted, too
    assert move(http, key, cancel, update=update).status_code == 204
    assert (sim.issue(key).status, sim.issue(key).resolution) == ("Closed", "Won't Do")


def test_a_field_not_on_the_transition_screen_is_refused(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    refused = move(http, key, "11", fields={"resolution": {"name": "Done"}})  # Start progress has no screen
    assert refused.status_code == 400
    assert refused.json() == {"errorMessages": [], "errors": {"resolution": NOT_ON_SCREEN.format("resolution")}}
    assert sim.issue(key).status == "Open"
    assert move(http, key, "11").status_code == 204


def test_an_unknown_resolution_is_refused_and_an_id_is_accepted(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    assert move(http, key, "11").status_code == 204
    refused = move(http, key, "41", fields={"resolution": {"name": "Fixed"}})
    assert refused.status_code == 400
    assert refused.json() == {
        "errorMessages": [],
        "errors": {"resolution": "Could not find valid 'id' or 'name' in resolution object."},
    }
    assert sim.issue(key).status == "In Progress"
    assert move(http, key, "41", fields={"resolution": {"id": "10002"}}).status_code == 204
    assert sim.issue(key).resolution == "Duplicate"


def test_transition_fields_are_listed_only_with_the_expand(http: httpx.Client) -> None:
    key = new_issue(http)
    assert move(http, key, "11").status_code == 204
    plain = http.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    assert plain and all("fields" not in t for t in plain)
    expanded = http.get(f"/rest/api/3/issue/{key}/transitions", params={"expand": "transitions.fields"})
    by_name = {t["name"]: t for t in expanded.json()["transitions"]}
    resolve = by_name["Resolve this issue"]
    assert resolve["hasScreen"] is True
    field = resolve["fields"]["resolution"]
    assert field["required"] is True and field["key"] == "resolution" and field["operations"] == ["set"]
    names = [v["name"] for v in field["allowedValues"]]
    assert names == ["Done", "Won't Do", "Duplicate", "Cannot Reproduce"]
    assert all(v["id"] for v in field["allowedValues"])
    assert by_name["Wait for customer"]["fields"] == {} and by_name["Wait for customer"]["hasScreen"] is False


def test_a_configured_workflow_may_require_a_resolution(make_jira_sim: Callable[..., JiraSim]) -> None:
    flow = Workflow.from_config(
        {"New": "new", "Done": "done"},
        [{"name": "Finish", "to": "Done", "screen": ["resolution"], "required": ["resolution"]}],
        "New",
    )
    sim = make_jira_sim(workflow=flow, resolutions=("Done", "Fixed"))
    with client(sim) as c:
        key = new_issue(c)
        (only,) = c.get(f"/rest/api/3/issue/{key}/transitions", params={"expand": "transitions.fields"}).json()[
            "transitions"
        ]
        assert [v["name"] for v in only["fields"]["resolution"]["allowedValues"]] == ["Done", "Fixed"]
        assert move(c, key, only["id"]).json()["errorMessages"] == ["Field Resolution is required."]
        assert move(c, key, only["id"], fields={"resolution": {"name": "Fixed"}}).status_code == 204
    assert (sim.issue(key).status, sim.issue(key).resolution) == ("Done", "Fixed")


def test_the_connected_workflow_has_no_screens(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(workflow=Workflow.connected())
    with client(sim) as c:
        key = new_issue(c)
        offered = targets(c, key)
        assert set(offered) == {"In Progress", "Waiting for Customer", "Waiting for Support", "Resolved", "Closed"}
        assert move(c, key, offered["Resolved"]).status_code == 204
    assert sim.issue(key).status == "Resolved"


# rule 6: priority not on a JSM request's edit screen; the whole edit is refused ----------------------
def test_priority_not_on_the_request_screen_refuses_the_whole_edit(http: httpx.Client, sim: JiraSim) -> None:
    sim.add_request_type("10", "25")
    key = jsm_request(http, {"summary": "Need a lease", "description": "d"}).json()["issueKey"]
    edit = {"fields": {"priority": {"name": "High"}}, "update": {"labels": [{"add": "ve-sup-7"}]}}
    refused = http.put(f"/rest/api/3/issue/{key}", json=edit)
    assert refused.status_code == 400
    assert refused.json() == {"errorMessages": [], "errors": {"priority": NOT_ON_SCREEN.format("priority")}}
    assert sim.issue(key).labels == [] and sim.issue(key).priority == "Medium"  # the label was not applied
    assert sim.creates_for_label("ve-sup-7") == 0
    labels_only = {"update": {"labels": [{"add": "ve-sup-7"}]}}
    assert http.put(f"/rest/api/3/issue/{key}", json=labels_only).status_code == 204
    assert sim.issue(key).labels == ["ve-sup-7"]


def test_priority_is_on_the_screen_of_plain_issues(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    assert http.put(f"/rest/api/3/issue/{key}", json={"fields": {"priority": {"name": "Low"}}}).status_code == 204
    assert sim.issue(key).priority == "Low"


def test_request_screen_is_a_knob(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(request_screen=ISSUE_SCREEN)
    sim.add_request_type("10", "25")
    with client(sim) as c:
        key = jsm_request(c, {"summary": "Need a lease"}).json()["issueKey"]
        assert c.put(f"/rest/api/3/issue/{key}", json={"fields": {"priority": {"name": "High"}}}).status_code == 204
    assert sim.issue(key).priority == "High"


def test_priority_off_the_create_screen_is_refused(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(screen=ISSUE_SCREEN - {"priority"})
    with client(sim) as c:
        refused = create(c, priority={"name": "High"})
        assert refused.status_code == 400
        assert refused.json() == {"errorMessages": [], "errors": {"priority": NOT_ON_SCREEN.format("priority")}}
        assert sim.list_issues() == []
        assert create(c).status_code == 201


def test_an_unknown_field_is_refused_on_create(http: httpx.Client, sim: JiraSim) -> None:
    refused = create(http, customfield_10099="x")
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"customfield_10099": NOT_ON_SCREEN.format("customfield_10099")}
    assert sim.list_issues() == []


# rule 7: JSM requestFieldValues holds only the request type's fields --------------------------------
@pytest.mark.parametrize("extra", [{"labels": ["ve-sup-1"]}, {"priority": {"name": "High"}}])
def test_jsm_refuses_fields_not_on_the_request_type(http: httpx.Client, sim: JiraSim, extra: dict[str, Any]) -> None:
    sim.add_request_type("10", "25")
    refused = jsm_request(http, {"summary": "Need a lease", "description": "d", **extra})
    assert refused.status_code == 400
    (name,) = extra
    message = refused.json()["errorMessage"]
    assert message == f"{JSM_PREFIX} {NOT_ON_SCREEN.format(name)}"
    assert isinstance(refused.json()["i18nErrorMessage"], dict)
    assert sim.list_issues() == []
    accepted = jsm_request(http, {"summary": "Need a lease", "description": "d"})
    assert accepted.status_code == 201
    assert sim.issue(accepted.json()["issueKey"]).labels == []


def test_jsm_without_a_summary_is_refused_with_jsms_text(http: httpx.Client, sim: JiraSim) -> None:
    sim.add_request_type("10", "25")
    refused = jsm_request(http, {"description": "no summary"})
    assert refused.status_code == 400
    assert refused.json()["errorMessage"] == f"{JSM_PREFIX} Please provide a valid value for field 'Summary'"


def test_a_request_type_may_show_labels(http: httpx.Client, sim: JiraSim) -> None:
    sim.add_request_type("10", "26", fields=("summary", "description", "labels"))
    body = {"serviceDeskId": "10", "requestTypeId": "26", "requestFieldValues": {"summary": "s", "labels": ["a"]}}
    resp = http.post("/rest/servicedeskapi/request", json=body)
    assert resp.status_code == 201
    assert sim.issue(resp.json()["issueKey"]).labels == ["a"]


# rule 8: search lags writes by seconds by default ------------------------------------------------------
def test_default_search_lag_is_seconds(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()
    sim = make_jira_sim(clock=clock)  # no search_delay: the default
    with client(sim) as c:
        key = new_issue(c)
        issue_id = sim.issue(key).id

        def found() -> list[Any]:
            return list(c.post("/rest/api/3/search/jql", json={"jql": 'labels = "ve-sup-1"'}).json()["issues"])

        assert found() == []
        clock.advance(1.0)
        assert found() == []  # still missing a second later
        clock.advance(1.0)
        assert found() == []
        clock.advance(1.0)
        assert found() == [{"id": issue_id}]  # visible within seconds


# rule 9: a wrong, revoked or expired token gets 401 on every endpoint --------------------------------
def routed(sim: JiraSim) -> list[tuple[str, str]]:
    """(method, concrete path) for every route in the simulator's route table."""
    calls = []
    for route in sim.inner.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{key\}", "VESUPPORT-1", route.path)
        path = re.sub(r"\{[^}]+\}", "ve", path)
        calls += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return calls


def test_every_endpoint_refuses_a_bad_token(http: httpx.Client, sim: JiraSim) -> None:
    new_issue(http)
    calls = routed(sim)
    assert len(calls) >= 16 and any(p.startswith("/rest/servicedeskapi/") for _, p in calls)
    expected = {"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}}
    with client(sim, ("sidecar@example.com", "wrong-token")) as bad, client(sim, ("someone@else", AUTH[1])) as other:
        for method, path in calls:
            for c in (bad, other):
                resp = c.request(method, path, json={})
                assert resp.status_code == 401, (method, path)
                assert resp.json() == expected, (method, path)
    with httpx.Client(base_url=sim.base_url, timeout=5.0) as anonymous:
        assert anonymous.get("/rest/api/3/myself").status_code == 401
    assert http.get("/rest/api/3/myself").status_code == 200
    sim.revoke_token()  # an expired or revoked token
    for method, path in calls:
        assert http.request(method, path, json={}).status_code == 401, (method, path)
    sim.set_token(AUTH[1])
    assert http.get("/rest/api/3/myself").status_code == 200
    assert http.get("/rest/api/3/issue/VESUPPORT-1").status_code == 200


def test_agent_helpers_click_through_screens(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    sim.agent_transition(key, "Resolved", resolution="Cannot Reproduce")
    assert (sim.issue(key).status, sim.issue(key).resolution) == ("Resolved", "Cannot Reproduce")
    sim.add_request_type("10", "25")
    req = jsm_request(http, {"summary": "s", "description": "x"})
    sim.agent_update(req.json()["issueKey"], priority="High")  # a human is not held to the REST screen
    assert sim.issue(req.json()["issueKey"]).priority == "High"


# rule 10: the burst limit is per endpoint and method ---------------------------------------------------
def test_burst_limit_is_per_endpoint_and_method(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()  # no token comes back unless the test moves this clock
    sim = make_jira_sim(rate_per_second=1.0, burst=3, clock=clock)
    with client(sim) as c:
        first, second = new_issue(c), new_issue(c)
        reads = [c.get(f"/rest/api/3/issue/{key}") for key in (first, second, first)]
        assert [r.status_code for r in reads] == [200, 200, 200]
        limited = c.get(f"/rest/api/3/issue/{second}")  # another issue: the same endpoint, the same bucket
        assert limited.status_code == 429
        assert limited.headers["ratelimit-reason"] == "jira-burst-based"
        assert int(limited.headers["retry-after"]) >= 1 and limited.headers["x-ratelimit-remaining"] == "0"
        assert limited.headers["x-ratelimit-limit"] == "3"
        # The same path with another method, and another endpoint, have buckets of their own.
        edit = c.put(f"/rest/api/3/issue/{first}", json={"fields": {"summary": "still writable"}})
        assert edit.status_code == 204, edit.text
        assert c.get("/rest/api/3/myself").status_code == 200
        assert c.get(f"/rest/api/3/issue/{first}/transitions").status_code == 200
        assert c.get(f"/rest/api/3/issue/{first}").status_code == 429  # still empty: no time has passed
        clock.advance(1.0)
        assert c.get(f"/rest/api/3/issue/{first}").status_code == 200  # one token back after 1 / rate
    keys = {r.endpoint for r in sim.requests}
    assert "GET /rest/api/3/issue/{key}" in keys and "PUT /rest/api/3/issue/{key}" in keys
    assert not any(first in k or second in k for k in keys)  # the key names the endpoint, never an issue
