"""JiraDesk's inbound reads (ReadsChanges) against the Jira simulator on loopback, and hostile answers.

The agent acts over HTTP with its own credential, so every change is attributed the way real Jira would.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devnet.jira_model import text_to_adf
from devnet.jira_sim import JiraSim
from sidecar.desks.base import DeskComment, ExternalTicket, ReadsChanges
from sidecar.desks.jira import JiraDesk
from sidecar.desks.jira_read import parse_time, sweep_jql
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config, ticket

AGENT = ("agent@example.com", "jira-agent-token")
MakeDesk = Callable[..., JiraDesk]


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[JiraDesk] = []

    def make(
        sim: JiraSim | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> JiraDesk:
        settings = jira_config(sim, **config) if sim is not None else _config_for("http://hostile.test")
        desk = JiraDesk(
            settings, JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True, transport=transport, clock=clock
        )
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


def _config_for(url: str) -> Any:
    from sidecar.config_schema import JiraConfig

    return JiraConfig(base_url=url, username="sidecar@example.com", account_id="5c0000000000000000516465", timeout=5.0)


def age(sim: JiraSim, key: str, hours: float) -> None:
    """Make an issue's last change `hours` old (in the store and in what search sees)."""
    issue = sim.issue(key)
    with sim.lock:
        issue.updated -= timedelta(hours=hours)
        issue.created -= timedelta(hours=hours)
        sim.reindex_as_is(issue)


def test_parse_time_forms() -> None:
    assert parse_time("2024-01-01T12:00:00.000+0000") == 1704110400.0
    assert parse_time("2024-01-01T14:00:00.500+02:00") == 1704110400.5
    assert parse_time("2024-01-01T12:00:00Z") == 1704110400.0
    assert parse_time("2024-01-01T07:00:00.000-0500") == 1704110400.0
    for bad in ("", "yesterday", "2024-13-01T00:00:00.000+0000", None, 5, "2024-01-01T12:00:00.000+0000" * 3):
        assert parse_time(bad) is None


def test_sweep_jql_has_a_minute_of_overlap() -> None:
    assert (
        sweep_jql("VESUPPORT", 1000.0, 1000.0 + 600)
        == 'project = "VESUPPORT" AND updated >= "-11m" ORDER BY updated ASC'
    )
    assert sweep_jql("VESUPPORT", 1000.0, 1000.0 + 601).endswith('"-12m" ORDER BY updated ASC')
    assert '"-1m"' in sweep_jql("VESUPPORT", 2000.0, 1000.0)  # a future `since`: the minimum


async def test_changed_since_finds_exactly_the_recent_issues_across_pages(
    make_jira_sim: Callable[..., JiraSim], make_desk: MakeDesk
) -> None:
    sim = make_jira_sim(search_delay=0)
    desk = make_desk(sim)
    assert isinstance(desk, ReadsChanges)
    old = [(await desk.create(ticket(n))).key for n in range(1, 4)]
    for key in old:
        age(sim, key, 2)
    fresh = [(await desk.create(ticket(n))).key for n in range(10, 15)]
    sim.agent_comment(old[0], "an old issue commented on now")  # a comment bumps `updated`
    desk.page_size = 2
    since = time.time() - 600
    before = sim.request_count("POST", "/search/jql")
    found = await desk.changed_since(since)
    assert sorted(c.key for c in found) == sorted([*fresh, old[0]])
    assert sim.request_count("POST", "/search/jql") - before == 3  # 6 hits, 2 a page
    assert [c.updated_at for c in found] == sorted(c.updated_at or 0 for c in found)  # oldest change first
    assert all(c.external_id == sim.issue(c.key).id and c.updated_at and c.updated_at >= since for c in found)
    # the injected clock decides "now": a sweep asked as if it were three hours later reaches the old ones
    later = make_desk(sim, clock=lambda: time.time() + 3 * 3600)
    assert len(await later.changed_since(time.time() - 3 * 3600)) == 8


