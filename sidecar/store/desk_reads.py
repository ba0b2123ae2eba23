"""What inbound last read of each desk issue: the desk's change time its last completed re-read found.

A sweep lists every issue changed in a window that reaches back minutes (index lag, clock skew), so an
issue changed once is listed by several sweeps; a hit whose change time is not after the one already read
holds nothing a re-read would find. Only a completed re-read records (one deferred for an in-flight intent
reads again), and only the desk's time is compared with the desk's time, never with the sidecar's clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable


def record_desk_read_txn(
    conn: sqlite3.Connection, desk: str, external_id: str, desk_updated_at: float | None, now: float
) -> None:
    """A re-read of the issue completed and found it last changed at `desk_updated_at` (None: the desk did
    not say; nothing is recorded). The time only moves forward (a late answer never rolls it back)."""
    if desk_updated_at is None:
        return
    conn.execute(
        "INSERT INTO desk_reads (desk, external_id, desk_updated_at, read_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (desk, external_id) DO UPDATE SET"
        " desk_updated_at = MAX(desk_reads.desk_updated_at, excluded.desk_updated_at), read_at = excluded.read_at",
        (desk, external_id, desk_updated_at, now),
    )


def already_read(conn: sqlite3.Connection, desk: str, hits: Iterable[tuple[str, float]]) -> set[str]:
    """Of (external id, desk change time) hits, the ids whose change a completed re-read already saw."""
    seen: set[str] = set()
    for external_id, updated_at in hits:
        row = conn.execute(
            "SELECT desk_updated_at FROM desk_reads WHERE desk = ? AND external_id = ?", (desk, external_id)
        ).fetchone()
        if row is not None and updated_at <= float(row[0]):
            seen.add(external_id)
    return seen
