"""The pinned CometBFT binary and a single-validator devnet node driving devnet.chain_app.

`ensure_cometbft()` installs v0.38.25 with `go install` into ~/.cache when missing (never @latest).
`DevnetNode` gives each run a fresh home, free loopback ports and fast blocks, runs the ABCI app and
cometbft as two subprocesses (logs in the home) and waits with deadlines, never plain sleeps.

    python -m devnet.cometbft install     # what `make cometbft` runs
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devnet.children import python_env, spawn, stop_process
from devnet.gotools import GoToolMissing, ensure_go_tool, install_main, reported_version
from devnet.node_config import PortTaken, TomlValue, edit_config, free_port, start_on_free_ports, write_genesis
from devnet.waiting import wait_until

COMETBFT_VERSION = "0.38.25"
COMETBFT_MODULE = "github.com/cometbft/cometbft/cmd/cometbft"
CACHE_DIR = Path.home() / ".cache" / "servicedesk-sidecar" / f"cometbft-v{COMETBFT_VERSION}" / "bin"
INSTALL_HINT = (f"install it with `make cometbft` (runs: GOTOOLCHAIN=local GOBIN={CACHE_DIR} "
                f"go install {COMETBFT_MODULE}@v{COMETBFT_VERSION}; needs Go >= 1.22.11)")
DEFAULT_CHAIN_ID = "virtengine-devnet-1"


class CometBFTMissing(GoToolMissing):
    """No usable cometbft binary, and installing one failed or was not allowed."""


def cometbft_path() -> Path:
    return CACHE_DIR / "cometbft"


def installed_version(binary: Path) -> str | None:
    return reported_version(binary, lambda out: out.strip())


def ensure_cometbft(*, install: bool = True, timeout: float = 900.0, attempts: int = 2) -> Path:
    """Return the cached v0.38.25 binary, building it with `go install` first when missing."""

    def build(go: str, timeout: float) -> None:
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOBIN": str(CACHE_DIR), "CGO_ENABLED": "0"}
        subprocess.run([go, "install", f"{COMETBFT_MODULE}@v{COMETBFT_VERSION}"], env=env, check=True,
                       timeout=timeout, capture_output=True, text=True)

    return ensure_go_tool(cometbft_path(), COMETBFT_VERSION, installed_version, build, missing=CometBFTMissing,
                          hint=INSTALL_HINT, install=install, timeout=timeout, attempts=attempts)


class DevnetNode:
    """One validator: `python -m devnet.chain_app` + `cometbft start`, in a home of its own.

    Options for follower tests: `discard_abci_responses` (no old block_results), `retain_blocks`
    (the app's Commit retain_height prunes old blocks), `close_on_slow_client` (websocket)."""

    def __init__(
        self, app_state: dict[str, Any], *, chain_id: str = DEFAULT_CHAIN_ID, home: Path | None = None,
        binary: Path | None = None, timeout_commit: str = "200ms", discard_abci_responses: bool = False,
        retain_blocks: int = 0, close_on_slow_client: bool = False, max_subscriptions_per_client: int = 100,
        max_subscription_clients: int = 200, archive_after: int | None = None, purge_after: int | None = None,
        log_level: str = "info", config: dict[tuple[str, str], TomlValue] | None = None,
    ) -> None:
        self.app_state = app_state
        self.chain_id = chain_id
        self.binary = binary or ensure_cometbft(install=False)
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="devnet-node-"))
        self.rpc_port, self.p2p_port, self.abci_port = free_port(), free_port(), free_port()
        self.retain_blocks = retain_blocks
        self.archive_after, self.purge_after = archive_after, purge_after
        self.settings: dict[tuple[str, str], TomlValue] = {
            ("", "proxy_app"): f"tcp://127.0.0.1:{self.abci_port}",
            ("", "moniker"): "devnet",
            ("", "log_level"): log_level,
            ("rpc", "laddr"): f"tcp://127.0.0.1:{self.rpc_port}",
            ("rpc", "max_subscription_clients"): max_subscription_clients,
            ("rpc", "max_subscriptions_per_client"): max_subscriptions_per_client,
            ("rpc", "experimental_close_on_slow_client"): close_on_slow_client,
            ("rpc", "timeout_broadcast_tx_commit"): "20s",
            ("p2p", "laddr"): f"tcp://127.0.0.1:{self.p2p_port}",
            ("p2p", "pex"): False,
            ("p2p", "addr_book_strict"): False,
            ("p2p", "allow_duplicate_ip"): True,
            ("consensus", "timeout_commit"): timeout_commit,
            ("consensus", "timeout_propose"): "1s",
            ("consensus", "create_empty_blocks"): True,
            ("storage", "discard_abci_responses"): discard_abci_responses,
            ("tx_index", "indexer"): "kv",
            ("instrumentation", "prometheus"): False,
            **(config or {}),
        }
        self._app: subprocess.Popen[bytes] | None = None
        self._node: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self._started_once = False
        self._logs: list[Any] = []
        atexit.register(self.kill)

    # -- addresses ----------------------------------------------------------------------------
    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.rpc_port}/websocket"

    @property
    def abci_address(self) -> str:
        return f"tcp://127.0.0.1:{self.abci_port}"

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in (("chain_app", self._app), ("cometbft", self._node)) if p is not None}

    @property
    def app_log(self) -> Path:
        return self.home / "chain_app.log"

    @property
    def node_log(self) -> Path:
        return self.home / "cometbft.log"

    # -- lifecycle ----------------------------------------------------------------------------
    def _init_home(self) -> None:
        subprocess.run([str(self.binary), "init", "--home", str(self.home)], check=True, capture_output=True,
                       timeout=60)
        write_genesis(self.home, self.chain_id, self.app_state)
        edit_config(self.home, self.settings)
        self._initialised = True

    def _spawn(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """A session of its own (a terminal's Ctrl-C is for our owner, who stops us in order), and
        SIGKILLed by the kernel if the process that started it dies (see devnet.children)."""
        log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self._logs.append(log)
        return spawn(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=python_env(),
                     cwd=str(self.home))

    def start(self, timeout: float = 60.0) -> DevnetNode:
        """Start (or, after stop/kill, resume) the app and the node; return when height >= 1.

        `free_port` only knows a port was free a moment ago: on a busy machine another process can take
        it before the node binds it. A first start that fails that way picks new ports and tries again;
        a restart keeps its ports (clients hold its URLs)."""

        def retreat() -> None:
            self.stop()
            self._pick_ports()
            edit_config(self.home, self.settings)

        return start_on_free_ports(lambda: self._start(timeout), retreat, started_once=self._started_once)

    def _pick_ports(self) -> None:
        self.rpc_port, self.p2p_port, self.abci_port = free_port(), free_port(), free_port()
        self.settings.update({
            ("", "proxy_app"): f"tcp://127.0.0.1:{self.abci_port}",
            ("rpc", "laddr"): f"tcp://127.0.0.1:{self.rpc_port}",
            ("p2p", "laddr"): f"tcp://127.0.0.1:{self.p2p_port}",
        })

    def _start(self, timeout: float) -> DevnetNode:
        if self.running():
            return self
        self.stop()  # a half-started pair (one process died) is cleaned up first
        self._app = self._node = None
        if not self._initialised:
            self._init_home()
        app_args = [sys.executable, "-m", "devnet.chain_app", "--listen", self.abci_address,
                    "--state-dir", str(self.home / "app"), "--retain-blocks", str(self.retain_blocks)]
        if self.archive_after is not None:
            app_args += ["--archive-after", str(self.archive_after)]
        if self.purge_after is not None:
            app_args += ["--purge-after", str(self.purge_after)]
        self._app = self._spawn(app_args, self.app_log)
        self._await(self._abci_listening, timeout, "the chain app to listen on " + self.abci_address)
        self._node = self._spawn([str(self.binary), "start", "--home", str(self.home)], self.node_log)
        self._await(lambda: self.height() >= 1 and self.app_height() >= 1, timeout,
                    f"cometbft RPC {self.rpc_url} at height >= 1, committed by the app")
        self._started_once = True
        return self

    def _abci_listening(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.abci_port), timeout=1):
            return True

    def _await(self, ready: Any, timeout: float, what: str) -> None:
        def condition() -> bool:
            return bool(self._dead() or ready())

        wait_until(condition, timeout=timeout, what=what, interval=0.05)
        dead = self._dead()
        if dead:
            tail = self.log_tail(dead)
            error = PortTaken if "address already in use" in tail.lower() else RuntimeError
            raise error(f"{dead} exited during start-up; log tail:\n{tail}")

    def _dead(self) -> str | None:
        for name, proc in (("chain_app", self._app), ("cometbft", self._node)):
            if proc is not None and proc.poll() is not None:
                return name
        return None

    def log_tail(self, which: str = "cometbft", lines: int = 30) -> str:
        path = self.app_log if which == "chain_app" else self.node_log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self._app, self._node))

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful: SIGTERM cometbft first (it stops calling the app), then the app; SIGKILL either
        that is still running after `timeout`. The app is stopped even if stopping the node failed."""
        try:
            stop_process(self._node, signal.SIGTERM, timeout)
        finally:
            stop_process(self._app, signal.SIGTERM, timeout)
            self._close_logs()

    def kill(self) -> None:
        """SIGKILL both processes, as a crash would."""
        try:
            stop_process(self._node, signal.SIGKILL, 10)
        finally:
            stop_process(self._app, signal.SIGKILL, 10)
            self._close_logs()

    def restart(self, *, hard: bool = False, timeout: float = 60.0) -> DevnetNode:
        """Stop (or SIGKILL with hard=True) and start again on the same home, ports and app state."""
        (self.kill if hard else self.stop)()
        return self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Stop and, if this node made its home, delete it."""
        self.stop()
        atexit.unregister(self.kill)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _close_logs(self) -> None:
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> DevnetNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- RPC helpers --------------------------------------------------------------------------
    def rpc(self, method: str, timeout: float = 10.0, **params: Any) -> Any:
        """One JSON-RPC call (POST); return `result` or raise RuntimeError carrying the RPC error.
        Integers are sent as strings, as CometBFT's JSON for int64 requires. (urllib, not httpx: a new
        httpx client costs ~60 ms of TLS setup, which would dominate tests that poll.)"""
        fixed = {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in params.items()}
        payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": fixed}).encode()
        request = urllib.request.Request(self.rpc_url, data=payload, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # CometBFT answers JSON-RPC errors with HTTP 500 too
            with exc:
                body = json.loads(exc.read())
        if "error" in body:
            raise RuntimeError(f"RPC {method} failed: {body['error']}")
        return body["result"]

    def height(self) -> int:
        return int(self.rpc("status", timeout=2)["sync_info"]["latest_block_height"])

    def app_height(self) -> int:
        """The app's last committed height (abci_info): block_store height can run one ahead of it."""
        return int(self.rpc("abci_info", timeout=2)["response"].get("last_block_height", 0))

    def wait_for_height(self, height: int, timeout: float = 30.0) -> int:
        return wait_until(lambda: (h := self.height()) >= height and h, timeout=timeout,
                          what=f"height {height}")


def main(argv: list[str] | None = None) -> int:
    return install_main(argv, "devnet.cometbft", ensure_cometbft)


if __name__ == "__main__":
    sys.exit(main())
