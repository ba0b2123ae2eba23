"""The artifact store contract: content-addressed, immutable objects and the errors reading them raises.

ArtifactError            message names a backend, bucket or ref, never content or a secret
+-- ArtifactMissing      no object under that ref
+-- ArtifactCorrupt      the bytes read do not hash to the ref (checked on every read)
+-- ArtifactUnavailable  the backend cannot be reached or answered 5xx: retryable
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sidecar.errors import SidecarError

REF_PREFIX = "sha256:"
_REF = re.compile(r"sha256:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{64}")
READ_CHUNK = 1024 * 1024  # what put_file reads at a time; open() yields the caller's chunk_size


class ArtifactError(SidecarError):
    """Base of the store's errors; `retryable` says whether trying again later may help."""

    retryable = False


class ArtifactMissing(ArtifactError):
    """No object under that ref."""


class ArtifactCorrupt(ArtifactError):
    """The stored bytes do not hash to their ref: never trust what was streamed."""


class ArtifactUnavailable(ArtifactError):
    """The backend cannot be reached, timed out or answered 5xx."""

    retryable = True


@dataclass(frozen=True)
class StoredObject:
    ref: str
    size: int
    created: bool  # False when an object with that ref already existed (never overwritten)


@runtime_checkable
class ArtifactStore(Protocol):
    name: str  # "local" or "s3"

    async def put_file(self, path: Path) -> StoredObject:
        """Store the file's (already sealed) bytes under their sha256; atomic; an existing object is kept."""
        ...

    def open(self, ref: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Stream an object: ArtifactMissing before the first chunk, ArtifactCorrupt after the last one."""
        ...

    async def exists(self, ref: str) -> bool: ...

    async def delete(self, ref: str) -> None:
        """Remove the object; a missing one is fine."""
        ...

    async def list_refs(self) -> list[tuple[str, float]]:
        """Every stored (ref, unix time stored), for garbage collection."""
        ...

    async def aclose(self) -> None: ...


def ref_hex(ref: str) -> str:
    """The 64 hex digits of a well-formed ref; anything else (chain input included) is an ArtifactError.

    Backends build paths and keys only from this, so a ref can never name a file outside the store."""
    if not isinstance(ref, str) or not _REF.fullmatch(ref):
        raise ArtifactError("not an artifact ref (expected sha256:<64 lowercase hex>)")
    return ref[len(REF_PREFIX) :]


def is_hex_digest(name: str) -> bool:
    return bool(_HEX.fullmatch(name))


class HashCheck:
    """Hashes a stream as it passes; `verify` raises ArtifactCorrupt when it did not match the ref."""

    def __init__(self, ref: str) -> None:
        self.expected = ref_hex(ref)
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def verify(self, backend: str) -> None:
        if self._hash.hexdigest() != self.expected:
            raise ArtifactCorrupt(
                f"{backend} artifact {REF_PREFIX}{self.expected} is corrupt: its {self.size} bytes hash otherwise"
            )