async def test_read_issue_after_an_agent_works_over_http(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    await desk.add_comment(ref, DeskComment(marker="resp-1", author="Alice", is_agent=False, body="Still down."))
    async with httpx.AsyncClient(base_url=jira_sim.base_url, auth=AGENT, timeout=5.0) as agent:
        path = f"/rest/api/3/issue/{ref.key}"
        assert (await agent.post(path + "/transitions", json={"transition": {"id": "11"}})).status_code == 204
        assert (await agent.put(path, json={"fields": {"priority": {"name": "Highest"}}})).status_code == 204
        assert (await agent.put(path + "/assignee", json={"accountId": jira_sim.agent.account_id})).status_code == 204
        body = {"body": text_to_adf("Restarted the ingress.\nPlease retry.")}
        public = (await agent.post(path + "/comment", json=body)).json()["id"]
        internal = (
            await agent.post(
                f"/rest/servicedeskapi/request/{ref.key}/comment", json={"body": "customer is on v1", "public": False}
            )
        ).json()["id"]
    view = await desk.read_issue(ref)
    issue = jira_sim.issue(ref.key)
    by_field = {item["field"]: h for h in issue.histories for item in h.items}
    assert view.ref == ref and view.claim == "ticket-0123-id"
    status, priority, assignee = (view.fields[n] for n in ("status", "priority", "assignee"))
    assert (status.value, priority.value, assignee.value) == ("In Progress", "Highest", jira_sim.agent.account_id)
    for change, name in ((status, "status"), (priority, "priority"), (assignee, "assignee")):
        assert change.change_id == by_field[name].id and change.actor == jira_sim.agent.account_id
        assert change.changed_at == pytest.approx(by_field[name].created.timestamp(), abs=0.001)
    assert len({status.change_id, priority.change_id, assignee.change_id}) == 3
    assert view.updated_at == pytest.approx(issue.updated.timestamp(), abs=0.001)
    mine, reply, note = view.comments
    assert (mine.author_id, mine.marker, mine.public) == (jira_sim.me.account_id, "resp-1", True)
    assert mine.text.startswith("Customer Alice wrote:\n\nStill down.")
    assert (reply.comment_id, reply.author_id, reply.author_name) == (public, jira_sim.agent.account_id, "Agent Smith")
    assert (reply.public, reply.text, reply.marker) == (True, "Restarted the ingress.\n\nPlease retry.", None)
    assert (note.comment_id, note.public, note.text) == (internal, False, "customer is on v1")
    assert all(c.created_at and c.author_name != jira_sim.agent.email for c in view.comments)
    assert desk.own_account() == jira_sim.me.account_id
    assert await desk.comments_since(0.0) == []


async def test_a_field_never_changed_reports_the_creation(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim, account_id="")
    ref = await desk.create(ticket())
    view = await desk.read_issue(ref)
    created = jira_sim.issue(ref.key).created.timestamp()
    for name in ("status", "priority", "assignee"):
        assert view.fields[name].change_id == "created" and view.fields[name].actor is None
        assert view.fields[name].changed_at == pytest.approx(created, abs=0.001)
    assert (view.fields["status"].value, view.fields["assignee"].value, view.comments) == ("Open", None, ())
    assert desk.own_account() is None  # not configured and not yet learnt
    await desk.check()
    assert desk.own_account() == jira_sim.me.account_id


def _cut_comments(keep: int, drop_public: bool = False) -> Callable[[bytes], bytes]:
    """An issue answer whose `comment` field holds only the first `keep` comments (its `total` says all), or
    (`drop_public`) whose comments do not say whether customers see them."""

    def cut(body: bytes) -> bytes:
        issue = json.loads(body)
        page = issue["fields"]["comment"]
        page["comments"] = page["comments"][:keep]
        for item in page["comments"]:
            if drop_public:
                item.pop("jsdPublic", None)
        return json.dumps(issue).encode()

    return cut


async def test_comments_come_with_the_issue_and_are_paged_when_it_does_not_hold_them_all(
    jira_sim: JiraSim, make_desk: MakeDesk
) -> None:
    from tests.sidecar.sync.rig import TamperingTransport

    tamper = TamperingTransport()
    ref = await make_desk(jira_sim).create(ticket())
    desk = make_desk(jira_sim, transport=tamper, request_type_id="25", service_desk_id="7")  # reads as JSM
    ids = [jira_sim.agent_comment(ref.key, f"reply {i}", public=i % 2 == 0) for i in range(7)]
    desk.page_size = 3
    public = [i % 2 == 0 for i in range(7)]
    view = await desk.read_issue(ref)  # the issue's `comment` field holds all seven: no listing
    assert ([c.comment_id for c in view.comments], [c.public for c in view.comments]) == (ids, public)
    assert jira_sim.request_count("GET", "/comment") == 0
    for cut, pages in ((_cut_comments(3), 3), (_cut_comments(7, drop_public=True), 6)):
        tamper.rewrite("GET", f"/rest/api/3/issue/{ref.external_id}", cut)
        view = await desk.read_issue(ref)  # a partial page, or one not saying what is internal: the listing
        assert ([c.comment_id for c in view.comments], [c.public for c in view.comments]) == (ids, public)
        assert jira_sim.request_count("GET", "/comment") == pages


# hostile answers -------------------------------------------------------------------------------------
ISSUE = {
    "id": "10001",
    "key": "VESUPPORT-1",
    "fields": {
        "status": {"name": "Open"},
        "priority": {"name": "High"},
        "assignee": None,
        "created": "2024-01-01T12:00:00.000+0000",
        "updated": "2024-01-01T12:00:00.000+0000",
    },
    "changelog": {"startAt": 0, "maxResults": 100, "total": 0, "histories": []},
}
COMMENTS: dict[str, Any] = {"comments": [], "startAt": 0, "maxResults": 100, "total": 0}
REF = ExternalTicket("jira", "10001", "VESUPPORT-1", "http://hostile.test/browse/VESUPPORT-1")


def hostile(issue: Any = None, comments: Any = None, search: Any = None, changelog: Any = None) -> httpx.ASGITransport:
    """A Starlette app answering with the given bodies (a deep copy of ISSUE/COMMENTS by default)."""

    async def get_issue(request: Request) -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(ISSUE)) if issue is None else issue)

    async def get_comments(request: Request) -> JSONResponse:
        return JSONResponse(COMMENTS if comments is None else comments)

    async def post_search(request: Request) -> JSONResponse:
        return JSONResponse(search)

    async def get_changelog(request: Request) -> JSONResponse:
        return JSONResponse(changelog)

    routes = [
        Route("/rest/api/3/issue/{key}", get_issue),
        Route("/rest/api/3/issue/{key}/comment", get_comments),
        Route("/rest/api/3/issue/{key}/changelog", get_changelog),
        Route("/rest/api/3/search/jql", post_search, methods=["POST"]),
    ]
    return httpx.ASGITransport(app=Starlette(routes=routes))


