"""The Waldur simulator over real loopback HTTP, with the generated waldur-api-client as a client.

The server rules themselves (refusals with exact texts) are held by tests/devnet/test_waldur_rules.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

import httpx
import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.support_comments import support_comments_list
from waldur_api_client.api.support_issues import (
    support_issues_comment,
    support_issues_create,
    support_issues_list,
)
from waldur_api_client.api.support_users import support_users_list
from waldur_api_client.models import CommentRequest, IssueRequest, PatchedIssueRequest

from devnet.sim_faults import ManualClock
from devnet.waldur_sim import WaldurSim
from devnet.webhook_receiver import WebhookReceiver

TOKEN = {"Authorization": "Token waldur-test-token"}


def client(sim: WaldurSim, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=TOKEN, timeout=kwargs.pop("timeout", 5.0), **kwargs)


@pytest.fixture
def http(waldur_sim: WaldurSim) -> Iterator[httpx.Client]:
    with client(waldur_sim) as c:
        yield c


def create(c: httpx.Client, sim: WaldurSim, remote_id: str | None = "virtengine:1", **extra: Any) -> httpx.Response:
    """A create a stock server accepts: an active request type, reported by the token's own user."""
    body = {
        "type": "Service Request",
        "summary": "Lease 42 unreachable",
        "description": "The lease does not answer.",
        "is_reported_manually": True,
        "customer": sim.customer_url(),
        "project": sim.project_url(),
        **extra,
    }
    if remote_id:
        body["remote_id"] = remote_id
    return c.post("/api/support-issues/", json=body)


