"""The devnet chain's state: one JSON-able dict, cloned for CheckTx/FinalizeBlock branches,
hashed canonically for the app hash and written atomically on Commit so a restart resumes.

Genesis `app_state` schema (the JSON object the DevnetNode caller supplies):

    {
      "accounts": [{"address": "virtengine1...", "balance": 1000000000, "account_number": 0}],
      "support_agents": ["virtengine1..."],
      "min_gas_price": "0.025",          # uve per gas unit, decimal string; "0" disables the fee check
      "fee_denom": "uve",                # optional
      "max_responses": 200,              # optional
      "retention": {"archive_after_seconds": 7776000, "purge_after_seconds": 31536000}  # optional
    }

`account_number` is optional (genesis order otherwise); `balance` is in `fee_denom`. A retention age
of null or absent disables that step.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import bech32

ADDRESS_PREFIX = "virtengine"
STATE_FILE = "chain_meta.json"


@functools.lru_cache(maxsize=4096)
def is_address(value: str) -> bool:
    """True for a bech32 account address with the chain's prefix (20-byte payload). Cached: every Msg of
    every tx names a sender, and pure-Python bech32 was the devnet's largest CheckTx cost."""
    hrp, data = bech32.bech32_decode(value)
    if hrp != ADDRESS_PREFIX or data is None:
        return False
    raw = bech32.convertbits(data, 5, 8, False)
    return raw is not None and len(raw) == 20


def address_from_bytes(raw: bytes) -> str:
    """bech32 encode 20 address bytes with the chain prefix."""
    return str(bech32.bech32_encode(ADDRESS_PREFIX, bech32.convertbits(raw, 8, 5, True)))


def genesis_state(app_state: dict[str, Any], chain_id: str) -> dict[str, Any]:
    """Build the initial state dict from the genesis `app_state` (schema in the module docstring)."""
    accounts: dict[str, dict[str, Any]] = {}
    used: set[int] = set()
    for index, entry in enumerate(app_state.get("accounts", [])):
        address = str(entry["address"])
        if not is_address(address):
            raise ValueError(f"genesis account {address!r} is not a {ADDRESS_PREFIX} address")
        number = int(entry.get("account_number", index))
        if number in used or address in accounts:
            raise ValueError(f"duplicate genesis account {address} / number {number}")
        used.add(number)
        accounts[address] = {"account_number": number, "sequence": 0, "balance": int(entry.get("balance", 0)),
                             "pub_key": None}
    retention = app_state.get("retention") or {}
    params = {
        "min_gas_price": str(Decimal(str(app_state.get("min_gas_price", "0")))),
        "fee_denom": str(app_state.get("fee_denom", "uve")),
        "max_responses": int(app_state.get("max_responses", 200)),
        "archive_after_seconds": _opt_int(retention.get("archive_after_seconds")),
        "purge_after_seconds": _opt_int(retention.get("purge_after_seconds")),
    }
    agents = [str(a) for a in app_state.get("support_agents", [])]
    for agent in agents:
        if not is_address(agent):
            raise ValueError(f"support agent {agent!r} is not a {ADDRESS_PREFIX} address")
    return {
        "chain_id": chain_id,
        "params": params,
        "accounts": accounts,
        "support_agents": sorted(set(agents)),
        "counters": {"ticket_number": 0, "event_sequence": 0, "per_submitter": {}},
        "tickets": {},
        "responses": {},
        "refs": {},
    }


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def encode_state(state: dict[str, Any]) -> bytes:
    """The state as bytes: a pickle without its memo, so equal trees give equal bytes whichever objects
    they happen to share. Dict order is part of it; the same txs on the same genesis insert in the same
    order, and a restart restores that order. One encoding per block serves the hash, the state file
    and the next branch (JSON with sorted keys cost the devnet most of its block time)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True
    pickler.dump(state)
    return buffer.getvalue()


def decode_state(blob: bytes) -> dict[str, Any]:
    state: dict[str, Any] = pickle.loads(blob)
    return state


def clone(state: dict[str, Any]) -> dict[str, Any]:
    """A deep, independent copy: the branch a tx, a simulation or CheckTx works on."""
    return decode_state(encode_state(state))


def app_hash(blob: bytes) -> bytes:
    """sha256 over the encoded state: same txs on the same genesis give the same hash."""
    return hashlib.sha256(blob).digest()


@dataclass
class Snapshot:
    """What Commit persists: the state with its height and app hash."""

    height: int
    app_hash: bytes
    state: dict[str, Any]
    block_time: int = 0  # unix seconds of the last block: simulate and CheckTx contexts use it
    blob: bytes = b""  # encode_state(state)


class StateStore:
    """A small meta file (height, app hash, block time) replaced atomically on every Commit, naming a
    state file `state-<app hash>.bin` that is written only when the state changed (empty blocks
    cost one tiny write). Each file is written to a temp name, fsynced, then renamed."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE
        self.dir.mkdir(parents=True, exist_ok=True)

    def _state_path(self, digest: bytes) -> Path:
        return self.dir / f"state-{digest.hex()}.bin"

    def load(self) -> Snapshot | None:
        if not self.path.exists():
            return None
        meta = json.loads(self.path.read_text())
        digest = bytes.fromhex(meta["app_hash"])
        blob = self._state_path(digest).read_bytes()
        return Snapshot(int(meta["height"]), digest, decode_state(blob), int(meta["block_time"]), blob)

    def save(self, snap: Snapshot) -> None:
        state_path = self._state_path(snap.app_hash)
        if not state_path.exists():
            self._write(state_path, snap.blob or encode_state(snap.state))
        meta = {"height": snap.height, "app_hash": snap.app_hash.hex(), "block_time": snap.block_time}
        self._write(self.path, json.dumps(meta).encode())
        for old in self.dir.glob("state-*.bin"):
            if old != state_path:
                old.unlink(missing_ok=True)

    def _write(self, path: Path, body: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
