"""The live /metrics of the real sidecar, checked by promtool and scraped by a real Prometheus server."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from devnet.waiting import wait_until
from tests.sidecar.observe.support import ALERTS_FILE, PrometheusServer, require_tool, running_sidecar, sidecar_env


def test_live_scrape_passes_promtool_check_metrics(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    with running_sidecar(tmp_path, sidecar_env(tmp_path)) as (proc, http):
        proc.wait_for_log("chain unreachable; retrying")
        answer = httpx.get(f"http://{http}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=answer.text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("servicedesk_sync_events_total", "servicedesk_sync_latency_seconds_bucket",
                 "servicedesk_api_requests_total", "servicedesk_queue_pending", "servicedesk_queue_failed",
                 "servicedesk_health_check", "servicedesk_follower_lag_blocks", "servicedesk_build_info"):
        assert f"\n{name}" in answer.text, name


def test_prometheus_scrapes_the_sidecar_and_evaluates_the_guides_alerts(tmp_path: Path) -> None:
    with running_sidecar(tmp_path, sidecar_env(tmp_path)) as (proc, http):
        proc.wait_for_log("chain unreachable; retrying")
        prometheus = PrometheusServer(tmp_path, targets=[http], rule_files=[ALERTS_FILE])
        try:
            prometheus.start()

            def health_series() -> list[Any] | None:
                query = 'servicedesk_health_check{job="servicedesk"}'
                result: list[Any] = prometheus.api("query", query=query)["result"]
                return result or None

            series = wait_until(health_series, timeout=30, what="servicedesk_health_check in Prometheus")
            assert len(series) == 1
            assert series[0]["metric"]["instance"] == http
            assert series[0]["value"][1] == "0"  # the chain is unreachable: unhealthy

            up = prometheus.api("query", query=f'up{{instance="{http}"}}')["result"]
            assert up[0]["value"][1] == "1"
            failed = prometheus.api("query", query='servicedesk_sync_events_total{status="failed"}')["result"]
            assert {s["metric"]["direction"] for s in failed} == {"inbound", "outbound"}

            groups = prometheus.api("rules")["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            assert set(rules) == {
                "ServiceDeskSyncFailed", "ServiceDeskQueueBacklog", "ServiceDeskUnhealthy", "ServiceDeskAuthFailed"
            }
            assert all(r["health"] == "ok" for r in rules.values()), rules

            def unhealthy_alert() -> dict[str, Any] | None:
                alerts = prometheus.api("alerts")["alerts"]
                return next((a for a in alerts if a["labels"]["alertname"] == "ServiceDeskUnhealthy"), None)

            alert = wait_until(unhealthy_alert, timeout=30, what="ServiceDeskUnhealthy pending in Prometheus")
            assert alert["state"] == "pending"  # `for: 5m` has not passed yet
            assert alert["labels"]["severity"] == "critical"
        finally:
            prometheus.stop()
    assert prometheus.proc is None
