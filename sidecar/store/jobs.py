"""The durable job queue: one job per (chain event, desk), retry state as rows.

Jobs of one ticket and desk run in event order: a job is due only when no earlier job of the same
ticket and desk is still pending or running. Dead-lettered jobs stay visible and can be re-driven.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar import boundedjson
from sidecar.store.listing import newest_first

# What each chain event asks of a desk; events not listed only update the mirror.
JOB_KINDS = {
    "support_request_created": "create",
    "support_request_updated": "update",
    "support_request_status_changed": "status",
    "support_response_added": "comment",
    "support_request_archived": "close",
    "support_request_purged": "close",
}
# A job copying one file to a desk (sidecar/sync/attach_out.py); it never touches the ticket's fields.
ATTACHMENT_KIND = "attachment"
# The kinds of job that write none of the ticket's fields at the desk (everything else may: create, update,
# status, close).
FIELDLESS_KINDS = ("comment", ATTACHMENT_KIND)
# Inbox payloads came from the chain; intake bounds them, and so does every read that parses them again.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    id: int
    dedupe_key: str
    kind: str
    desk: str
    ticket_id: str
    inbox_id: int | None
    payload: dict[str, Any]
    attempts: int
    state: str
    last_error: str | None
    next_run_at: float
    created_at: float = 0.0
    updated_at: float = 0.0


def job_row(row: sqlite3.Row) -> Job:
    return Job(
        id=int(row["id"]),
        dedupe_key=row["dedupe_key"],
        kind=row["kind"],
        desk=row["desk"],
        ticket_id=row["ticket_id"],
        inbox_id=row["inbox_id"],
        payload=json.loads(row["payload_json"]),
        attempts=int(row["attempts"]),
        state=row["state"],
        last_error=row["last_error"],
        next_run_at=float(row["next_run_at"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


# An event the sidecar signed itself is a desk change it carried to the chain (inbound sync): it still goes
# to every desk, except a response to the desk whose comment it came from (found by its payload hash).
# Field changes need no such rule: the origin desk already holds the value, and outbound leaves a field
# the desk changed since its base alone (sidecar/sync/outbound.py).
FROM_OTHER_DESK = (
    "NOT (COALESCE(i.sender, '') IN (SELECT value FROM json_each(:own))"
    " AND i.event_type = 'support_response_added'"
    " AND EXISTS (SELECT 1 FROM inbound_origins o"
    "   WHERE o.payload_hash = lower(json_extract(i.payload_json, '$.payload_hash')) AND o.desk = :desk))"
)


def dispatch_inbox_txn(
    conn: sqlite3.Connection, desks: Sequence[str], own_senders: Sequence[str], limit: int, now: float
) -> int:
    """Turn pending inbox events into jobs (one per desk, FROM_OTHER_DESK) and mark them processed; return
    events taken."""
    rows = conn.execute("SELECT id FROM chain_inbox WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,)).fetchall()
    if not rows:
        return 0
    first, last = rows[0]["id"], rows[-1]["id"]
    for desk in desks:
        queue_event_jobs_txn(conn, desk, own_senders, first - 1, last, now, state="pending")
    conn.execute(
        "UPDATE chain_inbox SET state = 'processed', processed_at = ? WHERE state = 'pending' AND id BETWEEN ? AND ?",
        (now, first, last),
    )
    return len(rows)


def queue_event_jobs_txn(
    conn: sqlite3.Connection,
    desk: str,
    own_senders: Sequence[str],
    after_id: int,
    upto_id: int,
    now: float,
    *,
    state: str,
) -> int:
    """One job per event of `state` with inbox id in (after_id, upto_id] that asks something of a desk, in event
    order; INSERT OR IGNORE on the job's dedupe key makes it idempotent. Returns the jobs queued."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO jobs (dedupe_key, kind, desk, ticket_id, inbox_id, payload_json, next_run_at,"
        " created_at, updated_at)"
        " SELECT i.event_id || '#' || :desk, k.value, :desk, i.ticket_id, i.id,"
        " json_object('event_id', i.event_id, 'sequence', i.sequence), :now, :now, :now"
        " FROM chain_inbox i JOIN json_each(:kinds) k ON k.key = i.event_type"
        " WHERE i.id > :after AND i.id <= :upto AND i.state = :state AND " + FROM_OTHER_DESK + " ORDER BY i.id",
        {
            "desk": desk,
            "now": now,
            "kinds": json.dumps(JOB_KINDS),
            "after": after_id,
            "upto": upto_id,
            "own": json.dumps(list(own_senders)),
            "state": state,
        },
    )
    return cur.rowcount


