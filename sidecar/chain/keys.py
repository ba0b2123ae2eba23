"""The chain signing key: loaded once from chain.key_file or the `signing_key` secret, never shown.

A key is a 64-hex-digit secp256k1 private key or a BIP-39 mnemonic (derivation m/44'/118'/0'/0/0).
SigningKey's repr masks the key, and no message built here contains key material: a bad key is
reported by its source and the shape that was expected, never by its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from sidecar.config_schema import ChainConfig
from sidecar.errors import ConfigError
from sidecar.secrets import Secret, read_private_file
from sidecar.secrets import forbid_core_dumps as forbid_core_dumps  # re-exported: the signer's setup calls it

if TYPE_CHECKING:
    from cosmpy.crypto.keypairs import PrivateKey

# cosmpy (and the pycryptodome, ecdsa and cffi it loads: several MB of resident memory) is imported where a
# key is parsed, so a sidecar without a signing key never loads it.
HD_PATH = "m/44'/118'/0'/0/0"  # cosmpy's COSMOS_HD_PATH
_MNEMONIC_LENGTHS = (12, 15, 18, 21, 24)


class SigningKey:
    """A secp256k1 key whose repr shows only the address; `sign` is the one use of the private part."""

    __slots__ = ("_key", "address", "source")

    def __init__(self, key: PrivateKey, prefix: str, source: str) -> None:
        from cosmpy.crypto.address import Address

        self._key = key
        self.address = str(Address(key.public_key, prefix=prefix))
        self.source = source

    @property
    def public_key(self) -> object:
        """cosmpy's PublicKey (for SigningCfg)."""
        return self._key.public_key

    @property
    def public_key_bytes(self) -> bytes:
        """The 33-byte compressed public key."""
        return bytes(self._key.public_key.public_key_bytes)

    def sign(self, data: bytes) -> bytes:
        """RFC 6979 deterministic, low-S 64-byte r||s over sha256(data): a re-sign is byte-identical."""
        return bytes(self._key.sign(data, deterministic=True, canonicalise=True))

    def __repr__(self) -> str:
        return f"SigningKey(address={self.address!r}, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("signing keys are not picklable")


@dataclass(frozen=True)
class KeyInfo:
    """What `keys show` prints: public only."""

    address: str
    public_key_hex: str
    source: str


def parse_key(text: Secret, prefix: str, *, path: str) -> SigningKey:
    """A hex private key or a BIP-39 mnemonic -> SigningKey; errors name `path` and the source only."""
    from cosmpy.crypto.keypairs import PrivateKey
    from cosmpy.mnemonic import derive_child_key_from_mnemonic

    raw = text.reveal().strip()
    words = raw.split()
    if len(words) in _MNEMONIC_LENGTHS:
        try:
            private = derive_child_key_from_mnemonic(" ".join(words), path=HD_PATH)
        except ValueError:
            raise ConfigError(path, "is not a valid BIP-39 mnemonic (English word list)", source=text.source) from None
        return SigningKey(PrivateKey(private), prefix, text.source)
    hex_text = raw.removeprefix("0x")
    if len(words) == 1 and len(hex_text) == 64:
        try:
            return SigningKey(PrivateKey(bytes.fromhex(hex_text)), prefix, text.source)
        except ValueError:
            pass
    raise ConfigError(path, "must hold a 64-digit hex private key or a 12-24 word BIP-39 mnemonic", source=text.source)


def read_key_file(file: str, prefix: str) -> SigningKey:
    """Read chain.key_file, refusing a file that group or others can read or write."""
    content = read_private_file(file, "chain.key_file")
    return parse_key(Secret(content, f"file:{file}"), prefix, path="chain.key_file")


def load_signing_key(chain: ChainConfig, secrets: Mapping[str, Secret]) -> SigningKey:
    """chain.key_file when set, else the `signing_key` secret of `secrets` (the configuration's, from the secrets
    dir, Vault or environment)."""
    if chain.key_file:
        return read_key_file(chain.key_file, chain.address_prefix)
    secret = secrets.get("signing_key")
    if secret is None:
        raise ConfigError(
            "chain.key_file", "is empty and no signing_key secret is set: the signer has no key", source="default"
        )
    return parse_key(secret, chain.address_prefix, path="signing_key")


def key_info(key: SigningKey) -> KeyInfo:
    return KeyInfo(key.address, key.public_key_bytes.hex(), key.source)
