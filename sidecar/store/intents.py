"""Tx intents and the signed txs (batches) that carry them: all SQL of the signer lives here.

An intent is one Msg the sidecar must land exactly once (dedupe_key makes queueing idempotent).
Lifecycle: queued -> signed (bytes+hash stored BEFORE broadcast) -> broadcast -> included, or back
to queued when its tx provably did not land (expired / refused), or dead when it cannot succeed;
an operator's redrive brings a dead one back. A queued intent with a non-NULL `code` failed inside
a batch before and is sent alone. `attempts` counts the failures pinned on the intent itself, never
an expiry, a re-sign for the sequence or a pause for funds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sidecar.store.audit import AuditEntry, append_audit_txn
from sidecar.store.listing import newest_first

INTENT_STATES = ("queued", "signed", "broadcast", "included", "failed", "dead")


@dataclass(frozen=True)
class Intent:
    id: int
    dedupe_key: str
    msg_type: str
    ticket_id: str | None
    msg_bytes: bytes
    state: str
    batch_id: int | None
    attempts: int
    code: int | None
    log: str | None

    @property
    def should_go_alone(self) -> bool:
        """It failed inside a batch before: isolate it so the rest of the queue is not held back."""
        return self.code is not None


@dataclass(frozen=True)
class Batch:
    id: int
    tx_hash: str
    tx_bytes: bytes
    account_sequence: int
    timeout_height: int
    state: str
    intent_ids: tuple[int, ...]


def intent_row(row: sqlite3.Row) -> Intent:
    return Intent(
        id=row["id"],
        dedupe_key=row["dedupe_key"],
        msg_type=row["msg_type"],
        ticket_id=row["ticket_id"],
        msg_bytes=bytes(row["msg_bytes"]),
        state=row["state"],
        batch_id=row["batch_id"],
        attempts=row["attempts"],
        code=row["code"],
        log=row["log"],
    )


def queue_intent_txn(
    conn: sqlite3.Connection,
    dedupe_key: str,
    msg_type: str,
    ticket_id: str | None,
    msg_bytes: bytes,
    now: float | None = None,
) -> int:
    """Queue one Msg; queueing the same dedupe_key again returns the existing intent's id and changes nothing."""
    ts = time.time() if now is None else now
    conn.execute(
        "INSERT INTO tx_intents (dedupe_key, msg_type, ticket_id, msg_bytes, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        (dedupe_key, msg_type, ticket_id, msg_bytes, ts, ts),
    )
    row = conn.execute("SELECT id FROM tx_intents WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
    return int(row["id"])


@dataclass(frozen=True)
class IntentView:
    """An intent as operators see it: with its tx hash and height once batched."""

    intent: Intent
    tx_hash: str | None
    height: int | None
    created_at: float


def list_intents(
    conn: sqlite3.Connection,
    state: str | None,
    limit: int,
    *,
    ticket_id: str | None = None,
    before_id: int | None = None,
) -> list[IntentView]:
    """Newest first; `before_id` continues a page."""
    select = (
        "SELECT i.*, b.tx_hash AS batch_hash, b.height AS batch_height FROM tx_intents i"
        " LEFT JOIN tx_batches b ON b.id = i.batch_id"
    )
    filters = {"i.state": state, "i.ticket_id": ticket_id}
    rows = newest_first(conn, select, filters, limit, before_id=before_id, id_column="i.id")
    return [IntentView(intent_row(r), r["batch_hash"], r["batch_height"], float(r["created_at"])) for r in rows]


def queued_intents(conn: sqlite3.Connection, limit: int) -> list[Intent]:
    """The oldest queued intents, in queue order (which is each ticket's order), leaving out those of a
    ticket with an earlier intent still in flight: if that tx fails, its retry must land first."""
    rows = conn.execute(
        """
        SELECT * FROM tx_intents q
        WHERE q.state = 'queued' AND (q.ticket_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM tx_intents f
            WHERE f.ticket_id = q.ticket_id AND f.state IN ('signed', 'broadcast') AND f.id < q.id))
        ORDER BY q.id LIMIT ?
        """,
        (limit,),
    )
    return [intent_row(r) for r in rows]


def get_intents(conn: sqlite3.Connection, ids: Sequence[int]) -> list[Intent]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT * FROM tx_intents WHERE id IN ({marks}) ORDER BY id", tuple(ids))
    return [intent_row(r) for r in rows]


def dead_intents(conn: sqlite3.Connection, limit: int = 100) -> list[Intent]:
    rows = conn.execute("SELECT * FROM tx_intents WHERE state = 'dead' ORDER BY id DESC LIMIT ?", (limit,))
    return [intent_row(r) for r in rows]


def intent_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Intents per state (every state present, 0 when none), for metrics."""
    counts = dict.fromkeys(INTENT_STATES, 0)
    for row in conn.execute("SELECT state, n FROM tx_intent_counts"):  # kept by triggers (migration 12)
        counts[row["state"]] = int(row["n"])
    return counts


def unresolved_batches(conn: sqlite3.Connection) -> list[Batch]:
    """Signed or broadcast txs whose fate is unknown, by sequence: what a restart must re-broadcast."""
    rows = conn.execute(
        "SELECT * FROM tx_batches WHERE state IN ('signed', 'broadcast') ORDER BY account_sequence, id"
    ).fetchall()
    out = []
    for row in rows:
        ids = tuple(
            int(r["id"]) for r in conn.execute("SELECT id FROM tx_intents WHERE batch_id = ? ORDER BY id", (row["id"],))
        )
        out.append(
            Batch(
                row["id"],
                row["tx_hash"],
                bytes(row["tx_bytes"]),
                row["account_sequence"],
                row["timeout_height"],
                row["state"],
                ids,
            )
        )
    return out


def record_signed_txn(
    conn: sqlite3.Connection,
    intent_ids: Sequence[int],
    tx_hash: str,
    tx_bytes: bytes,
    sequence: int,
    timeout_height: int,
    now: float | None = None,
) -> int:
    """Store the signed tx and bind its intents to it, before anything is broadcast; returns the batch id."""
    ts = time.time() if now is None else now
    # The same content at the same sequence signs to the same bytes: a tx refused earlier may come back.
    earlier = conn.execute("SELECT id, state FROM tx_batches WHERE tx_hash = ?", (tx_hash,)).fetchone()
    if earlier is not None and earlier["state"] not in ("failed", "expired"):
        raise RuntimeError(f"tx {tx_hash} is already {earlier['state']}: refusing to sign its intents twice")
    if earlier is not None:
        batch_id = int(earlier["id"])
        conn.execute(
            "UPDATE tx_batches SET state = 'signed', height = NULL, code = NULL, log = NULL, updated_at = ? "
            "WHERE id = ?",
            (ts, batch_id),
        )
    else:
        cur = conn.execute(
            "INSERT INTO tx_batches (tx_hash, tx_bytes, account_sequence, timeout_height, state, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, 'signed', ?, ?)",
            (tx_hash, tx_bytes, sequence, timeout_height, ts, ts),
        )
        batch_id = int(cur.lastrowid or 0)
    marks = ",".join("?" * len(intent_ids))
    bound = conn.execute(
        f"UPDATE tx_intents SET state = 'signed', batch_id = ?, updated_at = ? "
        f"WHERE id IN ({marks}) AND state = 'queued'",
        (batch_id, ts, *intent_ids),
    ).rowcount
    if bound != len(intent_ids):
        raise RuntimeError(f"intents {list(intent_ids)} are no longer all queued: refusing to sign them twice")
    return batch_id


def record_signed_run_txn(
    conn: sqlite3.Connection, txs: Sequence[tuple[Sequence[int], str, bytes, int, int]], now: float | None = None
) -> list[int]:
    """A run of signed txs at consecutive sequences, (intent ids, hash, bytes, sequence, timeout height) each,
    stored in one transaction before the first of them is broadcast; returns their batch ids."""
    return [record_signed_txn(conn, ids, h, raw, seq, timeout, now) for ids, h, raw, seq, timeout in txs]


def release_unsent_txn(conn: sqlite3.Connection, batch_ids: Sequence[int], reason: str) -> None:
    """Signed txs that were never broadcast (an earlier tx of their run was refused, so their sequences are
    out of reach): their intents go back to the queue, spending no attempt."""
    for batch_id in batch_ids:
        requeue_batch_txn(conn, batch_id, "failed", None, reason)


def record_broadcasts_txn(conn: sqlite3.Connection, batch_ids: Sequence[int], now: float | None = None) -> None:
    for batch_id in batch_ids:
        record_broadcast_txn(conn, batch_id, now)


def record_broadcast_txn(conn: sqlite3.Connection, batch_id: int, now: float | None = None) -> None:
    ts = time.time() if now is None else now
    conn.execute(
        "UPDATE tx_batches SET state = 'broadcast', updated_at = ? WHERE id = ? AND state = 'signed'", (ts, batch_id)
    )
    conn.execute(
        "UPDATE tx_intents SET state = 'broadcast', updated_at = ? WHERE batch_id = ? AND state = 'signed'",
        (ts, batch_id),
    )


def record_included_txn(conn: sqlite3.Connection, batch_id: int, height: int, now: float | None = None) -> None:
    """The tx is in block `height` with code 0: every intent of it has landed."""
    ts = time.time() if now is None else now
    conn.execute(
        "UPDATE tx_batches SET state = 'included', height = ?, code = 0, log = NULL, updated_at = ? WHERE id = ?",
        (height, ts, batch_id),
    )
    conn.execute(
        "UPDATE tx_intents SET state = 'included', code = 0, log = NULL, updated_at = ? WHERE batch_id = ?",
        (ts, batch_id),
    )


def requeue_batch_txn(
    conn: sqlite3.Connection,
    batch_id: int,
    batch_state: str,
    code: int | None,
    log: str | None,
    height: int | None = None,
    isolate: Iterable[int] = (),
    now: float | None = None,
    blame: Iterable[int] = (),
) -> None:
    """The tx provably did not land its Msgs (expired, refused, failed): its intents go back to the queue.

    `isolate` intents keep the chain's code and log, which makes them go alone next time; `blame`
    intents caused the failure and spend one attempt (the others spend nothing)."""
    ts = time.time() if now is None else now
    conn.execute(
        "UPDATE tx_batches SET state = ?, height = ?, code = ?, log = ?, updated_at = ? WHERE id = ?",
        (batch_state, height, code, log, ts, batch_id),
    )
    alone, blamed = set(isolate), set(blame)
    for row in conn.execute("SELECT id FROM tx_intents WHERE batch_id = ?", (batch_id,)).fetchall():
        keep = row["id"] in alone
        conn.execute(
            "UPDATE tx_intents SET state = 'queued', batch_id = NULL, code = ?, log = ?, attempts = attempts + ?, "
            "updated_at = ? WHERE id = ? AND state IN ('signed', 'broadcast')",
            (code if keep else None, log if keep else None, 1 if row["id"] in blamed else 0, ts, row["id"]),
        )


def dead_letter_txn(
    conn: sqlite3.Connection,
    intent_ids: Sequence[int],
    code: int,
    log: str,
    audits: Sequence[AuditEntry],
    batch_id: int | None = None,
    height: int | None = None,
    now: float | None = None,
) -> None:
    """Intents that cannot succeed stop here with the chain's answer; the audit rows commit with them."""
    ts = time.time() if now is None else now
    if batch_id is not None:
        conn.execute(
            "UPDATE tx_batches SET state = 'failed', height = ?, code = ?, log = ?, updated_at = ? WHERE id = ?",
            (height, code, log, ts, batch_id),
        )
    marks = ",".join("?" * len(intent_ids))
    conn.execute(
        f"UPDATE tx_intents SET state = 'dead', code = ?, log = ?, attempts = attempts + 1, updated_at = ? "
        f"WHERE id IN ({marks})",
        (code, log, ts, *intent_ids),
    )
    for entry in audits:
        append_audit_txn(conn, entry, ts)


def intent_state(conn: sqlite3.Connection, intent_id: int) -> str | None:
    row = conn.execute("SELECT state FROM tx_intents WHERE id = ?", (intent_id,)).fetchone()
    return None if row is None else str(row["state"])


def redrive_intents_txn(conn: sqlite3.Connection, intent_id: int | None, now: float | None = None) -> int:
    """Dead intents (one, or all with None) go back to the queue with their attempts reset; returns how many.

    A ref whose registration died is queued again this way: its intent carries the same Msg."""
    ts = time.time() if now is None else now
    sql = "UPDATE tx_intents SET state = 'queued', batch_id = NULL, attempts = 0, code = NULL, log = NULL, "
    sql += "updated_at = ? WHERE state = 'dead'"
    args: list[object] = [ts]
    if intent_id is not None:
        sql += " AND id = ?"
        args.append(intent_id)
    return int(conn.execute(sql, args).rowcount)


def highest_included_height(conn: sqlite3.Connection) -> int:
    """The highest block known to hold a tx of ours: a node below it is not the chain we signed for."""
    row = conn.execute("SELECT MAX(height) AS h FROM tx_batches WHERE state IN ('included', 'failed')").fetchone()
    return int(row["h"] or 0)


_SIGNER_CHAIN = "signer.chain_id"


def signer_chain_id(conn: sqlite3.Connection) -> str | None:
    """The chain the stored txs were signed for (meta), so a restart cannot adopt another chain silently."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_SIGNER_CHAIN,)).fetchone()
    return None if row is None else str(row["value"])


def set_signer_chain_id_txn(conn: sqlite3.Connection, chain_id: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_SIGNER_CHAIN, chain_id),
    )


def register_intent_key(ticket_id: str, desk: str) -> str:
    """The dedupe key of a ref's on-chain registration: one intent per ticket and desk, ever."""
    return f"register-ref:{ticket_id}#{desk}"