def queue_update_job_txn(
    conn: sqlite3.Connection, dedupe_key: str, desk: str, ticket_id: str, why: str, now: float
) -> int:
    """A full `update` job (the ticket's current state to the desk), ordered after everything already queued
    for it; `why` ({"<why>": true} in its payload) says who asked. Queued once per dedupe key: 1 when new."""
    return conn.execute(
        "INSERT OR IGNORE INTO jobs (dedupe_key, kind, desk, ticket_id, payload_json, next_run_at, created_at,"
        " updated_at) VALUES (?, 'update', ?, ?, ?, ?, ?, ?)",
        (dedupe_key, desk, ticket_id, json.dumps({why: True}), now, now, now),
    ).rowcount


def queue_manual_sync_txn(conn: sqlite3.Connection, ticket_id: str, desks: Sequence[str], now: float) -> ManualSync:
    """A manual outbound sync: a full `update` job per desk, unless an `update` job of the ticket is pending or
    running there already (it writes the ticket as it is when it runs, so a second one would only repeat it)."""
    if not desks:
        return ManualSync(0, [])
    queued = 0
    for desk in desks:
        waiting = conn.execute(
            "SELECT 1 FROM jobs WHERE ticket_id = ? AND desk = ? AND kind = 'update'"
            " AND state IN ('pending', 'running') LIMIT 1",
            (ticket_id, desk),
        ).fetchone()
        if waiting is None:
            queued += queue_update_job_txn(conn, f"manual:{ticket_id}#{desk}@{now}", desk, ticket_id, "manual", now)
    marks = ",".join("?" * len(desks))
    rows = conn.execute(
        f"SELECT * FROM jobs WHERE ticket_id = ? AND desk IN ({marks}) AND state IN ('pending', 'running')"
        " ORDER BY id LIMIT ?",
        (ticket_id, *desks, MAX_WAITING_SHOWN),
    ).fetchall()
    return ManualSync(queued, [job_row(r) for r in rows])


def claim_due_txn(
    conn: sqlite3.Connection, desk: str, now: float, limit: int, not_tickets: Sequence[str] = ()
) -> list[Job]:
    """Mark up to `limit` due jobs of one desk running: the first pending job of each ticket only."""
    rows = conn.execute(
        # `+` keeps next_run_at off the index choice: jobs_claim (desk, state, id) walks the queue in id order and
        # stops at `limit`, where jobs_due would read and sort every due job (35 ms per claim at 10,000 pending).
        "SELECT j.* FROM jobs j WHERE j.desk = ? AND j.state = 'pending' AND +j.next_run_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.desk = j.desk AND k.ticket_id = j.ticket_id"
        "   AND k.id < j.id AND k.state IN ('pending', 'running'))"
        " ORDER BY j.id LIMIT ?",
        (desk, now, limit + len(not_tickets)),
    ).fetchall()
    jobs = [job_row(r) for r in rows if r["ticket_id"] not in not_tickets][:limit]
    for job in jobs:
        conn.execute("UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ?", (now, job.id))
    return jobs


def inbox_horizon(conn: sqlite3.Connection) -> int:
    """The newest inbox id: every event up to it is folded into the mirror (insert and fold share a
    transaction), so a ticket snapshot read after this holds each of their changes."""
    row = conn.execute("SELECT MAX(id) FROM chain_inbox").fetchone()
    return int(row[0] or 0)


