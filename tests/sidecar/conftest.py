"""Fixtures of the worker-level tests: one manual clock shared by the simulator and the worker, and the
rigs (a real store and worker over one desk, see tests/sidecar/sync/rig.py) a test opens, closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
