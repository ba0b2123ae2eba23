"""The sealed object format (issue 15, item 2): round trips, every recipient opens, every malformed or
tampered object is refused without naming content, and neither direction holds a file whole in memory."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import stat
import struct
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.public import Box, PrivateKey, PublicKey
from nacl.secret import SecretBox

from sidecar.artifacts.content import Counted, Refused
from sidecar.artifacts.sealed import (
    CHUNK_SIZE,
    MAGIC,
    MAX_HEADER_BYTES,
    Sealed,
    SealedError,
    open_object,
    seal_file,
)
from sidecar.chain.envelope import ALGORITHM_ID, MAC_SIZE, EnvelopeKey, key_id

SUPPORT = EnvelopeKey(PrivateKey.generate())
CUSTOMER = EnvelopeKey(PrivateKey.generate())
AGENT = EnvelopeKey(PrivateKey.generate())
STRANGER = EnvelopeKey(PrivateKey.generate())
EVERYONE = [SUPPORT.public_bytes, CUSTOMER.public_bytes, AGENT.public_bytes]
MARKER = b"CONFIDENTIAL-crash-log-line "
MiB = 1024 * 1024


async def pieces(data: bytes, size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def file_chunks(path: Path, size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk
    finally:
        handle.close()


async def opened(key: EnvelopeKey, data: bytes, max_plain: int = 100 * MiB, size: int = CHUNK_SIZE) -> bytes:
    return b"".join([chunk async for chunk in open_object(key, pieces(data, size), max_plain)])


async def seal(tmp_path: Path, plain: bytes, recipients: list[bytes] | None = None, piece: int = 1000) -> bytes:
    out = tmp_path / "object.sealed"
    await seal_file(SUPPORT, EVERYONE if recipients is None else recipients, pieces(plain, piece), out)
    return out.read_bytes()


def split(obj: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """(header, chunk frames including their length prefixes) of a sealed object, parsed independently."""
    assert obj.startswith(MAGIC)
    (length,) = struct.unpack(">I", obj[len(MAGIC) : len(MAGIC) + 4])
    at = len(MAGIC) + 4
    header = json.loads(obj[at : at + length])
    at += length
    frames = []
    while at < len(obj):
        (size,) = struct.unpack(">I", obj[at : at + 4])
        frames.append(obj[at : at + 4 + size])
        at += 4 + size
    return header, frames


def join(header: dict[str, Any] | bytes, frames: list[bytes]) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return MAGIC + struct.pack(">I", len(raw)) + raw + b"".join(frames)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * MiB], ids=["0", "1", "64K", "64K+1", "3M"])
@pytest.mark.parametrize("piece", [1000, 5 * CHUNK_SIZE + 7])
async def test_round_trip(tmp_path: Path, size: int, piece: int) -> None:
    plain = (MARKER * (size // len(MARKER) + 1))[:size]
    out = tmp_path / "object.sealed"
    sealed = await seal_file(SUPPORT, EVERYONE, pieces(plain, piece), out)
    obj = out.read_bytes()
    assert sealed == Sealed(
        size, hashlib.sha256(plain).hexdigest(), len(obj), "sha256:" + hashlib.sha256(obj).hexdigest()
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    if size >= len(MARKER):
        assert MARKER not in obj  # nothing readable at rest
    _, frames = split(obj)
    # Full chunks, then one last chunk that is never empty unless the whole file is.
    assert len(frames) == max(1, -(-size // CHUNK_SIZE))
    assert all(len(f) == 4 + CHUNK_SIZE + MAC_SIZE for f in frames[:-1])
    chunks = [c async for c in open_object(SUPPORT, file_chunks(out), size)]
    assert b"".join(chunks) == plain
    assert all(0 < len(c) <= CHUNK_SIZE for c in chunks)


async def test_format_is_the_documented_one(tmp_path: Path) -> None:
    """A client that knows only the design (the customer's wallet) opens the object by hand."""
    plain = MARKER * 3000  # two chunks
    obj = await seal(tmp_path, plain)
    header, frames = split(obj)
    assert set(header) == {
        "version",
        "algorithm_id",
        "chunk_size",
        "recipient_key_ids",
        "recipient_public_keys",
        "wrapped_keys",
        "sender_pub_key",
        "nonce_prefix",
    }
    assert (header["version"], header["algorithm_id"], header["chunk_size"]) == (1, ALGORITHM_ID, 65536)
    assert header["recipient_key_ids"] == [key_id(k) for k in EVERYONE]
    assert header["recipient_public_keys"] == [base64.b64encode(k).decode() for k in EVERYONE]
    assert base64.b64decode(header["sender_pub_key"]) == SUPPORT.public_bytes
    entry = next(w for w in header["wrapped_keys"] if w["recipient_id"] == CUSTOMER.key_id)
    assert entry["algorithm"] == ALGORITHM_ID
    wrapped = base64.b64decode(entry["wrapped_key"])
    data_key = Box(CUSTOMER.private, PublicKey(SUPPORT.public_bytes)).decrypt(wrapped[24:], wrapped[:24])
    prefix = base64.b64decode(header["nonce_prefix"])
    assert len(prefix) == 16 and len(frames) == 2
    first = SecretBox(data_key).decrypt(frames[0][4:], prefix + struct.pack(">Q", 0))
    last = SecretBox(data_key).decrypt(frames[1][4:], prefix + struct.pack(">Q", 1 | 2**63))
    assert first + last == plain


async def test_every_recipient_opens_and_a_stranger_cannot(tmp_path: Path) -> None:
    plain = MARKER * 10_000
    obj = await seal(tmp_path, plain)
    for key in (SUPPORT, CUSTOMER, AGENT):
        assert await opened(key, obj) == plain
    with pytest.raises(SealedError, match="not a recipient"):
        await opened(STRANGER, obj)


async def test_a_listed_key_without_a_wrapped_key_cannot_open(tmp_path: Path) -> None:
    header, frames = split(await seal(tmp_path, MARKER))
    header["recipient_key_ids"].append(STRANGER.key_id)
    with pytest.raises(SealedError, match="no wrapped key"):
        await opened(STRANGER, join(header, frames))


async def test_a_wrapped_key_under_another_name_does_not_open(tmp_path: Path) -> None:
    """The stranger relabels the customer's wrapped key as its own: the box does not open for it."""
    header, frames = split(await seal(tmp_path, MARKER))
    header["recipient_key_ids"].append(STRANGER.key_id)
    stolen = dict(next(w for w in header["wrapped_keys"] if w["recipient_id"] == CUSTOMER.key_id))
    header["wrapped_keys"].append({**stolen, "recipient_id": STRANGER.key_id})
    with pytest.raises(SealedError, match="does not open"):
        await opened(STRANGER, join(header, frames))


def _header_edit(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        header[field] = value

    return edit


def _wrapped_algorithm(header: dict[str, Any]) -> None:
    for w in header["wrapped_keys"]:
        w["algorithm"] = "RSA-OAEP"


HEADER_REFUSALS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "version 2": (_header_edit("version", 2), "unsupported sealed object version"),
    "version a string": (_header_edit("version", "1"), "version is not an integer"),
    "other algorithm": (_header_edit("algorithm_id", "AES-256-GCM"), "unsupported sealed object algorithm"),
    "wrapped key of another algorithm": (_wrapped_algorithm, "unsupported wrapped key algorithm"),
    "chunk size zero": (_header_edit("chunk_size", 0), "chunk size 0 is outside"),
    "chunk size huge": (_header_edit("chunk_size", 2**31), "is outside"),
    "chunk size a bool": (_header_edit("chunk_size", True), "not an integer"),
    "recipients a string": (_header_edit("recipient_key_ids", SUPPORT.key_id), "not a list of strings"),
    "wrapped keys a string": (_header_edit("wrapped_keys", "abc"), "not a list of objects"),
    "wrapped key not base64": (
        _header_edit("wrapped_keys", [{"recipient_id": SUPPORT.key_id, "wrapped_key": "!!"}]),
        "not base64",
    ),
    "wrapped key short": (
        _header_edit("wrapped_keys", [{"recipient_id": SUPPORT.key_id, "wrapped_key": "YWJj"}]),
        "too short",
    ),
    "sender key short": (_header_edit("sender_pub_key", "YWJj"), "sender_pub_key is not 32 bytes"),
    "sender key low order": (_header_edit("sender_pub_key", base64.b64encode(bytes(32)).decode()), "not a usable"),
    "nonce prefix short": (_header_edit("nonce_prefix", "YWJj"), "nonce_prefix is not 16 bytes"),
    "nonce prefix absent": (_header_edit("nonce_prefix", None), "nonce_prefix is not 16 bytes"),
}


@pytest.mark.parametrize("case", list(HEADER_REFUSALS), ids=list(HEADER_REFUSALS))
async def test_bad_headers_are_refused(tmp_path: Path, case: str) -> None:
    edit, message = HEADER_REFUSALS[case]
    header, frames = split(await seal(tmp_path, MARKER * 100))
    edit(header)
    with pytest.raises(SealedError, match=message) as info:
        await opened(SUPPORT, join(header, frames))
    assert MARKER.decode() not in str(info.value)


def _frame_with_length(frame: bytes, length: int) -> bytes:
    return struct.pack(">I", length) + frame[4:]


def _flip(frame: bytes, at: int) -> bytes:
    raw = bytearray(frame)
    raw[at] ^= 1
    return bytes(raw)


STRUCTURE_REFUSALS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "bad magic": (lambda obj: b"VEART2\n" + obj[len(MAGIC) :], "bad magic"),
    "not sealed at all": (lambda obj: MARKER * 10, "bad magic"),
    "empty": (lambda obj: b"", "truncated in its magic"),
    "header length zero": (lambda obj: MAGIC + struct.pack(">I", 0) + obj[len(MAGIC) + 4 :], "outside 1.."),
    "header oversized": (
        lambda obj: MAGIC + struct.pack(">I", MAX_HEADER_BYTES + 1) + b"{" * (MAX_HEADER_BYTES + 1),
        "outside 1..",
    ),
    "header not json": (lambda obj: join(b"{not json", split(obj)[1]), "not acceptable JSON"),
    "header a list": (lambda obj: join(b"[1, 2]", split(obj)[1]), "not a JSON object"),
    "header deeply nested": (lambda obj: join(b"[" * 500 + b"]" * 500, split(obj)[1]), "not acceptable JSON"),
    "header with a huge integer": (lambda obj: join(b'{"version": ' + b"1" * 5000 + b"}", []), "not acceptable JSON"),
    "header not UTF-8": (lambda obj: join(b'{"a": "\xff"}', []), "not acceptable JSON"),
    "header cut short": (lambda obj: obj[: len(MAGIC) + 4 + 10], "truncated in its header"),
    "no chunks": (lambda obj: join(split(obj)[0], []), "truncated: 0 chunks and no last one"),
    "last chunk dropped": (lambda obj: join(split(obj)[0], split(obj)[1][:-1]), "truncated: 2 chunks and no last"),
    "chunk cut mid-way": (lambda obj: obj[:-100], "truncated in its chunk 2"),
    "chunk length prefix cut": (lambda obj: join(split(obj)[0], [*split(obj)[1][:-1], b"\x00\x00"]), "chunk 2 len"),
    "chunk longer than allowed": (
        lambda obj: join(split(obj)[0], [_frame_with_length(split(obj)[1][0], CHUNK_SIZE + MAC_SIZE + 1)]),
        "chunk 0 is 65553 bytes, outside 16..65552",
    ),
    "chunk shorter than a MAC": (
        lambda obj: join(split(obj)[0], [struct.pack(">I", 3) + b"abc"]),
        "chunk 0 is 3 bytes, outside",
    ),
    "bad MAC": (
        lambda obj: join(split(obj)[0], [_flip(split(obj)[1][0], 40), *split(obj)[1][1:]]),
        "chunk 0 fails authentication",
    ),
    "chunks reordered": (
        lambda obj: join(split(obj)[0], [split(obj)[1][1], split(obj)[1][0], split(obj)[1][2]]),
        "chunk 0 fails authentication",
    ),
    "middle chunk dropped": (
        lambda obj: join(split(obj)[0], [split(obj)[1][0], split(obj)[1][2]]),
        "chunk 1 fails authentication",
    ),
    "a byte after the last chunk": (lambda obj: obj + b"x", "bytes after its last chunk"),
    "the last chunk twice": (lambda obj: obj + split(obj)[1][-1], "bytes after its last chunk"),
}


