"""Run the real servicedesk-sidecar as a subprocess and read its JSON log lines as they come."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from devnet.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SidecarProcess:
    """`python -m sidecar <args>` (or `module`, e.g. the seam launcher) with captured, parsed stderr."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, module: str | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTENGINE_SERVICEDESK_")}
        full_env.update(env)
        if module is None:  # the product ignores SIDECAR_TEST_*: only the test launcher installs seams
            module = "tests.sidecar.seamed" if "SIDECAR_TEST_CRASH_POINT" in env else "sidecar"
        if module.startswith("tests."):
            full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line.rstrip("\n"), "unparsed": True})
        return out

    def wait_for_log(self, msg: str, timeout: float = 60.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None and not any(r.get("msg") == msg for r in self.records()):
                raise AssertionError(f"sidecar exited ({self.proc.returncode}) before logging {msg!r}: {self.text()}")
            return next((r for r in self.records() if r.get("msg") == msg), None)

        return wait_until(found, timeout=timeout, what=f"log line {msg!r}")

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            tail = "".join(self.lines[-40:])
            raise AssertionError(f"sidecar still running {timeout}s after SIGTERM; last log lines:\n{tail}") from None
        self._reader.join(timeout=5)
        return code

    def text(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        """SIGKILL if still running, then release the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
