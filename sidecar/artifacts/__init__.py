"""Encrypted attachment objects, content-addressed by the sha256 of their (sealed) bytes.

`base` holds the ArtifactStore protocol and its errors, `local` and `s3` the two backends, `factory`
builds the configured one. This package imports nothing from sync/, desks/ or control/.
"""

from sidecar.artifacts.base import (
    REF_PREFIX,
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMissing,
    ArtifactStore,
    ArtifactUnavailable,
    StoredObject,
)

__all__ = [
    "REF_PREFIX",
    "ArtifactCorrupt",
    "ArtifactError",
    "ArtifactMissing",
    "ArtifactStore",
    "ArtifactUnavailable",
    "StoredObject",
]
