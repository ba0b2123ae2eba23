"""`python -m devnet --prometheus`: the config it writes is one Prometheus accepts, and without the
binary the devnet says so and runs on. (A devnet with Prometheus running is exercised end to end by
tests/sidecar/observe/test_grafana_dashboard.py.)"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devnet.__main__ import start_prometheus
from devnet.prometheus import ALERT_RULES, JOB, write_config


def test_the_written_config_passes_promtool_check_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    config = write_config(tmp_path / "prometheus" / "prometheus.yml", "127.0.0.1:8480")
    check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout + check.stderr  # the alert rules of deploy/prometheus/
    doc = yaml.safe_load(config.read_text())
    (scrape,) = doc["scrape_configs"]
    assert scrape["job_name"] == JOB and scrape["static_configs"] == [{"targets": ["127.0.0.1:8480"]}]
    assert doc["rule_files"] == [str(ALERT_RULES)]


def test_without_the_binary_the_devnet_says_so_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    started: list[Any] = []
    assert start_prometheus(tmp_path, 8480, 0, started) is None
    assert started == []  # nothing to stop
    assert "prometheus is not installed (Debian/Ubuntu: apt-get install prometheus); continuing without it" in (
        capsys.readouterr().out
    )


def test_a_prometheus_that_cannot_bind_its_port_is_reported_and_the_devnet_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        started: list[Any] = []
        assert start_prometheus(tmp_path, 8480, taken.getsockname()[1], started) is None
    (prometheus,) = started
    assert prometheus.proc is None  # it exited; shutdown's stop() has nothing left to do
    out = capsys.readouterr().out
    assert "devnet: Prometheus did not start" in out and "continuing without it" in out
    assert "address already in use" in out
