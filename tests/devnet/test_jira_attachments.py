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


# JSM visibility: getAttachmentsForRequest (GET /rest/servicedeskapi/request/{key}/attachment) -----------
def new_request(sim: JiraSim, c: httpx.Client) -> str:
    sim.add_request_type("10", "25")
    body = {"serviceDeskId": "10", "requestTypeId": "25", "requestFieldValues": {"summary": "Lease 42"}}
    resp = c.post("/rest/servicedeskapi/request", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["issueKey"])


def request_files(c: httpx.Client, key: str, start: int = 0, limit: int = 50) -> httpx.Response:
    return c.get(f"/rest/servicedeskapi/request/{key}/attachment", params={"start": start, "limit": limit})


def test_request_listing_of_a_plain_issue_or_a_missing_one_is_404(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)  # a platform issue: no request type, not a customer request
    upload(http, key)
    for ident in (key, "NOPE-9"):
        refused = request_files(http, ident)
        assert refused.status_code == 404
        assert set(refused.json()) == {"errorMessage", "i18nErrorMessage"}  # JSM's ErrorResponse, not Jira's
    assert request_files(http, new_request(sim, http)).status_code == 200


def test_a_file_attached_with_an_internal_note_is_left_out_of_the_request_listing(
    http: httpx.Client, sim: JiraSim
) -> None:
    key = new_request(sim, http)
    public_id = upload(http, key, "log.txt", b"hello").json()[0]["id"]
    internal_id = sim.agent_attach_internal(key, "notes.txt", b"agents only", "text/plain")
    platform = http.get(f"/rest/api/3/issue/{key}", params={"fields": "attachment"}).json()["fields"]["attachment"]
    assert [a["id"] for a in platform] == [public_id, internal_id]  # the platform API lists both, alike
    assert set(platform[0]) == set(platform[1])
    note = sim.issue(key).comments[-1]
    assert note.public is False and "[^notes.txt]" in json.dumps(note.body)  # the internal comment names it
    listed = request_files(http, key).json()
    assert [v["_links"]["jiraRest"].rsplit("/", 1)[1] for v in listed["values"]] == [public_id]
    assert listed["size"] == 1 and listed["isLastPage"] is True


def test_request_listing_has_jiras_attachment_dto_shape(http: httpx.Client, sim: JiraSim) -> None:
    key = new_request(sim, http)
    att = upload(http, key, "log.txt", b"hello").json()[0]
    (item,) = request_files(http, key).json()["values"]
    assert "id" not in item  # AttachmentDTO has no id: it is the tail of _links.jiraRest
    assert item["filename"] == "log.txt" and item["size"] == 5 and item["mimeType"] == "text/plain"
    assert item["_links"]["jiraRest"].endswith(f"/rest/api/2/attachment/{att['id']}")
    assert item["author"]["accountId"] == sim.me.account_id and item["author"]["displayName"]
    assert "emailAddress" not in item["author"]
    assert set(item["created"]) == {"iso8601", "jira", "friendly", "epochMillis"}


def test_request_listing_pages_by_start_and_limit(http: httpx.Client, sim: JiraSim) -> None:
    sim.request_attachment_page = 2
    key = new_request(sim, http)
    ids = [upload(http, key, f"f{n}.txt", b"x").json()[0]["id"] for n in range(3)]
    first = request_files(http, key, 0, 50).json()  # a larger limit is cut to the page size
    assert first["limit"] == 2 and first["isLastPage"] is False and "next" in first["_links"]
    second = request_files(http, key, 2, 2).json()
    assert second["isLastPage"] is True and second["start"] == 2
    seen = [v["_links"]["jiraRest"].rsplit("/", 1)[1] for v in first["values"] + second["values"]]
    assert seen == ids


# createCommentWithAttachment (POST /rest/servicedeskapi/request/{key}/attachment) ---------------------------
def attach_with_comment(c: httpx.Client, key: str, body: dict[str, object]) -> httpx.Response:
    return c.post(f"/rest/servicedeskapi/request/{key}/attachment", json=body)


def test_files_attached_with_an_internal_comment_are_internal(http: httpx.Client, sim: JiraSim) -> None:
    key = new_request(sim, http)
    temp = sim.temporary_attachment("notes.txt", b"agents only", "text/plain")
    body = {"temporaryAttachmentIds": [temp], "public": False, "additionalComment": {"body": "For the team"}}
    resp = attach_with_comment(http, key, body)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["comment"]["public"] is False and answer["comment"]["body"].startswith("For the team")
    [made] = answer["attachments"]["values"]
    att_id = made["_links"]["jiraRest"].rsplit("/", 1)[1]
    assert [a.id for a in sim.issue(key).attachments] == [att_id] and sim.issue(key).comments[-1].public is False
    assert request_files(http, key).json()["values"] == []  # not visible to the customer
    temp = sim.temporary_attachment("answer.txt", b"for you", "text/plain")
    assert attach_with_comment(http, key, {"temporaryAttachmentIds": [temp], "public": True}).status_code == 201
    assert [v["filename"] for v in request_files(http, key).json()["values"]] == ["answer.txt"]


def test_attach_with_comment_needs_public_and_temporary_ids(http: httpx.Client, sim: JiraSim) -> None:
    key = new_request(sim, http)
    temp = sim.temporary_attachment("a.txt", b"a", "text/plain")
    for body in ({"temporaryAttachmentIds": [temp]}, {"public": True}, {"public": True, "temporaryAttachmentIds": []}):
        refused = attach_with_comment(http, key, body)
        assert refused.status_code == 400 and set(refused.json()) == {"errorMessage", "i18nErrorMessage"}
    assert sim.issue(key).attachments == []
    assert attach_with_comment(http, key, {"public": True, "temporaryAttachmentIds": [temp]}).status_code == 201


def test_an_expired_or_used_temporary_file_is_400_and_nothing_is_attached(
    make_jira_sim: Callable[..., JiraSim],
) -> None:
    clock = ManualClock()
    sim = make_jira_sim(clock=clock)
    with client(sim) as http:
        key = new_request(sim, http)
        used = sim.temporary_attachment("a.txt", b"a", "text/plain")
        assert attach_with_comment(http, key, {"public": True, "temporaryAttachmentIds": [used]}).status_code == 201
        stale = sim.temporary_attachment("b.txt", b"b", "text/plain")
        clock.advance(sim.temporary_ttl + 1)
        fresh = sim.temporary_attachment("c.txt", b"c", "text/plain")
        for ids in ([used], [stale, fresh]):
            assert attach_with_comment(http, key, {"public": True, "temporaryAttachmentIds": ids}).status_code == 400
        assert [a.filename for a in sim.issue(key).attachments] == ["a.txt"]
        assert attach_with_comment(http, key, {"public": True, "temporaryAttachmentIds": [fresh]}).status_code == 201


def test_attach_with_comment_on_a_plain_issue_is_404(http: httpx.Client, sim: JiraSim) -> None:
    key = new_issue(http)
    temp = sim.temporary_attachment("a.txt", b"a", "text/plain")
    refused = attach_with_comment(http, key, {"public": False, "temporaryAttachmentIds": [temp]})
    assert refused.status_code == 404 and sim.issue(key).attachments == []
