"""Read-side figures for health, metrics and the control API."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sidecar.store.inbound import sweep_marks
from sidecar.store.intents import intent_counts
from sidecar.store.pauses import Pause, list_pauses


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
    # outbound jobs by (desk, state) for the states operators watch: pending, running, dead (metrics)
    desk_jobs: Mapping[tuple[str, str], int] = field(default_factory=dict)

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
    # The planner would take jobs_due (state, ...) and walk every done job; this index ends at the newest.
    last_sync = conn.execute(
        "SELECT MAX(finished_at) FROM jobs INDEXED BY jobs_finished WHERE state = 'done'"
    ).fetchone()[0]
    cursor = conn.execute("SELECT chain_id, height FROM cursor WHERE id = 1").fetchone()
    inbound = conn.execute("SELECT desk, state, COUNT(*) FROM inbound_queue GROUP BY desk, state").fetchall()
    conflicts = conn.execute("SELECT COUNT(*) FROM conflicts WHERE state = 'open'").fetchone()[0]
    desk_jobs = conn.execute(
        "SELECT desk, state, COUNT(*) FROM jobs WHERE state IN ('pending', 'running', 'dead') GROUP BY desk, state"
    ).fetchall()
    return QueueFigures(
        pending_events=int(inbox_pending) + int(jobs_pending),
        failed_events=int(failed),
        last_sync=float(last_sync) if last_sync is not None else None,
        cursor_height=int(cursor["height"]) if cursor else None,
        cursor_chain_id=str(cursor["chain_id"]) if cursor else None,
        inbound_queue={(r[0], r[1]): int(r[2]) for r in inbound},
        conflicts_open=int(conflicts),
        desk_jobs={(r[0], r[1]): int(r[2]) for r in desk_jobs},
    )


@dataclass(frozen=True)
class DeskFigures:
    """One desk's work as operators see it: outbound jobs, and the inbound sweep and re-read queue."""

    last_success: float | None  # when a job for the desk last finished done
    pending_jobs: int  # pending or running
    dead_jobs: int
    swept_to: float | None  # the inbound sweep's high-water mark
    inbound_queued: int  # re-reads waiting or running


@dataclass(frozen=True)
class StatusFigures:
    """Everything GetStatus reads from the store, read in one transaction so the figures agree."""

    queue: QueueFigures
    desks: Mapping[str, DeskFigures]
    pauses: list[Pause]
    intents: Mapping[str, int]  # per state, every state present


def desk_figures(conn: sqlite3.Connection, desks: Sequence[str]) -> dict[str, DeskFigures]:
    """Per-desk figures for each named desk (zeros for a desk without rows)."""
    jobs = {
        row["desk"]: row
        for row in conn.execute(
            "SELECT desk, SUM(state IN ('pending', 'running')) AS pending, SUM(state = 'dead') AS dead,"
            " MAX(CASE WHEN state = 'done' THEN updated_at END) AS done_at FROM jobs GROUP BY desk"
        )
    }
    queued = {
        r[0]: int(r[1])
        for r in conn.execute(
            "SELECT desk, COUNT(*) FROM inbound_queue WHERE state IN ('pending', 'running') GROUP BY desk"
        )
    }
    marks = sweep_marks(conn)
    out: dict[str, DeskFigures] = {}
    for desk in desks:
        row = jobs.get(desk)
        done_at = row["done_at"] if row is not None else None
        out[desk] = DeskFigures(
            last_success=float(done_at) if done_at is not None else None,
            pending_jobs=int(row["pending"] or 0) if row is not None else 0,
            dead_jobs=int(row["dead"] or 0) if row is not None else 0,
            swept_to=marks.get(desk),
            inbound_queued=queued.get(desk, 0),
        )
    return out


def status_figures(conn: sqlite3.Connection, desks: Sequence[str]) -> StatusFigures:
    return StatusFigures(queue_figures(conn), desk_figures(conn, desks), list_pauses(conn), intent_counts(conn))
