"""Files are private (issue 12, item 6): the database, its WAL/SHM and audit exports are 0600, files holding
secrets are refused when group or others can read them, and a process holding a secret cannot dump core."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.waiting import wait_until
from sidecar.config import load_config
from sidecar.errors import ConfigError
from sidecar.store.db import Store
from tests.sidecar.fake_vault import fake_vault
from tests.sidecar.observe.support import running_sidecar, sidecar_env
from tests.sidecar.process import ROOT

WEBHOOK_SECRET = "KNOWN-hook-secret-0a9f"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Files a process creates would be group/world readable unless it makes them private itself."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def secrets_dir(tmp_path: Path, file_mode: int = 0o600) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    secret = directory / "jira-webhook-secret"
    secret.write_text(WEBHOOK_SECRET + "\n")
    secret.chmod(file_mode)
    return directory


async def test_the_store_creates_its_files_private_and_tightens_an_old_loose_one(
    tmp_path: Path, loose_umask: None
) -> None:
    fresh = tmp_path / "fresh" / "sidecar.db"
    store = await Store.open(str(fresh))
    try:
        files = [fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")]
        assert all(f.exists() for f in files), "WAL mode keeps -wal and -shm while open"
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(fresh.parent) == 0o700
    finally:
        await store.close()

    old = tmp_path / "old.db"
    sqlite3.connect(old).close()
    old.chmod(0o644)
    store = await Store.open(str(old))
    try:
        assert mode(old) == 0o600
        assert mode(Path(f"{old}-wal")) == 0o600
    finally:
        await store.close()


def core_limit(pid: int) -> tuple[str, str]:
    """The soft and hard RLIMIT_CORE of a running process, as /proc/<pid>/limits shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
def test_a_real_run_keeps_database_wal_and_exports_private_and_cannot_dump_core(
    tmp_path: Path, loose_umask: None
) -> None:
    env = sidecar_env(tmp_path, VIRTENGINE_SERVICEDESK_SECRETS_DIR=str(secrets_dir(tmp_path)))
    db = Path(env["VIRTENGINE_SERVICEDESK_STORE_PATH"])
    with running_sidecar(tmp_path, env) as (proc, _http):
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        wait_until(lambda: all(f.exists() for f in files), timeout=30, what="the database and its WAL/SHM")
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert core_limit(proc.proc.pid) == ("0", "0")  # a secret is loaded: no core file can hold it

    export = tmp_path / "audit.jsonl"
    stale = tmp_path / "audit-again.jsonl"
    stale.write_text("an older export\n")
    stale.chmod(0o644)
    for target in (export, stale):
        done = subprocess.run(
            [sys.executable, "-m", "sidecar", "audit", "export", "--since", "1h", "--output", str(target)],
            env={**os.environ, "VIRTENGINE_SERVICEDESK_STORE_PATH": str(db)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        assert any(row["event_type"] == "config_loaded" for row in rows)
        assert mode(target) == 0o600, target.name


@pytest.mark.parametrize("file_mode", [0o640, 0o604, 0o660])
def test_a_secrets_file_others_can_read_is_refused_naming_the_file(tmp_path: Path, file_mode: int) -> None:
    directory = secrets_dir(tmp_path, file_mode)
    with pytest.raises(ConfigError) as info:
        load_config(environ={"VIRTENGINE_SERVICEDESK_SECRETS_DIR": str(directory)})
    message = str(info.value)
    assert info.value.path == "secrets.dir"
    assert str(directory / "jira-webhook-secret") in message
    assert f"mode {file_mode:03o}" in message and "chmod 600" in message
    assert WEBHOOK_SECRET not in message


def test_a_vault_token_file_others_can_read_is_refused_naming_the_file(tmp_path: Path) -> None:
    token_file = tmp_path / "vault-token"
    token_file.write_text("s.vault-token-5678\n")
    token_file.chmod(0o644)
    with fake_vault("s.vault-token-5678", "secret", "virtengine/servicedesk", {"waldur_token": "w"}) as addr:
        env = {
            "VIRTENGINE_SERVICEDESK_SECRETS_VAULT_ADDR": addr,
            "VIRTENGINE_SERVICEDESK_SECRETS_VAULT_TOKEN_FILE": str(token_file),
        }
        with pytest.raises(ConfigError) as info:
            load_config(environ=env)
        assert info.value.path == "secrets.vault.token_file"
        assert f"{token_file} is accessible by group or others (mode 644)" in str(info.value)
        assert "s.vault-token-5678" not in str(info.value)
        token_file.chmod(0o600)  # the fix the message names is enough
        assert load_config(environ=env).secret("waldur_token") is not None


# Runs in a child: prctl's flag is per process and reset by exec, so the child starts dumpable.
_CHILD = """
import ctypes, json, os, resource, sys
from sidecar.config import load_config
libc = ctypes.CDLL(None)
before = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
env = json.loads(sys.argv[1])
config = load_config(environ=env)
if "KEY_FILE" in sys.argv[2:]:
    from sidecar.chain.keys import load_signing_key
    load_signing_key(config.settings.chain, config.secrets)
print(json.dumps({"before": before, "after": libc.prctl(3, 0, 0, 0, 0),
                  "core": list(resource.getrlimit(resource.RLIMIT_CORE)), "secrets": sorted(config.secrets)}))
"""


def _load_in_child(env: dict[str, str], *flags: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(env), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_DUMPABLE) is Linux")
@pytest.mark.parametrize("source", ["secrets_dir", "environment", "key_file"])
def test_loading_any_secret_makes_the_process_undumpable(tmp_path: Path, source: str) -> None:
    env: dict[str, str] = {}
    flags: list[str] = []
    if source == "secrets_dir":
        env["VIRTENGINE_SERVICEDESK_SECRETS_DIR"] = str(secrets_dir(tmp_path))
    elif source == "environment":
        env["VIRTENGINE_SERVICEDESK_JIRA_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    else:
        key = tmp_path / "signing.key"
        key.write_text("ab" * 32)
        key.chmod(0o600)
        env["VIRTENGINE_SERVICEDESK_CHAIN_KEY_FILE"] = str(key)
        flags.append("KEY_FILE")
    seen = _load_in_child(env, *flags)
    assert seen["before"] == 1, "a fresh process is dumpable"
    assert seen["after"] == 0
    assert seen["core"] == [0, 0]


@pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_DUMPABLE) is Linux")
def test_a_process_without_secrets_is_left_dumpable(tmp_path: Path) -> None:
    seen = _load_in_child({"VIRTENGINE_SERVICEDESK_STORE_PATH": str(tmp_path / "x.db")})
    assert seen["secrets"] == []
    assert seen["before"] == 1 and seen["after"] == 1
