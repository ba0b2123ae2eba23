"""The operator's manual sync, end to end: a running sidecar on the devnet, steered with the CLI over real gRPC.

An agent edits a synced Jira issue by hand while inbound sync is off (no signing key), so nothing brings the
desk back into line by itself; `servicedesk-sidecar sync <id> --direction=outbound` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.jira_sim import JiraSim
from devnet.waiting import async_wait_until
from sidecar.cli import main
from tests.sidecar.harness import running_app
from tests.sidecar.sync.test_outbound_e2e import RECIPIENTS, desk_env, desk_flags

pytestmark = pytest.mark.node


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in a thread: its blocking gRPC calls reach the server on this event loop."""
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def jira_issue(jira: JiraSim) -> tuple[str, str, str] | None:
    issues = jira.list_issues()
    return (issues[0].key, issues[0].status, issues[0].priority) if len(issues) == 1 else None


async def test_a_manual_outbound_sync_repairs_an_issue_changed_by_hand(
    devnet_node: DevnetNode,
    make_jira_sim: Callable[..., JiraSim],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jira = make_jira_sim()
    flags = desk_flags(tmp_path, devnet_node, jira, None)
    async with running_app(flags, desk_env(jira, None)) as app:
        control = ("--control", f"127.0.0.1:{app.grpc_port}")

        def create() -> str:
            with ChainDriver(devnet_node.rpc_url, DevAccount.from_name("customer")) as customer:
                (ticket,) = customer.create_tickets(1, RECIPIENTS)
            return ticket

        ticket_id = await asyncio.to_thread(create)
        issue = await async_wait_until(lambda: jira_issue(jira), timeout=60, what="the ticket's Jira issue")
        key = issue[0]
        assert issue == (key, "Open", "Medium")

        # By hand at the desk: nothing on chain asked for this, and inbound is off.
        jira.agent_update(key, priority="Highest")
        jira.agent_transition(key, "Resolved")
        assert jira_issue(jira) == (key, "Resolved", "Highest")

        code, out, err = await cli(capsys, "sync", ticket_id, "--direction=outbound", "--json", *control)
        assert code == 0, err
        answer = json.loads(out)
        assert answer["jobs_queued"] == 1
        assert [(j["desk"], j["kind"]) for j in answer["jobs"]] == [("jira", "update")]

        await async_wait_until(
            lambda: jira_issue(jira) == (key, "Open", "Medium"), timeout=60, what="the desk set back to the chain's"
        )

        # The ticket's story as the operator sees it: the ref, the finished manual job, no errors.
        code, out, err = await cli(capsys, "ticket", ticket_id, "--json", *control)
        assert code == 0, err
        view = json.loads(out)
        assert [(r["desk"], r["external_id"]) for r in view["refs"]] == [("jira", jira.issue(key).id)]
        assert view["ticket"]["status"] == "open" and view["ticket"]["priority"] == "normal"

        async def jobs_done() -> bool:
            code, out, err = await cli(capsys, "jobs", "--ticket", ticket_id, "--json", *control)
            assert code == 0, err
            return all(job["state"] == "done" for job in json.loads(out)["jobs"])

        await async_wait_until(jobs_done, timeout=30, what="every job of the ticket to be done")

        # What a refused manual sync says, and its exit code.
        code, _, err = await cli(capsys, "sync", ticket_id, "--direction=outbound", "--desk", "waldur", *control)
        assert code == 1 and "FAILED_PRECONDITION" in err
        unknown = ticket_id.rsplit("/", 1)[0] + "/999999"
        code, _, err = await cli(capsys, "sync", unknown, "--direction=outbound", *control)
        assert code == 1 and "NOT_FOUND" in err
        code, _, err = await cli(capsys, "sync", "not-a-ticket", "--direction=outbound", *control)
        assert code == 2 and "ticket_id" in err