def test_issue_lifecycle_and_unique_remote_id(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    resp = create(http, waldur_sim)
    assert resp.status_code == 201, resp.text
    issue = resp.json()
    assert issue["remote_id"] == "virtengine:1" and issue["status"] == "Open" and issue["priority"] == ""
    assert issue["customer"] == waldur_sim.customer_url()
    dup = create(http, waldur_sim)
    assert dup.status_code == 400 and "remote_id" in dup.json()
    listed = http.get("/api/support-issues/", params={"remote_id": "virtengine:1"}).json()
    assert [i["uuid"] for i in listed] == [issue["uuid"]]
    assert http.get("/api/support-issues/", params={"remote_id": "virtengine:2"}).json() == []
    patched = http.patch(f"/api/support-issues/{issue['uuid']}/", json={"summary": "Renamed"})
    assert patched.status_code == 200 and patched.json()["summary"] == "Renamed"
    waldur_sim.agent_set_status(issue["uuid"], "in_progress")
    assert http.get(f"/api/support-issues/{issue['uuid']}/").json()["status"] == "in_progress"
    assert http.get("/api/support-issues/00000000000040008000000000000000/").status_code == 404


def test_writes_answer_the_issue_as_a_read_right_after_shows_it(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    """PATCH and set_status answer the serialized issue (DRF UpdateModelMixin.update returns serializer.data;
    waldur-api-client parses an Issue from support_issues_partial_update and support_issues_set_status), the
    same as a GET right after: the sidecar takes those answers as its read-back. Contract-checked (validate)."""
    uuid = create(http, waldur_sim).json()["uuid"]
    url = f"/api/support-issues/{uuid}/"
    patched = http.patch(url, json={"summary": "Renamed"})
    assert patched.status_code == 200 and patched.json() == http.get(url).json()
    moved = http.post(url + "set_status/", json={"status": "Resolved"})
    assert moved.status_code == 200 and moved.json() == http.get(url).json()
    assert moved.json()["status"] == "Resolved"
    assert waldur_sim.contract_violations == []


def test_business_rules_without_validation(make_waldur_sim: Callable[..., WaldurSim]) -> None:
    sim = make_waldur_sim(validate=False)
    with client(sim) as c:
        assert "type" in create(c, sim, type="BUG").json()
        assert "type" in create(c, sim, type="INCIDENT").json()  # the generated client's enum is not a stock type
        bare = create(c, sim, customer=sim.customer_url().rstrip("/").rsplit("/", 1)[-1])
        assert bare.status_code == 400 and bare.json()["customer"] == ["Invalid hyperlink - No URL match."]
        assert "priority" in create(c, sim, priority="urgent").json()
        assert create(c, sim, remote_id=None).status_code == 201  # remote_id is optional


def test_comments_via_the_issue_action(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    uuid = create(http, waldur_sim).json()["uuid"]
    resp = http.post(f"/api/support-issues/{uuid}/comment/", json={"description": "Any news?", "is_public": True})
    assert resp.status_code == 201 and resp.json()["author_uuid"] == str(waldur_sim.me.uuid)
    waldur_sim.agent_comment(uuid, "Looking into it.", is_public=True)
    waldur_sim.agent_comment(uuid, "internal note", is_public=False)
    # The sidecar's user is support, not staff: others' internal notes are not listed to it.
    listed = http.get("/api/support-comments/", params={"issue_uuid": uuid, "o": "created"}).json()
    assert [c["description"] for c in listed] == ["Any news?", "Looking into it."]
    assert [c["is_public"] for c in listed] == [True, True]
    assert listed[1]["author_name"] == waldur_sim.agent.full_name and "author_uuid" not in listed[1]
    newest_first = http.get("/api/support-comments/", params={"issue_uuid": uuid}).json()
    assert [c["description"] for c in newest_first] == ["Looking into it.", "Any news?"]
    assert http.get(f"/api/support-comments/{listed[0]['uuid']}/").json()["description"] == "Any news?"


def test_every_comment_is_listed_newest_first_even_after_the_clock_stepped_back(
    http: httpx.Client, waldur_sim: WaldurSim
) -> None:
    """The listing without an issue takes the comments in creation order reversed, walking only as far as the
    page; a comment whose `created` is older than the one before it (the wall clock stepped back) is still
    placed by its time, and another user's internal note is still left out for the support-role sidecar."""
    uuid = create(http, waldur_sim).json()["uuid"]
    for text in ("first", "second", "third"):
        waldur_sim.agent_comment(uuid, text, is_public=True)
    waldur_sim.agent_comment(uuid, "internal note", is_public=False)
    listed = http.get("/api/support-comments/", params={"page_size": 2})
    assert [c["description"] for c in listed.json()] == ["third", "second"]
    assert listed.headers["x-result-count"] == "3" and "next" in listed.links
    first = next(c for c in waldur_sim.comments if c.description == "first")
    waldur_sim.wall_clock = lambda: first.created - timedelta(seconds=1)
    waldur_sim.agent_comment(uuid, "stepped back", is_public=True)
    listed = http.get("/api/support-comments/")
    assert [c["description"] for c in listed.json()] == ["third", "second", "first", "stepped back"]
    assert listed.headers["x-result-count"] == "4"
    ascending = http.get("/api/support-comments/", params={"o": "created"}).json()
    assert [c["description"] for c in ascending] == ["stepped back", "first", "second", "third"]


@pytest.mark.parametrize("agent_role", ["support", "staff"])
def test_every_page_of_every_comment_matches_the_whole_listing_filtered(agent_role: str) -> None:
    """The listing of every comment pages without reading them all (running counts, a walk newest first
    stopping at the page); each page and the count must be what filtering the whole list gives: for a
    support-role caller the public comments and its own internal notes, for staff everything; the orderings
    and filters that take the whole list agree with it."""
    with WaldurSim(agent_role=agent_role) as sim, client(sim) as http:
        tokens = {"sidecar": TOKEN, "http agent": {"Authorization": f"Token {sim.agent_token}"}}
        issues = [create(http, sim, remote_id=f"virtengine:{i}").json()["uuid"] for i in range(3)]
        made = []  # (description, is_public, author) in creation order
        for n in range(23):
            issue, public, author = issues[n % 3], n % 3 != 1, ("sidecar", "http agent", "agent", "agent")[n % 4]
            if author == "agent":
                sim.agent_comment(issue, f"c{n}", is_public=public)
            else:
                body = {"description": f"c{n}", "is_public": public}
                assert http.post(f"/api/support-issues/{issue}/comment/", json=body, headers=tokens[author]).is_success
            made.append((f"c{n}", public, author))
        assert any(not public and author == "agent" for _, public, author in made)  # a note only staff may see
        for caller, staff in (("sidecar", False), ("http agent", agent_role == "staff")):
            token = tokens[caller]
            expected = [d for d, public, author in reversed(made) if staff or public or author == caller]
            pages: list[str] = []
            url: str | None = "/api/support-comments/?page_size=4"
            while url:
                answer = http.get(url, headers=token)
                assert answer.status_code == 200 and answer.headers["x-result-count"] == str(len(expected))
                pages += [c["description"] for c in answer.json()]
                url = answer.links.get("next", {}).get("url")
            assert pages == expected, caller
            for params in ({"o": "-created"}, {"o": "-modified", "page": "2", "page_size": "5"}):
                answer = http.get("/api/support-comments/", params=params, headers=token)
                size, page = int(params.get("page_size", 10)), int(params.get("page", 1))
                assert [c["description"] for c in answer.json()] == expected[(page - 1) * size : page * size]
            oldest = http.get("/api/support-comments/", params={"o": "created", "page_size": 100}, headers=token)
            assert [c["description"] for c in oldest.json()] == expected[::-1]
            public = http.get("/api/support-comments/", params={"is_public": "true", "page_size": 100}, headers=token)
            assert [c["description"] for c in public.json()] == [d for d, p, _ in reversed(made) if p]


def test_paging_with_link_headers(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    for i in range(12):
        assert create(http, waldur_sim, remote_id=f"virtengine:{i}").status_code == 201
    seen: list[str] = []
    url: str | None = "/api/support-issues/?page_size=5&o=created"
    pages = 0
    while url:
        resp = http.get(url)
        assert resp.headers["x-result-count"] == "12"
        seen += [i["remote_id"] for i in resp.json()]
        url = resp.links.get("next", {}).get("url")
        pages += 1
    assert pages == 3 and seen == [f"virtengine:{i}" for i in range(12)]
    assert http.get("/api/support-issues/", params={"page": 9}).status_code == 404


def test_attachments_and_structure(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    issue = create(http, waldur_sim).json()
    resp = http.post("/api/support-attachments/", data={"issue": issue["url"]}, files={"file": ("log.txt", b"abc")})
    assert resp.status_code == 201, resp.text
    assert resp.json()["file_name"] == "log.txt" and resp.json()["file_size"] == 3
    assert len(http.get("/api/support-attachments/", params={"issue_uuid": issue["uuid"]}).json()) == 1
    assert http.get(waldur_sim.customer_url()).json()["name"] == "VirtEngine Customer"
    assert http.get(waldur_sim.project_url()).json()["customer"] == waldur_sim.customer_url()


def test_generated_client_sends_but_cannot_parse_real_answers(waldur_sim: WaldurSim) -> None:
    """The generated models send `is_reported_manually: false` (so a caller is needed) and require
    answer fields the server leaves out (here reporter_uuid, customer_uuid, ...): they raise on them."""
    with AuthenticatedClient(base_url=waldur_sim.base_url, token="waldur-test-token") as api:
        body = IssueRequest(type_="Service Request", summary="via client", remote_id="virtengine:77")
        body.caller = waldur_sim.user_url()
        with pytest.raises(KeyError):
            support_issues_create.sync(client=api, body=body)
        (stored,) = waldur_sim.by_remote_id("virtengine:77")  # the server accepted it all the same
        assert stored.description.startswith("Reported by VirtEngine Sidecar.")
        with pytest.raises(KeyError):
            support_issues_list.sync(client=api, remote_id="virtengine:77")
        comment = support_issues_comment.sync(stored.uuid, client=api, body=CommentRequest(description="hi"))
        assert comment is not None and comment.description == "hi"  # the sidecar's own comment has an author
        comments = support_comments_list.sync(client=api, issue_uuid=stored.uuid)
        assert comments is not None and len(comments) == 1


def test_hooks_are_delivered_unsigned_with_optional_secret(
    make_waldur_sim: Callable[..., WaldurSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_waldur_sim(hook_secret="shared")
    with client(sim) as c:
        events = [
            "issue_creation_succeeded",
            "issue_update_succeeded",
            "issue_deletion_succeeded",
            "attachment_created",
        ]
        hook = c.post("/api/hooks-web/", json={"destination_url": webhook_receiver.url(), "event_types": events})
        assert hook.status_code == 201 and hook.json()["event_types"] == events
        assert hook.json()["content_type"] == "json"  # the model's default when none is given
        form_hook = {
            "destination_url": webhook_receiver.url("/form"),
            "event_types": ["issue_deletion_succeeded"],
            "content_type": "form",
        }
        assert c.post("/api/hooks-web/", json=form_hook).status_code == 201
        assert len(c.get("/api/hooks-web/").json()) == 2
        uuid = create(c, sim).json()["uuid"]
    sim.agent_comment(uuid, "no hook for comments")
    sim.agent_set_status(uuid, "Resolved")
    sim.agent_attach(uuid, "shot.png", b"\x89PNG")
    sim.agent_delete_issue(uuid)
    got = webhook_receiver.wait_for(5)
    by_path = {d.path: d for d in got}
    json_hooks = {d.json()["event_type"]: d.json() for d in got if d.path == "/hook"}  # concurrent: no order
    assert set(json_hooks) == {
        "issue_creation_succeeded",
        "issue_update_succeeded",
        "attachment_created",
        "issue_deletion_succeeded",
    }
    for d in got:
        assert d.headers["x-webhook-secret"] == "shared"
        assert not any(h.startswith("x-hub-signature") or h.startswith("x-waldur-signature") for h in d.headers)
    update = json_hooks["issue_update_succeeded"]
    assert set(update) == {"created", "message", "context", "event_type"}
    assert update["context"]["issue_status"] == "Resolved" and update["context"]["issue_uuid"] == uuid.replace("-", "")
    assert "issue_remote_id" not in update["context"]  # Waldur's event context carries no remote_id
    assert by_path["/form"].headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(by_path["/form"].body.decode())
    assert form["event_type"] == ["issue_deletion_succeeded"]
    assert "issue_uuid" in form["context"] and uuid.replace("-", "") not in by_path["/form"].body.decode()


def test_auth_rate_limits_and_faults(make_waldur_sim: Callable[..., WaldurSim]) -> None:
    clock = ManualClock()  # the bucket refills only when the test moves this clock
    sim = make_waldur_sim(rate_per_second=0.5, burst=1, clock=clock)
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer waldur-test-token"}) as bearer:
        assert bearer.get("/api/support-issues/").status_code == 401
    sim.faults.inject("drop")
    sim.faults.inject("503")
    with client(sim) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/api/support-issues/")
        assert c.get("/api/support-issues/").status_code == 503
        assert c.get("/api/support-issues/").status_code == 200  # faults and 401s take no tokens
        limited = c.get("/api/support-issues/")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1 and "ratelimit-reason" not in limited.headers
        assert "throttled" in limited.json()["detail"] or "Rate limit" in limited.json()["detail"]
        clock.advance(2.0)
        assert c.get("/api/support-issues/").status_code == 200  # one token back after 1 / rate seconds
        sim.revoke_token()
        sim.bucket = None
        assert c.get("/api/support-issues/").status_code == 401


def test_model_validation_catches_bad_bodies(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    bad = http.post("/api/support-issues/", json={"type": "Service Request", "summary": 5})
    assert bad.status_code == 400 and "contract violation" in bad.json()["detail"]
    # `type` is optional and free text to the server (business rules refuse these, not the contract):
    assert http.post("/api/support-issues/", json={"type": "BUG", "summary": "x"}).status_code == 400
    assert http.post("/api/support-issues/", json={"summary": "no type"}).status_code == 400
    assert http.get("/api/support-issues/", params={"modified_after": "2026-01-01"}).status_code == 400
    uuid = create(http, waldur_sim).json()["uuid"]
    assert http.patch(f"/api/support-issues/{uuid}/", json={"status": "closed"}).status_code == 400
    waldur_sim.issues[next(iter(waldur_sim.issues))].summary = 123  # type: ignore[assignment]
    http.get(f"/api/support-issues/{uuid}/")  # the sim's own answer now breaks the Issue model
    found = "\n".join(waldur_sim.contract_violations)
    assert "IssueTypeEnum" not in found and "requires field 'type'" not in found
    for needle in (
        "IssueRequest.summary",
        "modified_after",
        "PatchedIssueRequest has no field(s) status",
        "response: Issue.summary",
    ):
        assert needle in found, needle
    waldur_sim.contract_violations.clear()


def test_assignee_is_a_support_user_hyperlink(http: httpx.Client, waldur_sim: WaldurSim) -> None:
    ada = waldur_sim.add_support_user("Ada Agent")
    issue = create(http, waldur_sim).json()
    assert issue["assignee"] is None and "assignee_uuid" not in issue and "assignee_name" not in issue
    url, stored = f"/api/support-issues/{issue['uuid']}/", waldur_sim.issues[UUID(issue["uuid"])]
    patched = http.patch(url, json={"assignee": waldur_sim.url("support-users", ada)})
    assert patched.status_code == 200, patched.text
    got = http.get(url).json()
    assert got["assignee"] == waldur_sim.url("support-users", ada) and got["assignee_uuid"] == str(ada)
    assert got["assignee_name"] == "Ada Agent" and stored.assignee_uuid == ada
    unknown = waldur_sim.url("support-users", UUID(int=7, version=4))
    missing = http.patch(url, json={"assignee": unknown})
    assert missing.status_code == 400 and missing.json() == {"assignee": ["Invalid hyperlink - Object does not exist."]}
    assert http.patch(url, json={"assignee": "Ada Agent"}).json() == {"assignee": ["Invalid hyperlink - No URL match."]}
    assert stored.assignee_uuid == ada  # rejected patches change nothing
    assert http.get(waldur_sim.url("support-users", ada)).json()["assigned_issues_count"] == 1
    cleared = http.patch(url, json={"assignee": None}).json()
    assert cleared["assignee"] is None and "assignee_uuid" not in cleared and "assignee_name" not in cleared
    assert stored.assignee_uuid is None
    assert http.get(f"/api/support-users/{UUID(int=7, version=4).hex}/").status_code == 404


def test_generated_client_lists_support_users_and_assignment_goes_through_a_caller(waldur_sim: WaldurSim) -> None:
    ada, bob = waldur_sim.add_support_user("Ada Agent"), waldur_sim.add_support_user("Bob Builder")
    with AuthenticatedClient(base_url=waldur_sim.base_url, token="waldur-test-token") as api:
        users = support_users_list.sync(client=api, name="ada")
        assert users is not None and [u.uuid for u in users] == [ada]
        listed = support_users_list.sync(client=api)
        # The agent behind the second token is a support user too (linked to its Waldur user).
        agent = waldur_sim.http_agent_support.uuid
        assert listed is not None and {u.uuid for u in listed} == {ada, bob, agent}
        (smith,) = [u for u in listed if u.uuid == agent]
        assert smith.user == waldur_sim.user_url(waldur_sim.http_agent) and smith.name == "Agent Smith"
    with client(waldur_sim) as c:
        # An assignee at create needs a caller (IssueSerializer.validate refuses it on a manual report).
        body = {"type": "Service Request", "summary": "assign me", "caller": waldur_sim.user_url()}
        resp = c.post("/api/support-issues/", json=body | {"assignee": waldur_sim.url("support-users", bob)})
        assert resp.status_code == 201, resp.text
        issue = resp.json()
        assert issue["assignee_uuid"] == str(bob) and issue["assignee_name"] == "Bob Builder"
        patch = PatchedIssueRequest(assignee=waldur_sim.url("support-users", ada)).to_dict()
        moved = c.patch(f"/api/support-issues/{issue['uuid']}/", json=patch).json()
        assert moved["assignee_uuid"] == str(ada) and moved["assignee_name"] == "Ada Agent"
