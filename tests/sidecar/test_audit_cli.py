"""`servicedesk-sidecar audit verify` and `audit export` as operators run them, on the real sidecar's database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sidecar.store.audit import AuditEntry, append_audit_txn, row_hash
from sidecar.store.db import Store
from tests.sidecar.observe.support import running_sidecar, sidecar_env
from tests.sidecar.process import ROOT

HOUR = 3600.0


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTENGINE_SERVICEDESK_")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_verify_passes_on_the_running_sidecars_log_and_names_the_row_an_intruder_changed(tmp_path: Path) -> None:
    db = tmp_path / "data" / "sidecar.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"servicedesk:\n  store:\n    path: {db}\n")
    with running_sidecar(tmp_path, sidecar_env(tmp_path)) as (proc, _http):
        proc.wait_for_log("chain unreachable; retrying")
        live = cli("audit", "verify", "--config", str(config))
        assert live.returncode == 0, live.stderr
        assert live.stdout.strip() == "audit chain intact: 1 rows"  # config_loaded at start
    with running_sidecar(tmp_path, sidecar_env(tmp_path)):
        pass
    assert cli("audit", "verify", "--config", str(config)).stdout.strip() == "audit chain intact: 2 rows"

    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE audit SET actor = 'someone else' WHERE id = 2")
    conn.close()
    broken = cli("audit", "verify", "--config", str(config))
    assert broken.returncode == 1
    assert broken.stderr.strip() == "audit chain broken at row 2: row 2 was changed after it was written"

    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM audit WHERE id = 1")
    conn.close()
    deleted = cli("audit", "verify", "--store-path", str(db))
    assert deleted.returncode == 1
    assert "row 1 is missing" in deleted.stderr


async def test_export_writes_json_lines_in_the_window_that_still_verify(tmp_path: Path) -> None:
    db = str(tmp_path / "sidecar.db")
    now = time.time()
    store = await Store.open(db)
    for hours_ago, ticket in ((48, "t-old"), (2, "t-recent"), (0.5, "t-new")):
        entry = AuditEntry("ticket_updated", ticket_id=ticket, desk="waldur", details={"field_count": 2})
        await store.write("audit", append_audit_txn, entry, now - hours_ago * HOUR)
    await store.close()

    day = cli("audit", "export", "--since", "24h", "--store-path", db)
    assert day.returncode == 0, day.stderr
    docs = [json.loads(line) for line in day.stdout.splitlines()]
    assert [d["ticket_id"] for d in docs] == ["t-recent", "t-new"]
    assert docs[0]["details"] == {"field_count": 2}
    assert docs[0]["time"].endswith("Z") and docs[0]["id"] == 2
    assert all(row_hash(d) == d["hash"] for d in docs)  # an export can be re-verified offline
    assert docs[1]["prev_hash"] == docs[0]["hash"]
    assert day.stderr.strip() == "exported 2 audit rows"

    out = tmp_path / "export.jsonl"
    window = cli("audit", "export", "--since", "3d", "--until", "1h", "--output", str(out), "--store-path", db)
    assert window.returncode == 0, window.stderr
    assert [json.loads(line)["ticket_id"] for line in out.read_text().splitlines()] == ["t-old", "t-recent"]

    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - HOUR))
    since_iso = cli("audit", "export", "--since", iso, "--store-path", db)
    assert [json.loads(line)["ticket_id"] for line in since_iso.stdout.splitlines()] == ["t-new"]


def test_audit_commands_fail_clearly_without_a_database_or_with_a_bad_time(tmp_path: Path) -> None:
    missing = cli("audit", "verify", "--store-path", str(tmp_path / "none.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"servicedesk-sidecar: no database at {tmp_path / 'none.db'} (store.path)"
    assert not (tmp_path / "none.db").exists()  # verify never creates a database
    bad = cli("audit", "export", "--since", "last tuesday", "--store-path", str(tmp_path / "none.db"))
    assert bad.returncode == 2
    assert "neither a duration" in bad.stderr
    assert cli("audit", "export", "--store-path", str(tmp_path / "none.db")).returncode == 2  # --since is required
