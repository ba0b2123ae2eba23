"""The append-only audit chain: each row's hash covers its fields and the previous row's hash.

Details hold ids and hashes only; callers never pass ticket content or secrets.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

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


def row_hash(values: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of the row's fields (prev_hash included)."""
    canonical = json.dumps([values[name] for name in _FIELDS], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append_audit_txn(conn: sqlite3.Connection, entry: AuditEntry, ts: float) -> int:
    """Append one entry, chained to the last row. Runs inside the caller's write transaction."""
    last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    values = asdict(entry)
    values["details_json"] = json.dumps(values.pop("details"), sort_keys=True, separators=(",", ":"))
    values["ts"] = ts
    values["prev_hash"] = last["hash"] if last else GENESIS_HASH
    digest = row_hash(values)
    cur = conn.execute(
        f"INSERT INTO audit ({', '.join(_FIELDS)}, hash) VALUES ({', '.join('?' * (len(_FIELDS) + 1))})",
        [values[name] for name in _FIELDS] + [digest],
    )
    return int(cur.lastrowid or 0)
