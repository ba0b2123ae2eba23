"""Who may steer the control API, over a real grpc.aio server with a real store: TLS and tokens, mTLS,
the refusal to expose an unprotected address, the unix socket, the rate limit, and the audit of callers.

Certificates are made here with the `openssl` command line: a CA, a server certificate for 127.0.0.1
(and this machine's non-loopback address), a client certificate, and a client from another CA.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from virtengine.servicedesk.v1 import control_pb2, control_pb2_grpc

from sidecar.config import load_config
from sidecar.control.auth import MUTATING_BURST, REFUSALS_AUDITED_BURST, ControlSecurity
from sidecar.control.deps import ControlDeps
from sidecar.control.dial import DialOptions, call_metadata, open_aio_channel
from sidecar.control.server import ControlServer
from sidecar.errors import ConfigError
from sidecar.observe.audit import Auditor
from sidecar.observe.health import HealthState
from sidecar.secrets import Secret
from sidecar.store.db import Store
from tests.sidecar.control.kit import opened_store, running_server

FULL_TOKEN = "full-token-7f3a9c1e2b"
READ_TOKEN = "read-token-5d8e0a4f6c"
ROOT = Path(__file__).resolve().parents[3]


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other machines could reach, if it has one."""
    candidates: list[str] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates += subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    with contextlib.suppress(OSError):
        candidates += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    for address in candidates:
        if "." in address and not address.startswith("127."):
            with contextlib.suppress(OSError), socket.socket() as probe:
                probe.bind((address, 0))  # it really is ours
                return address
    return None


EXTERNAL = non_loopback_ipv4()
NO_EXTERNAL = "this machine has no non-loopback IPv4 address to bind (hostname -I and the host name found none)"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_leaf(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
    ext.write_text(extensions + "\nbasicConstraints=CA:FALSE\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue_ca = make_ca(folder, "test-ca"), make_ca(folder, "rogue-ca")
    ips = ",".join(f"IP:{ip}" for ip in ("127.0.0.1", EXTERNAL) if ip)
    server = make_leaf(folder, "sidecar", ca, f"subjectAltName={ips}\nextendedKeyUsage=serverAuth")
    client = make_leaf(folder, "operator-alice", ca, "extendedKeyUsage=clientAuth")
    rogue = make_leaf(folder, "mallory", rogue_ca, "extendedKeyUsage=clientAuth")
    return Pki(ca[0], *server, *client, *rogue)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, listen: str, security: ControlSecurity) -> AsyncIterator[ControlServer]:
    async with opened_store(tmp_path / "sidecar.db") as store:
        async with running_server(ControlDeps(store, HealthState(), Auditor(store)), listen, security) as server:
            yield server


async def call(options: DialOptions, method: str, request: object) -> grpc.StatusCode:
    """One call's status code (OK when it answered)."""
    async with open_aio_channel(options) as channel:
        stub = control_pb2_grpc.ControlStub(channel)
        try:
            await getattr(stub, method)(request, metadata=call_metadata(options), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


STATUS = ("GetStatus", control_pb2.GetStatusRequest())
REDRIVE = ("RedriveJob", control_pb2.RedriveJobRequest(all_dead=True))  # mutating; audits even with nothing dead


def audit_rows(tmp_path: Path) -> list[tuple[str, str, str, str | None, str]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "sidecar.db")) as conn:
        rows = conn.execute("SELECT event_type, actor, status, error, details_json FROM audit ORDER BY id").fetchall()
    return [tuple(row) for row in rows]


def assert_no_token_in_audit(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "sidecar.db")) as conn:
        dump = "\n".join(conn.iterdump())
    assert FULL_TOKEN not in dump and READ_TOKEN not in dump


def tokens(pki: Pki, client_ca: str = "") -> ControlSecurity:
    return ControlSecurity(
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        client_ca=client_ca,
        token=Secret(FULL_TOKEN, "test"),
        read_token=Secret(READ_TOKEN, "test"),
    )


