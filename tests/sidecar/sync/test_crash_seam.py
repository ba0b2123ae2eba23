"""The test-only crash hook is not reachable in production (issue 12, item 6).

`python -m sidecar run` with SIDECAR_TEST_CRASH_POINT set (the variable the crash tests use) must create
desk tickets and record them without killing itself, and say that it ignored the variable. Only the
test launcher (tests/sidecar/seamed.py) installs the hook; the crash tests themselves still fire it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from devnet.cometbft import DevnetNode
from devnet.jira_sim import JiraSim
from tests.sidecar.process import SidecarProcess
from tests.sidecar.sync.test_outbound_e2e import _env, desk_env, desk_flags, drive_tickets, settled

pytestmark = pytest.mark.node


async def test_the_product_ignores_the_crash_point_variable(
    devnet_node: DevnetNode, jira_sim: JiraSim, tmp_path: Path
) -> None:
    db = tmp_path / "sidecar.db"
    flags = desk_flags(tmp_path, devnet_node, jira_sim, None)
    env: dict[str, Any] = {**desk_env(jira_sim, None), "SIDECAR_TEST_CRASH_POINT": "after_desk_create"}
    env.update({_env(k): str(v) for k, v in flags.items()})
    ids, _ = await drive_tickets(devnet_node, 2)
    proc = SidecarProcess(["run"], env, cwd=tmp_path, module="sidecar")  # the product's own entry point
    try:
        ignored = proc.wait_for_log("test seam variables ignored")
        assert ignored["variables"] == ["SIDECAR_TEST_CRASH_POINT"]
        await settled(db, devnet_node, timeout=180)
        assert proc.proc.poll() is None, "the sidecar killed itself"
        assert proc.terminate() == 0
    finally:
        proc.close()
    conn = sqlite3.connect(db)
    refs = {r[0] for r in conn.execute("SELECT ticket_id FROM external_refs WHERE desk = 'jira'")}
    conn.close()
    assert refs == set(ids)  # every create went past the hook's point and was recorded
    assert len(jira_sim.list_issues()) == len(ids)
