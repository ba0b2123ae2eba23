"""Deterministic test accounts and genesis `app_state` for the devnet chain.

Keys are derived from a name exactly as devnet.driver's `DevAccount.from_name` does
(sha256("devnet-account:<name>")), so a fixture's "customer" is the driver's "customer"."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cosmpy.crypto.address import Address
from cosmpy.crypto.keypairs import PrivateKey

PREFIX = "virtengine"
DEFAULT_BALANCE = 10_000_000_000
DEFAULT_MIN_GAS_PRICE = "0.025"


@dataclass(frozen=True)
class TestAccount:
    """A named secp256k1 account: test use only, the key is public knowledge."""

    __test__ = False  # not a pytest test class
    name: str
    key: PrivateKey

    @classmethod
    def from_name(cls, name: str) -> TestAccount:
        return cls(name, PrivateKey(hashlib.sha256(f"devnet-account:{name}".encode()).digest()))

    @property
    def address(self) -> str:
        return str(Address(self.key.public_key, prefix=PREFIX))


def genesis_app_state(
    accounts: Iterable[TestAccount], *, agents: Iterable[TestAccount] = (), balance: int = DEFAULT_BALANCE,
    min_gas_price: str = DEFAULT_MIN_GAS_PRICE, archive_after: int | None = None, purge_after: int | None = None,
    max_responses: int = 200,
) -> dict[str, Any]:
    """An app_state (schema: devnet.app_state) funding `accounts` and granting support_agent to `agents`."""
    return {
        "accounts": [{"address": a.address, "balance": balance, "account_number": i} for i, a in enumerate(accounts)],
        "support_agents": [a.address for a in agents],
        "min_gas_price": min_gas_price,
        "fee_denom": "uve",
        "max_responses": max_responses,
        "retention": {"archive_after_seconds": archive_after, "purge_after_seconds": purge_after},
    }
