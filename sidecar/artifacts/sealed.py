"""The sealed (encrypted) artifact format: a file streamed through NaCl secretbox in 64 KiB chunks.

Nothing the sidecar stores is readable at rest. A fresh data key seals the file; it is wrapped for every
recipient of the ticket exactly as CHAIN_CONTRACT.md's multi-recipient envelopes wrap theirs, so the
customer's wallet opens what an agent attached. Bytes on disk:

    b"VEART1\\n" || be32(header length) || header JSON || chunk*      chunk = be32(len) || secretbox ciphertext

Chunk i's nonce is nonce_prefix (16 bytes) || be64(i), with the top bit set on the last chunk, so a
truncated, reordered or extended object never opens. Objects come from anyone who can write the store:
every way one can be wrong is a SealedError whose message names no content (sizes and positions only).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PublicKey
from nacl.secret import SecretBox
from nacl.utils import random

from sidecar import boundedjson
from sidecar.artifacts.base import REF_PREFIX
from sidecar.chain.envelope import (
    ALGORITHM_ID,
    KEY_SIZE,
    MAC_SIZE,
    EnvelopeError,
    EnvelopeKey,
    key_id,
    same_key_id,
    unwrap_data_key,
    wrap_data_key,
)
from sidecar.errors import SidecarError

MAGIC = b"VEART1\n"
VERSION = 1
CHUNK_SIZE = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
# A header may name another chunk size (other clients write objects too); this bounds what one chunk costs.
MAX_CHUNK_SIZE = 1024 * 1024
NONCE_PREFIX_SIZE = 16
_LAST = 1 << 63
_LEN = struct.Struct(">I")


class SealedError(SidecarError):
    """The object cannot be opened by this key, or is malformed. Messages carry no content."""


@dataclass(frozen=True)
class Sealed:
    size_plain: int
    sha256_plain: str  # hex, what the chain payload's `sha256` carries
    size_sealed: int
    ref: str  # "sha256:<hex>" of the sealed bytes: the object's name in the store


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">Q", index | _LAST if last else index)


def _recipients(key: EnvelopeKey, recipients: Sequence[bytes]) -> list[bytes]:
    """Distinct usable public keys, in the caller's order; a bad one is refused before any byte is written."""
    if not recipients:
        raise SealedError("a sealed object needs at least one recipient")
    unique: dict[str, bytes] = {}
    for public in recipients:
        if len(public) != KEY_SIZE:
            raise SealedError(f"a recipient public key is {len(public)} bytes, not {KEY_SIZE}")
        try:
            Box(key.private, PublicKey(public))
        except CryptoError:
            raise SealedError(f"recipient {key_id(public)} is not a usable X25519 public key") from None
        unique.setdefault(key_id(public), bytes(public))
    return list(unique.values())


def _header(key: EnvelopeKey, data_key: bytes, recipients: list[bytes], prefix: bytes) -> bytes:
    header = {
        "version": VERSION,
        "algorithm_id": ALGORITHM_ID,
        "chunk_size": CHUNK_SIZE,
        "recipient_key_ids": [key_id(r) for r in recipients],
        "recipient_public_keys": [base64.b64encode(r).decode() for r in recipients],
        "wrapped_keys": wrap_data_key(key, data_key, recipients),
        "sender_pub_key": base64.b64encode(key.public_bytes).decode(),
        "nonce_prefix": base64.b64encode(prefix).decode(),
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    if len(raw) > MAX_HEADER_BYTES:
        raise SealedError(f"{len(recipients)} recipients make a header over {MAX_HEADER_BYTES} bytes")
    return raw


class _Sink:
    """Encrypts, writes and hashes the sealed bytes; each chunk runs in a worker thread (file I/O and crypto)."""

    def __init__(self, out: Path, header: bytes, data_key: bytes, prefix: bytes) -> None:
        self._out = out
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the caller's temp file may have been made with a looser mode
            self._file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        self._box = SecretBox(data_key)
        self._prefix = prefix
        self._hash = hashlib.sha256()
        self.size = 0
        self._write(MAGIC + _LEN.pack(len(header)) + header)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def chunk(self, index: int, piece: bytes, last: bool) -> None:
        ciphertext = self._box.encrypt(piece, _nonce(self._prefix, index, last)).ciphertext
        self._write(_LEN.pack(len(ciphertext)) + ciphertext)

    def close(self) -> str:
        self._file.close()
        return REF_PREFIX + self._hash.hexdigest()

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._out)


