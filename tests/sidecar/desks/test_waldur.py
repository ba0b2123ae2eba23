"""The Waldur desk client (a small httpx client on DeskHttp) against the Waldur simulator and its server rules."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devnet.sim_faults import FaultPlan, ManualClock
from devnet.waldur_sim import REMOTE_INITIAL_STATUS, WaldurSim
from sidecar.config_schema import WaldurConfig
from sidecar.desks.base import DeskComment, ExternalTicket, UnmappedValue
from sidecar.desks.waldur import WaldurDesk, remote_id
from sidecar.errors import ConfigError, DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import WALDUR_TOKEN, api_requests, ticket, waldur_config
from tests.sidecar.sync.rig import Rig, TamperingTransport, created

MakeDesk = Callable[..., WaldurDesk]
TYPES = ("Incident", "Service Request", "Change Request")
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")  # what a Jira-backed Waldur pulls


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[WaldurDesk] = []

    def make(
        sim: WaldurSim,
        *,
        metrics: Metrics | None = None,
        token: str = WALDUR_TOKEN,
        clock: Callable[[], float] | None = None,
        transport: Any = None,
        **config: Any,
    ) -> WaldurDesk:
        extra: dict[str, Any] = {"clock": clock} if clock else {}
        desk = WaldurDesk(
            waldur_config(sim, **config),
            token,
            metrics=metrics or Metrics(),
            allow_insecure_http=True,
            transport=transport,
            **extra,
        )
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


def create_bodies(sim: WaldurSim) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in sim.requests if r.method == "POST" and r.path == "/api/support-issues/"]


async def test_a_stock_waldur_accepts_the_create(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    """Stock: one request type ("Service Request"), no priorities; the sidecar's user is the caller."""
    metrics = Metrics()
    desk = make_desk(waldur_sim, metrics=metrics)
    await desk.refresh_catalog()
    assert desk.unmapped(ticket(priority="urgent", category="billing")) == ()  # the defaults fit a stock Waldur
    ref = await desk.create(ticket(priority="urgent", category="billing"))
    (issue,) = waldur_sim.list_issues()
    assert (ref.desk, ref.external_id, ref.key) == ("waldur", issue.uuid.hex, issue.key)
    assert ref.url == waldur_sim.url("support-issues", issue.uuid)
    assert issue.summary == "[SUP-000123] Lease 42 unreachable"
    assert (issue.type, issue.remote_id, issue.status) == ("Service Request", "virtengine:ticket-0123-id", "Open")
    assert issue.caller == waldur_sim.me and not issue.priority
    assert issue.customer == next(iter(waldur_sim.customers)) and issue.project == next(iter(waldur_sim.projects))
    for fact in ("SUP-000123", "ticket-0123-id", "billing", "urgent", "virtengine1qypq", "kind=lease", "Since 10:00."):
        assert fact in issue.description
    (body,) = create_bodies(waldur_sim)
    assert body["is_reported_manually"] is True and "priority" not in body and "caller" not in body
    assert api_requests(metrics, "waldur", "POST", "2xx") == 1