async def test_tls_with_tokens_names_the_caller_and_refuses_the_rest(pki: Pki, tmp_path: Path) -> None:
    async with serving(tmp_path, "127.0.0.1:0", tokens(pki)) as server:
        dial = DialOptions(f"127.0.0.1:{server.port}", tls_ca=str(pki.ca))
        full = DialOptions(dial.address, tls_ca=dial.tls_ca, token=FULL_TOKEN)
        read = DialOptions(dial.address, tls_ca=dial.tls_ca, token=READ_TOKEN)
        wrong = DialOptions(dial.address, tls_ca=dial.tls_ca, token=FULL_TOKEN[:-1] + "x")
        assert await call(full, *STATUS) == grpc.StatusCode.OK
        assert await call(full, *REDRIVE) == grpc.StatusCode.OK
        assert await call(read, *STATUS) == grpc.StatusCode.OK
        assert await call(read, *REDRIVE) == grpc.StatusCode.PERMISSION_DENIED
        for options in (dial, wrong):
            assert await call(options, *STATUS) == grpc.StatusCode.UNAUTHENTICATED
            assert await call(options, *REDRIVE) == grpc.StatusCode.UNAUTHENTICATED
        assert await call(DialOptions(dial.address, token=FULL_TOKEN), *STATUS) == grpc.StatusCode.UNAVAILABLE

        async with open_aio_channel(dial) as channel:  # a server stream goes through the same check
            stream = control_pb2_grpc.ControlStub(channel).WatchEvents(control_pb2.WatchEventsRequest(), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stream.read()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ask = control_pb2.WatchEventsRequest(kinds=["no-such-kind"])  # admitted: the servicer judges it
            stream = control_pb2_grpc.ControlStub(channel).WatchEvents(ask, metadata=call_metadata(read), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as judged:
                await stream.read()
            assert judged.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    rows = audit_rows(tmp_path)
    assert [(r[0], r[1]) for r in rows if r[0] == "jobs_redriven"] == [("jobs_redriven", "token:grpc-token")]
    refused_rows = [(r[1], r[2], json.loads(r[4])["method"]) for r in rows if r[0] == "control_refused"]
    assert refused_rows[0] == ("token:grpc-read-token", "permission_denied", "RedriveJob")
    assert [(status, method) for _, status, method in refused_rows[1:]] == [
        ("unauthenticated", "GetStatus"),
        ("unauthenticated", "RedriveJob"),
        ("unauthenticated", "GetStatus"),
        ("unauthenticated", "RedriveJob"),
        ("unauthenticated", "WatchEvents"),
    ]
    assert all(who.startswith("peer:ipv4:127.0.0.1:") for who, _, _ in refused_rows[1:])
    assert_no_token_in_audit(tmp_path)


async def test_mtls_names_the_caller_by_certificate_and_refuses_other_cas(pki: Pki, tmp_path: Path) -> None:
    security = ControlSecurity(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), client_ca=str(pki.ca))
    async with serving(tmp_path, "127.0.0.1:0", security) as server:
        address = f"127.0.0.1:{server.port}"
        alice = DialOptions(address, tls_ca=str(pki.ca), tls_cert=str(pki.client_cert), tls_key=str(pki.client_key))
        mallory = DialOptions(address, tls_ca=str(pki.ca), tls_cert=str(pki.rogue_cert), tls_key=str(pki.rogue_key))
        assert await call(alice, *REDRIVE) == grpc.StatusCode.OK
        assert await call(alice, *STATUS) == grpc.StatusCode.OK
        assert await call(mallory, *REDRIVE) == grpc.StatusCode.UNAVAILABLE  # the handshake refuses it
        assert await call(DialOptions(address, tls_ca=str(pki.ca)), *STATUS) == grpc.StatusCode.UNAVAILABLE
    assert [(r[0], r[1]) for r in audit_rows(tmp_path)] == [("jobs_redriven", "cert:operator-alice")]


async def test_with_certificates_and_tokens_both_are_needed(pki: Pki, tmp_path: Path) -> None:
    async with serving(tmp_path, "127.0.0.1:0", tokens(pki, client_ca=str(pki.ca))) as server:
        cert = {"tls_ca": str(pki.ca), "tls_cert": str(pki.client_cert), "tls_key": str(pki.client_key)}
        address = f"127.0.0.1:{server.port}"
        assert await call(DialOptions(address, **cert), *STATUS) == grpc.StatusCode.UNAUTHENTICATED
        assert await call(DialOptions(address, token=READ_TOKEN, **cert), *STATUS) == grpc.StatusCode.OK
        read_redrive = await call(DialOptions(address, token=READ_TOKEN, **cert), *REDRIVE)
        assert read_redrive == grpc.StatusCode.PERMISSION_DENIED
        assert await call(DialOptions(address, token=FULL_TOKEN, **cert), *REDRIVE) == grpc.StatusCode.OK
    rows = audit_rows(tmp_path)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("control_refused", "cert:operator-alice", "unauthenticated"),
        ("control_refused", "cert:operator-alice", "permission_denied"),
        ("jobs_redriven", "cert:operator-alice", "ok"),
    ]
    assert_no_token_in_audit(tmp_path)