async def seal_file(key: EnvelopeKey, recipients: list[bytes], plain: AsyncIterator[bytes], out: Path) -> Sealed:
    """Seal a plaintext stream to every recipient into `out` (0600), hashing both sides as it goes.

    At most one 64 KiB chunk (plus the input's current piece) is in memory. `out` may exist (a temp file
    the caller made); on any failure it is removed, so a half-written object is never left to store."""
    try:
        keys = _recipients(key, recipients)
        data_key = random(SecretBox.KEY_SIZE)
        prefix = random(NONCE_PREFIX_SIZE)
        sink = _Sink(out, _header(key, data_key, keys, prefix), data_key, prefix)  # in the task: nothing to leak
        try:
            plain_hash = hashlib.sha256()
            size_plain = index = 0
            pending = bytearray()
            async for piece in plain:
                plain_hash.update(piece)
                size_plain += len(piece)
                pending += piece
                # A full chunk is written as "not last" only once a byte after it is known to exist.
                while len(pending) > CHUNK_SIZE:
                    chunk = bytes(pending[:CHUNK_SIZE])
                    del pending[:CHUNK_SIZE]
                    await asyncio.to_thread(sink.chunk, index, chunk, False)
                    index += 1
            await asyncio.to_thread(sink.chunk, index, bytes(pending), True)
            ref = await asyncio.to_thread(sink.close)
        except BaseException:
            sink.abort()  # synchronous: it must happen even while the task is being cancelled
            raise
    finally:
        await _close(plain)  # a refused or failed seal releases its source (a desk download) at once
    return Sealed(size_plain, plain_hash.hexdigest(), sink.size, ref)


async def _close(source: AsyncIterator[bytes]) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()


