"""The Waldur desk client (waldur-api-client on the desk's pooled httpx client) against the Waldur simulator."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from devnet.sim_faults import FaultPlan
from devnet.waldur_sim import WaldurSim
from sidecar.config_schema import WaldurConfig
from sidecar.desks.base import DeskComment, ExternalTicket, UnmappedValue
from sidecar.desks.waldur import WaldurDesk
from sidecar.errors import ConfigError, DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import WALDUR_TOKEN, api_requests, ticket, waldur_config

MakeDesk = Callable[..., WaldurDesk]


@pytest.fixture
async def make_desk() -> AsyncIterator[MakeDesk]:
    desks: list[WaldurDesk] = []

    def make(sim: WaldurSim, *, metrics: Metrics | None = None, token: str = WALDUR_TOKEN, **config: Any) -> WaldurDesk:
        desk = WaldurDesk(waldur_config(sim, **config), token, metrics=metrics or Metrics(), allow_insecure_http=True)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        await desk.aclose()


async def test_create_sets_every_field(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    metrics = Metrics()
    desk = make_desk(waldur_sim, metrics=metrics)
    ref = await desk.create(ticket(priority="urgent", category="billing"))
    (issue,) = waldur_sim.list_issues()
    assert (ref.desk, ref.external_id, ref.key) == ("waldur", issue.uuid.hex, issue.key)
    assert ref.url == waldur_sim.url("support-issues", issue.uuid)
    assert issue.summary == "[SUP-000123] Lease 42 unreachable"
    assert (issue.type, issue.priority, issue.remote_id) == ("SERVICE_REQUEST", "critical", "virtengine:ticket-0123-id")
    assert issue.customer == next(iter(waldur_sim.customers)) and issue.project == next(iter(waldur_sim.projects))
    for fact in ("SUP-000123", "ticket-0123-id", "billing", "urgent", "virtengine1qypq", "kind=lease", "Since 10:00."):
        assert fact in issue.description
    assert api_requests(metrics, "waldur", "POST", "2xx") == 1


async def test_find_by_remote_id_and_a_retried_create_adopts(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim)
    assert await desk.find(ticket()) is None
    ref = await desk.create(ticket())
    assert await make_desk(waldur_sim).find(ticket()) == ref
    assert await desk.create(ticket()) == ref  # remote_id is unique: the 400 leads to the existing issue
    assert len(waldur_sim.by_remote_id("virtengine:ticket-0123-id")) == 1


async def test_placeholder_and_unmapped_values(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim, default_priority="low")
    odd = ticket(priority="critical", category="weird", subject="", content_available=False)
    assert desk.unmapped(odd) == (
        UnmappedValue("waldur", "priority", "critical", "low"),
        UnmappedValue("waldur", "type", "weird", "INFORMATIONAL"),
    )
    await desk.create(odd)
    (issue,) = waldur_sim.list_issues()
    assert (issue.priority, issue.type) == ("low", "INFORMATIONAL")
    assert issue.summary == "[SUP-000123] (encrypted content not available to the desk)"


async def test_type_map_override(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim, type_map=(("technical", "CHANGE_REQUEST"),))
    await desk.create(ticket())
    assert waldur_sim.list_issues()[0].type == "CHANGE_REQUEST"


async def test_comments_notes_and_markers(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
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


async def test_status_and_fields_become_notes_once(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim)
    ref = await desk.create(ticket())
    await desk.set_status(ref, "open")  # Waldur already shows "new"
    await desk.update_fields(ref, ticket())  # nothing differs
    assert waldur_sim.comments_of(ref.external_id) == []
    for _ in range(2):
        await desk.set_status(ref, "in_progress")
        await desk.update_fields(ref, ticket(priority="urgent"))
    notes = waldur_sim.comments_of(ref.external_id)
    assert [n.is_public for n in notes] == [False, False]
    assert "'in_progress' (in_progress)" in notes[0].description and "'urgent' (critical)" in notes[1].description
    await desk.set_status(ref, "waiting_customer")
    await desk.set_status(ref, "in_progress")  # back again: the newest status note differs, so it is said again
    assert len(waldur_sim.comments_of(ref.external_id)) == 4
    waldur_sim.agent_set_status(ref.external_id, "resolved")
    state = await desk.fetch(ref)
    assert (state.status, state.priority, state.properties) == (
        "resolved",
        "high",
        {"remote_id": "virtengine:ticket-0123-id"},
    )


async def test_close_comments_once(waldur_sim: WaldurSim, make_desk: MakeDesk) -> None:
    desk = make_desk(waldur_sim)
    ref = await desk.create(ticket())
    await desk.close(ref, "purged on chain")
    await desk.close(ref, "purged on chain")
    (note,) = waldur_sim.comments_of(ref.external_id)
    assert note.is_public and "purged on chain" in note.description


async def test_errors_translate(
    make_waldur_sim: Callable[..., WaldurSim], make_desk: MakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wal-secret-8c1d-zz"
    sim = make_waldur_sim(token=secret, rate_per_second=0.5, burst=1, faults=FaultPlan(hang_seconds=10))
    desk = make_desk(sim, token=secret, timeout=0.3)
    await desk.check()
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
    assert (revoked.value.status, revoked.value.retryable) == (401, False) and "Invalid token." in str(revoked.value)
    for err in (unavailable, hung, limited, missing, revoked):
        assert secret not in str(err.value)
    assert secret not in caplog.text


def test_plain_http_needs_the_development_flag(waldur_sim: WaldurSim) -> None:
    with pytest.raises(ConfigError, match=r"waldur.base_url must use https://"):
        WaldurDesk(WaldurConfig(base_url=waldur_sim.api_url), WALDUR_TOKEN, metrics=Metrics())
