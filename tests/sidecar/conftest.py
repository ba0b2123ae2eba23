"""Fixtures of the worker-level tests: one manual clock shared by the simulator and the worker, the rigs (a
real store and worker over one desk, see tests/sidecar/sync/rig.py) a test opens, closed after it, and a
certificate for loopback TLS servers."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devnet.sim_faults import ManualClock
from tests.sidecar.sync.rig import Rig


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), for loopback TLS servers."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "desk.pem", folder / "desk.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=desk.test",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key