class _Reader:
    """Exact-size reads over an async byte stream, buffering no more than one read plus one input piece."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._buf = bytearray()
        self._ended = False

    async def _fill(self, size: int) -> bool:
        while len(self._buf) < size and not self._ended:
            try:
                self._buf += await anext(self._source)
            except StopAsyncIteration:
                self._ended = True
        return len(self._buf) >= size

    async def read(self, size: int, what: str) -> bytes:
        if not await self._fill(size):
            raise SealedError(f"sealed object is truncated in its {what}")
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def at_end(self) -> bool:
        return not await self._fill(1)


def _b64_field(header: dict[str, Any], name: str, size: int) -> bytes:
    value = header.get(name)
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != size:
        raise SealedError(f"sealed header field {name} is not {size} bytes of base64")
    return raw


def _int_field(header: dict[str, Any], name: str) -> int:
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SealedError(f"sealed header field {name} is not an integer")
    return value


async def _read_header(reader: _Reader) -> bytes:
    if await reader.read(len(MAGIC), "magic") != MAGIC:
        raise SealedError("not a sealed object (bad magic)")
    (length,) = _LEN.unpack(await reader.read(_LEN.size, "header length"))
    if not 0 < length <= MAX_HEADER_BYTES:
        raise SealedError(f"sealed header of {length} bytes is outside 1..{MAX_HEADER_BYTES}")
    return await reader.read(length, "header")


def _parse_header(key: EnvelopeKey, raw: bytes) -> tuple[bytes, bytes, int]:
    """(data key, nonce prefix, chunk size); pure computation, so any failure at all is a SealedError."""
    try:
        header = boundedjson.loads(raw, max_bytes=MAX_HEADER_BYTES)
        if not isinstance(header, dict):
            raise SealedError("sealed header is not a JSON object")
        return _data_key(key, header)
    except SealedError:
        raise
    except ValueError as exc:  # boundedjson's refusals, and json's own (an integer of 5,000 digits)
        raise SealedError(f"sealed header is not acceptable JSON ({type(exc).__name__})") from None
    except Exception as exc:  # a shape the checks did not foresee: refused all the same, naming only its kind
        raise SealedError(f"malformed sealed header ({type(exc).__name__})") from None


def _data_key(key: EnvelopeKey, header: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """(data key, nonce prefix, chunk size) of a header addressed to `key`."""
    if _int_field(header, "version") != VERSION:
        raise SealedError("unsupported sealed object version")
    if header.get("algorithm_id") != ALGORITHM_ID:
        raise SealedError("unsupported sealed object algorithm")
    chunk_size = _int_field(header, "chunk_size")
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise SealedError(f"sealed chunk size {chunk_size} is outside 1..{MAX_CHUNK_SIZE}")
    ids = header.get("recipient_key_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise SealedError("sealed header field recipient_key_ids is not a list of strings")
    if not any(same_key_id(i, key.key_id) for i in ids):
        raise SealedError("this key is not a recipient of the sealed object")
    wrapped = header.get("wrapped_keys")
    if isinstance(wrapped, list) and any(
        isinstance(w, dict) and w.get("algorithm", ALGORITHM_ID) != ALGORITHM_ID for w in wrapped
    ):
        raise SealedError("unsupported wrapped key algorithm")
    sender = _b64_field(header, "sender_pub_key", KEY_SIZE)
    prefix = _b64_field(header, "nonce_prefix", NONCE_PREFIX_SIZE)
    try:
        box = Box(key.private, PublicKey(sender))
    except CryptoError:
        raise SealedError("sender_pub_key is not a usable X25519 public key") from None
    try:
        return unwrap_data_key(key, box, wrapped), prefix, chunk_size
    except EnvelopeError as exc:
        raise SealedError(f"sealed object: {exc}") from None
    except CryptoError:
        raise SealedError("the wrapped data key does not open with this key") from None


async def open_object(key: EnvelopeKey, chunks: AsyncIterator[bytes], max_plain: int) -> AsyncIterator[bytes]:
    """Yield the plaintext of a sealed object addressed to `key`, chunk by authenticated chunk.

    Refusals can come after plaintext was yielded (a bad MAC late in the object, a truncation): like the
    store's hash check, nothing streamed is to be trusted until the iterator ends without an error."""
    reader = _Reader(chunks)
    try:
        data_key, prefix, chunk_size = _parse_header(key, await _read_header(reader))
        box = SecretBox(data_key)
        index = total = 0
        while True:
            if await reader.at_end():
                raise SealedError(f"sealed object is truncated: {index} chunks and no last one")
            (length,) = _LEN.unpack(await reader.read(_LEN.size, f"chunk {index} length"))
            if not MAC_SIZE <= length <= chunk_size + MAC_SIZE:
                raise SealedError(
                    f"sealed chunk {index} is {length} bytes, outside {MAC_SIZE}..{chunk_size + MAC_SIZE}"
                )
            if total + length - MAC_SIZE > max_plain:
                raise SealedError(f"sealed object is over the limit of {max_plain} plaintext bytes")
            ciphertext = await reader.read(length, f"chunk {index}")
            plain, last = _decrypt(box, prefix, index, ciphertext)
            total += len(plain)
            if plain:
                yield plain
            if last:
                break
            index += 1
        if not await reader.at_end():
            raise SealedError(f"sealed object has bytes after its last chunk ({index + 1} chunks)")
    finally:
        await _close(chunks)  # release the store's file or connection now, whether we finished or refused


def _decrypt(box: SecretBox, prefix: bytes, index: int, ciphertext: bytes) -> tuple[bytes, bool]:
    """A chunk opens under exactly one of its two nonces; which one says whether it is the last."""
    for last in (False, True):
        try:
            return bytes(box.decrypt(ciphertext, _nonce(prefix, index, last))), last
        except CryptoError:
            continue
    raise SealedError(f"sealed chunk {index} fails authentication")
