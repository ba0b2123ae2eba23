"""The DeliverTx undo journal on its own: what it saves, what it restores, what it refuses."""

from __future__ import annotations

import pytest

from devnet.journal import Journal, journaled


def state() -> dict[str, dict[str, object]]:
    return {"tickets": {"t1": {"status": 1, "tags": ["a"]}}, "responses": {}, "refs": {}, "counters": {"n": 1},
            "params": {"max": 3}}


def test_undo_restores_changed_added_and_deleted_entries() -> None:
    original = state()
    work = state()
    journal = Journal()
    view = journaled(work, journal)
    view["tickets"]["t1"]["status"] = 2
    view["tickets"]["t1"]["tags"].append("b")
    view["tickets"]["t2"] = {"status": 1}
    view["responses"].setdefault("t1", []).append({"id": 1})
    view["counters"]["n"] += 1
    del view["tickets"]["t1"]
    journal.undo()
    assert work == original


def test_whole_table_scans_are_refused() -> None:
    view = journaled(state(), Journal())
    for scan in (lambda: list(view["tickets"]), view["tickets"].values, view["tickets"].items):
        with pytest.raises(TypeError, match="by key"):
            scan()