def with_fields(**changes: Any) -> dict[str, Any]:
    issue = json.loads(json.dumps(ISSUE))
    issue["fields"].update(changes)
    return issue


@pytest.mark.parametrize(
    ("issue", "comments"),
    [
        ([1, 2], None),
        ({**ISSUE, "id": "99999"}, None),
        ({**ISSUE, "fields": "nope"}, None),
        (with_fields(status="Open"), None),
        (with_fields(status={"name": 7}), None),
        (with_fields(priority={"id": "1"}), None),
        (with_fields(assignee="5b10ac8d82e05b22cc7d4ef5"), None),
        (with_fields(assignee={"accountId": "x" * 500}), None),
        ({k: v for k, v in ISSUE.items() if k != "changelog"}, None),
        ({**ISSUE, "changelog": {"histories": [{"id": "1", "items": "status"}]}}, None),
        ({**ISSUE, "changelog": {"histories": [{"items": []}]}}, None),
        ({**ISSUE, "changelog": {"histories": [{"id": "1", "items": [5]}]}}, None),
        (None, {"comments": "none"}),
        (None, {"comments": [{"id": "1", "jsdPublic": "yes"}], "total": 1}),
        (None, {"comments": [{"id": {"x": 1}}], "total": 1}),
        (None, {"comments": [7], "total": 1}),
    ],
)
async def test_a_hostile_issue_answer_is_a_desk_error(make_desk: MakeDesk, issue: Any, comments: Any) -> None:
    desk = make_desk(transport=hostile(issue, comments))
    with pytest.raises(DeskError) as caught:
        await desk.read_issue(REF)
    assert not caught.value.retryable
    assert "malformed" in str(caught.value) or "not a JSON object" in str(caught.value)