# What a finished job of each kind leaves nothing for: an update sends every synced field and the status from
# the ticket's current snapshot, a status job the status. Jobs of other kinds (a comment, an attachment) may sit
# between it and the job it covers; a create or a close may not (the order of those against a field write matters).
COVERS = {"update": ("update", "status"), "status": ("status",)}
PASSED_OVER = ("update", "status", *FIELDLESS_KINDS)


def finish_covered_txn(conn: sqlite3.Connection, job: Job, horizon: int, now: float) -> list[tuple[int, str]]:
    """Finish the ticket's pending jobs at this desk that `job`, just done from a snapshot read after inbox id
    `horizon`, already carried out: later update/status jobs (COVERS) of events up to the horizon, with no create
    or close queued between. Under a backlog a ticket changed five times gets its latest state sent once, not five
    steps replayed. Returns (id, kind) of each job finished."""
    kinds = COVERS.get(job.kind)
    if not kinds or horizon <= 0:
        return []
    rows = conn.execute(
        "SELECT c.id, c.kind FROM jobs c WHERE c.desk = :desk AND c.ticket_id = :ticket AND c.id > :id"
        " AND c.state = 'pending' AND c.kind IN (SELECT value FROM json_each(:kinds))"
        " AND c.inbox_id IS NOT NULL AND c.inbox_id <= :horizon"
        " AND NOT EXISTS (SELECT 1 FROM jobs b WHERE b.desk = c.desk AND b.ticket_id = c.ticket_id"
        "   AND b.id > :id AND b.id < c.id AND b.state IN ('pending', 'running')"
        "   AND b.kind NOT IN (SELECT value FROM json_each(:passed)))"
        " ORDER BY c.id",
        {
            "desk": job.desk,
            "ticket": job.ticket_id,
            "id": job.id,
            "kinds": json.dumps(kinds),
            "horizon": horizon,
            "passed": json.dumps(PASSED_OVER),
        },
    ).fetchall()
    covered = [(int(r["id"]), str(r["kind"])) for r in rows]
    conn.executemany(
        "UPDATE jobs SET state = 'done', finished_at = ?, updated_at = ?, last_error = NULL WHERE id = ?",
        [(now, now, job_id) for job_id, _ in covered],
    )
    return covered


def desk_written_since(conn: sqlite3.Connection, ticket_id: str, desk: str, since: float) -> bool:
    """Whether an outbound job that writes the ticket's fields at this desk ran at any moment after `since`:
    running now, or finished, retried or deferred after it. A read of the issue in that window may show one
    of the job's own intermediate writes (a hop of a transition path), which no desk marks as the sidecar's
    (Waldur records no actor) and which must not be taken for an agent's change."""
    row = conn.execute(
        "SELECT 1 FROM jobs WHERE ticket_id = ? AND desk = ? AND kind NOT IN (SELECT value FROM json_each(?))"
        " AND (state = 'running' OR (updated_at > ? AND (state != 'pending' OR updated_at > created_at))) LIMIT 1",
        (ticket_id, desk, json.dumps(FIELDLESS_KINDS), since),
    ).fetchone()
    return row is not None


def finish_job_txn(conn: sqlite3.Connection, job_id: int, now: float, state: str = "done") -> None:
    conn.execute(
        "UPDATE jobs SET state = ?, finished_at = ?, updated_at = ?, last_error = NULL WHERE id = ?",
        (state, now, now, job_id),
    )


def retry_job_txn(conn: sqlite3.Connection, job_id: int, error: str, next_run_at: float, now: float) -> None:
    conn.execute(
        "UPDATE jobs SET state = 'pending', attempts = attempts + 1, last_error = ?, next_run_at = ?, updated_at = ?"
        " WHERE id = ?",
        (error, next_run_at, now, job_id),
    )


def defer_job_txn(conn: sqlite3.Connection, job_id: int, error: str, next_run_at: float, now: float) -> None:
    """Back to pending without spending an attempt: the desk was down or rate-limited, not the job wrong."""
    conn.execute(
        "UPDATE jobs SET state = 'pending', last_error = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
        (error, next_run_at, now, job_id),
    )


