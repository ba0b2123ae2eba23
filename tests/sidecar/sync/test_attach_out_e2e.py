"""Outbound attachments end to end: the real node, the sidecar as a subprocess, Jira and Waldur simulators.

A customer's ticket lists a file sealed into the local artifact directory (devnet/artifacts.py, as the
customer's portal writes it). The sidecar is SIGKILLed right after a desk accepted the upload and before the
upload was recorded (crash point after_attachment_upload); after a restart each desk holds the file exactly
once, byte for byte: the retried job finds the desk's copy and adopts it instead of uploading again.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devnet.artifacts import attach_file
from devnet.cometbft import DevnetNode
from devnet.driver import ChainDriver, DevAccount
from devnet.jira_sim import JiraSim
from devnet.waldur_sim import WaldurSim
from tests.sidecar.process import SidecarProcess
from tests.sidecar.sync.test_outbound_e2e import RECIPIENTS, _env, desk_env, desk_flags, settled

pytestmark = pytest.mark.node


@pytest.fixture
def jira_sim(make_jira_sim: Callable[..., JiraSim]) -> JiraSim:
    """Jira without search lag: this test is about attachments, not about finding lost creates."""
    return make_jira_sim()


def png(size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    return head + chunk(b"IDAT", os.urandom(size)) + chunk(b"IEND", b"")


def rows(db: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [(r[0], r[1], r[2]) for r in conn.execute("SELECT desk, state, desk_attachment_id FROM attachments")]
    finally:
        conn.close()


def adopted(db: Path) -> list[bool]:
    """Per attachment_synced audit row: was the desk's copy adopted (found after the crash) or uploaded?"""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        query = "SELECT json_extract(details_json, '$.adopted') FROM audit WHERE event_type = 'attachment_synced'"
        return [bool(r[0]) for r in conn.execute(query)]
    finally:
        conn.close()


def jira_files(jira: JiraSim) -> list[bytes]:
    return [a.content for issue in jira.list_issues() for a in issue.attachments]


def waldur_files(waldur: WaldurSim) -> list[bytes]:
    return [a.content for a in waldur.attachments]


async def test_a_crash_between_upload_and_record_leaves_one_attachment_per_desk(
    devnet_node: DevnetNode, jira_sim: JiraSim, waldur_sim: WaldurSim, tmp_path: Path
) -> None:
    db, artifacts = tmp_path / "sidecar.db", tmp_path / "artifacts"
    image = png(200 * 1024)

    def create() -> str:
        customer = DevAccount.from_name("customer")
        entry = attach_file(artifacts, image, "screen shot.png", "image/png", customer.box_key, RECIPIENTS)
        plain = {"subject": "node down", "description": "screenshot attached", "attachments": [entry]}
        with ChainDriver(devnet_node.rpc_url, customer) as driver:
            return driver.create_ticket("technical", "normal", plain, RECIPIENTS)

    await asyncio.to_thread(create)
    flags = desk_flags(tmp_path, devnet_node, jira_sim, waldur_sim, **{"artifacts.dir": str(artifacts)})
    env: dict[str, Any] = {**desk_env(jira_sim, waldur_sim), "SIDECAR_TEST_CRASH_POINT": "after_attachment_upload"}
    env.update({_env(k): str(v) for k, v in flags.items()})
    crashing = SidecarProcess(["run"], env, cwd=tmp_path)
    try:
        code = await asyncio.to_thread(crashing.proc.wait, 30)
    finally:
        crashing.close()
    assert code == -9, f"the crash point did not fire: {crashing.text()[-2000:]}"
    # A desk holds the file the sidecar never recorded.
    assert image in jira_files(jira_sim) + waldur_files(waldur_sim)
    assert all(state == "pending" and desk_id is None for _, state, desk_id in rows(db))
    env.pop("SIDECAR_TEST_CRASH_POINT")
    proc = SidecarProcess(["run"], env, cwd=tmp_path)
    try:
        proc.wait_for_log("started")
        await settled(db, devnet_node, timeout=60)
        assert proc.terminate() == 0
    finally:
        proc.close()
    assert jira_files(jira_sim) == [image]
    assert waldur_files(waldur_sim) == [image]
    assert sorted((desk, state) for desk, state, _ in rows(db)) == [("jira", "done"), ("waldur", "done")]
    assert len(adopted(db)) == 2 and any(adopted(db))  # the crashed upload was adopted, not repeated
    assert list((tmp_path / "spool").glob("*")) == []  # nothing decrypted outlives its job
