"""The devnet chain's state: one JSON-able dict of tables, and its encoding (devnet/state_log.py writes
it to disk and chains the app hash over each block's changes).

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
import io
import pickle
from decimal import Decimal
from typing import Any

import bech32

ADDRESS_PREFIX = "virtengine"


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
    order, and a restart restores that order. It encodes snapshots and each block's change record
    (JSON with sorted keys cost the devnet most of its block time)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True
    pickler.dump(state)
    return buffer.getvalue()


def decode_state(blob: bytes) -> dict[str, Any]:
    state: dict[str, Any] = pickle.loads(blob)
    return state


def clone(state: dict[str, Any]) -> dict[str, Any]:
    """A deep, independent copy (the accounts table a tx's ante handler works on)."""
    return decode_state(encode_state(state))
