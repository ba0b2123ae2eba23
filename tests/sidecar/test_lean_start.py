"""A sidecar without a signing key starts lean: what only a signer or the `db` commands use stays unloaded.

cosmpy (with pycryptodome, ecdsa and cffi) and sqlite_utils (which loads numpy) cost ~20 MB of resident
memory together; the follower benchmark's peak-RSS goal (#16) depends on them staying out of `run`.
sys.modules of one fresh interpreter (a few seconds) is the evidence.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cosmpy.mnemonic import COSMOS_HD_PATH

from sidecar.chain.keys import HD_PATH
from sidecar.cli import main
from sidecar.store.export import CONTENT_HELP

HEAVY = ("cosmpy", "Crypto", "ecdsa", "sqlite_utils", "numpy")
# Three stages in one interpreter: what `servicedesk-sidecar run` imports before App starts (the CLI with
# its whole parser, and the app); then parsing a signing key; then opening a store file as `db` commands do.
PROBE = f"""
import json, sqlite3, sys, tempfile
def heavy():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
import sidecar.cli, sidecar.app
sidecar.cli.build_parser()
stages = [heavy()]
from sidecar.chain.keys import parse_key
from sidecar.secrets import Secret
parse_key(Secret("11" * 32, "test"), "ve", path="signing_key")
stages.append(heavy())
with tempfile.TemporaryDirectory() as tmp:
    sqlite3.connect(tmp + "/s.db").execute("CREATE TABLE t (x)").connection.close()
    from sidecar.store.export import ReadOnlyStore
    ReadOnlyStore(tmp + "/s.db").close()
stages.append(heavy())
print(json.dumps(stages))
"""


def test_run_loads_neither_cosmpy_nor_sqlite_utils_until_a_key_or_db_command_needs_them() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    at_run, with_key, with_db = json.loads(out.stdout.splitlines()[-1])
    assert at_run == []
    assert {"cosmpy", "Crypto", "ecdsa"} <= set(with_key) and "sqlite_utils" not in with_key
    assert "sqlite_utils" in with_db  # loaded where it is used: the lazy imports do happen


def test_db_help_still_names_the_content_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["db", "export", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the list over lines
    assert f"also read {CONTENT_HELP} (ticket content, secrets)" in shown


def test_hd_path_is_cosmpys() -> None:
    assert HD_PATH == COSMOS_HD_PATH
