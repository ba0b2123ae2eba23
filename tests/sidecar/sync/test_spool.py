"""What a killed process left in the attachment spool is removed at start, and nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

from devnet.node_config import free_port
from sidecar.sync.spool import INBOUND_PREFIX, OUTBOUND_PREFIX, clear_leftovers
from tests.sidecar.harness import app_flags, running_app


def leave(spool: Path) -> tuple[list[Path], list[Path]]:
    """(transfer files a killed process would leave, files that are not the spool's own)."""
    spool.mkdir(parents=True, exist_ok=True)
    left = [spool / f"{OUTBOUND_PREFIX}k2j4", spool / f"{INBOUND_PREFIX}x81q.part"]
    other = [spool / "notes.txt", spool / "attach-out-without-dot"]
    for path in left + other:
        path.write_bytes(b"\x00sealed or not\x00")
    (spool / f"{OUTBOUND_PREFIX}a-directory").mkdir()  # not a file: left alone
    return left, other


def test_only_the_transfer_files_are_removed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    left, other = leave(spool)
    assert clear_leftovers(spool) == 2
    assert not any(p.exists() for p in left)
    assert all(p.exists() for p in other)
    assert (spool / f"{OUTBOUND_PREFIX}a-directory").is_dir()


def test_a_missing_spool_directory_is_nothing_to_clear(tmp_path: Path) -> None:
    assert clear_leftovers(tmp_path / "never-made") == 0
    assert not (tmp_path / "never-made").exists()


async def test_the_app_clears_the_spool_beside_its_database_before_it_is_ready(tmp_path: Path) -> None:
    left, other = leave(tmp_path / "spool")  # the spool is "spool" beside store.path
    os.chmod(tmp_path / "spool", 0o700)
    flags = app_flags(tmp_path, f"http://127.0.0.1:{free_port()}")
    async with running_app(flags):
        assert not any(p.exists() for p in left), "a killed process's spool files survived the start"
        assert all(p.exists() for p in other)