async def test_unknown_types_and_priorities_fall_back_and_are_reported(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    sim = make_waldur_sim(request_types=TYPES, priorities=PRIORITIES)
    desk = make_desk(
        sim,
        type_map=(("technical", "INCIDENT"), ("billing", "Change Request")),
        priority_map=(("high", "critical"), ("low", "Low")),
        default_priority="Medium",
    )
    with caplog.at_level(logging.WARNING, logger="sidecar.desks.waldur"):
        catalog = await desk.refresh_catalog()
    assert catalog.types == TYPES and catalog.priorities == frozenset(PRIORITIES)
    problems = [r.__dict__.get("problem", "") for r in caplog.records if r.name == "sidecar.desks.waldur"]
    assert "waldur.type_map: 'technical' -> 'INCIDENT' is not an active request type" in problems
    assert "waldur.priority_map: 'high' -> 'critical' is not a Waldur priority" in problems
    assert len(problems) == 2
    odd = ticket(priority="high", category="technical")
    assert desk.unmapped(odd) == (
        UnmappedValue("waldur", "type", "technical", "Incident"),  # Waldur's first active type
        UnmappedValue("waldur", "priority", "high", None),  # left out
    )
    assert desk.unmapped(ticket(n=2, priority="urgent", category="billing")) == (
        UnmappedValue("waldur", "priority", "urgent", "Medium"),  # unmapped: the default, which exists
    )
    await desk.create(odd)
    await desk.create(ticket(n=2, priority="low", category="billing"))
    first, second = create_bodies(sim)
    assert first["type"] == "Incident" and "priority" not in first
    assert (second["type"], second["priority"]) == ("Change Request", "Low")
    assert sorted((i.type, i.priority) for i in sim.list_issues()) == [("Change Request", "Low"), ("Incident", "")]


async def test_values_checked_before_the_catalog_are_retried_so_they_are_audited(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk
) -> None:
    sim = make_waldur_sim()
    desk = make_desk(sim, type_map=(("technical", "INCIDENT"),))
    assert desk.unmapped(ticket()) == ()  # nothing known yet
    with pytest.raises(DeskError, match="read only now") as late:
        await desk.create(ticket())
    assert late.value.retryable and sim.list_issues() == []
    assert desk.unmapped(ticket()) == (UnmappedValue("waldur", "type", "technical", "Service Request"),)
    await desk.create(ticket())
    assert [i.type for i in sim.list_issues()] == ["Service Request"]
    # What was already reported before the catalog (a default that exists) is not retried.
    other = make_desk(
        make_waldur_sim(priorities=("Medium",)), priority_map=(("low", "Low"),), default_priority="Medium"
    )
    assert other.unmapped(ticket(n=2)) == (UnmappedValue("waldur", "priority", "high", "Medium"),)
    await other.create(ticket(n=2))


async def test_the_worker_audits_what_waldur_lacks(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, tmp_path: Path
) -> None:
    """Through the real worker and store: the type Waldur lacks is audited as field_unmapped, the job is done."""
    clock = ManualClock()
    sim = make_waldur_sim(priorities=("High",))
    desk = make_desk(sim, type_map=(("technical", "INCIDENT"),), priority_map=(("high", "Critical"),))
    rig = await Rig.open(tmp_path / "sidecar.db", desk, clock)
    try:
        await desk.check()  # the health loop reads the catalog at start
        await rig.chain(created(1))
        await rig.run_due()
        assert [j.state for j in await rig.jobs()] == ["done"]
        found = {(a["details"]["field"], a["details"]["used"]) for a in await rig.audit("field_unmapped")}
        assert found == {("type", "Service Request"), ("priority", None)}
    finally:
        await rig.store.close()
    (issue,) = sim.list_issues()
    assert (issue.type, issue.priority) == ("Service Request", "")


async def test_the_catalog_is_read_again_after_its_refresh_interval(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk
) -> None:
    clock = ManualClock()
    sim = make_waldur_sim()
    desk = make_desk(sim, clock=clock, catalog_refresh=600.0)
    await desk.check()
    await desk.check()
    assert sim.request_count("GET", "/support-request-types/") == 1
    clock.advance(600)
    await desk.check()
    assert sim.request_count("GET", "/support-request-types/") == 2
    assert sim.request_count("GET", "/support-priorities/") == 2


async def test_lookup_pages_through_icontains_hits_and_matches_exactly(
    waldur_sim: WaldurSim, make_desk: MakeDesk
) -> None:
    """`?remote_id=virtengine:<owner>/support/1` also matches tickets 10..19 and 100: the right issue is the
    oldest hit, on the last page."""
    desk = make_desk(waldur_sim)
    owner = "virtengine1u9knrg2w63gtjy6lcr9nl7v6pmcnept0grqmeq/support/"
    numbers = [1, *range(10, 20), 100, 2]
    refs = {n: await desk.create(ticket(ticket_id=f"{owner}{n}")) for n in numbers}
    desk.page_size = 2
    before = waldur_sim.request_count("GET", "/api/support-issues/")
    assert await desk.find(ticket(ticket_id=f"{owner}1")) == refs[1]
    assert waldur_sim.request_count("GET", "/api/support-issues/") - before == 6  # 12 hits, 2 a page
    assert await desk.find(ticket(ticket_id=f"{owner}10")) == refs[10]
    assert await desk.find(ticket(ticket_id=owner)) is None  # every issue matches, none exactly
    assert await desk.find(ticket(ticket_id=f"{owner}3")) is None


async def test_a_second_create_is_refused_as_already_existing(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim)
    assert desk.unique_creates and await desk.find(ticket()) is None
    ref = await desk.create(ticket())
    assert await make_desk(waldur_sim).find(ticket()) == ref
    with pytest.raises(DeskError, match="remote_id") as refused:  # remote_id is unique: the caller adopts
        await desk.create(ticket())
    assert (refused.value.status, refused.value.already_exists, refused.value.nothing_created) == (400, True, True)
    assert len(waldur_sim.by_remote_id("virtengine:ticket-0123-id")) == 1


async def test_a_refused_create_says_nothing_was_made(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk
) -> None:
    sim = make_waldur_sim(user_full_name="")  # README: the sidecar's Waldur user needs a full name
    desk = make_desk(sim)
    with pytest.raises(DeskError, match="does not have full_name") as refused:
        await desk.create(ticket())
    assert (refused.value.status, refused.value.retryable, refused.value.nothing_created) == (400, False, True)


async def test_placeholder_when_content_is_not_available(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim)
    await desk.create(ticket(subject="", content_available=False, content_reason="sealed"))
    (issue,) = waldur_sim.list_issues()
    assert issue.summary == "[SUP-000123] (encrypted content not available to the desk)"
    assert "Content not available: sealed." in issue.description


async def test_comments_notes_and_markers(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    """The agent's support user has no Waldur user: its comments come without author_* fields."""
    desk = make_desk(waldur_sim)
    desk.page_size = 2
    ref = await desk.create(ticket())
    await desk.add_comment(ref, DeskComment("resp-1", "virtengine1abc", False, "Any news?"))
    await desk.add_comment(ref, DeskComment("resp-2", "virtengine1agent", True, "Checked.", internal=True))
    waldur_sim.agent_comment(ref.external_id, "Looking.")
    first, second, _ = waldur_sim.comments_of(ref.external_id)
    assert first.is_public and first.description.startswith("Customer virtengine1abc wrote:\n\nAny news?")
    assert not second.is_public and second.description.startswith("Agent virtengine1agent wrote:")
    assert await desk.has_comment(ref, "resp-1") and await desk.has_comment(ref, "resp-2")  # across pages
    assert not await desk.has_comment(ref, "resp-3")


async def test_status_moves_through_set_status_and_reopens(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim)
    ref = await desk.create(ticket())
    await desk.set_status(ref, "in_progress")  # "Open" already
    await desk.set_status(ref, "resolved")
    assert waldur_sim.list_issues()[0].status == "Resolved"
    await desk.set_status(ref, "open")  # reopened
    assert waldur_sim.list_issues()[0].status == "Open"
    await desk.close(ref, "purged on chain")
    await desk.close(ref, "purged on chain")
    assert waldur_sim.list_issues()[0].status == "Resolved"
    (note,) = waldur_sim.comments_of(ref.external_id)  # the close comment only: no status notes
    assert note.is_public and "purged on chain" in note.description
    assert waldur_sim.request_count("POST", "/set_status/") == 3
    state = await desk.fetch(ref)
    assert (state.status, state.priority, state.properties) == (
        "Resolved",
        None,
        {"remote_id": "virtengine:ticket-0123-id"},
    )


async def test_close_without_a_mapped_closed_status_comments_only(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim, status_map=(("open", "Open"),))
    ref = await desk.create(ticket())
    await desk.close(ref, "archived on chain")
    (note,) = waldur_sim.comments_of(ref.external_id)
    assert note.is_public and waldur_sim.list_issues()[0].status == "Open"
    with pytest.raises(DeskError, match="no status mapped for 'resolved'") as unmapped:
        await desk.set_status(ref, "resolved")
    assert not unmapped.value.retryable


@pytest.mark.parametrize("backend", ["atlassian", "zammad", "smax"])
async def test_a_backend_without_updates_gets_notes_once(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, backend: str
) -> None:
    sim = make_waldur_sim(backend=backend, request_types=TYPES, priorities=PRIORITIES)
    agent = sim.add_support_user("Agent")
    desk = make_desk(
        sim,
        priority_map=(("high", "High"), ("urgent", "Highest")),
        type_map=(("technical", "Incident"),),
        status_map=(("open", REMOTE_INITIAL_STATUS[backend]), ("in_progress", "In progress"), ("resolved", "Resolved")),
        assignee_map=(("virtengine1agent", agent.hex),),
    )
    ref = await desk.create(ticket())
    await desk.set_status(ref, "open")  # the remote desk's first status already
    await desk.update_fields(ref, ticket(assigned_agent="virtengine1agent"))  # PATCH is not available: left
    assert sim.comments_of(ref.external_id) == [] and sim.list_issues()[0].assignee is None
    for _ in range(2):
        await desk.set_status(ref, "in_progress")
        await desk.update_fields(ref, ticket(priority="urgent"))
    notes = sim.comments_of(ref.external_id)
    assert [n.is_public for n in notes] == [False, False]
    assert "'in_progress' (In progress)" in notes[0].description and "'urgent' (Highest)" in notes[1].description
    await desk.set_status(ref, "resolved")
    await desk.set_status(ref, "in_progress")  # back again: the newest status note differs, so it is said again
    assert len(sim.comments_of(ref.external_id)) == 4
    assert sim.request_count("POST", "/set_status/") == 0 and sim.request_count("PATCH") == 0


async def test_notes_are_remembered_while_running_and_a_lost_answer_is_listed_again(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk
) -> None:
    """Priority is protected after create, so each new chain priority is a note. The first note of an issue
    lists its comments; later ones need no listing (only the sidecar writes them). A note whose answer was lost
    is listed for again, found, and not posted twice; a restarted desk lists again."""
    sim = make_waldur_sim(request_types=TYPES, priorities=PRIORITIES)
    priorities = (("high", "High"), ("urgent", "Highest"), ("low", "Low"))
    config = {"priority_map": priorities, "type_map": (("technical", "Incident"),)}
    desk = make_desk(sim, **config)
    ref = await desk.create(ticket())

    def listings() -> int:
        return sim.request_count("GET", "/support-comments/")

    def notes() -> list[str]:
        return [c.description for c in sim.comments_of(ref.external_id)]

    await desk.update_fields(ref, ticket(priority="urgent"))
    first = listings()
    assert first >= 1 and len(notes()) == 1
    await desk.update_fields(ref, ticket(priority="urgent"))  # said already: nothing
    await desk.update_fields(ref, ticket(priority="low"))  # a new value: posted without listing
    assert (listings(), len(notes())) == (first, 2)
    sim.faults.inject("apply-drop", method="POST", path_contains="/comment/")  # posted, its answer lost
    with pytest.raises(DeskError):
        await desk.update_fields(ref, ticket(priority="urgent"))
    assert len(notes()) == 3
    await desk.update_fields(ref, ticket(priority="urgent"))  # the retry lists, finds it, posts nothing
    assert (listings(), len(notes())) == (first + 1, 3)
    restarted = make_desk(sim, **config)
    await restarted.update_fields(ref, ticket(priority="urgent"))
    assert (listings(), len(notes())) == (first + 2, 3)


async def test_a_move_the_workflow_refuses_becomes_a_note(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk
) -> None:
    sim = make_waldur_sim(status_transitions={"Open": {"Canceled"}})
    desk = make_desk(sim)
    ref = await desk.create(ticket())
    await desk.set_status(ref, "resolved")
    (issue,) = sim.list_issues()
    (note,) = sim.comments_of(ref.external_id)
    assert issue.status == "Open" and not note.is_public and "'resolved' (Resolved)" in note.description


async def test_the_assignee_is_set_where_updates_are_allowed(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    agent = waldur_sim.add_support_user("Agent")
    desk = make_desk(waldur_sim, assignee_map=(("virtengine1agent", agent.hex),))
    ref = await desk.create(ticket(assigned_agent="virtengine1agent"))  # not at create: refused with manual
    assert waldur_sim.list_issues()[0].assignee is None
    await desk.update_fields(ref, ticket(assigned_agent="virtengine1agent"))
    await desk.update_fields(ref, ticket(assigned_agent="virtengine1agent"))
    assert waldur_sim.list_issues()[0].assignee_uuid == agent and waldur_sim.request_count("PATCH") == 1


def strip(*names: str) -> Callable[[bytes], bytes]:
    def change(body: bytes) -> bytes:
        answer = json.loads(body)
        for item in answer if isinstance(answer, list) else [answer]:
            for name in names:
                item.pop(name, None)
        return json.dumps(answer).encode()

    return change


async def test_answers_without_a_needed_field_fail_that_job_only(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    tamper = TamperingTransport()
    desk = make_desk(waldur_sim, transport=tamper)
    ref = await desk.create(ticket())
    optional = ("key", "url", "priority", "modified", "assignee_uuid", "customer_uuid", "update_is_available")
    tamper.rewrite("GET", "/api/support-issues/", strip(*optional))
    state = await desk.fetch(ref)  # fields the sidecar can do without: parsed
    assert (state.status, state.priority, state.updated) == ("Open", None, "")
    tamper.rewrite("GET", "/api/support-issues/", strip("status"))
    with pytest.raises(DeskError, match="lacks the 'status' field") as no_status:
        await desk.fetch(ref)
    tamper.rewrite("POST", "/api/support-issues/", strip("uuid"))
    with pytest.raises(DeskError, match="lacks a valid issue 'uuid'") as no_uuid:
        await desk.create(ticket(n=2))
    tamper.rewrite("GET", "/api/support-issues/", lambda body: b'{"not": "a list"}')
    with pytest.raises(DeskError, match="not a JSON array") as not_a_list:
        await desk.find(ticket(n=3))
    tamper.rewrite("GET", "/api/support-request-types/", strip("name"))
    assert (await desk.refresh_catalog()).types == ()  # nameless types are not types
    for err in (no_status, no_uuid, not_a_list):
        assert not err.value.retryable
    assert len(tamper.tampered) == 5
    await desk.refresh_catalog()
    assert (await desk.fetch(ref)).status == "Open"  # the next call is unaffected


async def test_errors_translate(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wal-secret-8c1d-zz"
    sim = make_waldur_sim(token=secret, rate_per_second=0.5, burst=3, faults=FaultPlan(hang_seconds=10))
    desk = make_desk(sim, token=secret, timeout=0.3)
    await desk.check()  # the organization and the catalog (3 requests)
    sim.faults.inject("503", retry_after=3)
    sim.faults.inject("timeout")
    with pytest.raises(DeskError) as unavailable:
        await desk.check()
    assert (unavailable.value.status, unavailable.value.retryable, unavailable.value.retry_after) == (503, True, 3.0)
    with pytest.raises(DeskError) as hung:
        await desk.check()
    assert (hung.value.status, hung.value.retryable) == (None, True)
    with pytest.raises(DeskError) as limited:
        await desk.check()
    assert (limited.value.status, limited.value.retryable, limited.value.scope) == (429, True, "desk")
    sim.bucket = None
    with pytest.raises(DeskError) as missing:
        await desk.fetch(ExternalTicket("waldur", "0" * 32, "WAL-0", ""))
    assert (missing.value.status, missing.value.retryable) == (404, False)
    assert "No Issue matches the given query." in str(missing.value)
    sim.revoke_token()
    with pytest.raises(DeskError) as revoked:
        await desk.check()
    # An expired or revoked token is a desk-wide outage (DeskHttp): jobs wait for it, none is dead-lettered.
    assert (revoked.value.status, revoked.value.scope) == (401, "desk") and "Invalid token." in str(revoked.value)
    for err in (unavailable, hung, limited, missing, revoked):
        assert secret not in str(err.value)
    assert secret not in caplog.text


def test_plain_http_needs_the_development_flag(waldur_sim: WaldurSim) -> None:
    with pytest.raises(ConfigError, match=r"waldur.base_url must use https://"):
        WaldurDesk(WaldurConfig(base_url=waldur_sim.api_url), WALDUR_TOKEN, metrics=Metrics())


def test_remote_id_is_the_ticket_id_prefixed() -> None:
    assert remote_id("t-1") == "virtengine:t-1"


async def test_a_catalog_waldur_will_not_show_does_not_make_the_desk_look_down(
    waldur_sim: WaldurSim, make_desk: MakeDesk
) -> None:
    """403 on the request types (an older Waldur, a narrower role): the health probe still passes, so the
    desk's jobs are not held; a server error there still fails it."""
    tamper = TamperingTransport()
    desk = make_desk(waldur_sim, transport=tamper)
    refused = json.dumps({"detail": "You do not have permission to perform this action."}).encode()
    tamper.rewrite("GET", "/api/support-request-types/", lambda body: refused, status=403)
    await desk.check()
    assert tamper.tampered == ["GET /api/support-request-types/"]
    assert desk.catalog is None  # not read: nothing is assumed about what Waldur has
    tamper.rewrite("GET", "/api/support-request-types/", lambda body: b"{}", status=503)
    with pytest.raises(DeskError):
        await desk.check()
