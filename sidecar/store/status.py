"""Read-side figures for health, metrics and the control API."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QueueFigures:
    pending_events: int  # inbox events not yet turned into jobs + jobs not yet done
    failed_events: int  # dead-lettered jobs and poison events and dead tx intents
    last_sync: float | None  # unix time of the last job that finished successfully
    cursor_height: int | None
    cursor_chain_id: str | None
    # desk issues waiting for an inbound re-read, by (desk, state): pending, running, dead
    inbound_queue: Mapping[tuple[str, str], int] = field(default_factory=dict)
    conflicts_open: int = 0  # conflicts parked for an operator

    @property
    def inbound_pending(self) -> int:
        """Re-reads waiting or running."""
        return sum(n for (_, state), n in self.inbound_queue.items() if state in ("pending", "running"))

    @property
    def inbound_dead(self) -> int:
        """Re-reads that failed for good (a new hint or sweep hit revives them)."""
        return sum(n for (_, state), n in self.inbound_queue.items() if state == "dead")


def queue_figures(conn: sqlite3.Connection) -> QueueFigures:
    inbox_pending = conn.execute("SELECT COUNT(*) FROM chain_inbox WHERE state = 'pending'").fetchone()[0]
    jobs_pending = conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
    failed = conn.execute(
        "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'dead')"
        " + (SELECT COUNT(*) FROM chain_inbox WHERE state = 'poison')"
        " + (SELECT COUNT(*) FROM tx_intents WHERE state = 'dead')"
    ).fetchone()[0]
    last_sync = conn.execute("SELECT MAX(finished_at) FROM jobs WHERE state = 'done'").fetchone()[0]
    cursor = conn.execute("SELECT chain_id, height FROM cursor WHERE id = 1").fetchone()
    inbound = conn.execute("SELECT desk, state, COUNT(*) FROM inbound_queue GROUP BY desk, state").fetchall()
    conflicts = conn.execute("SELECT COUNT(*) FROM conflicts WHERE state = 'open'").fetchone()[0]
    return QueueFigures(
        pending_events=int(inbox_pending) + int(jobs_pending),
        failed_events=int(failed),
        last_sync=float(last_sync) if last_sync is not None else None,
        cursor_height=int(cursor["height"]) if cursor else None,
        cursor_chain_id=str(cursor["chain_id"]) if cursor else None,
        inbound_queue={(r[0], r[1]): int(r[2]) for r in inbound},
        conflicts_open=int(conflicts),
    )
