"""The append-only audit chain: each row's hash covers its fields and the previous row's hash.

Tamper evidence: a changed row breaks its own hash; a removed row breaks the link (or the id
sequence) after it; rows removed from the end no longer match the head recorded in `meta`.
Retention removes a prefix only and records the last removed row as the anchor the chain then
starts from. Someone who can rewrite the whole file and `meta` can forge a consistent chain:
export the log elsewhere for stronger guarantees. Details hold ids and hashes only:
`append_audit_txn` and its batched form `append_audit_many_txn`, the only ways a row is written, clean
every entry by sidecar.observe.audit_rules (content keys dropped, secrets masked) whichever component
appends it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sidecar.errors import StoreError
from sidecar.observe.audit_rules import clean_fields
from sidecar.observe.logs import current_redactor

GENESIS_HASH = "0" * 64
_FIELDS = (
    "ts",
    "event_type",
    "ticket_id",
    "desk",
    "direction",
    "actor",
    "status",
    "error",
    "block_height",
    "tx_hash",
    "details_json",
    "prev_hash",
)
_HEAD_ID, _HEAD_HASH = "audit_head_id", "audit_head_hash"
_ANCHOR_ID, _ANCHOR_HASH = "audit_anchor_id", "audit_anchor_hash"


@dataclass(frozen=True)
class AuditEntry:
    event_type: str
    ticket_id: str | None = None
    desk: str | None = None
    direction: str | None = None
    actor: str | None = None
    status: str | None = None
    error: str | None = None
    block_height: int | None = None
    tx_hash: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRow:
    """One stored row, as `audit export` writes it."""

    id: int
    ts: float
    event_type: str
    ticket_id: str | None
    desk: str | None
    direction: str | None
    actor: str | None
    status: str | None
    error: str | None
    block_height: int | None
    tx_hash: str | None
    details_json: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        return row_hash(asdict(self))


@dataclass(frozen=True)
class Anchor:
    """Where the stored chain starts: genesis, or the last row a purge removed."""

    id: int
    hash: str


@dataclass(frozen=True)
class Verdict:
    """The result of walking the chain: `bad_id` is the first row that fails, with the reason."""

    checked: int
    bad_id: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.bad_id is None


@dataclass(frozen=True)
class Purge:
    count: int
    anchor: Anchor


# Compact JSON with sorted keys, the text a row's details are stored as and its hash is taken over: what
# json.dumps(..., separators=(",", ":"), sort_keys=True) writes, from one encoder built once (json.dumps builds one
# per call when given options, and every webhook delivery's row takes two).
_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def row_hash(values: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of the row's fields (prev_hash included)."""
    return hashlib.sha256(_canonical([values[name] for name in _FIELDS]).encode()).hexdigest()


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def audit_anchor(conn: sqlite3.Connection) -> Anchor:
    anchor_id, anchor_hash = _meta(conn, _ANCHOR_ID), _meta(conn, _ANCHOR_HASH)
    if anchor_id is None or anchor_hash is None:
        return Anchor(0, GENESIS_HASH)
    return Anchor(int(anchor_id), anchor_hash)


def append_audit_txn(conn: sqlite3.Connection, entry: AuditEntry, ts: float) -> int:
    """Append one entry, cleaned by the audit rule with the process's redactor, chained to the last row (or
    the anchor). Runs inside the caller's write transaction."""
    row = _row_values(entry, ts, _last_hash(conn))
    row_id = int(conn.execute(_INSERT, row).lastrowid or 0)
    _set_head(conn, row_id, row[-1])
    return row_id


def append_audit_many_txn(conn: sqlite3.Connection, entries: Sequence[tuple[AuditEntry, float]]) -> int:
    """Append (entry, time) pairs in order: the same rows, ids and hash chain as one `append_audit_txn` each,
    written with one executemany and one head update (a backfill audits thousands of events in one commit).
    Runs inside the caller's write transaction; returns the last row's id (0 when there is nothing to append)."""
    if not entries:
        return 0
    prev_hash, rows = _last_hash(conn), []
    for entry, ts in entries:
        rows.append(_row_values(entry, ts, prev_hash))
        prev_hash = rows[-1][-1]
    conn.executemany(_INSERT, rows)
    # The ids are the next ones in order (this transaction holds the write lock); read back, not assumed.
    last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    if last is None or last["hash"] != prev_hash:
        raise StoreError("audit append: the last row written is not the one appended")
    _set_head(conn, int(last["id"]), prev_hash)
    return int(last["id"])


_INSERT = f"INSERT INTO audit ({', '.join(_FIELDS)}, hash) VALUES ({', '.join('?' * (len(_FIELDS) + 1))})"


