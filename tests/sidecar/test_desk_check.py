"""`servicedesk-sidecar desk check` as operators run it, against both desk simulators on loopback:
a good configuration is usable (exit 0), and each broken one fails the check that names it (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devnet.jira_model import Workflow
from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim
from sidecar.desks.waldur_check import WALDUR_EVENTS
from tests.sidecar.test_cli import cli

JIRA_TOKEN = "KNOWN-jira-token-5e1b"
WALDUR_TOKEN = "KNOWN-waldur-token-c07d"
PUBLIC = "https://sidecar.example.org"


def _config(tmp_path: Path, jira: JiraSim | None, waldur: WaldurSim | None, **overrides: Any) -> Path:
    """A YAML configuration for the simulators; `overrides` maps `section.key` paths to values."""
    doc: dict[str, Any] = {"sync": {"allow_insecure_http": True}, "webhook": {"require_signature": False}}
    if jira is not None:
        doc["jira"] = {
            "base_url": jira.base_url,
            "username": jira.email,
            "account_id": jira.me.account_id,
            "project_key": "VESUPPORT",
            "issue_type": "Service Request",
        }
    if waldur is not None:
        doc["waldur"] = {"base_url": waldur.api_url, "organization_uuid": next(iter(waldur.customers)).hex}
    for path, value in overrides.items():
        section, key = path.split(".")
        doc.setdefault(section, {})[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"servicedesk": doc}))
    return path


def _run(config: Path, *flags: str, jira_token: str = JIRA_TOKEN, waldur_token: str = WALDUR_TOKEN) -> Any:
    env = {
        "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": jira_token,
        "VIRTENGINE_SERVICEDESK_WALDUR_TOKEN": waldur_token,
    }
    result = cli("desk", "check", "--config", str(config), "--public-url", PUBLIC, *flags, env=env)
    for secret in (jira_token, waldur_token):
        assert secret not in result.stdout + result.stderr
    return result


def _checks(result: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """{desk: {check name: check}} from a --json run."""
    doc = json.loads(result.stdout)
    return {desk["desk"]: {c["name"]: c for c in desk["checks"]} for desk in doc["desks"]}


def _issue_in_every_status(sim: JiraSim) -> None:
    """One agent-made issue per workflow status (Jira shows transitions only out of an issue's status)."""
    for status in sim.workflow.statuses:
        fields = {
            "project": {"key": "VESUPPORT"},
            "issuetype": {"name": "Service Request"},
            "summary": f"sample in {status.name}",
        }
        issue = sim.create_issue(fields, [], True)
        for step in sim.workflow.path(issue.status, status.name):
            screen = {"resolution": {"name": "Done"}} if "resolution" in step.screen else None
            sim.transition(issue, step.id, True, screen)
        assert issue.status == status.name
    sim.flush_index()


def _waldur_issue(sim: WaldurSim) -> None:
    sim.create_issue({"summary": "sample", "is_reported_manually": True, "customer": sim.customer_url()}, sim.me)


def _register_hook(sim: WaldurSim, content_type: str, events: list[str]) -> None:
    """POST /api/hooks-web/ as an operator would, pointing at the sidecar's public URL."""
    body = {"destination_url": f"{PUBLIC}/webhooks/waldur", "event_types": events, "content_type": content_type}
    answer = httpx.post(f"{sim.api_url}/hooks-web/", json=body, headers={"Authorization": f"Token {WALDUR_TOKEN}"})
    assert answer.status_code == 201, answer.text


@pytest.fixture
def sims(
    make_jira_sim: Callable[..., JiraSim], make_waldur_sim: Callable[..., WaldurSim]
) -> Callable[..., tuple[JiraSim, WaldurSim]]:
    def make(jira: dict[str, Any] | None = None, waldur: dict[str, Any] | None = None) -> tuple[JiraSim, WaldurSim]:
        return (
            make_jira_sim(api_token=JIRA_TOKEN, **(jira or {})),
            make_waldur_sim(token=WALDUR_TOKEN, **(waldur or {})),
        )

    return make


def test_a_good_configuration_is_usable(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    jira, waldur = sims()
    _issue_in_every_status(jira)
    _waldur_issue(waldur)
    _register_hook(waldur, "json", list(WALDUR_EVENTS))
    config = _config(tmp_path, jira, waldur)

    result = _run(config, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    checks = _checks(result)
    assert set(checks) == {"jira", "waldur"}
    for desk in checks.values():
        assert desk and all(set(c) == {"name", "ok", "detail", "hint"} for c in desk.values())
        assert [name for name, c in desk.items() if not c["ok"]] == []
    assert {
        "jira.auth",
        "jira.account_id",
        "jira.permissions",
        "jira.project",
        "jira.issue_type",
        "jira.priorities",
        "jira.statuses",
        "jira.status_paths",
        "jira.webhook",
    } <= set(checks["jira"])
    assert {
        "waldur.auth",
        "waldur.role",
        "waldur.organization",
        "waldur.request_types",
        "waldur.priorities",
        "waldur.statuses",
        "waldur.webhook",
    } <= set(checks["waldur"])
    # Resolved takes two steps in the service-request workflow, through a screen needing a resolution
    assert "Open -> In Progress -> Resolved" in checks["jira"]["jira.status_paths"]["detail"]
    assert "not verified" not in checks["jira"]["jira.status_paths"]["detail"]
    assert f"{PUBLIC}/webhooks/jira" in checks["jira"]["jira.webhook"]["hint"]
    assert "content_type json" in checks["waldur"]["waldur.webhook"]["hint"]
    assert checks["waldur"]["waldur.webhook"]["detail"].startswith("a JSON web hook to the sidecar is registered;")
    # no ticket content: the sample issues' summaries are never read
    assert "sample" not in result.stdout

    text = _run(config)
    assert text.returncode == 0, text.stderr
    assert "jira " in text.stdout and ": usable" in text.stdout and "FAIL" not in text.stdout


def test_before_the_first_ticket_paths_are_not_verified_but_usable(
    tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]
) -> None:
    jira, waldur = sims()
    result = _run(_config(tmp_path, jira, waldur), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = _checks(result)
    assert "not verified" in checks["jira"]["jira.status_paths"]["detail"]
    assert checks["waldur"]["waldur.statuses"]["detail"].startswith("not verified")


def test_wrong_tokens_fail_authentication(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    jira, waldur = sims()
    result = _run(
        _config(tmp_path, jira, waldur), "--json", jira_token="WRONG-jira-token-1", waldur_token="WRONG-waldur-2"
    )
    assert result.returncode == 2
    checks = _checks(result)
    auth = checks["jira"]["jira.auth"]
    assert auth["ok"] is False and "HTTP 401" in auth["detail"] and "jira_api_token" in auth["hint"]
    assert checks["waldur"]["waldur.auth"]["ok"] is False and "waldur_token" in checks["waldur"]["waldur.auth"]["hint"]
    assert "jira.project" not in checks["jira"]  # nothing further is tried with refused credentials


def test_unknown_project_key(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    jira, _ = sims()
    result = _run(_config(tmp_path, jira, None, **{"jira.project_key": "NOPE"}), "--json")
    assert result.returncode == 2
    project = _checks(result)["jira"]["jira.project"]
    assert project["ok"] is False and "No project could be found with key 'NOPE'" in project["detail"]
    assert "jira.project_key" in project["hint"]


def test_a_status_the_workflow_lacks(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    jira, _ = sims()
    status_map = {"resolved": "Done", "closed": "Closed"}
    result = _run(_config(tmp_path, jira, None, **{"jira.status_map": status_map}), "--json")
    assert result.returncode == 2
    statuses = _checks(result)["jira"]["jira.statuses"]
    assert statuses["ok"] is False and "resolved -> 'Done'" in statuses["detail"]
    assert "'Resolved'" in statuses["hint"]


def test_a_status_no_path_reaches(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    """A resolution the Resolve and Cancel screens do not offer: Resolved and Closed cannot be reached."""
    jira, _ = sims()
    _issue_in_every_status(jira)
    result = _run(_config(tmp_path, jira, None, **{"jira.resolution": "Fixed"}), "--json")
    assert result.returncode == 2
    paths = _checks(result)["jira"]["jira.status_paths"]
    assert paths["ok"] is False
    assert "'Resolved'" in paths["detail"] and "'Closed'" in paths["detail"]
    assert "'Fixed'" in paths["detail"] and "jira.resolution" in paths["hint"]


def test_a_status_without_a_way_in(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    """A workflow where nothing leads to Waiting for Customer: unreachable, whatever is configured."""
    statuses = {
        "Open": "new",
        "In Progress": "indeterminate",
        "Waiting for Customer": "indeterminate",
        "Waiting for Support": "indeterminate",
        "Resolved": "done",
        "Closed": "done",
    }
    transitions = [
        {"name": "Start", "to": "In Progress", "from": ["Open"]},
        {"name": "Ask support", "to": "Waiting for Support", "from": ["In Progress"]},
        {"name": "Resolve", "to": "Resolved", "from": ["In Progress", "Waiting for Support"]},
        {"name": "Close", "to": "Closed", "from": ["Resolved"]},
        {"name": "Reopen", "to": "Open", "from": ["Waiting for Customer"]},
    ]
    jira, _ = sims(jira={"workflow": Workflow.from_config(statuses, transitions, "Open")})
    for status in ("Open", "In Progress", "Waiting for Support", "Resolved", "Closed"):
        issue = jira.create_issue(
            {"project": {"key": "VESUPPORT"}, "issuetype": {"name": "Service Request"}, "summary": "s"}, [], True
        )
        for step in jira.workflow.path("Open", status):
            jira.transition(issue, step.id, True)
    jira.flush_index()
    result = _run(_config(tmp_path, jira, None), "--json")
    assert result.returncode == 2
    paths = _checks(result)["jira"]["jira.status_paths"]
    assert paths["ok"] is False and "'Waiting for Customer'" in paths["detail"]
    assert "'Resolved'" not in paths["detail"]


def test_priorities_and_request_types_the_desks_lack(
    tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]
) -> None:
    jira, waldur = sims()
    config = _config(
        tmp_path,
        jira,
        waldur,
        **{
            "jira.priority_map": {"low": "Low", "normal": "Medium", "high": "High", "urgent": "Critical"},
            "waldur.type_map": {"technical": "INCIDENT"},
            "waldur.priority_map": {"urgent": "critical"},
        },
    )
    result = _run(config, "--json")
    assert result.returncode == 2
    checks = _checks(result)
    priorities = checks["jira"]["jira.priorities"]
    assert priorities["ok"] is False and "urgent -> 'Critical'" in priorities["detail"]
    assert "'Highest'" in priorities["hint"]
    types = checks["waldur"]["waldur.request_types"]
    assert types["ok"] is False and "technical -> 'INCIDENT'" in types["detail"]
    assert "'Service Request'" in types["hint"]
    waldur_priorities = checks["waldur"]["waldur.priorities"]
    assert waldur_priorities["ok"] is False and "urgent -> 'critical'" in waldur_priorities["detail"]
    # the rest of each desk is fine
    assert checks["jira"]["jira.statuses"]["ok"] and checks["waldur"]["waldur.organization"]["ok"]


def test_a_waldur_user_without_the_support_role_and_a_form_hook(
    tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]
) -> None:
    _, waldur = sims(waldur={"role": "user", "user_full_name": ""})
    _register_hook(waldur, "form", ["issue_creation_succeeded"])
    result = _run(_config(tmp_path, None, waldur), "--json")
    assert result.returncode == 2
    checks = _checks(result)["waldur"]
    role = checks["waldur.role"]
    assert role["ok"] is False and "neither staff nor support" in role["detail"] and "full name" in role["detail"]
    assert "support" in role["hint"]
    hook = checks["waldur.webhook"]
    assert hook["ok"] is False and "form-encoded" in hook["detail"] and "content_type json" in hook["hint"]


def test_no_desk_configured_is_not_usable(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("servicedesk:\n  sync:\n    batch_size: 10\n")
    result = cli("desk", "check", "--config", str(config), "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"ok": False, "desks": []}
    assert "no desk configured" in result.stderr


def test_a_jsm_request_type_and_an_unknown_one(tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]) -> None:
    jira, _ = sims()
    jira.add_request_type("1", "10", issue_type="Service Request")
    jsm = {"jira.service_desk_id": "1", "jira.request_type_id": "10"}
    good = _run(_config(tmp_path, jira, None, **jsm), "--json")
    assert good.returncode == 0, good.stdout + good.stderr
    request_type = _checks(good)["jira"]["jira.request_type"]
    assert request_type["ok"] is True and "'Service Request'" in request_type["detail"]

    bad = _run(_config(tmp_path, jira, None, **{**jsm, "jira.request_type_id": "99"}), "--json")
    assert bad.returncode == 2
    request_type = _checks(bad)["jira"]["jira.request_type"]
    assert request_type["ok"] is False and "no request type 99 in service desk 1" in request_type["detail"]
    assert "jira.request_type_id" in request_type["hint"]


def test_a_desk_failing_mid_check_is_a_failed_check_not_a_crash(
    tmp_path: Path, sims: Callable[..., tuple[JiraSim, WaldurSim]]
) -> None:
    jira, waldur = sims()
    jira.faults.inject("500", path_contains="/statuses")
    waldur.faults.inject("500", path_contains="/support-request-types/")
    result = _run(_config(tmp_path, jira, waldur), "--json")
    assert result.returncode == 2, result.stderr
    checks = _checks(result)
    assert checks["jira"]["jira.statuses"]["ok"] is False and "HTTP 500" in checks["jira"]["jira.statuses"]["detail"]
    types = checks["waldur"]["waldur.request_types"]
    assert types["ok"] is False and "HTTP 500" in types["detail"]
    assert checks["jira"]["jira.priorities"]["ok"] and checks["waldur"]["waldur.statuses"]["ok"]  # the rest ran
