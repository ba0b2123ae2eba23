"""`audit.log_level` sets the level of the whole process; every line stays one JSON event."""

from __future__ import annotations

from pathlib import Path

import httpx

from devnet.waiting import wait_until
from tests.sidecar.observe.support import sidecar_env
from tests.sidecar.process import SidecarProcess, closed_port

ORDER = ["debug", "info", "warning", "error"]


def run_briefly(
    tmp_path: Path, level_args: list[str], env_level: dict[str, str], *, await_warning: bool = True
) -> list[dict[str, object]]:
    """Start the sidecar, wait until it serves (and has warned about the chain), stop it; return its log records."""
    port = closed_port()
    args = ["run", "--webhook-listen", f"127.0.0.1:{port}", "--grpc-listen", "127.0.0.1:0", "--log-format", "json"]
    args += ["--observe-listen", ""]
    proc = SidecarProcess(args + level_args, sidecar_env(tmp_path, **env_level), cwd=tmp_path)
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/webhooks/health", timeout=2).status_code == 503,
            timeout=20,
            what="the sidecar serving health",
        )
        if await_warning:
            wait_until(
                lambda: any(r.get("msg") == "chain unreachable; retrying" for r in proc.records()),
                timeout=20,
                what="the chain warning",
            )
        assert proc.terminate() == 0, proc.text()
    finally:
        proc.close()
    records = proc.records()
    assert all(not r.get("unparsed") for r in records), proc.text()
    return records


def test_warning_level_from_the_config_file_drops_info_and_debug(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("servicedesk:\n  audit:\n    log_level: warning\n")
    records = run_briefly(tmp_path, ["--config", str(config)], {})
    assert records
    levels = {str(r["level"]) for r in records}
    assert levels <= {"warning", "error"}, levels
    assert "chain unreachable; retrying" in {r["msg"] for r in records}
    assert "started" not in {r["msg"] for r in records}


def test_debug_level_from_the_environment_shows_debug_events(tmp_path: Path) -> None:
    records = run_briefly(tmp_path, [], {"VIRTENGINE_SERVICEDESK_AUDIT_LOG_LEVEL": "debug"})
    by_level = {level: [r["msg"] for r in records if r["level"] == level] for level in ORDER}
    assert "loop stopped" in by_level["debug"]
    assert "started" in by_level["info"]


def test_the_flag_overrides_the_environment(tmp_path: Path) -> None:
    env = {"VIRTENGINE_SERVICEDESK_AUDIT_LOG_LEVEL": "debug"}
    records = run_briefly(tmp_path, ["--audit-log-level", "warning"], env)
    assert {r["level"] for r in records} <= {"warning", "error"}
    (tmp_path / "quiet").mkdir()
    quiet = run_briefly(tmp_path / "quiet", ["--audit-log-level", "error"], env, await_warning=False)
    assert [r for r in quiet if r["level"] != "error"] == []
