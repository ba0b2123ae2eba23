"""`servicedesk-sidecar db`: read-only looks into a real store file (the sidecar's Store, migrations applied),
taken while that Store is open and writing, as it is next to a running sidecar."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.store.db import Store
from sidecar.store.export import ReadOnlyStore
from sidecar.store.intents import queue_intent_txn
from sidecar.store.jobs import dead_job_txn, queue_update_job_txn
from sidecar.store.migrations import LATEST_VERSION
from tests.sidecar.control.kit import opened_store

TICKET = "virtengine1customer0000000000000000000000000000/support/1"


def seed(conn: sqlite3.Connection) -> None:
    now = time.time()
    for n in range(3):
        queue_update_job_txn(conn, f"seed:{n}", "jira", TICKET, "secret-why", now)
    dead_job_txn(conn, 1, "desk said 500", now)
    queue_intent_txn(conn, "intent:1", "MsgUpdateSupportRequest", TICKET, b"\x00\xffsealed")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "sidecar.db", seed) as s:
        yield s


@pytest.fixture
def config(store: Store, tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"servicedesk:\n  store:\n    path: {store.path}\n")
    return str(path)


async def db(capsys: pytest.CaptureFixture[str], config: str, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["db", *argv, "--config", config])
    out = capsys.readouterr()
    return code, out.out, out.err


def job_states(store: Store) -> list[tuple[int, str]]:
    conn = sqlite3.connect(store.path)
    try:
        return [(int(r[0]), str(r[1])) for r in conn.execute("SELECT id, state FROM jobs ORDER BY id")]
    finally:
        conn.close()


async def test_tables_lists_every_table_with_its_rows(
    store: Store, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await db(capsys, config, "tables", "--json")
    counts = {t["name"]: t["rows"] for t in json.loads(out)}
    assert code == 0 and counts["jobs"] == 3 and counts["tx_intents"] == 1 and counts["tickets"] == 0
    assert counts["schema_migrations"] == LATEST_VERSION
    await store.write("one more", queue_update_job_txn, "seed:9", "jira", TICKET, "x", time.time())
    code, out, _ = await db(capsys, config, "tables")  # the sidecar's commits are seen (WAL)
    lines = [line.split() for line in out.splitlines()]
    assert code == 0 and lines[0] == ["NAME", "ROWS"] and ["jobs", "4"] in lines


async def test_query_reads_and_prints_each_format(
    store: Store, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT state, count(*) AS n FROM jobs GROUP BY state ORDER BY state"
    code, out, _ = await db(capsys, config, "query", sql, "--format", "json")
    assert code == 0 and json.loads(out) == [{"state": "dead", "n": 1}, {"state": "pending", "n": 2}]
    code, out, _ = await db(capsys, config, "query", sql)
    assert code == 0 and [line.split() for line in out.splitlines()] == [
        ["STATE", "N"],
        ["dead", "1"],
        ["pending", "2"],
    ]
    code, out, _ = await db(capsys, config, "query", sql, "--format", "csv")
    assert list(csv.reader(io.StringIO(out))) == [["state", "n"], ["dead", "1"], ["pending", "2"]]
    code, out, _ = await db(capsys, config, "query", "SELECT id FROM jobs WHERE 0", "--format", "jsonl")
    assert code == 0 and out == ""


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("DELETE FROM jobs", "read-only"),
        ("WITH x AS (SELECT 1) UPDATE jobs SET state = 'done'", "read-only"),
        ("SELECT 1; DELETE FROM jobs", "one statement"),
        ("PRAGMA journal_mode = DELETE", "read-only"),
        ("CREATE TABLE t (x)", "read-only"),
        ("SELECT * FROM jobs", "jobs.payload_json can hold ticket content"),
        ("SELECT id FROM jobs WHERE payload_json LIKE '%secret%'", "jobs.payload_json"),
        ("SELECT nope FROM jobs", "no such column"),
    ],
)
async def test_query_refuses_all_but_one_read_and_content_columns(
    store: Store, config: str, capsys: pytest.CaptureFixture[str], sql: str, says: str
) -> None:
    before = job_states(store)
    code, out, err = await db(capsys, config, "query", sql)
    assert code == 2 and says in err and out == ""
    assert "secret-why" not in err
    assert job_states(store) == before


async def test_query_refuses_attach(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    for sql in (f"ATTACH DATABASE '{other}' AS other", f"/* x */ ATTACH DATABASE '{other}' AS other"):
        code, _, err = await db(capsys, config, "query", sql)
        assert code == 2 and "ATTACH" in err
    assert not other.exists()


async def test_content_columns_need_include_content(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await db(capsys, config, "query", "SELECT payload_json FROM jobs LIMIT 1", "--include-content")
    assert code == 0 and "secret-why" in out


async def test_export_leaves_content_out_unless_asked(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await db(capsys, config, "export", "jobs", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 3 and "payload_json" not in rows[0] and "secret-why" not in out
    assert {"id", "state", "last_error", "ticket_id"} <= set(rows[0]) and err.strip() == "exported 3 rows of jobs"
    code, out, _ = await db(capsys, config, "export", "jobs", "--where", "state = 'dead'", "--format", "jsonl")
    [dead] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and (dead["id"], dead["last_error"]) == (1, "desk said 500")
    code, out, _ = await db(capsys, config, "export", "jobs", "--include-content")
    assert code == 0 and json.loads(json.loads(out)[0]["payload_json"]) == {"secret-why": True}
    code, out, _ = await db(capsys, config, "export", "tx_intents", "--include-content")
    [intent] = json.loads(out)
    assert intent["msg_bytes"] == {"$base64": True, "encoded": "AP9zZWFsZWQ="}
    code, out, _ = await db(capsys, config, "export", "tx_intents")
    assert "msg_bytes" not in json.loads(out)[0]
    code, out, _ = await db(capsys, config, "export", "tickets")
    assert code == 0 and json.loads(out) == []


async def test_export_refusals_and_private_output(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await db(capsys, config, "export", "nope")
    assert code == 2 and "no table 'nope'" in err
    code, _, err = await db(capsys, config, "export", "jobs", "--where", "payload_json != ''")
    assert code == 2 and "--include-content" in err
    code, _, err = await db(capsys, config, "export", "jobs", "--where", "1) ; DELETE FROM jobs --")
    assert code == 2
    target = tmp_path / "jobs.json"
    code, out, _ = await db(capsys, config, "export", "jobs", "-o", str(target))
    assert code == 0 and out == "" and len(json.loads(target.read_text())) == 3
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_a_missing_store_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    path = tmp_path / "config.yaml"
    path.write_text(f"servicedesk:\n  store:\n    path: {missing}\n")
    code, _, err = await db(capsys, str(path), "tables")
    assert code == 1 and "no database at" in err and not missing.exists()


def test_the_file_is_opened_read_only_beneath_the_authorizer(store: Store) -> None:
    """Even with the statement check lifted, the connection cannot write: mode=ro is the floor."""
    reader = ReadOnlyStore(store.path)
    try:
        reader.db.conn.set_authorizer(None)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.conn.execute("DELETE FROM jobs")
    finally:
        reader.close()
    assert len(job_states(store)) == 3
