"""The devnet banner's agent lines: copied as printed, each curl acts at its simulator as the agent.

The simulators attribute a change to the account whose credential made it, so a banner line carrying
the sidecar's own credential would make every "agent" change an echo the sidecar ignores. Each line is
run here as a person would paste it (placeholders filled in), against simulators started in-process.
"""

from __future__ import annotations

import base64
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devnet.__main__ import banner
from devnet.jira_model import adf_to_text
from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim

SIDECAR_JIRA = ("sidecar@example.com", "jira-test-token")
SIDECAR_WALDUR = {"Authorization": "Token waldur-test-token"}


def _banner(jira: JiraSim, waldur: WaldurSim) -> list[str]:
    text = banner("http://127.0.0.1:26657", "virtengine-devnet-1", jira, waldur, Path("/tmp/run"), 8480, 8481)
    return text.splitlines()


def _after(lines: list[str], head: str) -> list[str]:
    """The line beginning `head` (after the banner's indent) and its continuation lines."""
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(head))
    block = [lines[start].strip()[len(head) :].strip()]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 15) or not line.strip().startswith("curl "):
            break
        block.append(line.strip())
    return block


def _run(command: str, **placeholders: str) -> str:
    for name, value in placeholders.items():
        command = command.replace(f"<{name}>", value)
    argv = shlex.split(command, comments=True)
    assert argv[0] == "curl", argv
    done = subprocess.run([*argv, "--fail-with-body", "--max-time", "10"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (argv, done.returncode, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(autouse=True)
def _needs_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("the banner's examples are curl commands; curl is not installed")


def test_the_banner_has_a_jira_and_a_waldur_agent_line_without_the_sidecars_credentials(
    make_jira_sim: Callable[..., JiraSim], make_waldur_sim: Callable[..., WaldurSim]
) -> None:
    jira, waldur = make_jira_sim(), make_waldur_sim()
    lines = _banner(jira, waldur)
    jira_lines = _after(lines, "jira agent")
    waldur_lines = _after(lines, "waldur agent")
    assert len(jira_lines) == 2 and len(waldur_lines) == 1, lines
    for line in jira_lines + waldur_lines:
        assert line.startswith("curl "), line
        assert str(jira.api_token) not in line and str(waldur.token) not in line  # never the sidecar's
    assert f"-u {jira.agent.email}:{jira.agent_token} " in jira_lines[0]
    basic = base64.b64encode(f"{jira.agent.email}:{jira.agent_token}".encode()).decode()
    assert jira.account_of(f"Basic {basic}") is jira.agent
    assert f"Token {waldur.agent_token}'" in waldur_lines[0]


def test_the_jira_agent_lines_transition_and_comment_as_the_agent(
    make_jira_sim: Callable[..., JiraSim], make_waldur_sim: Callable[..., WaldurSim]
) -> None:
    jira, waldur = make_jira_sim(), make_waldur_sim()
    with httpx.Client(base_url=jira.base_url, auth=SIDECAR_JIRA, timeout=5.0) as sidecar:
        fields = {
            "project": {"key": "VESUPPORT"},
            "issuetype": {"name": "Service Request"},
            "summary": "[SUP-000001] Lease 42 unreachable",
        }
        created = sidecar.post("/rest/api/3/issue", json={"fields": fields})
        assert created.status_code == 201, created.text
    key = str(created.json()["key"])
    transition, comment = _after(_banner(jira, waldur), "jira agent")

    _run(transition, KEY=key)
    _run(comment, KEY=key)

    issue = jira.issue(key)
    assert issue.status == "In Progress"
    moved = [h for h in issue.histories if any(item.get("field") == "status" for item in h.items)]
    assert [h.author for h in moved] == [jira.agent.account_id]  # the agent's change, not the sidecar's
    assert [(c.author, c.public) for c in issue.comments] == [(jira.agent.account_id, True)]
    assert adf_to_text(issue.comments[0].body).strip() == "Fixed."


def test_the_waldur_agent_line_comments_publicly_as_the_agent(
    make_jira_sim: Callable[..., JiraSim], make_waldur_sim: Callable[..., WaldurSim]
) -> None:
    jira, waldur = make_jira_sim(), make_waldur_sim()
    body = {
        "summary": "[SUP-000001] Lease 42 unreachable",
        "is_reported_manually": True,
        "customer": waldur.customer_url(),
        "remote_id": "virtengine:1",
    }
    with httpx.Client(base_url=waldur.base_url, headers=SIDECAR_WALDUR, timeout=5.0) as sidecar:
        created = sidecar.post("/api/support-issues/", json=body)
        assert created.status_code == 201, created.text
    uuid = str(created.json()["uuid"])
    (line,) = _after(_banner(jira, waldur), "waldur agent")

    _run(line, UUID=uuid)

    comments = [(c.author, c.is_public, c.description) for c in waldur.comments_of(uuid)]
    assert comments == [(waldur.http_agent, True, "Fixed.")]  # the agent's comment, not the sidecar's
    assert waldur.http_agent is not waldur.me
