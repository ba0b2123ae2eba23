"""Contract tests: the Waldur simulator refuses what the real server refuses, with its status and text.

Each test sends the refused request straight to the simulator over loopback HTTP and asserts the
server's status and exact error body (devnet/waldur_rules.py lists the rules and their sources), then
shows that an accepted variant passes, so the simulator cannot silently become lenient again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

import httpx
import pytest

from devnet.waldur_sim import WaldurSim
from devnet.webhook_receiver import WebhookReceiver

MakeSim = Callable[..., WaldurSim]
TYPES_OF_THE_GENERATED_CLIENT = ("INCIDENT", "SERVICE_REQUEST", "INFORMATIONAL", "CHANGE_REQUEST")
JIRA_PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")


def client(sim: WaldurSim) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers={"Authorization": "Token waldur-test-token"}, timeout=5.0)


@pytest.fixture
def sim(make_waldur_sim: MakeSim) -> WaldurSim:
    """A stock simulator: basic backend, support role, one request type, no priorities."""
    return make_waldur_sim()


@pytest.fixture
def http(sim: WaldurSim) -> Iterator[httpx.Client]:
    with client(sim) as c:
        yield c


def issue_body(**extra: Any) -> dict[str, Any]:
    """A create a stock server accepts."""
    return {"type": "Service Request", "summary": "Lease 42 unreachable", "is_reported_manually": True} | extra


def create(c: httpx.Client, **extra: Any) -> dict[str, Any]:
    resp = c.post("/api/support-issues/", json=issue_body(**extra))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


# create: caller ----------------------------------------------------------------------------------
def test_create_without_caller_is_refused_unless_reported_manually(http: httpx.Client, sim: WaldurSim) -> None:
    for body in (
        {"type": "Service Request", "summary": "no flag"},
        {"type": "Service Request", "summary": "flag false", "is_reported_manually": False},
    ):
        resp = http.post("/api/support-issues/", json=body)
        assert (resp.status_code, resp.json()) == (400, {"caller": ["This field is required."]})
    assert sim.list_issues() == []
    manual = create(http)
    assert manual["caller_uuid"] == str(sim.me.uuid)
    on_behalf = create(http, is_reported_manually=False, caller=sim.user_url(sim.agent), description="Help")
    assert on_behalf["caller_uuid"] == str(sim.agent.uuid)
    assert on_behalf["description"] == "Reported by VirtEngine Sidecar.\n\nHelp"


def test_caller_must_link_a_known_user(http: httpx.Client, sim: WaldurSim) -> None:
    bare = http.post("/api/support-issues/", json=issue_body(is_reported_manually=False, caller="sidecar"))
    assert (bare.status_code, bare.json()) == (400, {"caller": ["Invalid hyperlink - No URL match."]})
    unknown = sim.url("users", UUID(int=9, version=4))
    missing = http.post("/api/support-issues/", json=issue_body(is_reported_manually=False, caller=unknown))
    assert (missing.status_code, missing.json()) == (400, {"caller": ["Invalid hyperlink - Object does not exist."]})


def test_manual_report_cannot_name_an_assignee(http: httpx.Client, sim: WaldurSim) -> None:
    ada = sim.url("support-users", sim.add_support_user("Ada Agent"))
    resp = http.post("/api/support-issues/", json=issue_body(assignee=ada))
    assert resp.status_code == 400
    assert resp.json() == {"assignee": ["Assignee cannot be defined if issue is reported manually."]}
    assert create(http, is_reported_manually=False, caller=sim.user_url(), assignee=ada)["assignee"] == ada


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ("user_email", "Current user does not have email, therefore he is not allowed to create issues."),
        ("user_full_name", "Current user does not have full_name, therefore he is not allowed to create issues."),
    ],
)
def test_the_token_user_needs_email_and_full_name(make_waldur_sim: MakeSim, knob: str, message: str) -> None:
    sim = make_waldur_sim(**{knob: ""})
    with client(sim) as c:
        resp = c.post("/api/support-issues/", json=issue_body())
        assert (resp.status_code, resp.json()) == (400, [message])
    assert sim.list_issues() == []


# create: type and priority -----------------------------------------------------------------------
def test_type_must_be_an_active_request_type(http: httpx.Client) -> None:
    types = http.get("/api/support-request-types/")
    assert types.status_code == 200 and [t["name"] for t in types.json()] == ["Service Request"]
    for value in (*TYPES_OF_THE_GENERATED_CLIENT, "service request"):
        resp = http.post("/api/support-issues/", json=issue_body(type=value))
        assert (resp.status_code, resp.json()) == (400, {"type": [f'"{value}" is not a valid choice.']})
    assert create(http)["type"] == "Service Request"
    without = http.post("/api/support-issues/", json={"summary": "no type", "is_reported_manually": True})
    assert without.status_code == 201 and without.json()["type"] == "Service Request"  # the first active type


def test_configured_request_types_replace_the_stock_one(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(request_types=("Incident", "Change Request"))
    with client(sim) as c:
        assert [t["name"] for t in c.get("/api/support-request-types/").json()] == ["Incident", "Change Request"]
        refused = c.post("/api/support-issues/", json=issue_body())
        assert refused.json() == {"type": ['"Service Request" is not a valid choice.']}
        defaulted = c.post("/api/support-issues/", json={"summary": "x", "is_reported_manually": True})
        assert defaulted.json()["type"] == "Incident"


def test_priority_must_exist_and_a_stock_server_has_none(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(validate=False)  # null is outside IssueRequest's type, not only the server's rule
    with client(sim) as c:
        assert c.get("/api/support-priorities/").json() == []
        for value in ("low", "normal", "high", "critical", "", None):
            resp = c.post("/api/support-issues/", json=issue_body(priority=value))
            assert resp.status_code == 400
            assert resp.json() == {"priority": ["Priority with requested name does not exist."]}
        assert sim.list_issues() == []
        assert create(c)["priority"] == ""  # leaving it out is the accepted variant


def test_priority_names_are_exact(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(priorities=JIRA_PRIORITIES)
    with client(sim) as c:
        listed = c.get("/api/support-priorities/").json()
        assert [p["name"] for p in listed] == sorted(JIRA_PRIORITIES)
        assert [p["name"] for p in c.get("/api/support-priorities/", params={"name_exact": "High"}).json()] == ["High"]
        lower = c.post("/api/support-issues/", json=issue_body(priority="high"))
        assert lower.json() == {"priority": ["Priority with requested name does not exist."]}
        assert create(c, priority="High")["priority"] == "High"


def test_only_staff_or_support_may_send_a_priority(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(role="user", priorities=JIRA_PRIORITIES)
    with client(sim) as c:
        resp = c.post("/api/support-issues/", json=issue_body(priority="High"))
        assert (resp.status_code, resp.json()) == (
            400,
            {"priority": ["Only staff or support can specify issue priority."]},
        )
        assert create(c)["priority"] == ""


def test_field_errors_come_together_before_the_caller_rule(http: httpx.Client) -> None:
    resp = http.post("/api/support-issues/", json={"type": "INCIDENT", "summary": "x", "priority": "high"})
    assert resp.status_code == 400
    assert resp.json() == {
        "type": ['"INCIDENT" is not a valid choice.'],
        "priority": ["Priority with requested name does not exist."],
    }


def test_remote_id_is_unique(http: httpx.Client) -> None:
    create(http, remote_id="virtengine:support/1")
    dup = http.post("/api/support-issues/", json=issue_body(remote_id="virtengine:support/1"))
    assert (dup.status_code, dup.json()) == (400, {"remote_id": ["issue with this remote id already exists."]})


# lookup: remote_id and paging --------------------------------------------------------------------
def test_remote_id_filter_is_icontains_newest_first_and_paged(http: httpx.Client) -> None:
    for n in ("1", "2", "10", "11", "100", "3"):
        create(http, remote_id=f"virtengine:support/{n}")
    create(http, remote_id="VIRTENGINE:SUPPORT/19")
    seen: list[str] = []
    url: str | None = "/api/support-issues/?remote_id=virtengine:support/1&page_size=2"
    pages = 0
    while url:
        resp = http.get(url)
        assert resp.status_code == 200 and resp.headers["x-result-count"] == "5"
        seen += [i["remote_id"] for i in resp.json()]
        url = resp.links.get("next", {}).get("url")
        pages += 1
    assert pages == 3
    assert seen == [
        "VIRTENGINE:SUPPORT/19",
        "virtengine:support/100",
        "virtengine:support/11",
        "virtengine:support/10",
        "virtengine:support/1",
    ]
    exact = [r for r in seen if r == "virtengine:support/1"]
    assert exact == ["virtengine:support/1"]  # only an exact comparison on the client side finds the one


def test_paging_links_and_invalid_pages(http: httpx.Client) -> None:
    for n in range(12):
        create(http, remote_id=f"virtengine:{n}")
    first = http.get("/api/support-issues/")
    assert len(first.json()) == 10 and first.headers["x-result-count"] == "12"  # page_size defaults to 10
    assert "page=" not in first.links["first"]["url"] and "page=2" in first.links["next"]["url"]
    assert "prev" not in first.links
    second = http.get(first.links["next"]["url"])
    assert len(second.json()) == 2 and "next" not in second.links and "page=" not in second.links["prev"]["url"]
    assert len(http.get("/api/support-issues/", params={"page_size": "abc"}).json()) == 10
    for page in ("3", "0", "abc"):
        resp = http.get("/api/support-issues/", params={"page": page})
        assert (resp.status_code, resp.json()) == (404, {"detail": "Invalid page."})


# updates and status --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["atlassian", "zammad", "smax"])
def test_remote_backends_refuse_patch_and_set_status(make_waldur_sim: MakeSim, backend: str) -> None:
    sim = make_waldur_sim(backend=backend)
    with client(sim) as c:
        issue = create(c)
        assert issue["update_is_available"] is False and issue["available_statuses"] == []
        patched = c.patch(f"/api/support-issues/{issue['uuid']}/", json={"summary": "Renamed"})
        assert (patched.status_code, patched.json()) == (400, ["Updating is not available."])
        moved = c.post(f"/api/support-issues/{issue['uuid']}/set_status/", json={"status": "Resolved"})
        assert (moved.status_code, moved.json()) == (400, ["Updating is not available."])
    assert sim.list_issues()[0].summary == "Lease 42 unreachable"


def test_basic_backend_patches_and_ignores_protected_fields(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(validate=False)  # the protected fields are outside PatchedIssueRequest
    with client(sim) as c:
        issue = create(c)
        patched = c.patch(
            f"/api/support-issues/{issue['uuid']}/", json={"summary": "Renamed", "type": "X", "status": "Resolved"}
        )
        assert patched.status_code == 200
        assert (patched.json()["summary"], patched.json()["type"], patched.json()["status"]) == (
            "Renamed",
            "Service Request",
            "Open",
        )


def test_set_status_follows_the_basic_backends_statuses(http: httpx.Client, sim: WaldurSim) -> None:
    issue = create(http)
    assert (issue["status"], issue["available_statuses"], issue["resolved"]) == ("Open", ["Canceled", "Resolved"], None)
    url = f"/api/support-issues/{issue['uuid']}/set_status/"
    for wrong in ("closed", "resolved", "Open"):
        resp = http.post(url, json={"status": wrong})
        assert (resp.status_code, resp.json()) == (
            400,
            {"status": [f"Issue cannot be moved from 'Open' to '{wrong}'."]},
        )
    done = http.post(url, json={"status": "Resolved"})
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["resolved"], done.json()["available_statuses"]) == (
        "Resolved",
        True,
        ["Canceled", "Open"],
    )
    reopened = http.post(url, json={"status": "Open"})
    assert reopened.status_code == 200 and reopened.json()["status"] == "Open"


def test_set_status_needs_a_status(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(validate=False)  # SetIssueStatusRequest requires it too
    with client(sim) as c:
        issue = create(c)
        missing = c.post(f"/api/support-issues/{issue['uuid']}/set_status/", json={})
        assert (missing.status_code, missing.json()) == (400, {"status": ["This field is required."]})


def test_a_configured_workflow_limits_set_status(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(status_transitions={"Open": {"Resolved"}, "Resolved": {"Open"}})
    with client(sim) as c:
        issue = create(c)
        assert issue["available_statuses"] == ["Resolved"]
        url = f"/api/support-issues/{issue['uuid']}/set_status/"
        refused = c.post(url, json={"status": "Canceled"})
        assert refused.json() == {"status": ["Issue cannot be moved from 'Open' to 'Canceled'."]}
        assert c.post(url, json={"status": "Resolved"}).json()["status"] == "Resolved"


def test_only_staff_or_support_may_update(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(role="user")
    with client(sim) as c:
        issue = create(c)
        denied = {"detail": "You do not have permission to perform this action."}
        patched = c.patch(f"/api/support-issues/{issue['uuid']}/", json={"summary": "Renamed"})
        assert (patched.status_code, patched.json()) == (403, denied)
        moved = c.post(f"/api/support-issues/{issue['uuid']}/set_status/", json={"status": "Resolved"})
        assert (moved.status_code, moved.json()) == (403, denied)


# fields left out -----------------------------------------------------------------------------------
def test_comment_author_fields_are_left_out_without_a_waldur_user(make_waldur_sim: MakeSim) -> None:
    for linked in (False, True):
        sim = make_waldur_sim(agent_linked=linked)
        with client(sim) as c:
            issue = create(c)
            mine = c.post(f"/api/support-issues/{issue['uuid']}/comment/", json={"description": "Any news?"}).json()
            assert mine["author_uuid"] == str(sim.me.uuid) and mine["is_public"] is True
            sim.agent_comment(issue["uuid"], "Looking into it.")
            (agent,) = [x for x in c.get("/api/support-comments/").json() if x["description"] == "Looking into it."]
        assert agent["author_name"] == "Support Agent"
        if linked:
            assert agent["author_uuid"] == str(sim.agent.uuid) and agent["author_email"] == "agent@example.com"
            assert agent["author_user"] == sim.user_url(sim.agent)
        else:
            assert not {"author_uuid", "author_email", "author_image"} & set(agent)
            assert agent["author_user"] is None


def test_internal_comments_are_listed_to_staff_only(make_waldur_sim: MakeSim) -> None:
    for role, expected in (("support", ["public"]), ("staff", ["internal", "public"])):
        sim = make_waldur_sim(role=role)
        with client(sim) as c:
            uuid = create(c)["uuid"]
            sim.agent_comment(uuid, "public")
            sim.agent_comment(uuid, "internal", is_public=False)
            assert sorted(x["description"] for x in c.get("/api/support-comments/").json()) == expected


def test_routing_and_link_fields_are_left_out_for_other_users(make_waldur_sim: MakeSim) -> None:
    staff_only = {"link", "processing_log", "is_routed", "provider_ticket_info", "provider_helpdesk", "parent_issue"}
    for role in ("staff", "support", "user"):
        sim = make_waldur_sim(role=role)
        with client(sim) as c:
            issue = create(c)
            listed = c.get("/api/support-issues/").json()
        assert [i["uuid"] for i in listed] == [issue["uuid"]]
        if role == "user":
            assert not staff_only & set(issue) and not staff_only & set(listed[0])
        else:
            assert staff_only <= set(issue)


def test_null_links_drop_their_uuid_and_name(http: httpx.Client, sim: WaldurSim) -> None:
    bare = create(http)
    assert bare["customer"] is None and bare["project"] is None and bare["reporter"] is None
    left_out = {"customer_uuid", "customer_name", "project_uuid", "project_name", "reporter_uuid", "reporter_name"}
    assert not left_out & set(bare) and "resource_name" not in bare
    full = create(http, project=sim.project_url(), remote_id="virtengine:2")
    assert full["customer"] == sim.customer_url() and full["customer_name"] == "VirtEngine Customer"  # from the project
    assert full["project_name"] == "VirtEngine Project"


# hooks ---------------------------------------------------------------------------------------------
def test_hooks_send_json_by_default_and_forms_lose_the_context(
    make_waldur_sim: MakeSim, webhook_receiver: WebhookReceiver
) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        for path, kind in (("/json", None), ("/form", "form")):
            hook = {"destination_url": webhook_receiver.url(path), "event_types": ["issue_creation_succeeded"]}
            assert c.post("/api/hooks-web/", json=hook | ({"content_type": kind} if kind else {})).status_code == 201
        issue = create(c)
    got = {d.path: d for d in webhook_receiver.wait_for(2)}
    as_json = got["/json"].json()
    assert got["/json"].headers["content-type"] == "application/json"
    assert set(as_json) == {"created", "message", "context", "event_type"}
    assert (
        as_json["event_type"] == "issue_creation_succeeded"
        and as_json["context"]["issue_uuid"] == UUID(issue["uuid"]).hex
    )
    form = parse_qs(got["/form"].body.decode())
    assert got["/form"].headers["content-type"] == "application/x-www-form-urlencoded"
    assert form["event_type"] == ["issue_creation_succeeded"] and form["message"] == [as_json["message"]]
    assert form["context"] == list(as_json["context"])  # key names only: the values never arrive


def test_attachments_need_staff_or_the_issues_caller(http: httpx.Client, sim: WaldurSim) -> None:
    own = create(http)
    files = {"file": ("log.txt", b"abc")}
    ok = http.post("/api/support-attachments/", data={"issue": own["url"]}, files=files)
    assert ok.status_code == 201, ok.text
    for_agent = create(http, is_reported_manually=False, caller=sim.user_url(sim.agent), remote_id="virtengine:2")
    denied = http.post("/api/support-attachments/", data={"issue": for_agent["url"]}, files=files)
    assert (denied.status_code, denied.json()) == (
        403,
        {"detail": "You do not have permission to perform this action."},
    )
    gone = sim.url("support-issues", UUID(int=5, version=4))
    missing = http.post("/api/support-attachments/", data={"issue": gone}, files=files)
    assert (missing.status_code, missing.json()) == (400, {"issue": ["Invalid hyperlink - Object does not exist."]})


# throttle: no support endpoint is throttled -----------------------------------------------------------
def test_a_burst_of_support_requests_is_not_throttled(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(validate=False)  # a stock simulator; no contract check, to keep 500 requests quick
    with client(sim) as c:
        uuid = create(c)["uuid"]
        paths = ("/api/support-issues/", f"/api/support-issues/{uuid}/", "/api/support-comments/")
        answers = [c.get(paths[i % len(paths)]).status_code for i in range(500)]
    assert answers.count(200) == 500, sorted(set(answers))
    assert not any(r.outcome.startswith("rate:") for r in sim.requests)
