"""Webhook deliveries: ids and hashes of what the desks sent, recorded once per delivery id and once per body.

The body check stops a signed body replayed under a new delivery id (the id header is not signed).
It runs in the writer thread inside the same transaction as the insert, so check and insert cannot
interleave with another delivery's; `webhook_deliveries_body` (migration 4) keeps it an index lookup.
Deliveries that arrive together share one transaction (`record_deliveries_txn`, through the store's
GroupCommit), recorded one after another: a repeat inside a group is found like a repeat across groups,
and the audit rows chain in arrival order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sidecar.store.audit import AuditEntry, append_audit_txn

DeliveryState = Literal["accepted", "ignored"]


@dataclass(frozen=True)
class Delivery:
    desk: str
    delivery_id: str
    event_type: str | None
    external_id: str | None  # the desk's issue id or uuid
    body_sha256: str
    state: DeliveryState
    reason: str | None = None


def record_delivery_txn(conn: sqlite3.Connection, delivery: Delivery, audit: AuditEntry | None, now: float) -> bool:
    """Store a delivery and its audit row together; False (and nothing written) when its id or its body was
    seen before from the same desk."""
    seen = conn.execute(
        "SELECT 1 FROM webhook_deliveries WHERE desk = ? AND body_sha256 = ? LIMIT 1",
        (delivery.desk, delivery.body_sha256),
    ).fetchone()
    if seen is not None:
        return False
    cur = conn.execute(
        "INSERT INTO webhook_deliveries (desk, delivery_id, event_type, external_id, body_sha256, state, reason,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (desk, delivery_id) DO NOTHING",
        (
            delivery.desk,
            delivery.delivery_id,
            delivery.event_type,
            delivery.external_id,
            delivery.body_sha256,
            delivery.state,
            delivery.reason,
            now,
        ),
    )
    if cur.rowcount == 0:
        return False
    if audit is not None:
        append_audit_txn(conn, audit, now)
    return True


@dataclass(frozen=True)
class Recording:
    """One delivery to record, with its audit row (None when audit is off) and the time it was received."""

    delivery: Delivery
    audit: AuditEntry | None
    now: float


def record_deliveries_txn(conn: sqlite3.Connection, recordings: Sequence[Recording]) -> list[bool]:
    """`record_delivery_txn` for each recording in order, in the caller's one transaction: fresh or not, each."""
    return [record_delivery_txn(conn, r.delivery, r.audit, r.now) for r in recordings]


def purge_deliveries_txn(conn: sqlite3.Connection, before_ts: float, limit: int) -> int:
    """Forget deliveries received before `before_ts` (long past any desk's retries), at most `limit`."""
    return conn.execute(
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE received_at < ? "
        "ORDER BY id LIMIT ?)",
        (before_ts, limit),
    ).rowcount