def dead_job_txn(conn: sqlite3.Connection, job_id: int, error: str, now: float) -> None:
    conn.execute(
        "UPDATE jobs SET state = 'dead', attempts = attempts + 1, last_error = ?, finished_at = ?, updated_at = ?"
        " WHERE id = ?",
        (error, now, now, job_id),
    )


def release_running_txn(conn: sqlite3.Connection, now: float) -> int:
    """At start: jobs a crash left running go back to pending (every handler is idempotent)."""
    return conn.execute("UPDATE jobs SET state = 'pending', updated_at = ? WHERE state = 'running'", (now,)).rowcount


def redrive_txn(conn: sqlite3.Connection, job_id: int | None, desk: str | None, now: float) -> int:
    """Put dead jobs (one, or all of a desk, or all) back in the queue with attempts reset."""
    sql = "UPDATE jobs SET state = 'pending', attempts = 0, next_run_at = ?, updated_at = ? WHERE state = 'dead'"
    args: list[Any] = [now, now]
    if job_id is not None:
        sql += " AND id = ?"
        args.append(job_id)
    if desk:
        sql += " AND desk = ?"
        args.append(desk)
    return conn.execute(sql, args).rowcount


def list_jobs(
    conn: sqlite3.Connection,
    state: str | None,
    desk: str | None,
    limit: int,
    *,
    ticket_id: str | None = None,
    before_id: int | None = None,
) -> list[Job]:
    """Newest first; `before_id` continues a page."""
    filters = {"state": state, "desk": desk, "ticket_id": ticket_id}
    return [job_row(r) for r in newest_first(conn, "SELECT * FROM jobs", filters, limit, before_id=before_id)]


def inbox_payload(conn: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT payload_json FROM chain_inbox WHERE event_id = ?", (event_id,)).fetchone()
    return _payload(row[0]) if row else None


def created_payload(conn: sqlite3.Connection, ticket_id: str) -> dict[str, Any] | None:
    """The ticket's creation event (its encrypted request payload), if the inbox has it."""
    row = conn.execute(
        "SELECT payload_json FROM chain_inbox WHERE ticket_id = ? AND event_type = 'support_request_created'",
        (ticket_id,),
    ).fetchone()
    return _payload(row[0]) if row else None


def _payload(text: str) -> dict[str, Any] | None:
    """A stored chain payload as an object (None if it is not one); JsonLimitError if it is beyond bounds."""
    value = boundedjson.loads(text, max_bytes=MAX_PAYLOAD_BYTES)
    return value if isinstance(value, dict) else None


# The states of the jobs table (its CHECK constraint).
JOB_STATES = ("pending", "running", "done", "dead", "skipped")
MAX_WAITING_SHOWN = 100


@dataclass(frozen=True)
class ManualSync:
    queued: int  # update jobs this call added (0 when one was waiting already)
    waiting: list[Job]  # the ticket's jobs at those desks now pending or running, new ones included, oldest first


def job_by_id(conn: sqlite3.Connection, job_id: int) -> Job | None:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return job_row(row) if row is not None else None


# --- attachment jobs (#15, sidecar/sync/attach_out.py) ----------------------------------------------------
# One job per file listed by a request or response, queued when its create/comment job finished at the desk
# (ATTACHMENT_KIND, above).


def queue_attachment_job_txn(
    conn: sqlite3.Connection,
    dedupe_key: str,
    desk: str,
    ticket_id: str,
    inbox_id: int | None,
    payload: dict[str, Any],
    now: float,
) -> int:
    """An `attachment` job (payload: event_id, index, row_id; ids only, never a file name); 1 when new, 0 when a
    job with that dedupe key exists already (a replayed event, the same file listed again)."""
    return conn.execute(
        "INSERT OR IGNORE INTO jobs (dedupe_key, kind, desk, ticket_id, inbox_id, payload_json, next_run_at,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (dedupe_key, ATTACHMENT_KIND, desk, ticket_id, inbox_id, json.dumps(payload), now, now, now),
    ).rowcount
