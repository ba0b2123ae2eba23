"""pytest plugin: a real S3-compatible server (SeaweedFS's S3 gateway), one per test module. Without the
pinned weed binary its tests skip, saying how to install it, unless SIDECAR_REQUIRE_SEAWEEDFS=1 (CI), where
a missing binary fails the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.seaweedfs import INSTALL_HINT, SEAWEEDFS_RELEASE, SeaweedFSMissing, SeaweedS3, ensure_seaweedfs


@pytest.fixture(scope="session")
def seaweedfs_bin() -> Path:
    """The pinned weed binary (never built from here: `make seaweedfs` does that)."""
    try:
        return ensure_seaweedfs(install=False)
    except SeaweedFSMissing as exc:
        if os.environ.get("SIDECAR_REQUIRE_SEAWEEDFS") == "1":
            pytest.fail(f"SIDECAR_REQUIRE_SEAWEEDFS=1 but {exc}", pytrace=False)
        pytest.skip(f"SeaweedFS {SEAWEEDFS_RELEASE} is not installed; {INSTALL_HINT}")


@pytest.fixture(scope="module")
def seaweedfs_s3(seaweedfs_bin: Path) -> Iterator[SeaweedS3]:
    """A running `weed server -s3` on loopback (`.endpoint`, `.access_key`, `.secret_key`), shared by the
    module's tests; no bucket exists until a test creates one. A test that stops it starts it again."""
    server = SeaweedS3(binary=seaweedfs_bin)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
