"""tests/vectors is a copy of shared/vectors: keep them identical."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tests.vectors import VECTORS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors"


@pytest.mark.parametrize("name", ["envelopes.json", "support_events.json", "jira_webhooks.json"])
def test_copy_matches_shared(name: str) -> None:
    if not SHARED.exists():
        pytest.skip("shared/ is not beside this checkout")
    assert filecmp.cmp(VECTORS / name, SHARED / name, shallow=False), f"copy shared/vectors/{name} again"
