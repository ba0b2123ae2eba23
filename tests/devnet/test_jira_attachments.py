"""Contract tests for the Jira simulator's attachment rules (devnet/jira_api.py `add_attachments` and the
attachment routes): each sends the refused request over loopback HTTP and asserts Jira's answer, then
the accepted variant. The sentences are written out here, not imported from the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from devnet.jira_sim import JiraSim
from devnet.sim_faults import ManualClock
from devnet.waiting import wait_until
from devnet.webhook_receiver import WebhookReceiver

AUTH = ("sidecar@example.com", "jira-test-token")
NO_CHECK = {"X-Atlassian-Token": "no-check"}


def client(sim: JiraSim) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, auth=AUTH, timeout=5.0)


def new_issue(c: httpx.Client) -> str:
    fields = {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Task"}, "summary": "Lease 42"}
    resp = c.post("/rest/api/3/issue", json={"fields": fields})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


@pytest.fixture
def sim(make_jira_sim: Callable[..., JiraSim]) -> JiraSim:
    return make_jira_sim(max_attachment_bytes=1000)


@pytest.fixture
def http(sim: JiraSim) -> Iterator[httpx.Client]:
    with client(sim) as c:
        yield c


def upload(c: httpx.Client, key: str, name: str = "log.txt", data: bytes = b"hello", **kw: object) -> httpx.Response:
    headers = kw.pop("headers", NO_CHECK)
    return c.post(f"/rest/api/3/issue/{key}/attachments", files={"file": (name, data, "text/plain")}, headers=headers)  # type: ignore[arg-type]


def test_upload_without_the_no_check_header_is_an_xsrf_refusal(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    refused = upload(http, key, headers={})
    assert refused.status_code == 403 and refused.text == "XSRF check failed"
    assert upload(http, "NOPE-1", headers={}).status_code == 403  # the filter runs before the issue lookup
    assert sim.issue(key).attachments == []
    assert upload(http, key).status_code == 200


def test_upload_answers_a_list_of_attachment_objects(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    resp = upload(http, key, "log.txt", b"hello")
    assert resp.status_code == 200, resp.text
    (att,) = resp.json()
    assert att["filename"] == "log.txt" and att["size"] == 5 and att["mimeType"] == "text/plain"
    assert att["author"]["accountId"] == sim.me.account_id and att["created"]
    assert att["content"].endswith(f"/rest/api/3/attachment/content/{att['id']}")
    listed = http.get(f"/rest/api/3/issue/{key}", params={"fields": "attachment"}).json()["fields"]["attachment"]
    assert [a["id"] for a in listed] == [att["id"]]


def test_a_body_that_is_not_multipart_is_415(http: httpx.Client) -> None:
    key = new_issue(http)
    url = f"/rest/api/3/issue/{key}/attachments"
    assert http.post(url, content=b"hello", headers={**NO_CHECK, "Content-Type": "text/plain"}).status_code == 415


def test_files_must_come_in_parts_named_file(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    url = f"/rest/api/3/issue/{key}/attachments"
    wrong = http.post(url, files={"upload": ("a.txt", b"x")}, headers=NO_CHECK)
    assert wrong.status_code == 400 and wrong.json()["errorMessages"] == ["No multipart part named 'file' was found."]
    assert sim.issue(key).attachments == []


def test_a_file_over_the_upload_limit_is_413_and_not_stored(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    assert http.get("/rest/api/3/attachment/meta").json() == {"enabled": True, "uploadLimit": 1000}
    big = upload(http, key, "big.bin", b"0" * 1001)
    assert big.status_code == 413
    assert big.json()["errorMessages"] == ["The field file exceeds its maximum permitted size of 1000 bytes."]
    assert sim.issue(key).attachments == []
    assert upload(http, key, "fits.bin", b"0" * 1000).status_code == 200


def test_attachments_disabled_refuse_uploads_and_hide_files(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    att_id = upload(http, key).json()[0]["id"]
    sim.attachments_enabled = False
    assert http.get("/rest/api/3/attachment/meta").json()["enabled"] is False
    assert upload(http, key).status_code == 403
    assert http.get(f"/rest/api/3/attachment/{att_id}").status_code == 404


def test_an_unknown_issue_is_404(http: httpx.Client) -> None:
    assert upload(http, "VESUPPORT-999").status_code == 404


def test_content_redirects_to_a_signed_media_url_that_needs_no_credential(http: httpx.Client) -> None:
    key = new_issue(http)
    att_id = upload(http, key, data=b"the bytes").json()[0]["id"]
    resp = http.get(f"/rest/api/3/attachment/content/{att_id}")
    assert resp.status_code == 303
    media = resp.headers["location"]
    assert not media.startswith(http.base_url.scheme + "://" + http.base_url.netloc.decode())  # another host
    with httpx.Client(timeout=5.0) as anonymous:  # no Basic auth: the token in the URL is the credential
        got = anonymous.get(media)
        assert got.status_code == 200 and got.content == b"the bytes"
        assert got.headers["content-length"] == "9"
        assert anonymous.get(media.replace("/file/", "/file/x")).status_code == 401
    direct = http.get(f"/rest/api/3/attachment/content/{att_id}", params={"redirect": "false"})
    assert direct.status_code == 200 and direct.content == b"the bytes"


def test_content_url_itself_needs_the_jira_credential(sim: JiraSim, http: httpx.Client) -> None:
    key = new_issue(http)
    att_id = upload(http, key).json()[0]["id"]
    with httpx.Client(base_url=sim.base_url, timeout=5.0) as anonymous:
        assert anonymous.get(f"/rest/api/3/attachment/content/{att_id}").status_code == 401


def test_a_declared_size_fault_serves_the_real_bytes_without_a_content_length(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    att_id = upload(http, key, data=b"x" * 900).json()[0]["id"]
    sim.declared_sizes[att_id] = 10
    assert (
        http.get(f"/rest/api/3/issue/{key}", params={"fields": "attachment"}).json()["fields"]["attachment"][0]["size"]
        == 10
    )
    got = http.get(f"/rest/api/3/attachment/content/{att_id}", follow_redirects=True)
    assert got.status_code == 200 and len(got.content) == 900
    assert "content-length" not in got.headers and got.headers.get("transfer-encoding") == "chunked"


def test_metadata_and_delete(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    att_id = upload(http, key).json()[0]["id"]
    meta = http.get(f"/rest/api/3/attachment/{att_id}").json()
    assert meta["id"] == int(att_id) and meta["filename"] == "log.txt" and meta["size"] == 5  # int64 here
    assert http.delete(f"/rest/api/3/attachment/{att_id}").status_code == 204
    assert http.get(f"/rest/api/3/attachment/{att_id}").status_code == 404
    assert http.delete(f"/rest/api/3/attachment/{att_id}").status_code == 404
    assert sim.issue(key).attachments == []


def test_file_names_keep_unicode_and_lose_client_paths(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    assert upload(http, key, "Prüfbericht 日本.txt").json()[0]["filename"] == "Prüfbericht 日本.txt"
    assert upload(http, key, "dir/sub/evil.txt").json()[0]["filename"] == "evil.txt"
    assert upload(http, key, 'say "hi".txt').json()[0]["filename"] == 'say "hi".txt'


def test_an_upload_records_a_changelog_item_and_sends_both_webhooks(
    make_jira_sim: Callable[..., JiraSim], webhook_receiver: WebhookReceiver
) -> None:
    sim = make_jira_sim(webhook_url=webhook_receiver.url(), webhook_secret="k")
    with client(sim) as c:
        key = new_issue(c)
        att_id = upload(c, key).json()[0]["id"]
        changelog = c.get(f"/rest/api/3/issue/{key}", params={"expand": "changelog"}).json()["changelog"]
    (item,) = changelog["histories"][-1]["items"]
    assert item["field"] == "Attachment" and item["to"] == att_id and item["toString"] == "log.txt"

    def events() -> list[dict[str, object]]:
        return [json.loads(d.body) for d in webhook_receiver.deliveries]

    wanted = {"jira:issue_updated", "attachment_created"}
    wait_until(lambda: wanted <= {e["webhookEvent"] for e in events()}, timeout=5.0, what="both webhooks")
    created = next(e for e in events() if e["webhookEvent"] == "attachment_created")
    assert "issue" not in created  # Jira's attachment events carry no issue
    assert created["attachment"]["id"] == att_id  # type: ignore[index]


def test_an_account_without_create_attachments_is_403(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    sim.attach_denied.add(sim.me.account_id)
    assert upload(http, key).status_code == 403
    assert sim.issue(key).attachments == []
    sim.attach_denied.clear()
    assert upload(http, key).status_code == 200


def test_a_media_url_expires(make_jira_sim: Callable[..., JiraSim]) -> None:
    clock = ManualClock()
    sim = make_jira_sim(clock=clock)
    with client(sim) as c:
        key = new_issue(c)
        att_id = upload(c, key).json()[0]["id"]
        media = c.get(f"/rest/api/3/attachment/content/{att_id}").headers["location"]
        clock.advance(sim.media_ttl + 1)
        assert httpx.get(media, timeout=5.0).status_code == 401


def test_a_full_issue_is_413(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    sim.max_issue_attachments = 1
    assert upload(http, key).status_code == 200
    full = upload(http, key)
    assert full.status_code == 413 and full.json()["errorMessages"] == [
        "The per-issue limit for attachments has been breached."
    ]
    assert len(sim.issue(key).attachments) == 1
