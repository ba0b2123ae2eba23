"""Directions an operator paused (per desk, or every desk), kept in the store so a restart keeps them.

A pause stops work, never intake: the follower still queues jobs and webhooks still queue re-reads,
so nothing is lost while paused and everything runs once resumed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.store.db import Store

DIRECTIONS = ("outbound", "inbound")
EVERY_DESK = ""


@dataclass(frozen=True)
class Pause:
    direction: str
    desk: str  # EVERY_DESK ('') for all desks
    since: float
    by: str
    reason: str


def list_pauses(conn: sqlite3.Connection) -> list[Pause]:
    rows = conn.execute("SELECT direction, desk, since, paused_by, reason FROM pauses ORDER BY direction, desk")
    return [Pause(r["direction"], r["desk"], float(r["since"]), r["paused_by"], r["reason"]) for r in rows]


def pause_txn(
    conn: sqlite3.Connection, directions: tuple[str, ...], desk: str, by: str, reason: str, now: float
) -> int:
    """Pause each direction for the desk (EVERY_DESK: all); an existing pause keeps its start. Returns new pauses."""
    added = 0
    for direction in directions:
        cur = conn.execute(
            "INSERT INTO pauses (direction, desk, since, paused_by, reason) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (direction, desk) DO NOTHING",
            (direction, desk, now, by, reason),
        )
        added += cur.rowcount
    return added


def resume_txn(conn: sqlite3.Connection, directions: tuple[str, ...], desk: str | None) -> int:
    """Lift the pauses of these directions: of one desk entry (EVERY_DESK included), or all when desk is None."""
    lifted = 0
    for direction in directions:
        if desk is None:
            cur = conn.execute("DELETE FROM pauses WHERE direction = ?", (direction,))
        else:
            cur = conn.execute("DELETE FROM pauses WHERE direction = ? AND desk = ?", (direction, desk))
        lifted += cur.rowcount
    return lifted


def is_paused(pauses: list[Pause], direction: str, desk: str) -> bool:
    """Paused for this desk, directly or by a pause of every desk."""
    return any(p.direction == direction and p.desk in (desk, EVERY_DESK) for p in pauses)


class PauseBook:
    """The pauses in force, held in memory: the engines ask it on every step without a read. Loaded from the
    store at start; the control calls change the store first, then replace the book under `lock`, so two
    concurrent calls cannot leave it older than the store."""

    def __init__(self, pauses: Sequence[Pause] = ()) -> None:
        self._pauses = list(pauses)
        self.lock = asyncio.Lock()

    @classmethod
    async def load(cls, store: Store) -> PauseBook:
        return cls(await store.read("pauses", list_pauses))

    @property
    def pauses(self) -> list[Pause]:
        return list(self._pauses)

    def replace(self, pauses: Sequence[Pause]) -> None:
        self._pauses = list(pauses)

    def is_paused(self, direction: str, desk: str) -> bool:
        return is_paused(self._pauses, direction, desk)
