"""One way to list rows for operators: equality filters, newest first, continued by keyset on the id.

Keyset paging (`id < last id seen`) rather than OFFSET, so rows added while an operator pages never
shift or repeat a page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping


def newest_first(
    conn: sqlite3.Connection,
    select: str,
    filters: Mapping[str, object | None],
    limit: int,
    *,
    before_id: int | None = None,
    id_column: str = "id",
) -> list[sqlite3.Row]:
    """`select` (no WHERE) filtered by each column = value whose value is set (None and '' match all).
    Column names come from the caller's code, never from a request."""
    clauses = [f"{column} = ?" for column, value in filters.items() if value]
    args: list[object] = [value for value in filters.values() if value]
    if before_id is not None:
        clauses.append(f"{id_column} < ?")
        args.append(before_id)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return conn.execute(f"{select}{where} ORDER BY {id_column} DESC LIMIT ?", [*args, limit]).fetchall()
