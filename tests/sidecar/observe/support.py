"""Shared by the observability tests: the real sidecar on loopback, Debian's Prometheus tools, a real Prometheus."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devnet.waiting import wait_until
from sidecar.observe.metrics import Metrics
from tests.sidecar.process import ROOT, SidecarProcess, closed_port

ALERTS_FILE = ROOT / "deploy" / "prometheus" / "servicedesk-alerts.yml"


def require_tool(name: str) -> str:
    """The path of a Prometheus tool; skip without it, except in CI (SIDECAR_REQUIRE_COMETBFT=1) where it fails."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install -y prometheus)"
    if os.environ.get("SIDECAR_REQUIRE_COMETBFT") == "1":
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


def sidecar_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A sidecar with no reachable chain (a closed loopback port) and its database under tmp_path."""
    return {
        "VIRTENGINE_SERVICEDESK_CHAIN_RPC_URL": f"http://127.0.0.1:{closed_port()}",
        "VIRTENGINE_SERVICEDESK_CHAIN_POLL_INTERVAL": "200ms",
        "VIRTENGINE_SERVICEDESK_STORE_PATH": str(tmp_path / "data" / "sidecar.db"),
        **extra,
    }


RUN_ARGS = ["run", "--webhook-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--log-format", "json"]
RUN_ARGS += ["--observe-listen", ""]  # /metrics and verbose health on the webhook port, as these tests read them


@contextmanager
def running_sidecar(
    tmp_path: Path, env: dict[str, str], args: list[str] = RUN_ARGS
) -> Iterator[tuple[SidecarProcess, str]]:
    """The real sidecar subprocess and its HTTP address; SIGTERM at the end, and it must exit 0."""
    proc = SidecarProcess(args, env, cwd=tmp_path)
    try:
        started = proc.wait_for_log("started")
        yield proc, str(started["http"])
        assert proc.terminate() == 0, proc.text()
    finally:
        proc.close()


class PrometheusServer:
    """A real Prometheus on a free loopback port with its own storage; scrapes `targets` every 250ms."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.binary = require_tool("prometheus")
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        doc: dict[str, Any] = {
            "global": {"scrape_interval": "250ms", "scrape_timeout": "200ms", "evaluation_interval": "250ms"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "servicedesk", "static_configs": [{"targets": targets}]}],
        }
        self.config.write_text(yaml.safe_dump(doc))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        # A free port is picked, then bound by Prometheus: retry if another process took it meanwhile.
        for attempt in range(3):
            port = closed_port()
            log_file = self.workdir / f"prometheus-{attempt}.log"
            with log_file.open("wb") as out:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={self.config}",
                        f"--storage.tsdb.path={self.workdir / f'tsdb-{attempt}'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            self.url = f"http://127.0.0.1:{port}"
            outcome = wait_until(self._state, timeout=30, what=f"Prometheus ready at {self.url}")
            if outcome == "ready":
                return
            text = log_file.read_text(errors="replace")
            self.stop()
            if "address already in use" not in text:
                raise AssertionError(f"Prometheus exited at start: {text[-2000:]}")
        raise AssertionError("Prometheus found no free port in 3 attempts")

    def _state(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return "exited"
        return "ready" if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200 else None

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        answer.raise_for_status()
        doc = answer.json()
        assert doc["status"] == "success", doc
        return doc["data"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def metric_value(metrics: Metrics, name: str, **labels: str) -> float:
    """The value of one series as the exposition renders it (what Prometheus would read)."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no series {name}{labels}")
