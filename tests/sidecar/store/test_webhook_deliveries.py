"""A group of webhook deliveries recorded as one batch answers and stores exactly what recording them one at a
time does: repeats by id and by body (inside the group, across groups, per desk), rows and audit rows in
arrival order, one valid audit chain. Real store files; under a second."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sidecar.store.audit import AuditEntry, verify_audit
from sidecar.store.db import Store
from sidecar.store.webhooks import Delivery, Recording, record_deliveries_txn, record_delivery_txn

T0 = 1_700_000_000.0


def recording(n: int, desk: str, delivery_id: str, body: str, *, audited: bool = True) -> Recording:
    delivery = Delivery(desk, delivery_id, "jira:issue_updated", str(10_000 + n), body * 64, "accepted")
    audit = AuditEntry("webhook_accepted", desk=desk, details={"delivery_id": delivery_id}) if audited else None
    return Recording(delivery, audit, T0 + n)


FIRST = [recording(0, "jira", "d-0", "a"), recording(1, "waldur", "d-1", "b")]
# Each kind of repeat once, between fresh deliveries; the same body from the other desk is fresh.
GROUP = [
    recording(2, "jira", "d-2", "c"),
    recording(3, "jira", "d-0", "d"),  # an id stored by an earlier group
    recording(4, "jira", "d-4", "a"),  # a body stored by an earlier group
    recording(5, "jira", "d-2", "e"),  # an id earlier in this group
    recording(6, "jira", "d-6", "c"),  # a body earlier in this group
    recording(7, "waldur", "d-7", "c"),  # that body from the other desk
    recording(8, "waldur", "d-2", "f"),  # that id from the other desk
    recording(9, "jira", "d-9", "g", audited=False),  # audit off for this one: its row, no audit row
    recording(10, "jira", "d-10", "h"),
]


def stored(db: Path) -> tuple[list[tuple[Any, ...]], list[str], bool]:
    """(delivery rows, audit rows as details and time, whether the audit chain verifies)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [
            tuple(r)
            for r in conn.execute(
                "SELECT desk, delivery_id, body_sha256, received_at FROM webhook_deliveries ORDER BY id"
            )
        ]
        audited = [f"{r[0]} at {r[1]}" for r in conn.execute("SELECT details_json, ts FROM audit ORDER BY id")]
        return rows, audited, verify_audit(conn).ok
    finally:
        conn.close()


async def test_a_batch_answers_and_stores_what_one_at_a_time_does(tmp_path: Path) -> None:
    batch, single = await Store.open(str(tmp_path / "batch.db")), await Store.open(str(tmp_path / "single.db"))
    try:
        assert await batch.write("first", record_deliveries_txn, FIRST) == [True, True]
        answers = await batch.write("group", record_deliveries_txn, GROUP)
        expected = []
        for r in [*FIRST, *GROUP]:
            expected.append(await single.write("one", record_delivery_txn, r.delivery, r.audit, r.now))
    finally:
        await batch.close()
        await single.close()
    assert answers == expected[2:] == [True, False, False, False, False, True, True, True, True]
    rows, audited, chain_ok = stored(tmp_path / "batch.db")
    assert (rows, chain_ok) == (stored(tmp_path / "single.db")[0], True)  # ids aside (a repeat leaves a gap there)
    assert [(desk, delivery_id) for desk, delivery_id, _, _ in rows] == [
        ("jira", "d-0"),
        ("waldur", "d-1"),
        ("jira", "d-2"),
        ("waldur", "d-7"),
        ("waldur", "d-2"),
        ("jira", "d-9"),
        ("jira", "d-10"),
    ]
    assert audited == stored(tmp_path / "single.db")[1]  # the same audit rows in the same order (d-9 has none)
    assert len(audited) == 6
