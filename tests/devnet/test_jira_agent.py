"""The Jira simulator as an agent sees it over HTTP: the agent's own credential, attribution of every
change, the changelog, comment paging, and JQL on `updated` (with the search index lag)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devnet import jira_search
from devnet.jira_api import search_candidates
from devnet.jira_model import text_to_adf
from devnet.jira_search import BAD_DATE, UpdatedIndex
from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.webhook_receiver import WebhookReceiver

SIDECAR = ("sidecar@example.com", "jira-test-token")
AGENT = ("agent@example.com", "jira-agent-token")


def client(sim: JiraSim, auth: tuple[str, str] = SIDECAR) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, auth=auth, timeout=5.0)


def new_issue(c: httpx.Client, summary: str = "Lease 42 unreachable") -> str:
    fields = {
        "project": {"key": "VESUPPORT"},
        "issuetype": {"name": "Service Request"},
        "summary": summary,
        "labels": ["ve-sup-000001"],
        "priority": {"name": "High"},
    }
    resp = c.post("/rest/api/3/issue", json={"fields": fields})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def search(c: httpx.Client, jql: str, **body: Any) -> httpx.Response:
    return c.post("/rest/api/3/search/jql", json={"jql": jql, **body})


def keys(c: httpx.Client, sim: JiraSim, jql: str) -> list[str]:
    resp = search(c, jql)
    assert resp.status_code == 200, resp.text
    return [sim.issue(hit["id"]).key for hit in resp.json()["issues"]]


def test_the_agent_credential_acts_as_the_agent(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url(), webhook_secret="s3cret")
    with client(sim) as me, client(sim, AGENT) as agent:
        assert agent.get("/rest/api/3/myself").json()["accountId"] == sim.agent.account_id
        assert me.get("/rest/api/3/myself").json()["accountId"] == sim.me.account_id
        key = new_issue(me)
        path = f"/rest/api/3/issue/{key}"
        assert agent.post(path + "/transitions", json={"transition": {"id": "11"}}).status_code == 204
        assert agent.post(path + "/comment", json={"body": text_to_adf("On it.")}).status_code == 201
        assert me.put(path, json={"fields": {"priority": {"name": "Low"}}}).status_code == 204
        got = [d.json() for d in webhook_receiver.wait_for(4)]
    by_event = {event: [d for d in got if d["webhookEvent"] == event] for event in {d["webhookEvent"] for d in got}}
    assert by_event["jira:issue_created"][0]["user"]["accountId"] == sim.me.account_id
    updaters = {d["user"]["accountId"] for d in by_event["jira:issue_updated"]}
    assert updaters == {sim.agent.account_id, sim.me.account_id}
    assert by_event["comment_created"][0]["comment"]["author"]["accountId"] == sim.agent.account_id
    issue = sim.issue(key)
    assert [(h.author, h.items[0]["field"]) for h in issue.histories] == [
        (sim.agent.account_id, "status"),
        (sim.me.account_id, "priority"),
    ]
    assert issue.comments[0].author == sim.agent.account_id
    # the in-process helpers and the api_actor knob still attribute as before
    sim.api_actor = "agent"
    with client(sim) as me:
        assert me.put(f"/rest/api/3/issue/{key}", json={"fields": {"priority": {"name": "High"}}}).status_code == 204
    sim.agent_comment(key, "from the UI")
    assert issue.histories[-1].author == sim.agent.account_id and issue.comments[-1].author == sim.agent.account_id


def test_a_wrong_agent_password_is_refused_and_revocation_is_the_sidecars_only(jira_sim: JiraSim) -> None:
    with client(jira_sim, ("agent@example.com", "wrong")) as bad:
        resp = bad.get("/rest/api/3/myself")
    assert resp.status_code == 401
    assert resp.json() == {"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}}
    with client(jira_sim, (jira_sim.email, AGENT[1])) as crossed:  # the agent's token on the sidecar's name
        assert crossed.get("/rest/api/3/myself").status_code == 401
    jira_sim.revoke_token()
    with client(jira_sim) as me, client(jira_sim, AGENT) as agent:
        assert me.get("/rest/api/3/myself").status_code == 401
        assert agent.get("/rest/api/3/myself").status_code == 200


def test_agent_credentials_are_constructor_parameters(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(agent_email="ops@example.org", agent_token="t0k")
    with client(sim, ("ops@example.org", "t0k")) as agent, client(sim, AGENT) as default:
        assert agent.get("/rest/api/3/myself").json()["emailAddress"] == "ops@example.org"
        assert default.get("/rest/api/3/myself").status_code == 401


def test_changelog_is_expanded_like_jira_cloud(jira_sim: JiraSim) -> None:
    with client(jira_sim) as me, client(jira_sim, AGENT) as agent:
        key = new_issue(me)
        path = f"/rest/api/3/issue/{key}"
        assert "changelog" not in me.get(path).json()
        empty = me.get(path, params={"expand": "changelog", "fields": "status"}).json()["changelog"]
        assert empty == {"startAt": 0, "maxResults": 100, "total": 0, "histories": []}
        agent.post(path + "/transitions", json={"transition": {"id": "11"}})
        agent.put(path + "/assignee", json={"accountId": jira_sim.agent.account_id})
        agent.put(path, json={"fields": {"priority": {"name": "Highest"}}})
        log = me.get(path, params={"expand": "changelog"}).json()["changelog"]
    assert log["total"] == 3 and [h["author"]["accountId"] for h in log["histories"]] == [jira_sim.agent.account_id] * 3
    status, assignee, priority = (h["items"][0] for h in log["histories"])
    assert status == {
        "field": "status",
        "fieldtype": "jira",
        "fieldId": "status",
        "from": "1",
        "fromString": "Open",
        "to": "3",
        "toString": "In Progress",
    }
    assert (assignee["to"], assignee["toString"], "from" in assignee) == (
        jira_sim.agent.account_id,
        "Agent Smith",
        False,
    )
    assert (priority["from"], priority["to"], priority["toString"]) == ("4", "5", "Highest")
    ids = [int(h["id"]) for h in log["histories"]]
    assert ids == sorted(ids)  # oldest first
    stamps = [h["created"] for h in log["histories"]]
    assert stamps == sorted(stamps) and all(s.endswith("+0000") for s in stamps)


def test_changelog_shows_the_most_recent_hundred(jira_sim: JiraSim) -> None:
    with client(jira_sim) as me:
        key = new_issue(me)
        for i in range(105):
            jira_sim.agent_update(key, summary=f"renamed {i}")
        log = me.get(f"/rest/api/3/issue/{key}", params={"expand": "changelog"}).json()["changelog"]
    assert (log["startAt"], log["maxResults"], log["total"], len(log["histories"])) == (5, 100, 105, 100)
    assert log["histories"][0]["items"][0]["toString"] == "renamed 5"
    assert log["histories"][-1]["items"][0]["toString"] == "renamed 104"
    with client(jira_sim) as me:
        path = f"/rest/api/3/issue/{key}/changelog"
        first = me.get(path, params={"startAt": 0, "maxResults": 1000}).json()
        rest = me.get(path, params={"startAt": 100}).json()
    assert (first["startAt"], first["maxResults"], first["total"], first["isLast"]) == (0, 100, 105, False)
    assert first["nextPage"].endswith("startAt=100&maxResults=100")
    assert [h["items"][0]["toString"] for h in first["values"][:2]] == ["renamed 0", "renamed 1"]
    assert (rest["isLast"], len(rest["values"]), "nextPage" in rest) == (True, 5, False)


def test_comments_bump_updated_and_list_in_order(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(search_delay=0)
    with client(sim) as me, client(sim, AGENT) as agent:
        key = new_issue(me)
        issue = sim.issue(key)
        with sim.lock:
            issue.updated -= timedelta(hours=1)
        before = issue.updated
        agent.post(f"/rest/servicedeskapi/request/{key}/comment", json={"body": "internal", "public": False})
        assert issue.updated > before + timedelta(minutes=59)
        for i in range(4):
            agent.post(f"/rest/api/3/issue/{key}/comment", json={"body": text_to_adf(f"reply {i}")})
        path = f"/rest/api/3/issue/{key}/comment"
        page = me.get(path, params={"orderBy": "created", "startAt": 1, "maxResults": 2}).json()
        assert (page["startAt"], page["maxResults"], page["total"]) == (1, 2, 5)
        assert [c["body"]["content"][0]["content"][0]["text"] for c in page["comments"]] == ["reply 0", "reply 1"]
        everything = me.get(path, params={"orderBy": "created"}).json()["comments"]
        assert [c["jsdPublic"] for c in everything] == [False, True, True, True, True]
        assert all(c["author"]["accountId"] == sim.agent.account_id for c in everything)
        newest = me.get(path, params={"orderBy": "-created", "maxResults": 1}).json()["comments"]
        assert newest[0]["id"] == everything[-1]["id"]
        # a JSM comment moves `updated` forward in search too
        assert keys(me, sim, 'project = "VESUPPORT" AND updated >= "-1m"') == [key]


def test_an_order_the_spec_does_not_allow_is_refused(jira_sim: JiraSim) -> None:
    with client(jira_sim) as me:
        key = new_issue(me)
        resp = me.get(f"/rest/api/3/issue/{key}/comment", params={"orderBy": "updated"})
    assert resp.status_code == 400
    assert any("orderBy" in v for v in jira_sim.contract_violations)  # the spec refuses it too
    jira_sim.contract_violations.clear()


def test_jql_on_updated(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(search_delay=0)
    with client(sim) as me:
        old, mid, new = (new_issue(me, f"n{i}") for i in range(3))
        base = datetime.now(UTC).replace(second=0, microsecond=0)
        with sim.lock:
            for key, hours in ((old, 100), (mid, 3)):
                issue = sim.issue(key)
                issue.updated = base - timedelta(hours=hours)
                sim.reindex_as_is(issue)
        project = 'project = "VESUPPORT"'
        assert keys(me, sim, f'{project} AND updated >= "-15m" ORDER BY updated ASC') == [new]
        assert keys(me, sim, f'{project} AND updated >= "-4h" ORDER BY updated ASC') == [mid, new]
        assert keys(me, sim, f'{project} AND updated >= "-4h" ORDER BY updated DESC') == [new, mid]
        assert keys(me, sim, f'{project} AND updated < "-2h" ORDER BY updated ASC') == [old, mid]
        assert keys(me, sim, f'{project} AND updated > "-3d" AND updated <= "-1h"') == [mid]
        assert keys(me, sim, 'updated >= "-1w" ORDER BY updated ASC') == [old, mid, new]
        at = (base - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")
        assert keys(me, sim, f'updated >= "{at}" ORDER BY updated ASC') == [mid, new]
        assert keys(me, sim, f'updated > "{at}"') == [new]
        assert keys(me, sim, f'updated <= "{at.replace("-", "/")}" ORDER BY updated') == [old, mid]
        day = (base + timedelta(days=1)).strftime("%Y-%m-%d")
        assert keys(me, sim, f'updated < "{day}" ORDER BY updated ASC') == [old, mid, new]


def test_a_search_on_updated_reads_the_issues_changed_since_and_finds_what_a_scan_finds(
    make_jira_sim: Callable[..., JiraSim],
) -> None:
    """The `updated` index (what keeps the sidecar's sweep from scanning every issue) hands the search only the
    issues changed since the bound, and every query answers what the whole scan would."""
    sim = make_jira_sim(search_delay=0)
    with client(sim) as me, client(sim, AGENT) as agent:
        made = [new_issue(me, f"n{i}") for i in range(12)]
        base = datetime.now(UTC).replace(second=0, microsecond=0)
        with sim.lock:
            for n, key in enumerate(made[:9]):
                issue = sim.issue(key)
                issue.updated = base - timedelta(hours=1 + n)
                sim.reindex_as_is(issue)
        agent.post(f"/rest/api/3/issue/{made[0]}/comment", json={"body": text_to_adf("back again")})
        recent = {made[0], *made[9:]}
        moment = datetime.now().astimezone()
        candidates = search_candidates(sim, jira_search.parse('updated >= "-15m"'), set(), moment)
        assert {i.key for i in candidates} == recent  # its hits, not the twelve
        assert [i.key for i in search_candidates(sim, jira_search.parse('updated <= "-2h"'), set(), moment)] == made
        for jql in (
            'updated >= "-15m"',
            'updated > "-5h" ORDER BY updated DESC',
            'labels = "ve-sup-000001" AND updated >= "-3h"',
            'updated >= "-6h" AND updated < "-2h"',
            'project = "VESUPPORT" AND updated <= "-4h"',
        ):
            with sim.lock:
                scan = [
                    s
                    for s in (i.snapshot() for i in sim.issues.values())
                    if jira_search.matches(jira_search.parse(jql), s, datetime.now().astimezone())
                ]
            expected = [s["key"] for s in jira_search.sort(jira_search.parse(jql), scan)]
            assert keys(me, sim, jql) == expected, jql


def test_the_updated_index_answers_as_the_entries_it_was_given() -> None:
    """Against a plain dict: raised by `note`, set by `reset`, out-of-order inserts and the compaction of
    replaced entries (past 1,024 of them) change no answer."""
    rng = random.Random(7)
    index, model = UpdatedIndex(), {}
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for step in range(6000):
        key, when = f"K-{rng.randrange(300)}", base + timedelta(minutes=rng.randrange(0, 600))
        if rng.random() < 0.2:
            index.reset(key, when)
            model[key] = when
        else:
            index.note(key, when)
            model[key] = max(model.get(key, when), when)
        if step % 97 == 0:
            bound = base + timedelta(minutes=rng.randrange(0, 600))
            assert index.since(bound) == {k for k, v in model.items() if v >= bound}, step
    assert index.held <= 2 * len(model) + 1024  # replaced entries were dropped


@pytest.mark.parametrize("value", ["yesterday", "2024-01-01T12:00:00.000+0000", "-15x", "2024-13-45", "15m ago"])
def test_a_bad_date_is_refused_with_jiras_message(jira_sim: JiraSim, value: str) -> None:
    with client(jira_sim) as me:
        resp = search(me, f'project = "VESUPPORT" AND updated >= "{value}"')  # refused with no issue to compare
    assert resp.status_code == 400
    assert resp.json() == {"errorMessages": [BAD_DATE.format(value=value, field="updated")], "errors": {}}
    assert resp.json()["errorMessages"][0].startswith(f"Date value '{value}' for field 'updated' is invalid.")


def test_unknown_jql_is_still_refused(jira_sim: JiraSim) -> None:
    with client(jira_sim) as me:
        for jql in ('updated >= "-5m" OR labels = x', "updated >> -5m", 'updated ~ "-5m"', "ORDER BY nosuch"):
            resp = search(me, jql)
            assert resp.status_code == 400, jql
            assert set(resp.json()) == {"errorMessages", "errors"} and resp.json()["errorMessages"], jql


def test_search_sees_an_old_updated_until_the_index_catches_up(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()
    sim = make_jira_sim(search_delay=5.0, clock=clock)
    with client(sim) as me, client(sim, AGENT) as agent:
        key = new_issue(me)
        issue = sim.issue(key)
        with sim.lock:
            issue.updated -= timedelta(hours=1)
            sim.reindex_as_is(issue)
        recent = 'project = "VESUPPORT" AND updated >= "-10m"'
        assert keys(me, sim, recent) == []
        agent.post(f"/rest/api/3/issue/{key}/comment", json={"body": text_to_adf("ping")})
        assert keys(me, sim, recent) == []  # the index still holds the old `updated`
        hit = search(me, recent, reconcileIssues=[int(issue.id)]).json()["issues"]
        assert hit == [{"id": issue.id}]  # read-after-write sees the new one
        clock.advance(5.0)
        assert keys(me, sim, recent) == [key]
