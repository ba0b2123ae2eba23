"""Desk clients treat ids from the chain and answers from the desk as outside input: ids are checked
and quoted, answers are bounded, and every failure is a DeskError (never InvalidURL or RecursionError)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devnet.jira_sim import JiraSim
from sidecar.config_schema import JiraConfig, WaldurConfig
from sidecar.desks.base import ExternalTicket
from sidecar.desks.http import MAX_ERROR_TEXT, error_text
from sidecar.desks.jira import JiraDesk
from sidecar.desks.waldur import WaldurDesk
from sidecar.errors import DeskError
from sidecar.observe.metrics import Metrics
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config


async def test_jira_accepts_issue_ids_and_keys_of_its_own_project_only() -> None:
    desk = JiraDesk(JiraConfig(base_url="https://jira.example", project_key="PROJ"), "t", metrics=Metrics())
    try:
        for good in ("10001", "PROJ-123"):
            assert desk.ref_problem(good) is None, good
        for bad in (
            "OTHER-9",
            "../../2/issue/OTHER-9",
            "PROJ-",
            "PROJ-1/comment",
            "12\n",
            "\uff11\uff12",
            "",
            "proj-1",
            "1" * 40,
            "PROJ-1?x=1",
        ):
            assert desk.ref_problem(bad) == "not a Jira issue id or a key of project PROJ", repr(bad)
    finally:
        await desk.aclose()


async def test_waldur_accepts_uuids_only() -> None:
    desk = WaldurDesk(WaldurConfig(base_url="https://waldur.example/api"), "t", metrics=Metrics())
    try:
        for good in ("0f8fad5bd9cb469fa16570867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E"):
            assert desk.ref_problem(good) is None, good
        for bad in ("../support-issues/", "0f8fad5b", "{0f8fad5b-d9cb-469f-a165-70867728950e}", "", "x" * 32):
            assert desk.ref_problem(bad) == "not a Waldur issue UUID", repr(bad)
        with pytest.raises(DeskError, match="not a UUID"):
            await desk.fetch(ExternalTicket("waldur", "../x", "K-1", ""))
    finally:
        await desk.aclose()


async def test_ids_are_quoted_as_one_path_segment(make_jira_sim: Callable[..., JiraSim]) -> None:
    sim = make_jira_sim(validate=False)  # the request is wrong on purpose: the point is where it goes
    desk = JiraDesk(jira_config(sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    try:
        with pytest.raises(DeskError) as err:
            await desk.fetch(ExternalTicket("jira", "1", "../../2/issue/OTHER-9", ""))
        assert err.value.status == 404 and not err.value.retryable
    finally:
        await desk.aclose()
    [path] = [r.path for r in sim.requests if r.method == "GET"]
    assert path == "/rest/api/3/issue/../../2/issue/OTHER-9"  # one segment: ASGI shows it unquoted
    assert not any("/rest/api/2/" in r.path or r.path.startswith("/rest/2") for r in sim.requests)


async def test_an_invalid_url_is_a_desk_error(jira_sim: JiraSim) -> None:
    desk = JiraDesk(jira_config(jira_sim), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    try:
        with pytest.raises(DeskError, match="invalid request URL") as err:
            await desk.http.request("probe", "GET", "/rest/api/3/issue/\x00")
        assert not err.value.retryable
    finally:
        await desk.aclose()


def test_error_bodies_are_bounded_too() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    text = error_text(deep)  # no RecursionError: too deep is read as plain text
    assert text.startswith("[[[") and len(text) <= MAX_ERROR_TEXT
    assert error_text(b'{"errorMessages": ["Issue does not exist"]}') == "Issue does not exist"
