"""The chain state on disk, written at the cost of what a block changed, not of the whole state.

Commit appends one record per block to `blocks-<H>.log`: the block's height, time and app hash and,
when it changed anything, its change record (every entry its txs touched, at its final value, the
key insertions and deletions in the order they happened, and the small accounts table whole). The log
sits beside `snapshot-<H>.bin`, the whole state at height H, and `chain_meta.json` names the pair.
When the log has grown past the snapshot's size a new snapshot is written and the log starts again,
so a block costs its changes plus, amortized, a constant share of one full write.

The app hash chains the change records: sha256(previous hash || record), the genesis hash being sha256
of the encoded genesis state. The same txs on the same genesis give the same records, so the same
hashes; a block that changed nothing keeps its parent's hash. A restart loads the snapshot and replays
the log, checking each record's hash. A record cut short by a crash (its Commit never returned, so
CometBFT replays that block) is dropped from the file; any other damage stops the load with the file
and offset named.

Before this, every block re-encoded, hashed and fsynced the whole state, and the devnet spent ~10 ms a
block per thousand tickets (bench.soak at 12 tickets/s would have outrun its 200 ms blocks within the
hour).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devnet.app_state import decode_state, encode_state
from devnet.journal import Journal

log = logging.getLogger("devnet.state_log")
META_FILE = "chain_meta.json"
FORMAT = 2
HEADER = struct.Struct(">II")  # record length, crc32 of the record
COMPACT_MIN_BYTES = 1 << 20  # a log shorter than this is never compacted, however small the snapshot


def genesis_hash(state: dict[str, Any]) -> bytes:
    return hashlib.sha256(encode_state(state)).digest()


def chained_hash(previous: bytes, changes: bytes) -> bytes:
    return hashlib.sha256(previous + changes).digest()


class BlockChanges:
    """What one block's txs (and its end-block step) touched, collected from their journals."""

    def __init__(self) -> None:
        self.touched: dict[tuple[str, Any], None] = {}
        self.ops: list[tuple[str, str, Any]] = []

    def add(self, journal: Journal) -> None:
        self.touched.update(dict.fromkeys(journal.touched))
        self.ops.extend(journal.ops)

    def touch(self, table: str, key: Any, *, removed: bool = False) -> None:
        """An entry changed outside a journal (the retention step scans the tickets it ages)."""
        self.touched[(table, key)] = None
        if removed:
            self.ops.append(("del", table, key))

    def encode(self, state: dict[str, Any]) -> bytes:
        """The change record: the key insertions and deletions in order (a deleted entry needs no more),
        then the touched entries still present as they are now, in the encoding of the state."""
        values = [(table, key, state[table][key]) for table, key in self.touched if key in state[table]]
        return encode_state({"ops": self.ops, "values": values, "accounts": state["accounts"]})


def apply_changes(state: dict[str, Any], record: bytes) -> None:
    """Replay a change record onto the state of the block before it."""
    changes = decode_state(record)
    for op, table, key in changes["ops"]:
        if op == "ins":
            state[table][key] = None  # a placeholder at the key's place in the table's order
        else:
            state[table].pop(key, None)
    for table, key, value in changes["values"]:
        state[table][key] = value
    state["accounts"] = changes["accounts"]


@dataclass
class Snapshot:
    """A committed state with its height, app hash and block time (simulate and CheckTx contexts use it)."""

    height: int
    app_hash: bytes
    state: dict[str, Any]
    block_time: int = 0
    changes: bytes | None = None  # the change record of the block that made it (None: nothing changed)


class StateLogError(RuntimeError):
    """The state on disk cannot be read back as written."""


class StateStore:
    """The snapshot, the block log after it, and the meta file naming both (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta_path = self.dir / META_FILE
        self._log: Path | None = None  # opened per append: nothing is held open between blocks
        self._log_bytes = 0
        self._snapshot_bytes = 0

    def load(self) -> Snapshot | None:
        """The last committed state, or None for a fresh directory."""
        if not self.meta_path.exists():
            return None
        meta = json.loads(self.meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise StateLogError(f"{self.meta_path}: state written by another devnet version; remove {self.dir}")
        snapshot_path, log_path = self.dir / meta["snapshot"], self.dir / meta["log"]
        blob = snapshot_path.read_bytes()
        saved = decode_state(blob)
        snap = Snapshot(int(saved["height"]), bytes(saved["app_hash"]), saved["state"], int(saved["block_time"]))
        self._snapshot_bytes = len(blob)
        end = self._replay(log_path, snap)
        self._open_log(log_path, end)
        self._remove_all_but(snapshot_path, log_path)
        return snap

    def save(self, snap: Snapshot) -> None:
        """Make the block durable: append its record (fsynced), or start afresh from a snapshot."""
        if self._log is None or self._log_bytes >= max(COMPACT_MIN_BYTES, self._snapshot_bytes):
            self._write_snapshot(snap)
            return
        body = encode_state(
            {"height": snap.height, "block_time": snap.block_time, "app_hash": snap.app_hash, "changes": snap.changes}
        )
        fd = os.open(self._log, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, HEADER.pack(len(body), zlib.crc32(body)) + body)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self._log_bytes += HEADER.size + len(body)

    # -- internals ---------------------------------------------------------------------------------
    def _replay(self, path: Path, snap: Snapshot) -> int:
        """Apply the log's records to the snapshot; return the offset after the last whole record."""
        data = path.read_bytes() if path.exists() else b""
        offset = 0
        while offset < len(data):
            if offset + HEADER.size > len(data):
                break
            length, crc = HEADER.unpack_from(data, offset)
            body = data[offset + HEADER.size : offset + HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                if offset + HEADER.size + length < len(data):
                    raise StateLogError(f"{path}: damaged record at offset {offset}")
                break  # the tail a crash cut short: its block was never committed
            record = decode_state(body)
            height, changes = int(record["height"]), record["changes"]
            expected = chained_hash(snap.app_hash, changes) if changes is not None else snap.app_hash
            if height != snap.height + 1 or bytes(record["app_hash"]) != expected:
                raise StateLogError(f"{path}: record at offset {offset} does not follow height {snap.height}")
            if changes is not None:
                apply_changes(snap.state, changes)
            snap.height, snap.app_hash, snap.block_time = height, expected, int(record["block_time"])
            offset += HEADER.size + length
        if offset < len(data):
            log.warning("dropped %d bytes of an uncommitted block at the end of %s", len(data) - offset, path)
        return offset

    def _open_log(self, path: Path, end: int) -> None:
        """Appends go to `path`, cut back to `end` (the bytes of whole records)."""
        with open(path, "ab") as handle:
            handle.truncate(end)
        self._log, self._log_bytes = path, end

    def _write_snapshot(self, snap: Snapshot) -> None:
        blob = encode_state(
            {"height": snap.height, "app_hash": snap.app_hash, "block_time": snap.block_time, "state": snap.state}
        )
        snapshot_path = self.dir / f"snapshot-{snap.height}.bin"
        log_path = self.dir / f"blocks-{snap.height}.log"
        self._write(snapshot_path, blob)
        self._write(log_path, b"")
        self._write(self.meta_path, json.dumps({"format": FORMAT, "snapshot": snapshot_path.name,
                                                "log": log_path.name}).encode())
        self._snapshot_bytes = len(blob)
        self._open_log(log_path, 0)
        self._remove_all_but(snapshot_path, log_path)

    def _remove_all_but(self, *keep: Path) -> None:
        for old in [*self.dir.glob("snapshot-*.bin"), *self.dir.glob("blocks-*.log"), *self.dir.glob("*.tmp")]:
            if old not in keep:
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
