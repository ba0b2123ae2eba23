"""The command as operators run it: config check, exit codes, run and a clean SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from devnet.waiting import wait_until
from tests.sidecar.process import ROOT, SidecarProcess, closed_port

SECRETS = {
    "VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN": "KNOWN-jira-token-6d1f",
    "VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET": "KNOWN-jira-hook-8a2c",
}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTENGINE_SERVICEDESK_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60
    )


def test_config_check_prints_sources_and_redacts_secrets(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "waldur-token").write_text("KNOWN-waldur-token-77e0")
    (secrets_dir / "waldur-token").chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(
        "servicedesk:\n  jira:\n    base_url: https://x.atlassian.net\n    username: bot@example.org\n"
        f"  secrets:\n    dir: {secrets_dir}\n"
    )
    result = cli("config", "check", "--config", str(config), "--sync-batch-size", "75", env=SECRETS)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for value in [*SECRETS.values(), "KNOWN-waldur-token-77e0"]:
        assert value not in out
    assert f"[{config}:3]" in out  # jira.base_url's line
    assert "[flag:--sync-batch-size]" in out
    assert "jira_api_token" in out and "[env:VIRTENGINE_SERVICEDESK_JIRA_API_TOKEN]" in out
    assert f"[secrets-dir:{secrets_dir / 'waldur-token'}]" in out

    as_json = cli("config", "check", "--config", str(config), "--format", "json", env=SECRETS)
    doc = json.loads(as_json.stdout)
    assert doc["settings"]["sync.batch_size"] == {"value": 50, "source": "default"}
    assert doc["secrets"]["jira_api_token"]["value"] == "<redacted>"


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("servicedesk:\n  sync:\n    batch_size: 0\n")
    result = cli("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert f"sync.batch_size must be 1..500 (got 0) [{config}:3]" in result.stderr
    run = cli("run", "--config", str(config))
    assert run.returncode == 2
    assert "sync.batch_size" in run.stderr


def test_unknown_command_is_a_usage_error() -> None:
    assert cli("fly").returncode == 2


def test_run_reports_unreachable_chain_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    rpc_port = closed_port()
    env = {
        **SECRETS,
        "VIRTENGINE_SERVICEDESK_CHAIN_RPC_URL": f"http://127.0.0.1:{rpc_port}",
        "VIRTENGINE_SERVICEDESK_CHAIN_POLL_INTERVAL": "200ms",
        "VIRTENGINE_SERVICEDESK_STORE_PATH": str(tmp_path / "data" / "sidecar.db"),
    }
    args = ["run", "--webhook-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--log-format", "json"]
    args += ["--observe-listen", ""]  # /metrics on the webhook port, read below
    proc = SidecarProcess(args, env, cwd=tmp_path)
    try:
        started = proc.wait_for_log("started")
        web = started["http"]
        grpc_port = int(started["grpc_port"])
        proc.wait_for_log("chain unreachable; retrying")

        health = httpx.get(f"http://{web}/webhooks/health", timeout=5)
        assert health.status_code == 503
        assert health.json() == {
            "healthy": False,
            "jira_status": "not_configured",
            "waldur_status": "not_configured",
            "last_sync": None,
            "pending_events": 0,
            "failed_events": 0,
        }
        verbose = httpx.get(f"http://{web}/webhooks/health?verbose=1", timeout=5).json()
        assert verbose["chain"]["reachable"] is False
        assert verbose["problems"]["chain"] == f"chain unreachable at http://127.0.0.1:{rpc_port}"

        metrics = httpx.get(f"http://{web}/metrics", timeout=5).text
        assert "servicedesk_health_check 0.0" in metrics
        assert "servicedesk_chain_reachable 0.0" in metrics

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            status = control_pb2_grpc.ControlStub(channel).GetStatus(control_pb2.GetStatusRequest(), timeout=5)
        assert not status.chain_reachable and not status.healthy
        assert any("chain unreachable" in p for p in status.problems)

        assert wait_until(lambda: (tmp_path / "data" / "sidecar.db").exists(), timeout=5, what="database file")
        code = proc.terminate()
    finally:
        proc.close()
    text = proc.text()
    assert code == 0, text
    assert any(r.get("msg") == "stopped" for r in proc.records())
    assert "Task was destroyed" not in text and "tasks still running" not in text
    for value in SECRETS.values():
        assert value not in text
    assert all(not r.get("unparsed") for r in proc.records()), text
