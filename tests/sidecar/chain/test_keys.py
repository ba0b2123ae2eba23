"""Key loading: hex and mnemonic, the 0600 rule, masking, and the signer's no-core-dump setup."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from devnet.keys import TestAccount
from sidecar.chain.keys import key_info, load_signing_key, parse_key, read_key_file
from sidecar.chain.txbuild import Account, build_tx, encode_msg
from sidecar.config import load_config
from sidecar.errors import ConfigError
from sidecar.secrets import Secret
from tests.sidecar.chain.signer_kit import FEE, register_msg

# The BIP-39 test mnemonic; its m/44'/118'/0'/0/0 address is the well-known Cosmos test vector.
MNEMONIC = "abandon " * 11 + "about"
MNEMONIC_ADDRESS = "cosmos19rl4cm2hmr8afy4kldpxz3fka4jguq0auqdal4"
HEX = hashlib.sha256(b"devnet-account:sidecar").hexdigest()


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "signing.key"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_hex_key_file_gives_the_devnet_address(tmp_path: Path) -> None:
    key = read_key_file(str(key_file(tmp_path, HEX)), "virtengine")
    assert key.address == TestAccount.from_name("sidecar").address


def test_mnemonic_derives_the_cosmos_path(tmp_path: Path) -> None:
    key = read_key_file(str(key_file(tmp_path, MNEMONIC)), "cosmos")
    assert key.address == MNEMONIC_ADDRESS


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, HEX, mode)
    with pytest.raises(ConfigError) as err:
        read_key_file(str(path), "virtengine")
    assert f"chmod 600 {path}" in str(err.value) and HEX not in str(err.value)


def test_owner_read_only_file_is_accepted(tmp_path: Path) -> None:
    assert read_key_file(str(key_file(tmp_path, HEX, 0o400)), "virtengine").address


def test_bad_key_errors_and_reprs_carry_no_key_material(tmp_path: Path) -> None:
    almost = HEX[:-1] + "z"
    with pytest.raises(ConfigError) as err:
        read_key_file(str(key_file(tmp_path, almost)), "virtengine")
    assert almost not in str(err.value) and almost[:16] not in str(err.value)
    with pytest.raises(ConfigError) as bad_words:
        parse_key(Secret("abandon " * 11 + "notaword", "test"), "virtengine", path="signing_key")
    assert "notaword" not in str(bad_words.value)
    key = parse_key(Secret(HEX, "test"), "virtengine", path="signing_key")
    assert HEX not in repr(key) and HEX not in str(key) and HEX not in repr(key_info(key))
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_signing_key_secret_is_used_without_a_key_file() -> None:
    config = load_config(environ={"VIRTENGINE_SERVICEDESK_SIGNING_KEY": MNEMONIC}, flags={})
    expected = parse_key(Secret(MNEMONIC, "t"), "virtengine", path="x").address
    assert load_signing_key(config.settings.chain, config.secrets).address == expected


def test_no_key_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="chain.key_file"):
        config = load_config(environ={}, flags={})
        load_signing_key(config.settings.chain, config.secrets)


def test_resigning_the_same_content_is_byte_identical() -> None:
    key = parse_key(Secret(HEX, "test"), "virtengine", path="signing_key")
    msgs = [encode_msg(register_msg(key.address, f"{key.address}/support/{i}", f"SD-{i}")) for i in range(1, 4)]
    first, second = (
        build_tx(key, msgs, chain_id="c", account=Account(3, 7), gas_limit=200_000, fee=FEE, timeout_height=99)
        for _ in range(2)
    )
    assert first.tx_bytes == second.tx_bytes and first.tx_hash == second.tx_hash


def test_signer_setup_makes_the_process_undumpable() -> None:
    """Run in a child: the pytest process itself must stay dumpable."""
    code = (
        "import ctypes, resource\n"
        "from sidecar.chain.keys import forbid_core_dumps\n"
        "assert forbid_core_dumps()\n"
        "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)\n"
        "assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0\n"  # PR_GET_DUMPABLE
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
