"""Mapping tables from configuration: defaults, reported gaps, unambiguous inbound maps, and the ADF check."""

from __future__ import annotations

from sidecar.config_schema import JiraConfig, WaldurConfig
from sidecar.desks import jira_adf
from sidecar.desks.base import DeskComment, UnmappedValue
from sidecar.desks.mapping import jira_mapping, waldur_mapping
from tests.sidecar.desks.support import ticket


def test_defaults_follow_desks_md() -> None:
    jira, waldur = jira_mapping(JiraConfig()), waldur_mapping(WaldurConfig())
    assert [jira.priority.to_desk(p).value for p in ("low", "normal", "high", "urgent")] == [
        "Low",
        "Medium",
        "High",
        "Highest",
    ]
    # Waldur's defaults are what a stock deployment accepts: no priorities, one request type, basic statuses.
    assert [waldur.priority.to_desk(p).value for p in ("low", "normal", "high", "urgent")] == [None] * 4
    assert jira.status.to_desk("waiting_support").value == "Waiting for Support"
    assert waldur.status.to_desk("archived").value == "Resolved"
    assert {waldur.status.to_desk(s).value for s in ("open", "assigned", "waiting_customer")} == {"Open"}
    assert waldur.category is not None and waldur.category.to_desk("security").value == "Service Request"


def test_unmapped_values_take_the_default_and_are_reported() -> None:
    mapping = jira_mapping(JiraConfig(default_priority="Low"))
    got = mapping.priority.to_desk("critical")
    assert (got.value, got.unmapped) == ("Low", UnmappedValue("jira", "priority", "critical", "Low"))
    assert mapping.status.to_desk("escalated").value is None  # no guessed workflow status
    assert mapping.unmapped("high", "open", "anything") == ()  # Jira carries any category as a label


def test_inbound_keeps_the_current_chain_status_when_ambiguous() -> None:
    status = jira_mapping(JiraConfig()).status
    assert status.to_chain("Closed", current="archived") == "archived"
    assert status.to_chain("Closed", current="open") == "closed"
    assert status.to_chain("in progress", current="assigned") == "assigned"
    assert status.to_chain("In Progress", current="open") == "in_progress"  # the like-named one
    assert status.to_chain("Triage", current="open") is None
    waldur = waldur_mapping(WaldurConfig()).status
    assert waldur.to_chain("Open", current="waiting_customer") == "waiting_customer"
    assert waldur.to_chain("Open", current="resolved") == "open"
    assert waldur.to_chain("Resolved", current="open") == "resolved"


def test_overrides_replace_the_table() -> None:
    config = WaldurConfig(
        priority_map=(("urgent", "High"),), default_priority="Medium", type_map=(("other", "Change Request"),)
    )
    mapping = waldur_mapping(config)
    assert mapping.priority.to_desk("urgent").value == "High"
    assert mapping.priority.to_desk("low").value == "Medium"  # missing from the override: the default
    assert mapping.category is not None and mapping.category.to_desk("billing").value == "Change Request"
    no_other = waldur_mapping(WaldurConfig(type_map=(("billing", "Incident"),))).category
    assert no_other is not None and no_other.to_desk("security").value is None  # Waldur's first active type


def test_built_documents_pass_the_adf_check() -> None:
    comment = DeskComment("r-1", "virtengine1abc", False, "line one\nline two\n\n\nafter blank lines")
    for document in (
        jira_adf.describe_ticket(ticket(), "High"),
        jira_adf.comment_doc(comment),
        jira_adf.describe_ticket(ticket(description="", content_available=False), "Low"),
    ):
        assert jira_adf.check(document) == []
    assert jira_adf.footer_marker(jira_adf.comment_doc(comment)) == "r-1"
    assert jira_adf.footer_marker(jira_adf.comment_text(comment)) == "r-1"


def test_the_adf_check_catches_malformed_documents() -> None:
    assert jira_adf.check({"type": "doc", "version": 2, "content": []})
    assert jira_adf.check("plain text")
    empty_text = {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}],
    }
    assert "text must be a non-empty string" in jira_adf.check(empty_text)[0]
    inline_top = {"type": "doc", "version": 1, "content": [{"type": "text", "text": "x"}]}
    assert "not allowed here" in jira_adf.check(inline_top)[0]
    block_in_para = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "rule"}]}]}
    assert jira_adf.check(block_in_para)