def start_sidecar(tmp_path: Path, *flags: str, secrets_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`servicedesk-sidecar run` with these flags, as an operator starts it (it must refuse, so it ends)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTENGINE_SERVICEDESK_")}
    env["VIRTENGINE_SERVICEDESK_STORE_PATH"] = str(tmp_path / "refused.db")
    if secrets_dir is not None:
        env["VIRTENGINE_SERVICEDESK_SECRETS_DIR"] = str(secrets_dir)
    argv = [sys.executable, "-m", "sidecar", "run", "--webhook-listen", "127.0.0.1:0", *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


@pytest.mark.skipif(EXTERNAL is None, reason=NO_EXTERNAL)
async def test_a_non_loopback_bind_needs_tls_and_client_certificates_or_a_token(pki: Pki, tmp_path: Path) -> None:
    listen = f"{EXTERNAL}:0"
    plain = start_sidecar(tmp_path, "--grpc-listen", listen)
    assert plain.returncode == 2
    assert "grpc.listen" in plain.stderr and "TLS (grpc.tls_cert and grpc.tls_key)" in plain.stderr
    tls = ("--grpc-tls-cert", str(pki.server_cert), "--grpc-tls-key", str(pki.server_key))
    tls_only = start_sidecar(tmp_path, "--grpc-listen", listen, *tls)
    assert tls_only.returncode == 2
    assert "grpc.listen" in tls_only.stderr and "TLS (" not in tls_only.stderr
    assert "client certificates (grpc.client_ca) or the secret grpc_token" in tls_only.stderr
    assert not (tmp_path / "refused.db").exists()  # refused before anything was opened

    store = await Store.open(str(tmp_path / "sidecar.db"))
    with pytest.raises(ConfigError) as refused:  # whoever builds the server, not only the config loader
        ControlServer(listen, ControlDeps(store, HealthState()))
    assert refused.value.path == "grpc.listen"

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "grpc-token").write_text(FULL_TOKEN + "\n")
    (secrets / "grpc-token").chmod(0o600)
    flags = {"grpc.listen": listen, "grpc.tls_cert": str(pki.server_cert), "grpc.tls_key": str(pki.server_key)}
    config = load_config(environ={"VIRTENGINE_SERVICEDESK_SECRETS_DIR": str(secrets)}, flags=flags)
    with_ca = load_config(environ={}, flags={**flags, "grpc.client_ca": str(pki.ca)})
    assert with_ca.settings.grpc.client_ca == str(pki.ca)  # certificates alone are enough too
    deps = ControlDeps(store, HealthState(), Auditor(store))
    server = ControlServer.from_settings(config.settings, config.secrets, deps)
    await server.start()
    try:
        options = DialOptions(f"{EXTERNAL}:{server.port}", tls_ca=str(pki.ca), token=FULL_TOKEN)
        assert await call(options, *REDRIVE) == grpc.StatusCode.OK
        bare = DialOptions(options.address, tls_ca=str(pki.ca))
        assert await call(bare, *STATUS) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)
        await store.close()
    redriven, refused_bare = audit_rows(tmp_path)[-2:]
    assert redriven[:2] == ("jobs_redriven", "token:grpc-token")
    assert refused_bare[0] == "control_refused" and refused_bare[1].startswith(f"peer:ipv4:{EXTERNAL}:")
    assert_no_token_in_audit(tmp_path)


async def test_unix_socket_is_private_and_serves(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX)  # a crash leaves the file behind with nobody listening
    stale.bind(str(path))
    stale.close()
    assert stat.S_ISSOCK(path.stat().st_mode)
    listen = f"unix://{path}"
    async with serving(tmp_path, listen, ControlSecurity()) as server:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await call(DialOptions(listen), *STATUS) == grpc.StatusCode.OK
        assert await call(DialOptions(listen), *REDRIVE) == grpc.StatusCode.OK
        with pytest.raises(OSError, match="another process is listening"):  # a live socket is not taken over
            ControlServer(listen, ControlDeps(server.service.deps.store, HealthState()))  # same store: never used
        assert await call(DialOptions(listen), *STATUS) == grpc.StatusCode.OK
    assert not path.exists()  # removed on stop
    assert [(r[0], r[1]) for r in audit_rows(tmp_path)] == [("jobs_redriven", "unix")]

    # A missing directory passes `config check` (systemd's RuntimeDirectory= makes it at start) and is refused
    # when the server binds, naming the key.
    absent = f"unix://{tmp_path}/absent/control.sock"
    assert load_config(environ={}, flags={"grpc.listen": absent}).settings.grpc.listen == absent
    with pytest.raises(ConfigError) as missing:
        ControlServer(absent, ControlDeps(server.service.deps.store, HealthState()))
    assert missing.value.path == "grpc.listen" and "absent is not a directory" in missing.value.problem


async def test_mutating_calls_are_rate_limited_and_refusals_audited_at_a_bounded_rate(tmp_path: Path) -> None:
    async with serving(tmp_path, "127.0.0.1:0", ControlSecurity(mutating_rate=0.01)) as server:
        options = DialOptions(f"127.0.0.1:{server.port}")
        async with open_aio_channel(options) as channel:
            stub = control_pb2_grpc.ControlStub(channel)
            for _ in range(MUTATING_BURST):
                await stub.RedriveJob(REDRIVE[1], timeout=10)
            flood = 3 * REFUSALS_AUDITED_BURST
            for _ in range(flood):
                with pytest.raises(grpc.aio.AioRpcError) as limited:
                    await stub.RedriveJob(REDRIVE[1], timeout=10)
                assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await stub.GetStatus(STATUS[1], timeout=10)  # reads are not limited
    rows = audit_rows(tmp_path)
    assert sum(r[0] == "jobs_redriven" for r in rows) == MUTATING_BURST
    refused = [r for r in rows if r[0] == "control_refused"]
    assert REFUSALS_AUDITED_BURST <= len(refused) <= REFUSALS_AUDITED_BURST + 2 < flood
    assert {(r[1].split(":")[0], r[2], json.loads(r[4])["method"]) for r in refused} == {
        ("peer", "resource_exhausted", "RedriveJob")
    }
