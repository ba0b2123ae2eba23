"""Answers from the node, the desks and webhooks that are well-formed JSON but not what they should be:
each is refused or ignored for that one item, never raised out of the loop that read it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devnet.jira_sim import JiraSim
from sidecar.chain.events import decode_block
from sidecar.chain.txwatch import TxWatcher, parse_tx_result
from sidecar.desks.jira import JiraDesk
from sidecar.desks.jira_workflow import Hop, WorkflowMap
from sidecar.observe.metrics import Metrics
from sidecar.web.webhooks import Rejected, parse_jira
from tests.sidecar.desks.support import JIRA_TOKEN, jira_config


def test_a_block_event_whose_mode_is_not_a_string_decodes_without_raising() -> None:
    results = {"height": "7", "txs_results": [],
               "finalize_block_events": [{"type": "x", "attributes": [{"key": "mode", "value": {"a": 1}}]}]}
    assert decode_block(results) == []


@pytest.mark.parametrize(
    "doc",
    [["x"], {"tx_result": "x"}, {"height": "1.5", "tx_result": {}}, {"height": "2", "tx_result": {"code": []}}],
)
def test_a_malformed_tx_answer_is_a_value_error(doc: object) -> None:
    with pytest.raises(ValueError):
        parse_tx_result(doc)


def test_the_tx_watcher_ignores_events_it_cannot_read() -> None:
    watcher = TxWatcher("ws://127.0.0.1:1/websocket", "virtengine1xyz", Metrics())
    for junk in ({"events": []}, {"events": {"tx.hash": "AB"}}, {"events": {"tx.hash": ["AB"]}, "data": []},
                 {"events": {"tx.hash": ["AB"]}, "data": {"value": {"TxResult": {"height": "x"}}}}):
        watcher._on_event(junk)
    assert not watcher.has("AB")
    watcher._on_event({"events": {"tx.hash": ["ab"]}, "data": {"value": {"TxResult": {"height": "9"}}}})
    assert watcher.has("AB")


def test_a_jira_timestamp_that_is_no_time_is_none() -> None:
    body = ('{"webhookEvent":"jira:issue_updated","timestamp":1' + "0" * 400 + ',"issue":{"id":"1"}}').encode()
    assert parse_jira(body, {}).sent_at is None


@pytest.mark.parametrize("stamp", ["NaN", "-Infinity", "1e999"])
def test_a_jira_body_with_a_number_json_has_not_is_refused_as_not_json(stamp: str) -> None:
    body = ('{"webhookEvent":"jira:issue_updated","timestamp":' + stamp + ',"issue":{"id":"1"}}').encode()
    with pytest.raises(Rejected, match="body is not JSON"):
        parse_jira(body, {})


def test_a_learnt_path_never_passes_through_a_done_status() -> None:
    workflow = WorkflowMap()
    waiting_out = [Hop("5", "Resolve", "Resolved", "done")]
    workflow.learn("Task", "Waiting", waiting_out)
    workflow.learn("Task", "Resolved", [Hop("3", "Reopen", "In Progress", "indeterminate")])
    hop = workflow.next_hop("Task", "Waiting", "In Progress", waiting_out, set(), {"in progress", "resolved"})
    assert hop is None  # the only known way goes through Resolved
    assert workflow.next_hop("Task", "Waiting", "Resolved", waiting_out, set(), set()) == waiting_out[0]


async def test_without_an_account_id_only_the_tokens_own_requests_are_ours(
    make_jira_sim: Callable[..., JiraSim],
) -> None:
    sim = make_jira_sim()
    desk = JiraDesk(jira_config(sim, account_id=""), JIRA_TOKEN, metrics=Metrics(), allow_insecure_http=True)
    try:
        mine = {"reporter": {"accountId": sim.me.account_id}}
        assert not desk._reported_by_me(mine)  # nobody known yet: adopt nothing by summary
        await desk.check()
        assert desk._reported_by_me(mine)
        assert not desk._reported_by_me({"reporter": {"accountId": "a-portal-customer"}})
    finally:
        await desk.aclose()
