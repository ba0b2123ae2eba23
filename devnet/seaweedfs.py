"""The pinned SeaweedFS binary and a throwaway S3-compatible server on loopback, for the artifact store tests.

`ensure_seaweedfs()` builds `weed` at a pinned module version into ~/.cache when missing. `go install
...@version` refuses this module (its go.mod has replace directives), so the module is fetched with
`go mod download` and built from the module cache. `SeaweedS3` runs `weed server -s3` (master, volume
server, filer and S3 gateway in one process) on free loopback ports, with its data in a home of its own
and one static S3 identity, and waits with deadlines until an S3 write goes through.

    python -m devnet.seaweedfs install     # what `make seaweedfs` runs
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devnet.children import spawn, stop_process
from devnet.gotools import GoToolMissing, ensure_go_tool, install_main, reported_version
from devnet.node_config import PortTaken, free_port, start_on_free_ports
from devnet.waiting import wait_until

SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"  # commit 7506e5f91cd6 of 2026-11-09
SEAWEEDFS_RELEASE = "4.53"  # what that commit's `weed version` reports (weed/util/version/constants.go)
CACHE_DIR = Path.home() / ".cache" / "servicedesk-sidecar" / f"seaweedfs-{SEAWEEDFS_VERSION}"
INSTALL_HINT = (
    f"install it with `make seaweedfs` (runs: go mod download {SEAWEEDFS_MODULE}@{SEAWEEDFS_VERSION}, then "
    f"GOFLAGS=-mod=mod go build -o {CACHE_DIR}/weed ./weed in the module's directory; needs Go >= 1.26.6)"
)
TEST_ACCESS_KEY = "sidecar-test-access"
TEST_SECRET_KEY = "sidecar-test-secret-0123456789abcdef"
PROBE_BUCKET = "devnet-ready"  # start() writes one object here to know writes go through
# What weed logs once its S3 listener holds the port (weed/command/s3.go), and what it logs, without exiting,
# when another process holds it. Until the first line, an answer on the port may come from someone else.
S3_LISTENING = "Start Seaweed S3 API Server"
BIND_REFUSED = "address already in use"


class SeaweedFSMissing(GoToolMissing):
    """No usable weed binary, and building one failed or was not allowed."""


def seaweedfs_path() -> Path:
    return CACHE_DIR / "weed"


def installed_release(binary: Path) -> str | None:
    """The release `weed version` reports ("version 30GB 4.53  linux amd64"), or None if it does not run."""

    def pick(out: str) -> str | None:
        words = out.split()
        return SEAWEEDFS_RELEASE if SEAWEEDFS_RELEASE in words else (words[2] if len(words) > 2 else None)

    return reported_version(binary, pick)


def ensure_seaweedfs(*, install: bool = True, timeout: float = 1200.0, attempts: int = 2) -> Path:
    """Return the cached binary, building it first when missing (download and build can take many minutes)."""
    binary = seaweedfs_path()
    return ensure_go_tool(
        binary,
        SEAWEEDFS_RELEASE,
        installed_release,
        lambda go, timeout: _build(go, binary, timeout),
        missing=SeaweedFSMissing,
        hint=INSTALL_HINT,
        install=install,
        timeout=timeout,
        attempts=attempts,
    )


def _build(go: str, binary: Path, timeout: float) -> None:
    """`go mod download` the pinned module, build ./weed in its directory, move the binary in place."""
    flags = " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-mod=mod"]))  # go.mod's replace directives
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": flags}
    download = subprocess.run(
        [go, "mod", "download", "-json", f"{SEAWEEDFS_MODULE}@{SEAWEEDFS_VERSION}"],
        env=env, cwd=CACHE_DIR, check=True, timeout=timeout, capture_output=True, text=True,
    )  # fmt: skip
    info = json.loads(download.stdout)
    if info.get("Error") or not info.get("Dir"):
        raise ValueError(f"`go mod download -json` gave no module directory ({info.get('Error', 'no Dir')})")
    partial = binary.with_name(f"weed.partial-{os.getpid()}")
    try:
        subprocess.run(
            [go, "build", "-o", str(partial), "./weed"],
            env=env, cwd=info["Dir"], check=True, timeout=timeout, capture_output=True, text=True,
        )  # fmt: skip
        os.replace(partial, binary)
    finally:
        partial.unlink(missing_ok=True)


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    access_key: str,
    secret_key: str,
    extra: dict[str, str],
    region: str = "us-east-1",
) -> dict[str, str]:
    """AWS Signature Version 4 headers for a path-style S3 request: the devnet's own small signer, so tests
    that set up or tamper with objects do not go through the client under test."""
    parts = urllib.parse.urlsplit(url)
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = hashlib.sha256(body).hexdigest()
    headers = {k.lower(): v.strip() for k, v in extra.items()}
    headers.update({"host": parts.netloc, "x-amz-date": now, "x-amz-content-sha256": payload})
    names = sorted(headers)
    pairs = sorted([*q.split("=", 1), ""][:2] for q in parts.query.split("&") if q)  # already encoded
    query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical = "\n".join([method, parts.path or "/", query, *(f"{n}:{headers[n]}" for n in names), "",
                           ";".join(names), payload])  # fmt: skip
    scope = f"{now[:8]}/{region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{now}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + secret_key).encode()
    for part in (now[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


class SeaweedS3:
    """One `weed server -s3` with a static identity (`access_key`/`secret_key`, all actions) on loopback."""

    def __init__(
        self,
        *,
        binary: Path | None = None,
        home: Path | None = None,
        access_key: str = TEST_ACCESS_KEY,
        secret_key: str = TEST_SECRET_KEY,
    ) -> None:
        self.binary = binary or ensure_seaweedfs(install=False)
        self._own_home = home is None
        # Short: weed puts unix sockets in here, and a socket path has at most 107 bytes.
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="weed-"))
        self.access_key, self.secret_key = access_key, secret_key
        self.ports: dict[str, int] = {}
        self._pick_ports()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._started_once = False
        atexit.register(self.kill)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.home / "weed.log"

    def _pick_ports(self) -> None:
        names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")
        self.ports = {name: free_port() for name in names}

    def _write_identities(self) -> Path:
        config = {
            "identities": [
                {
                    "name": "sidecar",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.home / "s3.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def _args(self) -> list[str]:
        data = self.home / "data"
        data.mkdir(exist_ok=True)
        p = self.ports
        return [
            str(self.binary), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            "-master.peers=none", "-master.resumeState=false", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64", "-volume.max=100",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}", "-volume.preStopSeconds=0",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={self.home / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", f"-s3.config={self._write_identities()}",
            f"-s3.localSocket={self.home / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.autoCreateBucket=false", "-s3.iam=false",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        """Start (or resume after stop) and return once an S3 write goes through.

        A first start whose ports another process took in the meantime picks new ones and tries again;
        a restart keeps its ports (clients hold the endpoint)."""

        def retreat() -> None:
            self.stop()
            self._pick_ports()
            # Nothing was stored yet, and a master on new ports that finds the old one's state freezes volume
            # growth ("volume growth is frozen after master state loss"): the next try starts from empty.
            shutil.rmtree(self.home / "data", ignore_errors=True)

        return start_on_free_ports(lambda: self._start(timeout), retreat, started_once=self._started_once)

    def _start(self, timeout: float) -> SeaweedS3:
        if self.running():
            return self
        since = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        # Every bucket is a collection, which grows 7 volumes on its first write by default; one will do.
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        self._proc = spawn(self._args(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           cwd=str(self.home), env=env)  # fmt: skip

        def ready() -> bool:
            logged = self._log_since(since)
            if not self.running() or BIND_REFUSED in logged.lower():
                return True
            return S3_LISTENING in logged and self._answers("s3", "/healthz") and self._volume_joined()

        wait_until(ready, timeout=timeout, what=f"SeaweedFS S3 at {self.endpoint} and a volume server", interval=0.1)
        refused = BIND_REFUSED in self._log_since(since).lower()
        if refused or not self.running():
            # weed logs a port it cannot bind and keeps running without that server, while the port's holder
            # (another weed, with the same test keys) would answer in its place: stopped here, not used.
            tail = self.log_tail()
            self.stop()
            raise (PortTaken if refused else RuntimeError)(f"weed server could not start; log tail:\n{tail}")
        # Object writes take a filer lock, served only once the filer has joined the master's lock ring
        # (seconds after S3 answers); until then a PUT blocks. One real write says the path is open.
        self.request("PUT", f"/{PROBE_BUCKET}", ok=(200, 409))
        self.request("PUT", f"/{PROBE_BUCKET}/ready", b"ready", timeout=timeout)
        self._started_once = True
        return self

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """One S3 request signed with this server's identity (SigV4, region us-east-1): for set-up, and for
        tests that change objects behind a client's back. `path` is /bucket[/key], already URL-encoded."""
        url = self.endpoint + path
        signed = sigv4_headers(method, url, body, self.access_key, self.secret_key, headers or {})
        request = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                         headers=signed)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, answer = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, answer = exc.code, exc.read()
        if status not in ok:
            raise RuntimeError(f"S3 {method} {path} answered {status}: {answer[:500]!r}")
        return status, answer

    def _answers(self, service: str, path: str) -> bool:
        url = f"http://127.0.0.1:{self.ports[service]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _volume_joined(self) -> bool:
        """The master knows a volume server with free slots, so the first write can grow volumes."""
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return int(status.get("Topology", {}).get("Max", 0)) > 0

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (weed shuts its servers down in order), SIGKILL after `timeout`."""
        try:
            stop_process(self._proc, signal.SIGTERM, timeout)
        finally:
            self._close_log()

    def pause(self) -> None:
        """SIGSTOP: the ports stay open but nothing answers, as with a hung server."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost server would."""
        try:
            stop_process(self._proc, signal.SIGKILL, 10)
        finally:
            self._close_log()

    def cleanup(self) -> None:
        """Stop and, if this server made its home, delete it."""
        self.stop()
        atexit.unregister(self.kill)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _close_log(self) -> None:
        """Once weed is gone: close its log and remove the unix sockets it keeps in /tmp under fixed names
        (a SIGKILLed weed leaves them behind)."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if not self.running():
            for service in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{service}-grpc-{self.ports[f'{service}.grpc']}.sock").unlink(missing_ok=True)

    def _log_since(self, offset: int) -> str:
        """What weed has logged since byte `offset` (this start's lines, not an earlier run's)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def main(argv: list[str] | None = None) -> int:
    return install_main(argv, "devnet.seaweedfs", ensure_seaweedfs)


if __name__ == "__main__":
    sys.exit(main())