@pytest.mark.parametrize("case", list(STRUCTURE_REFUSALS), ids=list(STRUCTURE_REFUSALS))
async def test_malformed_and_tampered_objects_are_refused(tmp_path: Path, case: str) -> None:
    plain = (MARKER * 10_000)[: 2 * CHUNK_SIZE + 5000]  # three chunks: two full, one short last
    obj = await seal(tmp_path, plain)
    assert len(split(obj)[1]) == 3
    tamper, message = STRUCTURE_REFUSALS[case]
    with pytest.raises(SealedError, match=message) as info:
        await opened(SUPPORT, tamper(obj), size=4096)
    assert MARKER.decode() not in str(info.value)


async def test_random_damage_is_refused_or_harmless(tmp_path: Path) -> None:
    """Flipped bytes, cuts and splices anywhere: every outcome is the true plaintext or a SealedError."""
    plain = (MARKER * 3000)[: CHUNK_SIZE + 999]
    obj = await seal(tmp_path, plain)
    rng = random.Random(15)
    outcomes = {"opened": 0, "refused": 0}
    for _ in range(400):
        damaged = bytearray(obj)
        kind = rng.randrange(3)
        at = rng.randrange(len(obj))
        if kind == 0:
            damaged[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del damaged[at:]
        else:
            damaged[at:at] = obj[rng.randrange(len(obj)) :][: rng.randrange(1, 64)]
        try:
            assert await opened(SUPPORT, bytes(damaged), size=rng.choice([61, 4096, CHUNK_SIZE])) == plain
            outcomes["opened"] += 1
        except SealedError as exc:
            assert MARKER.decode() not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 300  # most damage is caught; what opens opened to the true plaintext


async def test_plaintext_past_max_plain_is_refused_before_it_is_yielded(tmp_path: Path) -> None:
    plain = MARKER * 10_000
    obj = await seal(tmp_path, plain)
    assert await opened(SUPPORT, obj, max_plain=len(plain)) == plain
    got: list[bytes] = []
    with pytest.raises(SealedError, match=f"over the limit of {len(plain) - 1} plaintext bytes"):
        async for chunk in open_object(SUPPORT, pieces(obj), len(plain) - 1):
            got.append(chunk)
    assert sum(map(len, got)) <= len(plain) - 1


async def test_a_refusal_closes_the_source_at_once() -> None:
    """A refused object stops its download (the store's file or HTTP stream) instead of reading on."""
    closed: list[bool] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            yield b"NOT-A-SEALED-OBJECT"
            while True:
                yield bytes(CHUNK_SIZE)
        finally:
            closed.append(True)

    with pytest.raises(SealedError, match="bad magic"):
        async for _ in open_object(SUPPORT, endless(), 10 * MiB):
            pass
    assert closed == [True]


async def test_sealing_refuses_bad_recipients_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "object.sealed"
    with pytest.raises(SealedError, match="at least one recipient"):
        await seal_file(SUPPORT, [], pieces(MARKER), out)
    with pytest.raises(SealedError, match="31 bytes"):
        await seal_file(SUPPORT, [b"k" * 31], pieces(MARKER), out)
    with pytest.raises(SealedError, match="not a usable X25519 public key"):
        await seal_file(SUPPORT, [SUPPORT.public_bytes, bytes(32)], pieces(MARKER), out)
    assert not out.exists()


async def test_duplicate_recipients_are_wrapped_once(tmp_path: Path) -> None:
    obj = await seal(tmp_path, MARKER, [CUSTOMER.public_bytes, SUPPORT.public_bytes, CUSTOMER.public_bytes])
    header, _ = split(obj)
    assert header["recipient_key_ids"] == [CUSTOMER.key_id, SUPPORT.key_id]
    assert await opened(CUSTOMER, obj) == MARKER


async def test_a_refused_stream_leaves_no_partial_object(tmp_path: Path) -> None:
    """The size limit hit mid-seal (a desk download larger than allowed): the spool file is removed."""
    out = tmp_path / "object.sealed"
    out.write_bytes(b"left by the caller")
    out.chmod(0o644)
    with pytest.raises(Refused) as info:
        await seal_file(SUPPORT, EVERYONE, Counted(pieces(MARKER * 100_000), 3 * CHUNK_SIZE), out)
    assert info.value.reason == "too_large"
    assert not out.exists()


async def test_an_existing_spool_file_becomes_private(tmp_path: Path) -> None:
    out = tmp_path / "object.sealed"
    out.write_bytes(b"")
    out.chmod(0o644)
    await seal_file(SUPPORT, EVERYONE, pieces(MARKER), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


async def test_a_10_mib_file_is_never_held_whole(tmp_path: Path) -> None:
    """tracemalloc's peak while sealing and opening 10 MiB stays a small multiple of one chunk."""
    block = os.urandom(CHUNK_SIZE)
    total = 10 * MiB

    async def plain() -> AsyncIterator[bytes]:
        for _ in range(total // CHUNK_SIZE):
            yield block

    out = tmp_path / "big.sealed"
    expected = hashlib.sha256()
    for _ in range(total // CHUNK_SIZE):
        expected.update(block)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sealed = await seal_file(SUPPORT, EVERYONE, plain(), out)
        seal_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        digest, size = hashlib.sha256(), 0
        async for chunk in open_object(CUSTOMER, file_chunks(out), total):
            digest.update(chunk)
            size += len(chunk)
        open_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert sealed.size_plain == size == total
    assert sealed.sha256_plain == digest.hexdigest() == expected.hexdigest()
    # About 0.5 MiB each here (a chunk in a few copies, worker threads); one whole copy would be 10 MiB.
    assert seal_peak < 2 * MiB, seal_peak
    assert open_peak < 2 * MiB, open_peak
