"""The local directory backend: `<dir>/sha256/<hex>`, one file per object, mode 0600 in 0700 directories.

An object is copied to a temp file in the objects' directory (hashing as it goes), fsynced, then hard-linked
to its final name, which fails when the name exists: a reader never sees a partial object and an existing
object is never rewritten. Blocking file I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from sidecar.artifacts.base import (
    READ_CHUNK,
    REF_PREFIX,
    ArtifactError,
    ArtifactMissing,
    ArtifactUnavailable,
    HashCheck,
    StoredObject,
    is_hex_digest,
    ref_hex,
)

TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600.0  # a temp file this old was left by a crash: list_refs removes it
# Filesystems without hard links (some network and FUSE mounts) answer link() with one of these.
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class LocalStore:
    """Objects as files under one directory, named by the sha256 of their bytes."""

    name = "local"

    def __init__(self, directory: Path | str) -> None:
        self.root = Path(directory)
        self.objects = self.root / "sha256"

    def path_of(self, ref: str) -> Path:
        return self.objects / ref_hex(ref)

    async def put_file(self, path: Path) -> StoredObject:
        try:
            return await asyncio.to_thread(self._put, Path(path))
        except OSError as exc:
            raise self._error("cannot store an object", exc) from exc

    def _put(self, source: Path) -> StoredObject:
        try:
            src = source.open("rb")
        except OSError as exc:  # the caller's file, not the store: retrying will not help
            raise ArtifactError(f"local artifact store: cannot read the file to store ({exc.strerror})") from exc
        with src:
            self._ensure_dirs()
            return self._store(src)

    def _store(self, src: BinaryIO) -> StoredObject:
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.objects)  # mode 0600
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = _copy_hashing(src, out)
                out.flush()
                os.fsync(out.fileno())
            final = self.objects / digest
            created = _link_no_overwrite(temp, final)
            if created:
                _fsync_dir(self.objects)
            else:  # the stored time is the last put's, so GC never takes an object a caller just stored
                os.utime(final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return StoredObject(ref=REF_PREFIX + digest, size=size, created=created)

    def _ensure_dirs(self) -> None:
        for directory in (self.root, self.objects):
            if not directory.is_dir():
                directory.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # another writer made it in between
                    directory.mkdir(mode=0o700)

    async def open(self, ref: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        path = self.path_of(ref)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"local artifact {ref} is missing") from None
        except OSError as exc:
            raise self._error(f"cannot read {ref}", exc) from exc
        check = HashCheck(ref)
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(handle.read, chunk_size)
                except OSError as exc:
                    raise self._error(f"cannot read {ref}", exc) from exc
                if not chunk:
                    break
                check.update(chunk)
                yield chunk
        finally:
            handle.close()
        check.verify(self.name)

    async def exists(self, ref: str) -> bool:
        path = self.path_of(ref)
        return await asyncio.to_thread(path.is_file)

    async def delete(self, ref: str) -> None:
        path = self.path_of(ref)
        try:
            await asyncio.to_thread(path.unlink, True)
        except OSError as exc:
            raise self._error(f"cannot delete {ref}", exc) from exc

    async def list_refs(self) -> list[tuple[str, float]]:
        """Every object with its stored time; temp files a crash left behind are removed on the way."""
        try:
            return await asyncio.to_thread(self._list)
        except OSError as exc:
            raise self._error("cannot list objects", exc) from exc

    def _list(self) -> list[tuple[str, float]]:
        if not self.objects.is_dir():
            return []
        refs: list[tuple[str, float]] = []
        stale_before = time.time() - STALE_TEMP_SECONDS
        with os.scandir(self.objects) as entries:
            for entry in entries:
                if is_hex_digest(entry.name) and entry.is_file(follow_symlinks=False):
                    refs.append((REF_PREFIX + entry.name, entry.stat(follow_symlinks=False).st_mtime))
                elif entry.name.startswith(TEMP_PREFIX) and entry.stat(follow_symlinks=False).st_mtime < stale_before:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        return refs

    async def aclose(self) -> None:
        return None

    def _error(self, what: str, exc: OSError) -> ArtifactError:
        """Permissions and read-only mounts need the operator; a full disk or I/O error may pass."""
        message = f"local artifact store {self.root}: {what} ({exc.strerror or type(exc).__name__})"
        if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            return ArtifactError(message)
        return ArtifactUnavailable(message)


def _copy_hashing(src: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(READ_CHUNK):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _link_no_overwrite(temp: Path, final: Path) -> bool:
    """Give `temp` the name `final` unless that exists; True when this call created it."""
    try:
        os.link(temp, final)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    # No hard links here: check, then rename. Two writers racing can only replace equal bytes.
    if final.exists():
        return False
    os.replace(temp, final)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
