"""The sync loops' frequent queries find their rows through an index, never by scanning a table that grows for
as long as the sidecar runs. An hour's soak found three that did (each call costing more the longer it ran):
this runs the real functions, records the SQL they send, and asks SQLite how it would run each statement."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sidecar.store.inbound import decided_comments, take_deliveries_txn
from sidecar.store.intents import intent_counts, record_included_txn
from sidecar.store.migrations import migrate
from sidecar.store.status import queue_figures

# Tables whose rows accumulate with tickets, deliveries and txs (purged after days, if ever).
GROWING = ("inbound_comments", "webhook_deliveries", "tx_intents", "tx_batches", "jobs", "chain_inbox", "audit")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = str(tmp_path / "sidecar.db")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.row_factory = sqlite3.Row
    migrate(connection, path)
    yield connection
    connection.close()


def plans(conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], object]) -> dict[str, list[str]]:
    """Each statement `call` sent, with SQLite's query plan for it."""
    sent: list[str] = []
    conn.set_trace_callback(sent.append)
    try:
        call(conn)
    finally:
        conn.set_trace_callback(None)
    found: dict[str, list[str]] = {}
    for statement in sent:
        if statement.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
            found[statement] = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement)]
    return found


@pytest.mark.parametrize(
    ("call", "index"),
    [
        pytest.param(
            lambda c: decided_comments(c, "jira", "ticket-1"),
            "inbound_comments_ticket (desk=? AND ticket_id=?)",  # not the desk's every comment
            id="inbound: comments decided",
        ),
        pytest.param(
            lambda c: take_deliveries_txn(c, ["jira", "waldur"], time.time(), 50),
            "webhook_deliveries_waiting",  # partial: holds the waiting deliveries only
            id="inbound: deliveries waiting",
        ),
        pytest.param(
            lambda c: record_included_txn(c, 7, 100), "tx_intents_batch (batch_id=?)", id="signer: included intents"
        ),
    ],
)
def test_a_frequent_query_reads_its_rows_through_an_index(
    conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], object], index: str
) -> None:
    found = plans(conn, call)
    steps = [step for plan in found.values() for step in plan]
    assert any(index in step for step in steps), found
    scans = [step for step in steps if step.split()[:1] == ["SCAN"] and step.split()[1:] in ([t] for t in GROWING)]
    assert not scans, found


def vm_steps(conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], object]) -> int:
    """How much work SQLite does for `call`, in hundreds of virtual machine instructions (not time)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    conn.set_progress_handler(count, 100)
    try:
        call(conn)
    finally:
        conn.set_progress_handler(None, 0)
    return steps


def finish_history(conn: sqlite3.Connection, start: int, n: int) -> None:
    """`n` more done jobs and included intents, as a long-running sidecar accumulates them."""
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO jobs (dedupe_key, kind, desk, ticket_id, state, next_run_at, created_at, updated_at, finished_at)"
        " VALUES (?, 'update', 'jira', ?, 'done', ?, ?, ?, ?)",
        [(f"job-{i}", f"t-{i}", now, now, now, now + i) for i in range(start, start + n)],
    )
    conn.executemany(
        "INSERT INTO tx_intents (dedupe_key, msg_type, ticket_id, msg_bytes, state, created_at, updated_at)"
        " VALUES (?, 'MsgUpdateSupportRequest', ?, x'00', 'included', ?, ?)",
        [(f"intent-{i}", f"t-{i}", now, now) for i in range(start, start + n)],
    )
    conn.execute("COMMIT")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(queue_figures, id="health and metrics: queue figures"),
        pytest.param(intent_counts, id="signer: intents per state"),
    ],
)
def test_a_periodic_figure_costs_the_same_however_long_the_history(
    conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], object]
) -> None:
    """Figures read every few seconds for as long as the sidecar runs must not walk every job or intent it ever
    finished: doubling the history (5,000 more of each) leaves their cost as it was. An hour's soak found two
    that did: the sidecar's CPU rose by a fifth at a steady load."""
    finish_history(conn, 0, 5_000)
    before = vm_steps(conn, call)
    finish_history(conn, 5_000, 5_000)
    after = vm_steps(conn, call)
    assert after - before <= 2, (before, after)  # a walk over the 5,000 new rows costs hundreds
