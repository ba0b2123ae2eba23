"""The devnet's own writer of sealed attachment objects (#15), as a customer's portal or wallet writes them.

Written independently of sidecar/ (like devnet/envelope.py), so a mistake in the sidecar's reader cannot hide
in shared code. Format (attach_design.md): b"VEART1\\n" || be32(header length) || header JSON || chunks, each
be32(len) || secretbox ciphertext of up to 64 KiB, nonce = 16-byte prefix || be64(index), top bit set on the
last chunk; the data key wrapped for every recipient as multi-recipient envelopes wrap theirs. Objects land
in a local artifact directory (`<dir>/sha256/<hex of the sealed bytes>`, what the sidecar's local backend
reads), written atomically. Returns the chain payload's attachment entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nacl.utils
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox

from devnet.envelope import ALGORITHM_ID, NONCE_SIZE, key_id

MAGIC = b"VEART1\n"
CHUNK = 64 * 1024
_LAST = 1 << 63


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def seal_bytes(data: bytes, sender: PrivateKey, recipients: Sequence[bytes], *, chunk_size: int = CHUNK) -> bytes:
    """The sealed object of `data`, readable by every recipient (X25519 public keys)."""
    data_key = nacl.utils.random(SecretBox.KEY_SIZE)
    prefix = nacl.utils.random(16)
    wrapped = []
    for public in recipients:
        nonce = nacl.utils.random(NONCE_SIZE)
        boxed = Box(sender, PublicKey(bytes(public))).encrypt(data_key, nonce).ciphertext
        wrapped.append({"recipient_id": key_id(public), "algorithm": ALGORITHM_ID, "wrapped_key": _b64(nonce + boxed)})
    header = json.dumps(
        {
            "version": 1,
            "algorithm_id": ALGORITHM_ID,
            "chunk_size": chunk_size,
            "recipient_key_ids": [key_id(r) for r in recipients],
            "recipient_public_keys": [_b64(bytes(r)) for r in recipients],
            "wrapped_keys": wrapped,
            "sender_pub_key": _b64(bytes(sender.public_key)),
            "nonce_prefix": _b64(prefix),
        }
    ).encode()
    box = SecretBox(data_key)
    parts = [MAGIC, struct.pack(">I", len(header)), header]
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    for index, piece in enumerate(pieces):
        counter = index | _LAST if index == len(pieces) - 1 else index
        sealed = box.encrypt(piece, prefix + struct.pack(">Q", counter)).ciphertext
        parts += [struct.pack(">I", len(sealed)), sealed]
    return b"".join(parts)


def put_object(directory: Path, sealed: bytes) -> str:
    """Store sealed bytes in a local artifact directory under their sha256 (atomically); the ref."""
    digest = hashlib.sha256(sealed).hexdigest()
    objects = Path(directory) / "sha256"
    objects.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = objects / digest
    if not final.exists():
        fd, temp = tempfile.mkstemp(dir=objects, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(sealed)
        os.replace(temp, final)
    return f"sha256:{digest}"


def attach_file(
    directory: Path,
    data: bytes,
    file_name: str,
    content_type: str,
    sender: PrivateKey,
    recipients: Sequence[bytes],
) -> dict[str, Any]:
    """Seal `data` for the recipients, store it, and return the `attachments` entry a payload lists."""
    ref = put_object(directory, seal_bytes(data, sender, recipients))
    return {
        "file_name": file_name,
        "content_type": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "ref": ref,
    }
