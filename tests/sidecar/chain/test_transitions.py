"""The status transition table and inbound's paths through it, checked against the devnet chain's own copy."""

from __future__ import annotations

import itertools

import pytest
from virtengine.support.v1 import types_pb2

from devnet.support_events import ALLOWED_TRANSITIONS, STATUS_NAMES
from sidecar.chain.transitions import ALLOWED, MAX_STEPS, STATUS_CODES, STATUSES, allowed, path

PAIRS = list(itertools.product(STATUSES, STATUSES))


def test_table_agrees_with_the_devnet_chain() -> None:
    assert {k: set(v) for k, v in ALLOWED.items()} == {k: set(v) for k, v in ALLOWED_TRANSITIONS.items()}
    assert {number: name for name, number in STATUS_CODES.items()} == STATUS_NAMES


def test_status_codes_are_the_proto_enum() -> None:
    assert STATUS_CODES["open"] == types_pb2.SUPPORT_STATUS_OPEN
    assert STATUS_CODES["archived"] == types_pb2.SUPPORT_STATUS_ARCHIVED
    assert 0 not in STATUS_CODES.values()


@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [("open", "closed", True), ("open", "resolved", False), ("resolved", "open", False), ("closed", "archived", True)],
)
def test_allowed(src: str, dst: str, ok: bool) -> None:
    assert allowed(src, dst) is ok


@pytest.mark.parametrize(
    ("src", "dst", "steps"),
    [
        ("open", "open", ()),
        ("open", "in_progress", ("in_progress",)),
        ("open", "resolved", ("in_progress", "resolved")),  # through in_progress, never a guessed `assigned`
        ("resolved", "waiting_customer", ("in_progress", "waiting_customer")),
        ("waiting_customer", "waiting_support", ("in_progress", "waiting_support")),
        ("assigned", "resolved", ("resolved",)),
        ("archived", "archived", ()),
    ],
)
def test_paths(src: str, dst: str, steps: tuple[str, ...]) -> None:
    assert path(src, dst) == steps


@pytest.mark.parametrize("dst", [s for s in STATUSES if s != "closed"])
def test_closed_goes_nowhere_inbound(dst: str) -> None:
    # closed -> archived is the only transition, and inbound never targets archived.
    assert path("closed", dst) is None


@pytest.mark.parametrize("src", [s for s in STATUSES if s != "archived"])
def test_inbound_never_targets_archived(src: str) -> None:
    assert path(src, "archived") is None


@pytest.mark.parametrize("dst", [s for s in STATUSES if s != "open"])
def test_nothing_returns_to_open(dst: str) -> None:
    assert path(dst, "open") is None


def test_unknown_statuses_have_no_path() -> None:
    assert path("open", "escalated") is None
    assert path("escalated", "open") is None
    assert path("", "") is None
    assert not allowed("escalated", "open")


def _shortest_by_brute_force(src: str, dst: str) -> int | None:
    middles = [s for s in STATUSES if s != "archived"]
    for n in range(1, MAX_STEPS + 1):
        for middle in itertools.product(middles, repeat=n - 1):
            trail = (src, *middle, dst)
            if all(allowed(a, b) for a, b in itertools.pairwise(trail)):
                return n
    return None


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_every_path_is_shortest_allowed_and_avoids_archived(src: str, dst: str) -> None:
    got = path(src, dst)
    if src == dst:
        assert got == ()
        return
    expected = None if dst == "archived" else _shortest_by_brute_force(src, dst)
    if expected is None:
        assert got is None
        return
    assert got is not None and len(got) == expected <= MAX_STEPS
    assert got[-1] == dst and "archived" not in got
    assert all(allowed(a, b) for a, b in itertools.pairwise((src, *got)))
