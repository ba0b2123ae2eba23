"""WaldurDesk reading changes back (ReadsChanges) from the real Waldur simulator on loopback, with an agent
acting over HTTP with its own token, and hostile answers that must become DeskErrors."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from devnet.waldur_sim import WaldurSim
from sidecar.desks.base import DeskComment, ExternalTicket, ReadsChanges
from sidecar.desks.waldur import WaldurDesk
from sidecar.desks.waldur_read import parse_time
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import WALDUR_TOKEN, ticket, waldur_config
from tests.sidecar.sync.rig import TamperingTransport

MakeSim = Callable[..., WaldurSim]
MakeDesk = Callable[..., WaldurDesk]
AGENT = {"Authorization": "Token waldur-agent-token"}


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[WaldurDesk] = []

    def make(sim: WaldurSim, transport: Any = None, **config: Any) -> WaldurDesk:
        desk = WaldurDesk(
            waldur_config(sim, **config), WALDUR_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=transport
        )
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


@pytest.fixture
def sim(make_waldur_sim: MakeSim) -> WaldurSim:
    return make_waldur_sim(orgs={"VirtEngine Customer": ["VirtEngine Project"], "Other": ["Elsewhere"]})


def agent_client(sim: WaldurSim) -> httpx.AsyncClient:
    """The agent at work over HTTP with its own token (not the sidecar's)."""
    return httpx.AsyncClient(base_url=sim.api_url, headers=AGENT, timeout=5.0)


@pytest.fixture
async def agent(sim: WaldurSim) -> AsyncIterator[httpx.AsyncClient]:
    async with agent_client(sim) as c:
        yield c


def issue_in(sim: WaldurSim, n: int, customer: str | None = None) -> str:
    """An issue the sidecar reported (in-process: setup only), its `modified` two hours old."""
    issue = sim.create_issue(
        {"summary": f"Lease {n}", "is_reported_manually": True, "customer": sim.customer_url(customer)}
        | {"remote_id": f"virtengine:ticket-{n}"},
        sim.me,
    )
    issue.modified -= timedelta(hours=2)
    return issue.uuid.hex


def ref(uuid: str) -> ExternalTicket:
    return ExternalTicket("waldur", uuid, uuid, "")


async def resolve(agent: httpx.AsyncClient, uuid: str) -> None:
    moved = await agent.post(f"/support-issues/{uuid}/set_status/", json={"status": "Resolved"})
    assert moved.status_code == 200, moved.text


def test_parse_time_takes_offsets_naive_and_rejects_garbage() -> None:
    assert parse_time("2026-01-02T03:04:05Z") == parse_time("2026-01-02T04:04:05+01:00") == 1767323045.0
    assert parse_time("2026-01-02T03:04:05.5") == 1767323045.5  # naive is UTC
    for bad in ("yesterday", "", None, 5, "2026-13-01T00:00:00Z"):
        assert parse_time(bad) is None


async def test_own_account_is_learnt_by_check(sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(sim)
    assert isinstance(desk, ReadsChanges)
    assert desk.own_account() is None
    await desk.check()
    assert desk.own_account() == sim.me.uuid.hex


async def test_changed_since_pages_until_older_and_keeps_to_the_organization(
    sim: WaldurSim, agent: httpx.AsyncClient, make_desk: MakeDesk
) -> None:
    desk = make_desk(sim)
    desk.page_size = 2
    mine = [issue_in(sim, n) for n in range(9)]
    other = issue_in(sim, 99, "Other")
    since = time.time() - 600  # ten minutes ago: every issue above is older
    await resolve(agent, mine[4])
    smith = sim.url("support-users", sim.http_agent_support.uuid)
    assert (await agent.patch(f"/support-issues/{mine[7]}/", json={"assignee": smith})).status_code == 200
    await resolve(agent, mine[1])
    await resolve(agent, other)  # another organization: not asked for
    changed = await desk.changed_since(since)
    assert [c.external_id for c in changed] == [mine[4], mine[7], mine[1]]  # oldest change first
    assert [c.key for c in changed] == [sim.get_issue(u).key for u in (mine[4], mine[7], mine[1])]
    for change in changed:
        assert change.updated_at == pytest.approx(sim.get_issue(change.external_id).modified.timestamp())
    lists = [r for r in sim.requests if r.method == "GET" and r.path == "/api/support-issues/"]
    assert len(lists) == 2  # pages of 2: the second page reaches an older issue and the walk stops
    assert all("o=-modified" in r.query and f"customer_uuid={next(iter(sim.customers)).hex}" in r.query for r in lists)
    assert await desk.changed_since(time.time() + 3600) == []


async def test_comments_since_finds_agent_comments_with_author_and_flags(
    make_waldur_sim: MakeSim, make_desk: MakeDesk
) -> None:
    for role, sees_internal in (("staff", True), ("support", False)):
        sim = make_waldur_sim(role=role)
        desk = make_desk(sim)
        desk.page_size = 2
        uuid = issue_in(sim, 1)
        old = sim.add_comment(sim.get_issue(uuid), "long ago", True, sim.http_agent)
        old.created -= timedelta(hours=2)
        since = time.time() - 600
        async with agent_client(sim) as agent:
            for text, public in (("Looking into it.", True), ("Customer is on the old plan.", False)):
                said = await agent.post(
                    f"/support-issues/{uuid}/comment/", json={"description": text, "is_public": public}
                )
                assert said.status_code == 201
        await desk.add_comment(ref(uuid), DeskComment("resp-1", "virtengine1abc", False, "It is down."))
        found = await desk.comments_since(since)
        assert {issue for issue, _ in found} == {uuid}
        views = [view for _, view in found]
        expected = ["Looking into it.", *(["Customer is on the old plan."] if sees_internal else [])]
        agents = [v for v in views if v.author_id == sim.http_agent.uuid.hex]
        assert [v.text for v in agents] == expected
        assert all(v.author_name == "Agent Smith" for v in agents)
        assert [v.public for v in agents] == [True, False][: len(expected)]
        assert all(v.marker is None for v in agents)
        # the sidecar's own reply (its account, its marker) is an echo: no re-read is queued for it
        assert [v for v in views if v.author_id == desk.own_account() or v.marker is not None] == []
        assert [v.created_at for v in views] == sorted(v.created_at or 0 for v in views)


async def test_read_issue_returns_what_the_agent_set(make_waldur_sim: MakeSim, make_desk: MakeDesk) -> None:
    sim = make_waldur_sim(priorities=("High", "Low"))
    desk = make_desk(sim)
    created = await desk.create(ticket(priority="low"))
    await desk.add_comment(created, DeskComment("resp-7", "virtengine1abc", False, "Still down."))
    async with agent_client(sim) as agent:
        await resolve(agent, created.external_id)
        smith = sim.url("support-users", sim.http_agent_support.uuid)
        assert (
            await agent.patch(f"/support-issues/{created.external_id}/", json={"assignee": smith})
        ).status_code == 200
        await agent.post(
            f"/support-issues/{created.external_id}/comment/", json={"description": "Fixed.", "is_public": True}
        )
        answer = (await agent.get(f"/support-issues/{created.external_id}/")).json()
    # priority is read-only on PATCH (serializers.py protected_fields): a remote desk or an admin changes it.
    sim.agent_update(created.external_id, priority="High")
    view = await desk.read_issue(created)
    stored = sim.get_issue(created.external_id)
    assert view.ref.external_id == created.external_id and view.claim == "ticket-0123-id"
    assert view.fields["status"].value == "Resolved"
    assert view.fields["assignee"].value == sim.http_agent_support.uuid.hex
    assert view.fields["priority"].value == "High"
    stamp = view.fields["status"].change_id
    assert stamp != answer["modified"]  # the priority change saved the issue again
    assert {f.change_id for f in view.fields.values()} == {stamp}
    assert view.updated_at == pytest.approx(stored.modified.timestamp())
    assert all(f.actor is None for f in view.fields.values())
    assert [c.text for c in view.comments][-1] == "Fixed."
    assert view.comments[0].marker == "resp-7" and view.comments[0].author_id == sim.me.uuid.hex
    assert (view.comments[-1].author_id, view.comments[-1].public) == (sim.http_agent.uuid.hex, True)
    unassigned = await desk.create(ticket(n=5))
    bare = await desk.read_issue(unassigned)
    assert bare.fields["assignee"].value is None and bare.fields["status"].value == "Open"


def _edit(path: list[Any], value: Any, *, drop: bool = False) -> Callable[[bytes], bytes]:
    """Rewrite one field of a JSON answer (path into objects and list items)."""

    def change(body: bytes) -> bytes:
        data = json.loads(body)
        node = data
        for step in path[:-1]:
            node = node[step]
        if drop:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return json.dumps(data).encode()

    return change


async def test_read_issue_asks_for_the_issue_its_comments_and_its_files_at_once(
    sim: WaldurSim, make_desk: MakeDesk
) -> None:
    """Three answers in one round trip's time: all three requests reach Waldur before the first is answered."""
    desk = make_desk(sim, requests_per_second=1000.0)
    await desk.check()
    uuid = issue_in(sim, 1)
    sim.latency = 0.3
    with sim.lock:
        sim.requests.clear()
    view = await desk.read_issue(ref(uuid))
    assert view.ref.external_id == uuid
    with sim.lock:
        asked = sorted((r.at, r.path) for r in sim.requests)
    assert [path for _, path in sorted(asked, key=lambda a: a[1])] == [
        "/api/support-attachments/",
        "/api/support-comments/",
        f"/api/support-issues/{uuid}/",
    ]
    assert asked[-1][0] - asked[0][0] < sim.latency, "a request waited for another's answer"


@pytest.mark.parametrize(
    ("call", "path", "rule"),
    [
        ("changed", "/api/support-issues/", _edit([0, "modified"], 12)),
        ("changed", "/api/support-issues/", _edit([0, "uuid"], "not-a-uuid")),
        ("changed", "/api/support-issues/", lambda body: b'{"detail": "nope"}'),
        ("comments", "/api/support-comments/", _edit([0, "is_public"], "yes")),
        ("comments", "/api/support-comments/", _edit([0, "author_uuid"], 7)),
        ("comments", "/api/support-comments/", _edit([0, "issue"], "https://x/api/support-issues/zz/")),
        ("comments", "/api/support-comments/", _edit([0, "created"], "soon")),
        ("comments", "/api/support-comments/", _edit([0, "description"], drop=True, value=None)),
        ("read", "/api/support-issues/", _edit(["status"], ["Open"])),
        ("read", "/api/support-issues/", _edit(["priority"], 3)),
        ("read", "/api/support-issues/", _edit(["assignee_uuid"], "someone")),
        ("read", "/api/support-issues/", _edit(["modified"], None)),
        ("read", "/api/support-issues/", _edit(["remote_id"], {"a": 1})),
        ("read", "/api/support-issues/", _edit(["uuid"], UUID(int=1).hex)),
        ("read", "/api/support-comments/", _edit([0, "uuid"], None)),
    ],
)
async def test_hostile_answers_are_desk_errors(
    sim: WaldurSim, make_desk: MakeDesk, call: str, path: str, rule: Callable[[bytes], bytes]
) -> None:
    tamper = TamperingTransport()
    desk = make_desk(sim, transport=tamper)
    uuid = issue_in(sim, 1)
    sim.get_issue(uuid).modified += timedelta(hours=2)
    sim.add_comment(sim.get_issue(uuid), "Secret plan for lease 1", True, sim.http_agent)
    await desk.check()
    tamper.rewrite("GET", path, rule)
    with pytest.raises(DeskError) as caught:
        if call == "changed":
            await desk.changed_since(time.time() - 600)
        elif call == "comments":
            await desk.comments_since(time.time() - 600)
        else:
            await desk.read_issue(ref(uuid))
    assert tamper.tampered, "the rewrite was not reached"
    assert caught.value.retryable is False
    assert "Secret plan" not in str(caught.value) and "Lease 1" not in str(caught.value)


# attachments_since (#15): an attachment leaves its issue's `modified` as it is --------------------------
PDF = b"%PDF-1.7\n" + bytes(64)


def attach(sim: WaldurSim, uuid: str, name: str, age: timedelta = timedelta(0)) -> str:
    """The agent attaches a file at the desk (in-process); `age` backdates it."""
    att_uuid = sim.agent_attach(uuid, name, PDF)
    with sim.lock:
        (att,) = [a for a in sim.attachments if a.uuid.hex == att_uuid]
        att.created -= age
    return att_uuid


async def test_attachments_since_reads_every_page_of_the_unordered_list(sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(sim)
    desk.page_size = 2
    old, first, last = issue_in(sim, 1), issue_in(sim, 2), issue_in(sim, 3)
    stamps = {u: sim.get_issue(u).modified for u in (old, first, last)}
    since = time.time() - 600
    # Creation order, which the list keeps: a new file, an old one, then a new one on page 2 (an early stop
    # at the first old file would miss it); and a second new file on the first issue (named once).
    attach(sim, first, "a.pdf")
    attach(sim, old, "b.pdf", age=timedelta(hours=2))
    attach(sim, last, "c.pdf")
    attach(sim, first, "d.pdf")
    assert {u: sim.get_issue(u).modified for u in stamps} == stamps  # no issue was saved ...
    assert await desk.changed_since(since) == []  # ... so the issues' list does not show them
    assert await desk.attachments_since(since) == sorted({first, last})
    lists = [r for r in sim.requests if r.method == "GET" and r.path == "/api/support-attachments/"]
    assert len(lists) == 2 and all("o=" not in r.query for r in lists)  # every page; no ordering asked
    assert await desk.attachments_since(time.time() + 3600) == []


async def test_attachments_since_reaches_back_its_overlap(sim: WaldurSim, make_desk: MakeDesk) -> None:
    """A file stamped a little before `since` (desk clock skew) is still found; one far older is not."""
    desk = make_desk(sim)
    skewed, older = issue_in(sim, 1), issue_in(sim, 2)
    since = time.time() - 600
    attach(sim, skewed, "a.pdf", age=timedelta(seconds=600 + 30))
    attach(sim, older, "b.pdf", age=timedelta(seconds=600 + 300))
    assert await desk.attachments_since(since) == [skewed]


@pytest.mark.parametrize(
    "rule",
    [
        _edit([0, "created"], "soon"),
        _edit([0, "created"], drop=True, value=None),
        _edit([0, "issue"], "https://x/api/support-issues/zz/"),
        _edit([0, "issue"], None),
        lambda body: b'{"detail": "nope"}',
    ],
)
async def test_hostile_attachment_lists_are_desk_errors(
    sim: WaldurSim, make_desk: MakeDesk, rule: Callable[[bytes], bytes]
) -> None:
    tamper = TamperingTransport()
    desk = make_desk(sim, transport=tamper)
    attach(sim, issue_in(sim, 1), "Secret plan for lease 1.pdf")
    tamper.rewrite("GET", "/api/support-attachments/", rule)
    with pytest.raises(DeskError) as caught:
        await desk.attachments_since(time.time() - 600)
    assert tamper.tampered, "the rewrite was not reached"
    assert caught.value.retryable is False
    assert "Secret" not in str(caught.value) and "lease" not in str(caught.value)