async def test_odd_but_valid_answers_are_read(make_desk: MakeDesk) -> None:
    history = {
        "id": "10050",
        "created": "2024-01-02T00:00:00.000+0000",
        "items": [{"field": "status", "fromString": "Open", "toString": "In Progress"}],
    }  # no author (an automation rule): the actor is unknown
    older = {**history, "id": "10040", "created": "2024-01-01T18:00:00.000+0000", "author": {"accountId": "a1"}}
    issue = {**ISSUE, "changelog": {"startAt": 0, "total": 2, "histories": [history, older]}}  # newest first
    body = {
        "type": "doc",
        "content": [{"type": "paragraph", "content": 5}, {"type": "x", "content": [{"type": "text", "text": "hi"}]}],
    }
    comments = {"comments": [{"id": "3", "body": body, "created": "garbage"}], "total": 1}
    view = await make_desk(transport=hostile(issue, comments)).read_issue(REF)
    assert (view.fields["status"].change_id, view.fields["status"].actor) == ("10050", None)
    assert view.fields["priority"].change_id == "created"
    (comment,) = view.comments
    assert (comment.author_id, comment.author_name, comment.public, comment.text) == (None, "", True, "hi")
    assert comment.created_at is None and view.claim is None
    # a changelog cut to its most recent entries: the rest is read, and a listing that is not one is refused
    cut = {**ISSUE, "changelog": {"startAt": 100, "total": 101, "histories": [history]}}
    with pytest.raises(DeskError, match="no values list"):
        await make_desk(transport=hostile(cut, changelog={"values": "x"})).read_issue(REF)
    endless = {"values": [older], "isLast": False}
    with pytest.raises(DeskError, match="changelog pages repeat"):
        await make_desk(transport=hostile(cut, changelog=endless)).read_issue(REF)
    looping = {"comments": [{"id": "3"}], "total": 10**9}
    with pytest.raises(DeskError, match="comment pages repeat"):
        await make_desk(transport=hostile(comments=looping)).read_issue(REF)


async def test_a_long_changelog_is_read_to_its_start(jira_sim: JiraSim, make_desk: MakeDesk) -> None:
    desk = make_desk(jira_sim)
    ref = await desk.create(ticket())
    jira_sim.agent_update(ref.key, priority="Low")
    for i in range(130):  # pushes the priority change out of the 100 that expand=changelog shows
        jira_sim.agent_update(ref.key, summary=f"renamed {i}")
    view = await desk.read_issue(ref)
    first = jira_sim.issue(ref.key).histories[0]
    assert (view.fields["priority"].value, view.fields["priority"].change_id) == ("Low", first.id)
    assert view.fields["priority"].actor == jira_sim.agent.account_id
    assert view.fields["status"].change_id == "created"
    assert jira_sim.request_count("GET", "/changelog") == 2  # 131 histories, 100 a page


async def test_hostile_search_answers(make_desk: MakeDesk, caplog: pytest.LogCaptureFixture) -> None:
    hits = [
        {"id": "10001", "key": "VESUPPORT-1", "fields": {"updated": "2024-01-01T12:00:00.000+0000"}},
        {"id": "../etc", "key": "VESUPPORT-2"},
        {"id": "10003", "key": "OTHER-3"},
        {"id": 10004, "key": "VESUPPORT-4"},
        "junk",
    ]
    desk = make_desk(transport=hostile(search={"issues": hits, "isLast": True}))
    found = await desk.changed_since(0.0)
    assert [(c.external_id, c.key, c.updated_at) for c in found] == [("10001", "VESUPPORT-1", 1704110400.0)]
    assert [getattr(r, "skipped", None) for r in caplog.records if "malformed" in r.getMessage()] == [3]
    looping = make_desk(transport=hostile(search={"issues": [], "isLast": False, "nextPageToken": "again"}))
    with pytest.raises(DeskError, match="repeated"):
        await looping.changed_since(0.0)
    with pytest.raises(DeskError, match="not a JSON object"):
        await make_desk(transport=hostile(search=[1])).changed_since(0.0)
