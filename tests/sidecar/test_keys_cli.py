"""`servicedesk-sidecar keys show`: the address and public key, never the private part."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from devnet.keys import TestAccount
from sidecar.cli import main

HEX = hashlib.sha256(b"devnet-account:sidecar").hexdigest()
MNEMONIC = "abandon " * 11 + "about"


def config_with_key(tmp_path: Path, secret: str, mode: int = 0o600) -> Path:
    key = tmp_path / "signing.key"
    key.write_text(secret)
    key.chmod(mode)
    config = tmp_path / "config.yaml"
    config.write_text(f"servicedesk:\n  chain:\n    key_file: {key}\n")
    return config


def test_keys_show_prints_address_and_public_key_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account = TestAccount.from_name("sidecar")
    assert main(["keys", "show", "--config", str(config_with_key(tmp_path, HEX))]) == 0
    out, err = capsys.readouterr()
    assert f"address: {account.address}" in out
    assert bytes(account.key.public_key.public_key_bytes).hex() in out
    assert HEX not in out + err and HEX.upper() not in out + err


def test_keys_show_with_a_mnemonic_never_prints_its_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTENGINE_SERVICEDESK_SIGNING_KEY", MNEMONIC)
    assert main(["keys", "show"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("address: virtengine1") and "abandon" not in out + err


def test_keys_show_refuses_a_loose_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_with_key(tmp_path, HEX, 0o644)
    assert main(["keys", "show", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {tmp_path / 'signing.key'}" in err and HEX not in err
