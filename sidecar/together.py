"""Awaiting several things at once where the first failure is the answer.

asyncio.gather leaves the others running when one fails, and a TaskGroup wraps the failure in an
ExceptionGroup, which callers catching DeskError or a store failure would no longer recognise. Here the
first failure cancels the rest and is raised as itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
async def together(a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], /) -> tuple[A, B, C]: ...
@overload
async def together(*awaitables: Awaitable[A]) -> tuple[A, ...]: ...
async def together(*awaitables: Awaitable[Any]) -> tuple[Any, ...]:
    """The results in order; on a failure (or cancellation) the others are cancelled and awaited first."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return tuple(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
