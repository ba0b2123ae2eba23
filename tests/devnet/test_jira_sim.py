"""The Jira simulator over real loopback HTTP: REST surface, search, limits, faults, webhooks, contract."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.jira_hooks import sign_jira_body
from devnet.jira_model import Workflow, text_to_adf
from devnet.jira_sim import JiraSim
from devnet.sim_faults import FaultPlan, ManualClock
from devnet.waiting import wait_until
from devnet.webhook_receiver import WebhookReceiver
from tests.vectors import VECTORS as VECTOR_DIR

VECTORS = VECTOR_DIR / "jira_webhooks.json"  # the repository's copy of the shared vectors
AUTH = ("sidecar@example.com", "jira-test-token")


def client(sim: JiraSim, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, auth=AUTH, timeout=kwargs.pop("timeout", 5.0), **kwargs)


@pytest.fixture
def http(jira_sim: JiraSim) -> Iterator[httpx.Client]:
    with client(jira_sim) as c:
        yield c


def new_issue(c: httpx.Client, summary: str = "Lease 42 unreachable", labels: list[str] | None = None) -> str:
    fields = {
        "project": {"key": "VESUPPORT"},
        "issuetype": {"name": "Service Request"},
        "summary": summary,
        "description": text_to_adf("The lease does not answer.\nSince 10:00."),
        "labels": labels if labels is not None else ["ve-sup-000001"],
        "priority": {"name": "High"},
    }
    resp = c.post("/rest/api/3/issue", json={"fields": fields, "properties": [{"key": "ve", "value": {"t": 1}}]})
    assert resp.status_code == 201, resp.text
    assert set(resp.json()) == {"id", "key", "self"}
    return str(resp.json()["key"])


def search(c: httpx.Client, jql: str, **body: Any) -> httpx.Response:
    return c.post("/rest/api/3/search/jql", json={"jql": jql, **body})


def test_create_get_and_edit(http: httpx.Client, jira_sim: JiraSim) -> None:
    key = new_issue(http)
    fields = http.get(f"/rest/api/3/issue/{key}").json()["fields"]
    assert fields["summary"] == "Lease 42 unreachable"
    assert fields["description"]["type"] == "doc"
    assert fields["labels"] == ["ve-sup-000001"]
    assert fields["priority"]["name"] == "High"
    assert fields["status"]["name"] == "Open"
    assert http.get(f"/rest/api/3/issue/{key}/properties/ve").json() == {"key": "ve", "value": {"t": 1}}
    edit = {"fields": {"summary": "Renamed"}, "update": {"labels": [{"add": "extra"}]}}
    assert http.put(f"/rest/api/3/issue/{key}", json=edit).status_code == 204
    got = http.get(f"/rest/api/3/issue/{key}", params={"fields": "summary,labels,status"}).json()["fields"]
    assert got == {"summary": "Renamed", "labels": ["ve-sup-000001", "extra"], "status": got["status"]}
    assert got["status"]["name"] == "Open"  # status is not editable through PUT
    assert http.put(f"/rest/api/3/issue/{key}/properties/other", json=[1]).status_code == 201
    assert http.put(f"/rest/api/3/issue/{key}/properties/other", json=[2]).status_code == 200
    assert http.get(f"/rest/api/3/issue/{key}/properties/missing").status_code == 404
    assert http.get("/rest/api/3/issue/NOPE-1").status_code == 404
    assert jira_sim.creates_for_label("ve-sup-000001") == 1
    assert [i.key for i in jira_sim.list_issues()] == [key]


def test_edit_with_return_issue_answers_the_issue_as_get_shows_it(http: httpx.Client, jira_sim: JiraSim) -> None:
    """editIssue's returnIssue (pinned spec): 200 with the issue in Get issue's format, every field as the edit
    left it, and `expand` applied; without it 204 and no body. Checked against the contract (validate=True)."""
    key = new_issue(http)
    edit = {"fields": {"priority": {"name": "Low"}}, "update": {"labels": [{"add": "extra"}]}}
    answer = http.put(f"/rest/api/3/issue/{key}", params={"returnIssue": "true", "expand": "changelog"}, json=edit)
    assert answer.status_code == 200, answer.text
    issue = answer.json()
    assert issue == http.get(f"/rest/api/3/issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["priority"]["name"] == "Low"
    assert issue["fields"]["labels"] == ["ve-sup-000001", "extra"]
    assert issue["fields"]["status"]["name"] == "Open"  # fields the edit left alone come back too
    assert issue["changelog"]["histories"][-1]["items"][0]["field"] in ("priority", "labels")
    plain = http.put(f"/rest/api/3/issue/{key}", params={"returnIssue": "false"}, json=edit)
    assert plain.status_code == 204 and plain.content == b""
    assert jira_sim.contract_violations == []


def test_plain_text_description_is_rejected_like_jira(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(validate=False)
    with client(sim) as c:
        fields = {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": "x", "description": "txt"}
        resp = c.post("/rest/api/3/issue", json={"fields": fields})
    assert resp.status_code == 400
    assert "description" in resp.json()["errors"]


def test_transitions_follow_the_workflow(http: httpx.Client, jira_sim: JiraSim) -> None:
    key = new_issue(http)
    options = http.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    by_target = {t["to"]["name"]: t["id"] for t in options}
    assert "In Progress" in by_target and "Open" not in by_target
    bad = http.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "71"}})  # Reopen
    assert bad.status_code == 400
    ok = http.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": by_target["In Progress"]}})
    assert ok.status_code == 204
    assert jira_sim.issue(key).status == "In Progress"


def test_configurable_workflow(make_jira_sim: Callable[..., JiraSim]) -> None:
    flow = Workflow.from_config({"New": "new", "Done": "done"}, [{"name": "Finish", "to": "Done"}], "New")
    sim = make_jira_sim(workflow=flow)
    with client(sim) as c:
        key = new_issue(c)
        (only,) = c.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
        assert only["to"]["name"] == "Done"
        assert (
            c.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": only["id"]}}).status_code == 204
        )
    assert sim.issue(key).status == "Done"


def test_comments_public_and_internal(http: httpx.Client) -> None:
    key = new_issue(http)
    resp = http.post(f"/rest/api/3/issue/{key}/comment", json={"body": text_to_adf("We are on it.")})
    assert resp.status_code == 201 and resp.json()["jsdPublic"] is True
    note = http.post(f"/rest/servicedeskapi/request/{key}/comment", json={"body": "internal", "public": False})
    assert note.status_code == 201 and note.json()["public"] is False
    comments = http.get(f"/rest/api/3/issue/{key}/comment").json()["comments"]
    assert [c["jsdPublic"] for c in comments] == [True, False]
    assert comments[1]["body"]["content"][0]["content"][0]["text"] == "internal"


def test_attachments(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(max_attachment_bytes=1000)
    with client(sim) as c:
        key = new_issue(c)
        url = f"/rest/api/3/issue/{key}/attachments"
        assert c.post(url, files={"file": ("a.txt", b"x")}).status_code == 403  # no X-Atlassian-Token
        ok = c.post(url, files={"file": ("log.txt", b"hello", "text/plain")}, headers={"X-Atlassian-Token": "no-check"})
        assert ok.status_code == 200, ok.text
        assert ok.json()[0]["filename"] == "log.txt" and ok.json()[0]["size"] == 5
        big = c.post(url, files={"file": ("big.bin", b"0" * 2000)}, headers={"X-Atlassian-Token": "no-check"})
        assert big.status_code == 413
    assert [a.content for a in sim.issue(key).attachments] == [b"hello"]


def test_search_pages_by_token_without_total(http: httpx.Client, jira_sim: JiraSim) -> None:
    keys = [new_issue(http, f"issue {i}", ["batch"]) for i in range(7)]
    new_issue(http, "other", ["unrelated"])
    jira_sim.flush_index()  # search lags writes by default (devnet/jira_rules.py rule 8)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        body: dict[str, Any] = {"fields": ["summary", "labels"], "maxResults": 3}
        if token:
            body["nextPageToken"] = token
        page = search(http, 'labels = "batch" AND project = VESUPPORT', **body).json()
        assert "total" not in page
        seen += [i["key"] for i in page["issues"]]
        pages += 1
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    assert seen == keys and pages == 3
    ids_only = search(http, 'labels = "batch"').json()["issues"]
    assert len(ids_only) == len(keys) and all(set(i) == {"id"} for i in ids_only)
    assert search(http, 'labels = "batch"', nextPageToken="garbage").status_code == 400


def test_search_jql_forms(http: httpx.Client, jira_sim: JiraSim) -> None:
    a, b, _ = (new_issue(http, f"n{i}", [f"l{i}"]) for i in range(3))
    jira_sim.flush_index()
    hits = search(http, f'key in ({a}, "{b}") ORDER BY key DESC', fields=["summary"]).json()["issues"]
    assert [i["key"] for i in hits] == [b, a]
    assert len(search(http, 'project = "VESUPPORT" AND updated >= "-5m"').json()["issues"]) == 3
    assert search(http, "updated >= 2000-01-01 AND labels = l1").json()["issues"][0]["id"]
    assert search(http, "labels = l1 OR labels = l2").status_code == 400
    assert search(http, "nosuchfield = 1").status_code == 400


def test_search_is_eventually_consistent(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()
    sim = make_jira_sim(search_delay=5.0, clock=clock)
    with client(sim) as c:
        key = new_issue(c, labels=["fresh"])
        issue_id = sim.issue(key).id
        assert search(c, 'labels = "fresh"').json()["issues"] == []
        reconciled = search(c, 'labels = "fresh"', reconcileIssues=[int(issue_id)]).json()["issues"]
        assert reconciled == [{"id": issue_id}]
        clock.advance(4.9)
        assert search(c, 'labels = "fresh"').json()["issues"] == []
        clock.advance(0.1)
        assert search(c, 'labels = "fresh"').json()["issues"] == [{"id": issue_id}]
        # a later edit is also invisible to search until indexed
        c.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["moved"]}})
        assert search(c, 'labels = "fresh"').json()["issues"] == [{"id": issue_id}]
        assert search(c, 'labels = "moved"').json()["issues"] == []
        sim.flush_index()  # an explicit flush indexes every write made so far
        assert search(c, 'labels = "fresh"').json()["issues"] == []
        assert search(c, 'labels = "moved"').json()["issues"] == [{"id": issue_id}]
        other = new_issue(c, labels=["moved"])  # a write after the flush waits for its own lag
        assert search(c, 'labels = "moved"').json()["issues"] == [{"id": issue_id}]
        clock.advance(5.0)
        assert search(c, 'labels = "moved"').json()["issues"] == [{"id": issue_id}, {"id": sim.issue(other).id}]


def test_search_keeps_only_the_versions_it_can_still_find(make_jira_sim: Callable[..., JiraSim]) -> None:
    """An issue edited all day must not hold every version it ever had: once a version is visible to search,
    the ones written before it are dropped, and what search finds is unchanged by the dropping."""
    clock = ManualClock()
    sim = make_jira_sim(search_delay=5.0, clock=clock)
    with client(sim) as c:
        key = new_issue(c, labels=["v0"])
        issue_id = sim.issue(key).id
        for n in range(1, 4):  # written within the lag: each still waits to be indexed, none can go
            c.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": [f"v{n}"]}})
        assert len(sim.issue(key).versions) == 4
        clock.advance(5.0)  # all four visible: search finds the newest
        assert search(c, 'labels = "v3"').json()["issues"] == [{"id": issue_id}]
        c.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["v4"]}})
        assert len(sim.issue(key).versions) == 2  # v3 (what search finds now) and v4 (not yet indexed)
        assert search(c, 'labels = "v3"').json()["issues"] == [{"id": issue_id}]
        assert search(c, 'labels = "v2"').json()["issues"] == []
        clock.advance(5.0)
        assert search(c, 'labels = "v4"').json()["issues"] == [{"id": issue_id}]
        assert search(c, 'labels = "v3"').json()["issues"] == []


def test_old_search_is_gone_and_start_at_is_rejected(http: httpx.Client, jira_sim: JiraSim) -> None:
    assert http.get("/rest/api/3/search", params={"jql": "project = VESUPPORT"}).status_code == 410
    resp = search(http, "project = VESUPPORT", startAt=0)
    assert resp.status_code == 400
    assert any("startAt" in v for v in jira_sim.contract_violations)  # the spec forbids it, too
    jira_sim.contract_violations.clear()


def test_auth_and_revocation(http: httpx.Client, jira_sim: JiraSim) -> None:
    assert http.get("/rest/api/3/myself").json()["accountId"] == jira_sim.me.account_id
    with httpx.Client(base_url=jira_sim.base_url, auth=("sidecar@example.com", "wrong")) as bad:
        assert bad.get("/rest/api/3/myself").status_code == 401
    jira_sim.revoke_token()
    assert http.get("/rest/api/3/myself").status_code == 401


def test_burst_rate_limit_headers(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()  # no token comes back unless the test moves this clock
    sim = make_jira_sim(rate_per_second=0.5, burst=2, clock=clock)
    with client(sim) as c:
        assert [c.get("/rest/api/3/myself").status_code for _ in range(2)] == [200, 200]
        limited = c.get("/rest/api/3/myself")
        clock.advance(2.0)
        assert c.get("/rest/api/3/myself").status_code == 200
    assert limited.status_code == 429
    h = limited.headers
    assert int(h["retry-after"]) >= 1 and h["ratelimit-reason"] == "jira-burst-based"
    assert h["x-ratelimit-limit"] == "2" and h["x-ratelimit-remaining"] == "0" and "x-ratelimit-reset" in h


def test_per_issue_write_limit(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(per_issue_writes=2, per_issue_window=30, clock=ManualClock())
    with client(sim) as c:
        key, other = new_issue(c), new_issue(c)
        for i in range(2):
            assert c.put(f"/rest/api/3/issue/{key}", json={"fields": {"summary": f"s{i}"}}).status_code == 204
        limited = c.put(f"/rest/api/3/issue/{sim.issue(key).id}", json={"fields": {"summary": "s3"}})
        assert limited.status_code == 429
        assert limited.headers["ratelimit-reason"] == "jira-per-issue-on-write"
        assert c.get(f"/rest/api/3/issue/{key}").status_code == 200  # reads are not limited
        assert c.put(f"/rest/api/3/issue/{other}", json={"fields": {"summary": "fine"}}).status_code == 204


def test_faults_of_each_kind(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(faults=FaultPlan(hang_seconds=600))  # a hung request is released when the sim stops
    sim.faults.inject("503", retry_after=7)
    sim.faults.inject("500")
    sim.faults.inject("timeout")
    sim.faults.inject("drop")
    with client(sim) as c:
        first = c.get("/rest/api/3/myself")
        assert first.status_code == 503 and first.headers["retry-after"] == "7"
        assert c.get("/rest/api/3/myself").status_code == 500
        with pytest.raises(httpx.ReadTimeout):
            c.get("/rest/api/3/myself", timeout=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/rest/api/3/myself")
        assert c.get("/rest/api/3/myself").status_code == 200
    assert [kind for kind, _, _ in sim.faults.fired] == ["503", "500", "timeout", "drop"]


def test_random_faults_are_reproducible() -> None:
    def run(seed: int) -> list[str | None]:
        plan = FaultPlan(probability=0.5, seed=seed)
        return [f.kind if (f := plan.pick("GET", "/x")) else None for _ in range(30)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert any(run(7)) and None in run(7)


def test_signer_reproduces_the_vectors() -> None:
    vectors = json.loads(Path(VECTORS).read_text())
    for delivery in vectors["deliveries"]:
        body = delivery["body"].encode()
        assert sign_jira_body(vectors["secret"], body) == delivery["headers"]["X-Hub-Signature"]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver-side algorithm from DESKS.md: HMAC over the raw bytes, constant-time compare."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-hub-signature"])


def test_webhooks_are_signed_and_attributed(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url(), webhook_secret="s3cret")
    with client(sim) as c:
        key = new_issue(c)
    sim.agent_transition(key, "In Progress")
    comment_id = sim.agent_comment(key, "Restarted the ingress, please retry.")
    sim.agent_edit_comment(key, comment_id, "edited")
    sim.agent_delete_comment(key, comment_id)
    got = webhook_receiver.wait_for(5)
    by_event = {d.json()["webhookEvent"]: d for d in got}  # deliveries run concurrently: order is not promised
    assert set(by_event) == {
        "jira:issue_created",
        "jira:issue_updated",
        "comment_created",
        "comment_updated",
        "comment_deleted",
    }
    for d in got:
        assert verify("s3cret", d.headers, d.body)
        assert d.headers["x-atlassian-webhook-retry"] == "0" and d.headers["x-atlassian-webhook-flow"] == "Primary"
        assert len(d.headers["x-atlassian-webhook-identifier"]) == 32
        assert abs(d.json()["timestamp"] - time.time() * 1000) < 60_000
    created, updated, commented = (
        by_event[e].json() for e in ("jira:issue_created", "jira:issue_updated", "comment_created")
    )
    assert created["user"]["accountId"] == sim.me.account_id
    assert updated["user"]["accountId"] == sim.agent.account_id
    item = updated["changelog"]["items"][0]
    assert (item["field"], item["fromString"], item["toString"]) == ("status", "Open", "In Progress")
    assert commented["comment"]["author"]["accountId"] == sim.agent.account_id
    assert commented["comment"]["body"] == "Restarted the ingress, please retry."
    assert len({d.headers["x-atlassian-webhook-identifier"] for d in got}) == 5


def test_api_changes_can_be_attributed_to_the_agent(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url())
    sim.api_actor = "agent"
    with client(sim) as c:
        new_issue(c)
    (delivery,) = webhook_receiver.wait_for(1)
    assert delivery.json()["user"]["accountId"] == sim.agent.account_id
    assert "x-hub-signature" not in delivery.headers  # no secret configured


def test_webhook_retries_keep_the_identifier(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url(), webhook_secret="k")
    webhook_receiver.respond_with(503, 429)
    sim.agent_create_issue("retry me")
    got = webhook_receiver.wait_for(3)
    assert [d.status for d in got] == [503, 429, 200]
    assert len({d.headers["x-atlassian-webhook-identifier"] for d in got}) == 1
    assert [d.headers["x-atlassian-webhook-retry"] for d in got] == ["0", "1", "2"]
    assert len({d.body for d in got}) == 1 and all(verify("k", d.headers, d.body) for d in got)


def test_duplicate_and_late_deliveries(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url())
    sim.webhooks.next_options(duplicate=True)
    key = sim.agent_create_issue("dup")
    twins = webhook_receiver.wait_for(2)
    assert twins[0].headers["x-atlassian-webhook-identifier"] == twins[1].headers["x-atlassian-webhook-identifier"]
    sim.webhooks.next_options(hold=True)
    sim.agent_comment(key, "late one")
    sim.agent_update(key, summary="after")  # sent after the comment, arrives before it
    webhook_receiver.wait_for(3)
    sim.webhooks.release_held()
    got = webhook_receiver.wait_for(4)
    assert [d.json()["webhookEvent"] for d in got[2:]] == ["jira:issue_updated", "comment_created"]
    updated, late = got[2].json(), got[3].json()
    assert late["timestamp"] <= updated["timestamp"]  # made first, delivered last
    wait_until(lambda: sim.webhooks.idle, timeout=10, what="sender idle")


def test_contract_validation_catches_a_bad_request(http: httpx.Client, jira_sim: JiraSim) -> None:
    bad = {"fields": {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": 42}}
    resp = http.post("/rest/api/3/issue", json=bad)
    assert resp.status_code == 400
    assert "contract violation" in resp.json()["errorMessages"][0]
    key = new_issue(http)
    assert http.post(f"/rest/api/3/issue/{key}/comment", json={"body": "plain"}).status_code == 400
    assert http.post("/rest/api/3/search/jql", json={"jql": "x", "maxResults": "ten"}).status_code == 400
    found = "\n".join(jira_sim.contract_violations)
    assert "fields.summary" in found and "body: expected an ADF document" in found and "maxResults" in found
    assert jira_sim.creates_for_label("ve-sup-000001") == 1  # the bad create never reached the state
    jira_sim.contract_violations.clear()


def test_request_log(http: httpx.Client, jira_sim: JiraSim) -> None:
    new_issue(http)
    http.get("/rest/api/3/myself")
    assert jira_sim.request_count("POST", "/rest/api/3/issue") == 1
    assert [r.status for r in jira_sim.requests] == [201, 200]


async def test_async_runner() -> None:
    async with JiraSim(validate=True) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, auth=AUTH) as c:
            resp = await c.get("/rest/api/3/myself")
            assert resp.status_code == 200
    assert not sim.contract_violations


def test_latency_and_issue_deletion_event(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(latency=0.05, webhook_url=webhook_receiver.url())
    with client(sim) as c:
        started = time.monotonic()
        assert c.get("/rest/api/3/myself").status_code == 200
        assert time.monotonic() - started >= 0.05
        key = new_issue(c)
    sim.agent_delete_issue(key)
    got = webhook_receiver.wait_for(2)
    deleted = [d.json() for d in got if d.json()["webhookEvent"] == "jira:issue_deleted"]
    assert deleted[0]["issue"]["key"] == key and deleted[0]["user"]["accountId"] == sim.agent.account_id
    assert sim.list_issues() == []


def test_assignee_set_read_and_cleared(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url())
    sim.add_user("5b10ac8d82e05b22cc7d4e01", "Ada Agent")
    with client(sim) as c:
        key = new_issue(c)
        assert c.get(f"/rest/api/3/issue/{key}").json()["fields"]["assignee"] is None
        url = f"/rest/api/3/issue/{key}/assignee"
        assert c.put(url, json={"accountId": "5b10ac8d82e05b22cc7d4e01"}).status_code == 204
        got = c.get(f"/rest/api/3/issue/{key}", params={"fields": "assignee"}).json()["fields"]["assignee"]
        assert (got["accountId"], got["displayName"], got["active"]) == ("5b10ac8d82e05b22cc7d4e01", "Ada Agent", True)
        assert sim.issue(key).assignee == "5b10ac8d82e05b22cc7d4e01"
        unknown = c.put(url, json={"accountId": "nobody"})
        assert unknown.status_code == 400 and "assignee" in unknown.json()["errors"]
        assert c.put("/rest/api/3/issue/NOPE-1/assignee", json={"accountId": sim.me.account_id}).status_code == 404
        assert c.put(url, json={"accountId": None}).status_code == 204  # null unassigns, as the spec documents
        assert sim.issue(key).assignee is None
        edit = {"fields": {"assignee": {"accountId": sim.me.account_id}}}
        assert c.put(f"/rest/api/3/issue/{key}", json=edit).status_code == 204
        assert c.get(f"/rest/api/3/issue/{key}").json()["fields"]["assignee"]["accountId"] == sim.me.account_id
        bad_edit = {"fields": {"summary": "not applied", "assignee": {"accountId": "nobody"}}}
        assert c.put(f"/rest/api/3/issue/{key}", json=bad_edit).status_code == 400
        assert sim.issue(key).summary == "Lease 42 unreachable"  # a rejected edit changes nothing
        fields = {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": "pre-assigned"}
        fields["assignee"] = {"accountId": "5b10ac8d82e05b22cc7d4e01"}
        created = c.post("/rest/api/3/issue", json={"fields": fields}).json()
    assert sim.issue(created["key"]).assignee == "5b10ac8d82e05b22cc7d4e01"
    got_hooks = webhook_receiver.wait_for(5)
    assigned = [d.json() for d in got_hooks if d.json()["issue_event_type_name"] == "issue_assigned"]
    items = [h["changelog"]["items"][0] for h in assigned]
    moves = {(i["from"], i["toString"]) for i in items}
    assert moves == {(None, "Ada Agent"), ("5b10ac8d82e05b22cc7d4e01", None), (None, "VirtEngine Sidecar")}


def test_jsm_request_is_a_normal_issue(http: httpx.Client, jira_sim: JiraSim) -> None:
    jira_sim.add_request_type("10", "25", fields=("summary", "description", "labels"))  # a form showing Labels
    body = {
        "serviceDeskId": "10",
        "requestTypeId": "25",
        "requestFieldValues": {"summary": "Need a lease", "description": "Line one\nLine two", "labels": ["ve-sup-9"]},
    }
    resp = http.post("/rest/servicedeskapi/request", json=body)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert (answer["requestTypeId"], answer["serviceDeskId"]) == ("25", "10")
    key = answer["issueKey"]
    issue = jira_sim.issue(key)
    assert issue.id == answer["issueId"] and issue.request_type_id == "25" and issue.issuetype == "Service Request"
    fields = http.get(f"/rest/api/3/issue/{key}").json()["fields"]
    assert fields["description"] == text_to_adf("Line one\nLine two")  # plain text in, ADF out
    assert fields["labels"] == ["ve-sup-9"] and fields["project"]["key"] == "VESUPPORT"
    jira_sim.flush_index()
    assert search(http, 'labels = "ve-sup-9"').json()["issues"] == [{"id": issue.id}]
    assert jira_sim.creates_for_label("ve-sup-9") == 1
    options = http.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    assert http.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": options[0]["id"]}}).is_success
    assert http.post(f"/rest/servicedeskapi/request/{key}/comment", json={"body": "thanks"}).status_code == 201
    assert len(jira_sim.issue(key).comments) == 1
    adf = {**body, "isAdfRequest": True, "requestFieldValues": {"summary": "rich", "description": text_to_adf("x")}}
    assert http.post("/rest/servicedeskapi/request", json=adf).status_code == 201
    assert jira_sim.issue(new_issue(http, labels=[])).request_type_id is None


def test_jsm_request_rejections(http: httpx.Client, jira_sim: JiraSim) -> None:
    jira_sim.add_request_type("10", "25")
    values = {"summary": "s", "description": "d"}
    for desk, rtype, key in (("99", "25", "sd.servicedesk.error.not.found"), ("10", "99", "sd.requesttype")):
        body = {"serviceDeskId": desk, "requestTypeId": rtype, "requestFieldValues": values}
        resp = http.post("/rest/servicedeskapi/request", json=body)
        assert resp.status_code == 400
        assert resp.json()["i18nErrorMessage"]["i18nKey"].startswith(key) and "99" in resp.json()["errorMessage"]
    for bad in (
        {"description": "no summary"},
        {"summary": "s", "priority": {"name": "High"}},
        {"summary": "s", "description": {}},
        {"summary": "s", "labels": ["has space"]},
    ):
        body = {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": bad}
        resp = http.post("/rest/servicedeskapi/request", json=body)
        assert resp.status_code == 400 and resp.json()["errorMessage"], resp.text
    assert jira_sim.list_issues() == []


def test_labels_added_by_a_later_edit_count_once(http: httpx.Client, jira_sim: JiraSim) -> None:
    jira_sim.add_request_type("10", "25")
    body = {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {"summary": "unlabelled"}}
    key = http.post("/rest/servicedeskapi/request", json=body).json()["issueKey"]
    assert jira_sim.creates_for_label("ve-sup-7") == 0
    assert http.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["ve-sup-7"]}}).status_code == 204
    assert jira_sim.creates_for_label("ve-sup-7") == 1
    jira_sim.flush_index()
    assert search(http, 'labels = "ve-sup-7"').json()["issues"] == [{"id": jira_sim.issue(key).id}]
    for labels in ([], ["ve-sup-7", "other"]):  # dropping and re-adding the label is still one issue
        assert http.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": labels}}).status_code == 204
    assert jira_sim.creates_for_label("ve-sup-7") == 1 and jira_sim.creates_for_label("other") == 1
    jira_sim.flush_index()
    assert search(http, 'labels = "other"').json()["issues"] == [{"id": jira_sim.issue(key).id}]


def test_a_request_whose_body_never_arrives_is_not_handled(jira_sim: JiraSim) -> None:
    """A client killed mid-send: the server never sees a whole request, so it creates nothing (and does not
    judge the half it got against the contract)."""
    url = httpx.URL(jira_sim.base_url)
    body = json.dumps({"fields": {"summary": "half"}}).encode()
    token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    head = (f"POST /rest/api/3/issue HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: Basic {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 100}\r\n\r\n").encode()
    with socket.create_connection((url.host, url.port), timeout=5) as sock:
        sock.sendall(head + body)  # 100 bytes short, then gone
    with client(jira_sim) as c:  # a later request is answered, so the cut one has been dealt with
        assert c.get("/rest/api/3/myself").status_code == 200
    assert jira_sim.list_issues() == []
    assert jira_sim.request_count("POST", "/rest/api/3/issue") == 0
    assert list(jira_sim.contract_violations) == []
