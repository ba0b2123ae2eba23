"""Contract tests for the Waldur simulator's attachments: one test per `attachment-*` rule of
devnet/waldur_rules.py, each sending the request straight to the simulator over loopback HTTP and
asserting the real server's status and exact body, then an accepted variant where there is one.

Requests the sidecar must never send (a missing part, a plain `file` field) fail the simulator's own
contract check first, so those tests run it with `validate=False` to reach the server rule behind it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx

from devnet.waldur_sim import WaldurSim
from devnet.webhook_receiver import WebhookReceiver

MakeSim = Callable[..., WaldurSim]
SIDECAR, AGENT = "Token waldur-test-token", "Token waldur-agent-token"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ATTACHMENT_FIELDS = {
    "url",
    "uuid",
    "issue",
    "issue_key",
    "created",
    "file",
    "mime_type",
    "file_size",
    "file_name",
    "backend_id",
    "destroy_is_available",
}


def client(sim: WaldurSim, token: str = SIDECAR) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers={"Authorization": token}, timeout=5.0)


def new_issue(c: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {"type": "Service Request", "summary": "Lease 42 unreachable", "is_reported_manually": True} | extra
    resp = c.post("/api/support-issues/", json=body)
    assert resp.status_code == 201, resp.text
    issue: dict[str, Any] = resp.json()
    return issue


def attach(c: httpx.Client, issue_url: str, name: str = "log.txt", content: bytes = b"abc") -> httpx.Response:
    return c.post("/api/support-attachments/", data={"issue": issue_url}, files={"file": (name, content)})


def test_attachment_required_parts_are_reported_together(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(validate=False)
    with client(sim) as c:
        issue = new_issue(c)
        neither = c.post("/api/support-attachments/", files={"other": ("x.txt", b"x")})
        assert (neither.status_code, neither.json()) == (
            400,
            {"issue": ["This field is required."], "file": ["No file was submitted."]},
        )
        no_file = c.post("/api/support-attachments/", data={"issue": issue["url"]}, files={"other": ("x.txt", b"x")})
        assert (no_file.status_code, no_file.json()) == (400, {"file": ["No file was submitted."]})
        # Django's MultiPartParser skips a file part whose filename is empty (httpx would leave it out).
        raw = (
            f'--b\r\nContent-Disposition: form-data; name="issue"\r\n\r\n{issue["url"]}\r\n'
            '--b\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
            "Content-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
        ).encode()
        nameless = c.post(
            "/api/support-attachments/", content=raw, headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert (nameless.status_code, nameless.json()) == (400, {"file": ["No file was submitted."]})
        assert attach(c, issue["url"]).status_code == 201


def test_attachment_file_sent_as_a_plain_field_is_not_a_file(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(validate=False)
    with client(sim) as c:
        issue = new_issue(c)
        resp = c.post(
            "/api/support-attachments/", data={"issue": issue["url"], "file": "abc"}, files={"x": ("x.txt", b"")}
        )
        assert (resp.status_code, resp.json()) == (
            400,
            {"file": ["The submitted data was not a file. Check the encoding type on the form."]},
        )


def test_attachment_empty_file_is_refused(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        resp = attach(c, new_issue(c)["url"], content=b"")
        assert (resp.status_code, resp.json()) == (400, {"file": ["The submitted file is empty."]})
    assert sim.attachments == []


def test_attachment_issue_link_must_name_an_issue(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        new_issue(c)
        not_a_link = attach(c, "WLD-1")
        assert (not_a_link.status_code, not_a_link.json()) == (400, {"issue": ["Invalid hyperlink - No URL match."]})
        gone = attach(c, sim.url("support-issues", UUID(int=7, version=4)))
        assert (gone.status_code, gone.json()) == (400, {"issue": ["Invalid hyperlink - Object does not exist."]})


def test_attachment_extension_test_refuses_names_without_one_by_default(make_waldur_sim: MakeSim) -> None:
    stock = make_waldur_sim()
    with client(stock) as c:
        issue = new_issue(c)
        bare = attach(c, issue["url"], name="README")
        assert (bare.status_code, bare.json()) == (400, {"non_field_errors": ["Invalid file extension"]})
        assert attach(c, issue["url"], name="README.txt").status_code == 201
    strict = make_waldur_sim(excluded_attachment_types=".exe,.bat")
    with client(strict) as c:
        issue = new_issue(c)
        exe = attach(c, issue["url"], name="setup.exe")
        assert (exe.status_code, exe.json()) == (400, {"non_field_errors": ["Invalid file extension"]})
        assert attach(c, issue["url"], name="setup.txt").status_code == 201


def test_attachment_smax_refuses_an_inactive_issue(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(backend="smax")
    with client(sim) as c:
        issue = new_issue(c)
        assert attach(c, issue["url"]).status_code == 201
        sim.agent_set_status(issue["uuid"], "Resolved")
        late = attach(c, issue["url"], name="late.txt")
        assert (late.status_code, late.json()) == (
            400,
            {"non_field_errors": ["Adding attachments is not available."]},
        )


def test_attachment_caller_or_staff_only(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        theirs = new_issue(c, is_reported_manually=False, caller=sim.user_url(sim.agent))
        denied = attach(c, theirs["url"])
        assert (denied.status_code, denied.json()) == (
            403,
            {"detail": "You do not have permission to perform this action."},
        )
    staff = make_waldur_sim(role="staff")
    with client(staff) as c:
        theirs = new_issue(c, is_reported_manually=False, caller=staff.user_url(staff.agent))
        assert attach(c, theirs["url"]).status_code == 201


def test_attachment_name_is_made_valid_and_unique(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        issue = new_issue(c)
        first = attach(c, issue["url"], name="C:\\logs\\my report (1).txt").json()
        assert first["file_name"] == "my_report_1.txt"
        second = attach(c, issue["url"], name="my report (1).txt").json()
        assert re.fullmatch(r"my_report_1_[A-Za-z0-9]{7}\.txt", second["file_name"]), second["file_name"]


def test_attachment_json_has_the_serializer_fields_and_a_sniffed_type(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()  # validate=True: every answer is also checked against waldur-api-client's Attachment
    with client(sim) as c:
        issue = new_issue(c)
        made = c.post(
            "/api/support-attachments/",
            data={"issue": issue["url"]},
            files={"file": ("shot.png", PNG, "text/plain")},  # the part's type is not what Waldur keeps
        )
        assert made.status_code == 201, made.text
        body = made.json()
        assert set(body) == ATTACHMENT_FIELDS  # no author, no public/internal flag
        assert body["issue"] == issue["url"] and body["issue_key"] == issue["key"]
        assert body["mime_type"] == "image/png" and body["file_size"] == len(PNG)
        assert re.fullmatch(re.escape(sim.api_url) + r"/media/[0-9a-f]{32}/", body["file"])
        assert body["destroy_is_available"] is False and body["backend_id"] == ""
        assert c.get(f"/api/support-attachments/{body['uuid']}/").json() == body


def test_attachment_visibility_is_the_issue_callers(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        issue = new_issue(c)
        made = attach(c, issue["url"]).json()
    with client(sim, AGENT) as agent:  # a support-role user who is not the caller
        assert agent.get("/api/support-attachments/").json() == []
        hidden = agent.get(f"/api/support-attachments/{made['uuid']}/")
        assert (hidden.status_code, hidden.json()) == (404, {"detail": "No Attachment matches the given query."})
    staffed = make_waldur_sim(agent_role="staff")
    with client(staffed) as c:
        made = attach(c, new_issue(c)["url"]).json()
    with client(staffed, AGENT) as agent:
        assert [a["uuid"] for a in agent.get("/api/support-attachments/").json()] == [made["uuid"]]


def test_attachment_filters_issue_and_issue_uuid(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        one, two = new_issue(c), new_issue(c, summary="other")
        a = attach(c, one["url"], name="a.txt").json()
        attach(c, two["url"], name="b.txt")
        by_uuid = c.get("/api/support-attachments/", params={"issue_uuid": one["uuid"]})
        assert [x["uuid"] for x in by_uuid.json()] == [a["uuid"]] and by_uuid.headers["x-result-count"] == "1"
        by_url = c.get("/api/support-attachments/", params={"issue": one["url"]})
        assert [x["uuid"] for x in by_url.json()] == [a["uuid"]]
        bad = c.get("/api/support-attachments/", params={"issue_uuid": "WLD-1"})
        assert (bad.status_code, bad.json()) == (400, {"issue_uuid": ["Enter a valid UUID."]})


def test_attachment_media_serves_the_bytes_to_who_may_see_them(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        made = attach(c, new_issue(c)["url"], name="shot.png", content=PNG).json()
        got = c.get(made["file"])
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png" and got.headers["content-length"] == str(len(PNG))
        assert got.headers["content-disposition"] == 'attachment; filename="shot.png"'
        unknown = c.get(f"{sim.api_url}/media/{'0' * 32}/")
        assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not found."})
    with client(sim, AGENT) as agent:
        assert agent.get(made["file"]).status_code == 404


def test_attachment_destroy_depends_on_the_backend(make_waldur_sim: MakeSim, webhook_receiver: WebhookReceiver) -> None:
    basic = make_waldur_sim()
    with client(basic) as c:
        made = attach(c, new_issue(c)["url"]).json()
        refused = c.delete(f"/api/support-attachments/{made['uuid']}/")
        assert (refused.status_code, refused.json()) == (400, ["Destroying is not available."])
        assert len(basic.attachments) == 1
    zammad = make_waldur_sim(backend="zammad")
    with client(zammad) as c:
        hook = {"destination_url": webhook_receiver.url("/z"), "event_types": ["attachment_deleted"]}
        assert c.post("/api/hooks-web/", json=hook).status_code == 201
        made = attach(c, new_issue(c)["url"]).json()
        assert made["destroy_is_available"] is True
        assert c.delete(f"/api/support-attachments/{made['uuid']}/").status_code == 204
        assert c.get(f"/api/support-attachments/{made['uuid']}/").status_code == 404
    (event,) = webhook_receiver.wait_for(1)
    assert event.json()["event_type"] == "attachment_deleted"
    assert event.json()["context"]["attachment_uuid"] == UUID(made["uuid"]).hex


def test_attachment_created_hook_names_the_attachment(
    make_waldur_sim: MakeSim, webhook_receiver: WebhookReceiver
) -> None:
    sim = make_waldur_sim()
    with client(sim) as c:
        hook = {"destination_url": webhook_receiver.url("/a"), "event_types": ["attachment_created"]}
        assert c.post("/api/hooks-web/", json=hook).status_code == 201
        issue = new_issue(c)
        made = attach(c, issue["url"]).json()
    (event,) = webhook_receiver.wait_for(1)
    payload = event.json()
    assert payload["event_type"] == "attachment_created"
    assert payload["message"] == f"Attachment for issue {issue['key']} has been created."
    assert payload["context"]["attachment_uuid"] == UUID(made["uuid"]).hex
    assert payload["context"]["issue_uuid"] == UUID(issue["uuid"]).hex


def test_attachment_proxy_body_limit_answers_413(make_waldur_sim: MakeSim) -> None:
    sim = make_waldur_sim(upload_limit=64 * 1024)
    with client(sim) as c:
        issue = new_issue(c)
        big = attach(c, issue["url"], name="big.txt", content=b"x" * (65 * 1024))
        assert big.status_code == 413 and "413 Request Entity Too Large" in big.text
        assert attach(c, issue["url"], name="small.txt", content=b"x" * 1024).status_code == 201
    assert [a.file_name for a in sim.attachments] == ["small.txt"]
