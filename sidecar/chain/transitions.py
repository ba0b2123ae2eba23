"""The chain's status transition table (CHAIN_CONTRACT.md) as data, and the paths inbound may take through it.

A desk can jump between any two of its statuses; the chain cannot. Inbound sets a desk's status on chain
through the shortest chain of allowed transitions, or not at all. It never passes through or ends at
`archived`: archiving is MsgArchiveSupportRequest's job (a customer's or retention's), never a desk's.
"""

from __future__ import annotations

from collections.abc import Mapping

from virtengine.support.v1 import types_pb2

STATUSES = (
    "open",
    "assigned",
    "in_progress",
    "waiting_customer",
    "waiting_support",
    "resolved",
    "closed",
    "archived",
)

# name -> SupportStatus number, read from the generated enum so the two can never disagree.
STATUS_CODES: Mapping[str, int] = {
    name: types_pb2.SupportStatus.Value(f"SUPPORT_STATUS_{name.upper()}") for name in STATUSES
}

ALLOWED: Mapping[str, frozenset[str]] = {
    "open": frozenset({"assigned", "in_progress", "waiting_support", "waiting_customer", "closed"}),
    "assigned": frozenset({"in_progress", "waiting_customer", "waiting_support", "resolved", "closed"}),
    "in_progress": frozenset({"waiting_customer", "waiting_support", "resolved", "closed"}),
    "waiting_customer": frozenset({"in_progress", "resolved", "closed"}),
    "waiting_support": frozenset({"in_progress", "resolved", "closed"}),
    "resolved": frozenset({"in_progress", "closed"}),
    "closed": frozenset({"archived"}),
    "archived": frozenset(),
}

TERMINAL = frozenset({"closed", "archived"})
MAX_STEPS = 3

# Which intermediate status a path prefers when several give the same length: in_progress first (an extra
# step on chain then reads as "work happened"), assigned last (it claims an agent the ticket may not have).
_PREFERENCE = ("in_progress", "waiting_support", "waiting_customer", "resolved", "closed", "assigned", "open")


def allowed(src: str, dst: str) -> bool:
    """Whether the chain accepts a status change from src to dst in one Msg."""
    return dst in ALLOWED.get(src, frozenset())


def path(src: str, dst: str) -> tuple[str, ...] | None:
    """The statuses to set, in order, to go from src to dst: () when equal, None when inbound cannot get there.

    Breadth-first over allowed transitions, at most MAX_STEPS, avoiding `archived` entirely."""
    if src not in ALLOWED or dst not in ALLOWED:
        return None
    if src == dst:
        return ()
    if dst == "archived":
        return None
    frontier: list[tuple[str, ...]] = [(src,)]
    seen = {src}
    for _ in range(MAX_STEPS):
        following: list[tuple[str, ...]] = []
        for trail in frontier:
            for step in _PREFERENCE:
                if step in seen or not allowed(trail[-1], step):
                    continue
                if step == dst:
                    return (*trail[1:], step)
                seen.add(step)
                following.append((*trail, step))
        frontier = following
    return None
