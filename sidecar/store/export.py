"""Read-only looks into the store file for operators (`servicedesk-sidecar db`), through sqlite-utils.

The file is opened with `mode=ro`, so nothing here can write, and it is safe next to a running sidecar
(WAL readers do not block the writer). An SQLite authorizer refuses every statement that is not a read,
and refuses reading the columns that can hold ticket content or secrets unless the operator asks.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import quote

from sidecar.errors import SidecarError, StoreError

if TYPE_CHECKING:  # sqlite_utils loads numpy (~13 MB resident): imported by a `db` command, never by `run`
    import sqlite_utils

Format = Literal["json", "jsonl", "csv", "table"]
# Event payloads and job payloads carry envelopes and response bodies; tx bytes carry sealed content;
# field values (and the conflicts over them) are shown by the control API only as hashes or by request.
CONTENT_COLUMNS: Mapping[str, frozenset[str]] = {
    "chain_inbox": frozenset({"payload_json"}),
    "jobs": frozenset({"payload_json"}),
    "tx_intents": frozenset({"msg_bytes"}),
    "tx_batches": frozenset({"tx_bytes"}),
    "field_state": frozenset({"base_value", "chain_value", "desk_value"}),
    "conflicts": frozenset({"base_value", "chain_value", "desk_value"}),
}
CONTENT_HELP = ", ".join(f"{t}.{c}" for t, cols in sorted(CONTENT_COLUMNS.items()) for c in sorted(cols))
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_SAVEPOINT}
_READ_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "foreign_key_list"}


class QueryRefused(SidecarError):
    """A statement or export the operator asked for is not a permitted read; the message says why."""


@dataclass(frozen=True)
class TableCount:
    name: str
    rows: int


class ReadOnlyStore:
    """The store file through sqlite-utils, read-only, with content columns hidden unless asked."""

    def __init__(self, path: str, include_content: bool = False) -> None:
        file = Path(path)
        if not file.is_file():
            raise StoreError(f"no database at {path} (store.path)")
        self.include_content = include_content
        self._refused: list[str] = []
        try:
            conn = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read database {path}: {exc}") from None
        conn.set_authorizer(self._authorize)
        import sqlite_utils

        self.db: sqlite_utils.Database = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)

    def close(self) -> None:
        self.db.close()

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action == sqlite3.SQLITE_READ:
            if not self.include_content and arg2 in CONTENT_COLUMNS.get(arg1 or "", ()):
                self._refused.append(f"{arg1}.{arg2} can hold ticket content or secrets (add --include-content)")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        if action in _ALLOWED or (action == sqlite3.SQLITE_PRAGMA and arg1 in _READ_PRAGMAS):  # arg2: its table
            return sqlite3.SQLITE_OK
        self._refused.append("only a single read-only statement (SELECT or WITH) is allowed, and no ATTACH")
        return sqlite3.SQLITE_DENY

    def _run(self, fn: Any, *args: Any) -> Any:
        """fn(*args), with sqlite's refusals and errors as QueryRefused naming the reason."""
        self._refused.clear()
        try:
            return fn(*args)
        except (sqlite3.Error, ValueError) as exc:
            reason = self._refused[0] if self._refused else str(exc)
            raise QueryRefused(reason) from None

    def tables(self) -> list[TableCount]:
        return [TableCount(name, self._run(lambda n: self.db.table(n).count, name)) for name in self.db.table_names()]

    def query(self, sql: str) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """Columns and rows of one read-only statement."""
        if sql.lstrip()[:6].upper() == "ATTACH":
            raise QueryRefused("ATTACH is not allowed: only the store file can be read")
        cursor = self._run(self.db.execute, sql)
        if cursor.description is None:
            raise QueryRefused("the statement returns no rows: only a single read-only statement is allowed")
        columns = [d[0] for d in cursor.description]
        return columns, (dict(zip(columns, row, strict=True)) for row in cursor)

    def export(self, table: str, where: str | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """The table's rows (content columns left out unless include_content), optionally filtered."""
        if table not in self.db.table_names():
            raise QueryRefused(f"no table {table!r} (see `db tables`)")
        found = self.db.table(table)
        hidden = set() if self.include_content else CONTENT_COLUMNS.get(table, frozenset())
        columns = [c.name for c in found.columns if c.name not in hidden]
        from sqlite_utils.db import quote_identifier

        select = ", ".join(quote_identifier(c) for c in columns)
        rows = found.rows_where(where or None, select=select)
        first = self._run(next, rows, None)  # the statement runs (or is refused) here
        return columns, itertools.chain([] if first is None else [first], rows)


def _plain(value: object) -> object:
    """A cell as JSON/CSV can hold it: BLOBs as base64 (marked so in JSON)."""
    if isinstance(value, bytes):
        return {"$base64": True, "encoded": base64.b64encode(value).decode()}
    return value


def write_rows(columns: list[str], rows: Iterator[dict[str, Any]], fmt: Format, out: TextIO) -> int:
    """Rows as a JSON array, JSON lines or CSV with a header; the number written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                base64.b64encode(v).decode() if isinstance(v, bytes) else v for v in (row[c] for c in columns)
            )
            count += 1
        return count
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")
            count += 1
        return count
    out.write("[")
    for row in rows:
        out.write(("," if count else "") + "\n  " + json.dumps({k: _plain(v) for k, v in row.items()}))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
