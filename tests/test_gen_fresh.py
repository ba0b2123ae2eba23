"""gen/ is committed: it must be exactly what `make proto` produces from proto/ today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    fresh = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(ROOT / "gen")
        for p in (ROOT / "gen").rglob("*")
        if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    assert fresh == committed, "gen/ is stale: run `make proto` and commit gen/"
    stale = [str(rel) for rel in fresh if not filecmp.cmp(tmp_path / rel, ROOT / "gen" / rel, shallow=False)]
    assert not stale, f"gen/ is stale ({', '.join(sorted(stale))}): run `make proto` and commit gen/"


def test_our_messages_pack_as_any_with_the_contract_type_urls() -> None:
    from google.protobuf import any_pb2
    from virtengine.support.v1 import tx_pb2

    msg = tx_pb2.MsgRegisterExternalTicket(
        sender="virtengine1x",
        resource_id="a/support/1",
        resource_type="support_request",
        external_system="jira",
        external_ticket_id="10007",
    )
    packed = any_pb2.Any()
    packed.Pack(msg, type_url_prefix="/")
    assert packed.type_url == "/virtengine.support.v1.MsgRegisterExternalTicket"
    # The wire bytes, built by hand from the contract's field numbers (CHAIN_CONTRACT.md: sender = 1,
    # resource_id = 2, resource_type = 3, external_system = 4, external_ticket_id = 5; external_url = 6 unset).
    fields = [(1, "virtengine1x"), (2, "a/support/1"), (3, "support_request"), (4, "jira"), (5, "10007")]
    expected = b"".join(_length_delimited(number, text.encode()) for number, text in fields)
    assert msg.SerializeToString(deterministic=True) == expected
    assert packed.value == expected
    unpacked = tx_pb2.MsgRegisterExternalTicket()
    assert packed.Unpack(unpacked) and unpacked == msg


def _length_delimited(number: int, value: bytes) -> bytes:
    """One protobuf field of wire type 2 (tag, varint length, bytes); every value here is shorter than 128."""
    assert len(value) < 128
    return bytes([number << 3 | 2, len(value)]) + value
