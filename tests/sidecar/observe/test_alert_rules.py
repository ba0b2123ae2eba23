"""The manual's alert rules ship as a file that Prometheus's own tools accept and that fire as the manual means."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.sidecar.observe.support import ALERTS_FILE, require_tool
from tests.sidecar.process import ROOT

GUIDE = (ROOT / "docs" / "operations-guide.md").read_text()


def test_alert_file_holds_exactly_the_manuals_rules() -> None:
    block = re.search(r"### Alert rules\n[^#]*?```yaml\n(.*?)```", GUIDE, re.S)
    assert block is not None, "docs/operations-guide.md has no ```yaml block under '### Alert rules'"
    assert yaml.safe_load(ALERTS_FILE.read_text()) == yaml.safe_load(block.group(1))


def test_promtool_check_rules_accepts_the_file() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "rules", str(ALERTS_FILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def _alert(name: str, severity: str, summary: str, **labels: str) -> dict[str, object]:
    return {"exp_labels": {**labels, "severity": severity}, "exp_annotations": {"summary": summary}}


UNIT_TESTS = {
    "rule_files": [str(ALERTS_FILE)],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'servicedesk_health_check{instance="bad"}', "values": "0x15"},
                {"series": 'servicedesk_health_check{instance="good"}', "values": "1x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "ServiceDeskUnhealthy", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "ServiceDeskUnhealthy",
                    "exp_alerts": [_alert("u", "critical", "Service desk bridge unhealthy", instance="bad")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'servicedesk_desk_auth_failed{desk="jira"}', "values": "0 0 1x10"},
                {"series": 'servicedesk_desk_auth_failed{desk="waldur"}', "values": "0x12"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "ServiceDeskAuthFailed", "exp_alerts": []},
                {
                    "eval_time": "5m",
                    "alertname": "ServiceDeskAuthFailed",
                    "exp_alerts": [
                        _alert("a", "critical", "Service desk refuses the sidecar's credentials", desk="jira")
                    ],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": "servicedesk_queue_pending", "values": "150x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "ServiceDeskQueueBacklog", "exp_alerts": []},
                {
                    "eval_time": "11m",
                    "alertname": "ServiceDeskQueueBacklog",
                    "exp_alerts": [_alert("q", "warning", "Service desk sync queue backlog")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'servicedesk_sync_events_total{direction="outbound",status="failed"}', "values": "0+3x20"},
                {"series": 'servicedesk_sync_events_total{direction="inbound",status="success"}', "values": "0+9x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "ServiceDeskSyncFailed", "exp_alerts": []},
                {
                    "eval_time": "12m",
                    "alertname": "ServiceDeskSyncFailed",
                    "exp_alerts": [
                        _alert(
                            "s", "warning", "Service desk sync failures detected", direction="outbound", status="failed"
                        )
                    ],
                },
            ],
        },
    ],
}


def test_rules_fire_on_the_sidecars_series_after_their_for_duration(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    tests = tmp_path / "alerts.test.yml"
    tests.write_text(yaml.safe_dump(UNIT_TESTS))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
