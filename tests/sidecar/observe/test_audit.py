"""The Auditor components call: what it stores, what it refuses, retention with a fake clock, on a real file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.observe.audit import DAY, Auditor, AuditRetention, is_content_key, parse_time_arg
from sidecar.observe.logs import Redactor
from sidecar.store.audit import AuditEntry, audit_anchor, verify_audit
from sidecar.store.db import Store

SECRET = "KNOWN-audit-secret-93bd"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(str(tmp_path / "sidecar.db"))
    yield store
    await store.close()


def rows(store: Store) -> list[dict[str, object]]:
    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    out = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY id")]
    conn.close()
    return out


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        ("subject", True), ("description", True), ("message", True), ("body", True), ("comment_text", True),
        ("token", True), ("api_key", True), ("signing-key", True), ("Authorization", True), ("jira_api_token", True),
        ("body_sha256", False), ("comment_id", False), ("external_key", False), ("payload_hash", False),
        ("attempts", False), ("secrets", False), ("strategy", False), ("", True),
    ],
)
def test_content_and_credential_keys_are_refused(key: str, refused: bool) -> None:
    assert is_content_key(key) is refused


async def test_record_keeps_ids_and_hashes_and_drops_content(store: Store) -> None:
    auditor = Auditor(store, clock=FakeClock(T0), redactor=Redactor([SECRET]))
    row_id = await auditor.record(
        AuditEntry(
            "ticket_created",
            ticket_id="t-17",
            desk="jira",
            direction="outbound",
            actor="sidecar",
            status="ok",
            block_height=812,
            tx_hash="AB" * 32,
            details={
                "external_key": "VESUPPORT-12",
                "body_sha256": "f" * 64,
                "attempts": 2,
                "retried": True,
                "desks": ["jira", "waldur"],
                "subject": "Printer on fire",
                "description": "the whole office smells of toner",
                "note": "x" * 201,
                "multi": "line one\nline two",
                "nested": {"text": "hidden"},
                "ids": ["a"] * 51,
            },
        )
    )
    assert row_id == 1
    (row,) = rows(store)
    assert (row["ts"], row["ticket_id"], row["block_height"], row["tx_hash"]) == (T0, "t-17", 812, "AB" * 32)
    assert json.loads(str(row["details_json"])) == {
        "external_key": "VESUPPORT-12",
        "body_sha256": "f" * 64,
        "attempts": 2,
        "retried": True,
        "desks": ["jira", "waldur"],
        "dropped": ["description", "ids", "multi", "nested", "note", "subject"],
    }
    database = file_bytes(store.path) + file_bytes(store.path + "-wal")
    assert b"Printer on fire" not in database and b"toner" not in database and b"hidden" not in database


async def test_secrets_and_authorization_values_are_masked_in_every_column(store: Store) -> None:
    auditor = Auditor(store, clock=FakeClock(T0), redactor=Redactor([SECRET]))
    await auditor.record(
        AuditEntry(
            "sync_failed",
            ticket_id="t-1",
            status="failed",
            error=f"desk answered 401: token {SECRET} rejected; Authorization: Basic dXNlcjpwdw==; " + "y" * 900,
            details={"request_id": f"req-{SECRET}"},
        )
    )
    (row,) = rows(store)
    text = json.dumps(row)
    assert SECRET not in text and "dXNlcjpwdw" not in text
    assert str(row["error"]).startswith("desk answered 401: token <redacted> rejected; Authorization: <redacted>;")
    assert len(str(row["error"])) == 500
    assert json.loads(str(row["details_json"])) == {"request_id": "req-<redacted>"}


async def test_disabled_auditor_writes_nothing(store: Store) -> None:
    auditor = Auditor(store, enabled=False)
    assert await auditor.record(AuditEntry("ticket_created", ticket_id="t-1")) is None
    assert rows(store) == []


async def test_retention_purges_old_rows_audits_the_purge_and_keeps_the_chain_verifiable(store: Store) -> None:
    clock = FakeClock(T0)
    auditor = Auditor(store, clock=clock)
    for day in range(5):
        clock.now = T0 + day * DAY
        await auditor.record(AuditEntry("sync_succeeded", ticket_id=f"t-{day}"))
    retention = AuditRetention(store, auditor, retention_days=90, clock=clock)

    clock.now = T0 + 91.5 * DAY  # rows of day 0 and day 1 are older than 90 days
    assert await retention.step() == 3600.0
    remaining = rows(store)
    assert [r["ticket_id"] for r in remaining] == ["t-2", "t-3", "t-4", None]
    purged = remaining[-1]
    assert (purged["event_type"], purged["actor"], purged["ts"]) == ("audit_purged", "sidecar", clock.now)
    assert json.loads(str(purged["details_json"])) == {"anchor_id": 2, "before": "2023-11-16T10:13:20.000Z",
                                                       "count": 2}
    anchor = await store.read("anchor", audit_anchor)
    verdict = await store.read("verify", verify_audit)
    assert anchor.id == 2 and verdict.ok and verdict.checked == 4

    assert await retention.step() == 3600.0  # nothing old left: no second audit row
    assert len(rows(store)) == 4


async def test_retention_comes_back_soon_while_a_backlog_remains(store: Store) -> None:
    clock = FakeClock(T0)
    auditor = Auditor(store, clock=clock)
    for _ in range(5):
        await auditor.record(AuditEntry("webhook_accepted", desk="jira"))
    retention = AuditRetention(store, auditor, retention_days=1, clock=clock, batch=3)
    clock.now = T0 + 2 * DAY
    assert await retention.step() == 1.0
    assert await retention.step() == 3600.0
    assert [r["event_type"] for r in rows(store)] == ["audit_purged", "audit_purged"]
    assert (await store.read("verify", verify_audit)).ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", T0 - DAY),
        ("90m", T0 - 5400),
        ("7d", T0 - 7 * DAY),
        ("2024-01-15T10:30:00Z", 1705314600.0),
        ("2024-01-15T11:30:00+01:00", 1705314600.0),
        ("2024-01-15T10:30:00", 1705314600.0),
        ("2024-01-15", 1705276800.0),
    ],
)
def test_since_takes_a_duration_or_an_iso_time(text: str, expected: float) -> None:
    assert parse_time_arg(text, T0) == expected


def test_since_rejects_anything_else() -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_time_arg("yesterday", T0)


async def test_retention_also_forgets_old_webhook_deliveries(store: Store) -> None:
    from sidecar.store.webhooks import Delivery, record_delivery_txn

    for day, (delivery_id, body_hash) in enumerate((("old", "ab" * 32), ("new", "cd" * 32))):
        delivery = Delivery("jira", delivery_id, "jira:issue_updated", "10001", body_hash, "accepted")
        await store.write("record", record_delivery_txn, delivery, None, T0 + day * 10 * DAY)
    retention = AuditRetention(store, Auditor(store, clock=FakeClock(T0)), retention_days=5,
                               clock=FakeClock(T0 + 12 * DAY))
    await retention.step()
    kept = await store.read("ids", lambda conn: [r[0] for r in conn.execute(
        "SELECT delivery_id FROM webhook_deliveries")])
    assert kept == ["new"]
