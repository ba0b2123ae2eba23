"""The Waldur simulator's second credential (an agent acting over HTTP) and what inbound sync reads back:
`modified`, the list orderings and filters, and comment visibility, each as the server has it
(devnet/waldur_rules.py rows agent-token .. comment-filter-uuid), refusals with the server's exact body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from devnet.waldur_sim import WaldurSim
from devnet.webhook_receiver import WebhookReceiver

MakeSim = Callable[..., WaldurSim]
SIDECAR = {"Authorization": "Token waldur-test-token"}
AGENT = {"Authorization": "Token waldur-agent-token"}


def client(sim: WaldurSim, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=headers, timeout=5.0)


@pytest.fixture
def sim(make_waldur_sim: MakeSim) -> WaldurSim:
    return make_waldur_sim()


@pytest.fixture
def sidecar(sim: WaldurSim) -> Iterator[httpx.Client]:
    with client(sim, SIDECAR) as c:
        yield c


@pytest.fixture
def agent(sim: WaldurSim) -> Iterator[httpx.Client]:
    with client(sim, AGENT) as c:
        yield c


def create(c: httpx.Client, sim: WaldurSim, n: int = 1) -> dict[str, Any]:
    body = {"summary": f"Lease {n}", "is_reported_manually": True, "customer": sim.customer_url()}
    resp = c.post("/api/support-issues/", json=body | {"remote_id": f"virtengine:{n}"})
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def stored_modified(sim: WaldurSim, uuid: str) -> Any:
    return sim.get_issue(uuid).modified


# agent-token -------------------------------------------------------------------------------------
def test_the_agent_token_is_a_second_user(sim: WaldurSim, sidecar: httpx.Client, agent: httpx.Client) -> None:
    mine, theirs = sidecar.get("/api/users/me/").json(), agent.get("/api/users/me/").json()
    assert (mine["username"], mine["uuid"]) == ("virtengine-sidecar", str(sim.me.uuid))
    assert (theirs["username"], theirs["full_name"], theirs["uuid"]) == (
        "agent-smith",
        "Agent Smith",
        str(sim.http_agent.uuid),
    )
    assert theirs["is_support"] is True and theirs["is_staff"] is False
    with client(sim, {"Authorization": "Token nope"}) as stranger:
        refused = stranger.get("/api/users/me/")
        assert (refused.status_code, refused.json()) == (401, {"detail": "Invalid token."})
    sim.revoke_token()  # the sidecar's only
    assert sidecar.get("/api/users/me/").status_code == 401
    assert agent.get("/api/users/me/").status_code == 200


def test_agent_changes_are_attributed_to_the_agent(make_waldur_sim: MakeSim, webhook_receiver: WebhookReceiver) -> None:
    sim = make_waldur_sim()
    with client(sim, SIDECAR) as sidecar, client(sim, AGENT) as agent:
        hook = {"destination_url": webhook_receiver.url("/h"), "event_types": ["issue_update_succeeded"]}
        assert sidecar.post("/api/hooks-web/", json=hook).status_code == 201
        issue = create(sidecar, sim)
        said = agent.post(f"/api/support-issues/{issue['uuid']}/comment/", json={"description": "On it."}).json()
        assert (said["author_name"], said["author_uuid"]) == ("Agent Smith", str(sim.http_agent.uuid))
        assert said["author_user"] == sim.user_url(sim.http_agent)
        moved = agent.post(f"/api/support-issues/{issue['uuid']}/set_status/", json={"status": "Resolved"})
        assert moved.status_code == 200, moved.text
        own = create(agent, sim, 2)  # reported manually by the agent: the agent is the caller
        assert own["caller_uuid"] == str(sim.http_agent.uuid)
    (delivery,) = webhook_receiver.wait_for(1)
    context = delivery.json()["context"]
    assert (context["user_uuid"], context["user_username"]) == (sim.http_agent.uuid.hex, "agent-smith")


def test_the_agent_can_assign_itself(sim: WaldurSim, sidecar: httpx.Client, agent: httpx.Client) -> None:
    issue = create(sidecar, sim)
    smith = sim.url("support-users", sim.http_agent_support.uuid)
    patched = agent.patch(f"/api/support-issues/{issue['uuid']}/", json={"assignee": smith})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["assignee_uuid"], patched.json()["assignee_name"]) == (
        str(sim.http_agent_support.uuid),
        "Agent Smith",
    )


# modified ----------------------------------------------------------------------------------------
def test_modified_moves_on_every_save_but_not_on_a_comment(
    sim: WaldurSim, sidecar: httpx.Client, agent: httpx.Client
) -> None:
    issue = create(sidecar, sim)
    uuid = issue["uuid"]

    def age() -> Any:
        """Push the stored stamp an hour back, so any save shows as a later one."""
        stored = sim.get_issue(uuid)
        stored.modified -= timedelta(hours=1)
        return stored.modified

    before = age()
    shown = sidecar.get(f"/api/support-issues/{uuid}/").json()["modified"]
    assert agent.post(f"/api/support-issues/{uuid}/comment/", json={"description": "hi"}).status_code == 201
    assert stored_modified(sim, uuid) == before  # views.py comment saves the comment, not the issue
    assert sidecar.get(f"/api/support-issues/{uuid}/").json()["modified"] == shown
    before = age()
    assert agent.post(f"/api/support-issues/{uuid}/set_status/", json={"status": "Resolved"}).status_code == 200
    assert stored_modified(sim, uuid) > before
    before = age()
    smith = sim.url("support-users", sim.http_agent_support.uuid)
    assert agent.patch(f"/api/support-issues/{uuid}/", json={"assignee": smith}).status_code == 200
    assert stored_modified(sim, uuid) > before
    before = age()
    # a PATCH that changes nothing still saves the issue (views.py perform_update -> serializer.save()).
    assert agent.patch(f"/api/support-issues/{uuid}/", json={"summary": issue["summary"]}).status_code == 200
    assert stored_modified(sim, uuid) > before


# ordering and filters ----------------------------------------------------------------------------
def test_issues_order_by_modified_and_refuse_unknown_orderings(
    sim: WaldurSim, sidecar: httpx.Client, agent: httpx.Client
) -> None:
    uuids = [create(sidecar, sim, n)["uuid"] for n in range(1, 4)]
    assert agent.post(f"/api/support-issues/{uuids[0]}/set_status/", json={"status": "Resolved"}).status_code == 200
    newest = [i["uuid"] for i in sidecar.get("/api/support-issues/", params={"o": "-modified"}).json()]
    assert newest == [uuids[0], uuids[2], uuids[1]]
    assert [i["uuid"] for i in sidecar.get("/api/support-issues/").json()] == uuids[::-1]  # default -created
    for bad in ("updated", "-updated", "modified,bogus"):
        refused = sidecar.get("/api/support-issues/", params={"o": bad})
        name = bad.split(",")[-1]
        assert (refused.status_code, refused.json()) == (
            400,
            {"o": [f"Select a valid choice. {name} is not one of the available choices."]},
        )
    for fine in ("key", "-assignee_name", "caller_last_name,-created", "priority"):
        assert sidecar.get("/api/support-issues/", params={"o": fine}).status_code == 200, fine


def test_uuid_filters_refuse_malformed_values(sim: WaldurSim, sidecar: httpx.Client) -> None:
    create(sidecar, sim)
    org = next(iter(sim.customers))
    assert len(sidecar.get("/api/support-issues/", params={"customer_uuid": str(org)}).json()) == 1
    assert len(sidecar.get("/api/support-issues/", params={"customer_uuid": org.hex}).json()) == 1
    assert sidecar.get("/api/support-issues/", params={"customer_uuid": UUID(int=3).hex}).json() == []
    for path, name in (("/api/support-issues/", "customer_uuid"), ("/api/support-comments/", "issue_uuid")):
        refused = sidecar.get(path, params={name: "org-1"})
        assert (refused.status_code, refused.json()) == (400, {name: ["Enter a valid UUID."]})


def test_comments_order_by_created_or_modified_only(sim: WaldurSim, sidecar: httpx.Client, agent: httpx.Client) -> None:
    uuid = create(sidecar, sim)["uuid"]
    for text in ("first", "second"):
        assert agent.post(f"/api/support-issues/{uuid}/comment/", json={"description": text}).status_code == 201
    listed = sidecar.get("/api/support-comments/", params={"o": "created"}).json()
    assert [c["description"] for c in listed] == ["first", "second"]
    assert "modified" not in listed[0] and "issue_uuid" not in listed[0]  # CommentSerializer has neither
    assert listed[0]["issue"] == sim.url("support-issues", UUID(uuid))
    newest = sidecar.get("/api/support-comments/", params={"o": "-modified"}).json()
    assert [c["description"] for c in newest] == ["second", "first"]
    refused = sidecar.get("/api/support-comments/", params={"o": "-priority"})
    assert (refused.status_code, refused.json()) == (
        400,
        {"o": ["Select a valid choice. -priority is not one of the available choices."]},
    )


# visibility --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "sees_internal"), [("support", False), ("staff", True)])
def test_an_agents_internal_note_is_hidden_from_a_non_staff_sidecar(
    make_waldur_sim: MakeSim, role: str, sees_internal: bool
) -> None:
    sim = make_waldur_sim(role=role)
    with client(sim, SIDECAR) as sidecar, client(sim, AGENT) as agent:
        uuid = create(sidecar, sim)["uuid"]
        note = agent.post(f"/api/support-issues/{uuid}/comment/", json={"description": "x", "is_public": False})
        assert note.status_code == 201 and note.json()["is_public"] is False
        agent.post(f"/api/support-issues/{uuid}/comment/", json={"description": "y"})
        seen = {c["description"] for c in sidecar.get("/api/support-comments/", params={"issue_uuid": uuid}).json()}
        assert seen == ({"x", "y"} if sees_internal else {"y"})
        one = sidecar.get(f"/api/support-comments/{note.json()['uuid']}/")
        assert one.status_code == (200 if sees_internal else 404)
        # The author sees its own note whatever its role (Q(author__user=request.user)).
        assert {c["description"] for c in agent.get("/api/support-comments/").json()} == {"x", "y"}
