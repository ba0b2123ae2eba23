"""Read-side figures for health, metrics and the control API."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class QueueFigures:
    pending_events: int  # inbox events not yet turned into jobs + jobs not yet done
    failed_events: int  # dead-lettered jobs and poison events and dead tx intents
    last_sync: float | None  # unix time of the last job that finished successfully
    cursor_height: int | None
    cursor_chain_id: str | None
    inbound_pending: int = 0  # desk issues waiting for an inbound re-read
    inbound_dead: int = 0  # re-reads that failed for good (a new hint or sweep hit revives them)
    conflicts_open: int = 0  # conflicts parked for an operator


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
    inbound = dict(conn.execute("SELECT state, COUNT(*) FROM inbound_queue GROUP BY state").fetchall())
    conflicts = conn.execute("SELECT COUNT(*) FROM conflicts WHERE state = 'open'").fetchone()[0]
    return QueueFigures(
        pending_events=int(inbox_pending) + int(jobs_pending),
        failed_events=int(failed),
        last_sync=float(last_sync) if last_sync is not None else None,
        cursor_height=int(cursor["height"]) if cursor else None,
        cursor_chain_id=str(cursor["chain_id"]) if cursor else None,
        inbound_pending=int(inbound.get("pending", 0)) + int(inbound.get("running", 0)),
        inbound_dead=int(inbound.get("dead", 0)),
        conflicts_open=int(conflicts),
    )
