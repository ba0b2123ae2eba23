"""Webhook deliveries: ids and hashes of what the desks sent, recorded once per delivery id and once per body.

The body check stops a signed body replayed under a new delivery id (the id header is not signed).
It runs in the writer thread inside the same transaction as the insert, so check and insert cannot
interleave with another delivery's; `webhook_deliveries_body` (migration 4) keeps it an index lookup.
Deliveries that arrive together share one transaction (`record_deliveries_txn`, through the store's
GroupCommit) and are recorded as a batch: one look-up of the group's ids and bodies, one insert of the
fresh rows, one append of their audit rows. A repeat inside a group is found like a repeat across groups
(the first in arrival order is kept), and rows and audit rows keep arrival order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sidecar.errors import StoreError
from sidecar.store.audit import AuditEntry, append_audit_many_txn, append_audit_txn

DeliveryState = Literal["accepted", "ignored"]

_INSERT = (
    "INSERT INTO webhook_deliveries (desk, delivery_id, event_type, external_id, body_sha256, state, reason,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A group's repeats, by body and by id, in one statement per desk whatever the group's size (json_each keeps the
# text fixed, so the statement is prepared once; both look-ups use their index).
_KNOWN = (
    "SELECT 'body', body_sha256 FROM webhook_deliveries WHERE desk = ?1 AND body_sha256 IN (SELECT value FROM"
    " json_each(?2)) UNION ALL SELECT 'id', delivery_id FROM webhook_deliveries WHERE desk = ?1 AND delivery_id IN"
    " (SELECT value FROM json_each(?3))"
)


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
    cur = conn.execute(_INSERT + " ON CONFLICT (desk, delivery_id) DO NOTHING", _row(delivery, now))
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
    """What `record_delivery_txn` would answer for each recording in order, in the caller's one transaction,
    written as a batch (each audit row with its own delivery's receipt time, as one by one)."""
    known = _known_txn(conn, recordings)
    fresh: list[bool] = []
    rows: list[tuple[object, ...]] = []
    audits: list[tuple[AuditEntry, float]] = []
    for r in recordings:
        d = r.delivery
        body, ident = ("body", d.desk, d.body_sha256), ("id", d.desk, d.delivery_id)
        if body in known or ident in known:
            fresh.append(False)
            continue
        known.add(body)
        known.add(ident)
        fresh.append(True)
        rows.append(_row(d, r.now))
        if r.audit is not None:
            audits.append((r.audit, r.now))
    if rows:
        # No conflict is possible after the look-up above (this transaction holds the write lock); were one
        # to happen, the insert raises and the whole group rolls back, answered 503: nothing half-recorded.
        written = conn.executemany(_INSERT, rows).rowcount
        if written != len(rows):
            raise StoreError(f"record webhooks: {written} rows written for {len(rows)} fresh deliveries")
    if audits:
        append_audit_many_txn(conn, audits)
    return fresh


def _known_txn(conn: sqlite3.Connection, recordings: Sequence[Recording]) -> set[tuple[str, str, str]]:
    """("body"|"id", desk, value) of the group's bodies and ids already stored."""
    desks: dict[str, tuple[list[str], list[str]]] = {}
    for r in recordings:
        bodies, ids = desks.setdefault(r.delivery.desk, ([], []))
        bodies.append(r.delivery.body_sha256)
        ids.append(r.delivery.delivery_id)
    known: set[tuple[str, str, str]] = set()
    for desk, (bodies, ids) in desks.items():
        for kind, value in conn.execute(_KNOWN, (desk, json.dumps(bodies), json.dumps(ids))):
            known.add((kind, desk, value))
    return known


def _row(delivery: Delivery, now: float) -> tuple[object, ...]:
    d = delivery
    return (d.desk, d.delivery_id, d.event_type, d.external_id, d.body_sha256, d.state, d.reason, now)


def purge_deliveries_txn(conn: sqlite3.Connection, before_ts: float, limit: int) -> int:
    """Forget deliveries received before `before_ts` (long past any desk's retries), at most `limit`."""
    return conn.execute(
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE received_at < ? "
        "ORDER BY id LIMIT ?)",
        (before_ts, limit),
    ).rowcount
