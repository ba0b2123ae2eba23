"""Builders shared by the desk client tests: configs pointed at a simulator, tickets, metric reads."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from devnet.jira_model import Workflow
from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim
from sidecar.config_schema import JiraConfig, WaldurConfig
from sidecar.desks.base import TicketSnapshot
from sidecar.observe.metrics import Metrics

JIRA_TOKEN = "jira-test-token"
WALDUR_TOKEN = "waldur-test-token"


def ticket(n: int = 123, **changes: Any) -> TicketSnapshot:
    base = TicketSnapshot(
        ticket_id=f"ticket-{n:04d}-id",
        ticket_number=f"SUP-{n:06d}",
        submitter="virtengine1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu",
        category="technical",
        priority="high",
        status="open",
        related_entity={"kind": "lease", "id": "lease-42"},
        subject="Lease 42 unreachable",
        description="The lease does not answer.\nSince 10:00.",
    )
    return replace(base, **changes)


def jira_config(sim: JiraSim, **changes: Any) -> JiraConfig:
    return replace(
        JiraConfig(base_url=sim.base_url, username=sim.email, account_id=sim.me.account_id, timeout=5.0), **changes
    )


def waldur_config(sim: WaldurSim, **changes: Any) -> WaldurConfig:
    org = next(iter(sim.customers)).hex
    project = next(iter(sim.projects)).hex
    base = WaldurConfig(base_url=sim.api_url, organization_uuid=org, project_uuid=project, timeout=5.0)
    return replace(base, **changes)


def api_requests(metrics: Metrics, service: str, method: str, status: str) -> float:
    labels = {"service": service, "method": method, "status": status}
    return metrics.registry.get_sample_value("servicedesk_api_requests_total", labels) or 0.0


def approval_workflow() -> Workflow:
    """Open -> Approved only through a screen whose required custom field the sidecar cannot fill."""
    return Workflow.from_config(
        {"Open": "new", "Approved": "indeterminate"},
        [
            {
                "name": "Approve",
                "to": "Approved",
                "from": ["Open"],
                "screen": ["customfield_10050"],
                "required": ["customfield_10050"],
            }
        ],
        "Open",
    )