def _last_hash(conn: sqlite3.Connection) -> str:
    """The hash the next row links to: the last row's, or the anchor's when the table is empty."""
    last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return str(last["hash"]) if last else audit_anchor(conn).hash


def _row_values(entry: AuditEntry, ts: float, prev_hash: str) -> list[Any]:
    """The stored columns of one entry (cleaned by the audit rule) linked to `prev_hash`, its hash last."""
    # The cleaned fields as a dict, not an entry read back field by field (nor dataclasses.asdict, which
    # deep-copies `details`): this runs in the writer thread for every row, holding the GIL.
    values = clean_fields(entry, current_redactor())
    values["details_json"] = _canonical(values.pop("details"))
    values["ts"] = ts
    values["prev_hash"] = prev_hash
    return [values[name] for name in _FIELDS] + [row_hash(values)]


def _set_head(conn: sqlite3.Connection, row_id: int, digest: str) -> None:
    _set_meta(conn, _HEAD_ID, str(row_id))
    _set_meta(conn, _HEAD_HASH, digest)


def purge_audit_txn(conn: sqlite3.Connection, before_ts: float, limit: int) -> Purge:
    """Remove up to `limit` rows of the oldest prefix whose rows are all older than `before_ts`.

    Only a prefix goes (a row with a skewed, older clock behind a newer one stays), so what is left
    is still one unbroken chain starting at the recorded anchor.
    """
    keep = conn.execute("SELECT MIN(id) FROM audit WHERE ts >= ?", (before_ts,)).fetchone()[0]
    bound = "id < ?" if keep is not None else "1"
    params: tuple[Any, ...] = (keep,) if keep is not None else ()
    last = conn.execute(
        f"SELECT id, hash FROM (SELECT id, hash FROM audit WHERE {bound} ORDER BY id LIMIT ?) ORDER BY id DESC LIMIT 1",
        (*params, limit),
    ).fetchone()
    if last is None:
        return Purge(0, audit_anchor(conn))
    count = conn.execute("DELETE FROM audit WHERE id <= ?", (last["id"],)).rowcount
    anchor = Anchor(int(last["id"]), str(last["hash"]))
    _set_meta(conn, _ANCHOR_ID, str(anchor.id))
    _set_meta(conn, _ANCHOR_HASH, anchor.hash)
    return Purge(int(count), anchor)


def _row(record: sqlite3.Row) -> AuditRow:
    return AuditRow(**{key: record[key] for key in record.keys()})  # noqa: SIM118 - sqlite3.Row is not a Mapping


def iter_audit_rows(
    conn: sqlite3.Connection, since: float | None = None, until: float | None = None
) -> Iterator[AuditRow]:
    """Rows in chain order, optionally limited to since <= ts < until."""
    sql = "SELECT * FROM audit WHERE (? IS NULL OR ts >= ?) AND (? IS NULL OR ts < ?) ORDER BY id"
    for record in conn.execute(sql, (since, since, until, until)):
        yield _row(record)


def verify_audit(conn: sqlite3.Connection) -> Verdict:
    """Walk the whole chain from the anchor; report the first row that is missing, changed or unlinked."""
    anchor = audit_anchor(conn)
    expected_id, prev_hash, checked = anchor.id + 1, anchor.hash, 0
    for row in iter_audit_rows(conn):
        if row.id != expected_id:
            return Verdict(checked, expected_id, f"row {expected_id} is missing (next stored row is {row.id})")
        if row.prev_hash != prev_hash:
            return Verdict(checked, row.id, f"row {row.id} does not link to row {row.id - 1} (changed or removed)")
        if row.computed_hash() != row.hash:
            return Verdict(checked, row.id, f"row {row.id} was changed after it was written")
        expected_id, prev_hash, checked = row.id + 1, row.hash, checked + 1
    head_id, head_hash = _meta(conn, _HEAD_ID), _meta(conn, _HEAD_HASH)
    if head_id is not None and head_hash is not None:
        last_id = expected_id - 1
        if last_id < int(head_id):
            return Verdict(checked, last_id + 1, f"rows {last_id + 1}..{head_id} were removed from the end")
        if last_id > int(head_id):
            return Verdict(checked, int(head_id) + 1, f"rows after {head_id} were not written by the sidecar")
        if prev_hash != head_hash:
            return Verdict(checked, last_id, f"row {last_id} does not match the recorded head")
    return Verdict(checked)


def open_audit_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for `audit verify/export`; safe next to a running sidecar (WAL)."""
    if not Path(path).is_file():
        raise StoreError(f"no database at {path} (store.path)")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'audit'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read database {path}: {exc}") from exc
    if found is None:
        conn.close()
        raise StoreError(f"database {path} has no audit table")
    return conn
