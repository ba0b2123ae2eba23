"""A real store for tests that commit chain events themselves: opened, its cursor set, closed after."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sidecar.store.db import Store
from sidecar.store.inbox import init_cursor_txn


@contextlib.asynccontextmanager
async def store_at(path: Path, chain: str, height: int) -> AsyncIterator[Store]:
    """A store at `path` whose cursor stands at `height` of `chain` (events commit from `height` + 1)."""
    store = await Store.open(str(path))
    try:
        await store.write("cursor", init_cursor_txn, chain, height)
        yield store
    finally:
        await store.close()
