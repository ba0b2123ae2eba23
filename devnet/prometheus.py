"""`python -m devnet --prometheus`: Debian's `prometheus` scraping the devnet sidecar's /metrics.

It gives the Grafana dashboard in deploy/grafana/ a datasource to point at, and loads the alert rules
of deploy/prometheus/ so they can be watched firing. Its data lives in the devnet run's own directory
and it stops with the rest of the devnet; without the binary the devnet says so and runs without it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import httpx

from devnet.children import REPO_ROOT, spawn, stop_process
from devnet.node_config import free_port
from devnet.waiting import wait_until

INSTALL_HINT = "Debian/Ubuntu: apt-get install prometheus"
ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "servicedesk-alerts.yml"
JOB = "servicedesk"
# Blocks come every ~200 ms on the devnet: a 1 s scrape shows each sync as it happens at little cost.
SCRAPE_INTERVAL = "1s"


class PrometheusMissing(RuntimeError):
    """The `prometheus` binary is not on PATH."""


def write_config(path: Path, target: str, *, interval: str = SCRAPE_INTERVAL) -> Path:
    """prometheus.yml scraping `target` (host:port of the sidecar's /metrics) as job "servicedesk"."""
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


class DevnetPrometheus:
    """One Prometheus under `home` (config, TSDB and log), listening on 127.0.0.1:`port` (0: a free one)."""

    def __init__(self, home: Path, target: str, *, port: int = 0, binary: str | None = None) -> None:
        found = binary or shutil.which("prometheus")
        if found is None:
            raise PrometheusMissing(f"prometheus is not installed ({INSTALL_HINT})")
        self.binary = found
        self.home = home
        self.config = write_config(home / "prometheus.yml", target)
        self.log = home / "prometheus.log"
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DevnetPrometheus:
        """Start and wait until ready. A free port can be taken between picking and binding it: then
        another is tried; a port the caller gave is not."""
        attempts = 3 if self.port == 0 else 1
        given, text = self.port, ""
        for _ in range(attempts):
            self.port = given or free_port()
            self._spawn()
            if wait_until(self._state, timeout=timeout, what=f"Prometheus ready at {self.url}") == "ready":
                return self
            self.stop()
            text = self.log.read_text(errors="replace")
            if given or "address already in use" not in text:
                break
        raise RuntimeError(f"Prometheus did not start; see {self.log}: {text.strip()[-500:]}")

    def scraped(self, timeout: float = 30.0) -> bool:
        """Whether the sidecar was scraped within `timeout`. Prometheus applies new targets only every
        5 s, so without waiting the devnet's first syncs would land before its first sample of them."""

        def up() -> bool:
            answer = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=2)
            return any(t["health"] == "up" for t in answer.json()["data"]["activeTargets"])

        try:
            return wait_until(up, timeout=timeout, what="Prometheus's first scrape of the sidecar", interval=0.25)
        except AssertionError:
            return False

    def _spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = spawn(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.home / 'data'}",
                    "--storage.tsdb.retention.time=1d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
            )

    def _state(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return "exited"
        try:
            return "ready" if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200 else None
        except httpx.HTTPError:
            return None

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=15)
        self.proc = None
