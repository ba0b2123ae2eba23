"""The pure decisions of inbound field sync: desk value -> chain value, and which side a field goes to.

Reverse maps. A desk value may stand for several chain values (Jira "In Progress" <- assigned,
in_progress; Waldur "Open" <- five statuses). The chain value chosen for it, first rule that applies:

| rule | why |
|---|---|
| the chain's current value, if the desk value stands for it | the two already agree: nothing to send |
| the base (last synced value), if the desk value stands for it | the desk did not change since the base |
| the desk name itself (`In Progress` -> in_progress), else the table's first | FieldMap.to_chain |
| status: if unreachable from the current status, the candidate reached in fewest steps | a reopening |
| status: never `archived` while another candidate exists | inbound never archives |

(A reopening: Waldur "Open" on a resolved ticket means in_progress, not the impossible resolved -> open.)

A desk value missing from the table is "unmapped" (the caller audits it, nothing is guessed); a desk
assignee cleared is "unassigned": the chain has no unassign, so it is reported, not sent.

The three-way decision, per ticket, desk and field, over chain-vocabulary values. The base is the last
value synced for the field; NO_BASE (first sight) counts as the chain's value, the chain being where
tickets are born. None is a value (no assignee), not a missing base.

| desk vs chain | chain vs base | desk vs base | outcome | winner |
|---|---|---|---|---|
| equal | any | any | IN_SYNC (the base becomes the value) | - |
| differ | changed | same | TO_DESK (outbound's job) | - |
| differ | same | changed | TO_CHAIN | - |
| differ | changed | changed | CONFLICT, by strategy: | |
| | | | on_chain_wins | chain |
| | | | external_wins | desk |
| | | | newest_wins: the later change time | chain on a tie or an unknown time |
| | | | manual | None (parked) |

newest_wins compares whole seconds: block times are whole seconds, so a desk time in the same second
is a tie, and a tie keeps the chain's value.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass
from typing import Final, Literal, cast

from virtengine.support.v1 import tx_pb2, types_pb2

from sidecar.chain.transitions import STATUS_CODES, STATUSES, path
from sidecar.config_schema import ConflictStrategy
from sidecar.desks.mapping import DeskMapping, FieldMap

Side = Literal["chain", "desk"]


class NoBase(enum.Enum):
    """The field was never synced for this ticket and desk (first sight)."""

    NO_BASE = "no base"


NO_BASE: Final = NoBase.NO_BASE


@dataclass(frozen=True)
class ReverseMapped:
    """A desk value in chain vocabulary; `value` is None exactly when `reason` says why there is none."""

    value: str | None
    reason: Literal["unmapped", "unassigned"] | None = None


def _stands_for(table: FieldMap, desk_value: str, chain_value: str | None) -> bool:
    """Whether the desk value is one the table maps chain_value to (to_chain returns a candidate only)."""
    return chain_value is not None and table.to_chain(desk_value, chain_value) == chain_value


def chain_value(
    field: str,
    desk_value: str | None,
    current: str | None,
    mapping: DeskMapping,
    *,
    base: str | NoBase | None = NO_BASE,
) -> ReverseMapped:
    """The chain value a desk value stands for (field: one of INBOUND_FIELDS), by the module docstring's rules."""
    tables = {"status": mapping.status, "priority": mapping.priority, "assignee": mapping.assignee}
    if field not in tables:
        raise ValueError(f"no reverse map for field {field!r}")
    if desk_value is None:
        return ReverseMapped(None, "unassigned" if field == "assignee" else "unmapped")
    table = tables[field]
    first = table.to_chain(desk_value, current)
    if first is None:
        return ReverseMapped(None, "unmapped")
    for kept in (current, None if base is NO_BASE else base):
        if _stands_for(table, desk_value, kept):
            return ReverseMapped(kept)
    if field == "status":
        return ReverseMapped(_status(table, desk_value, current, first))
    return ReverseMapped(first)


def _status(table: FieldMap, desk_value: str, current: str | None, first: str) -> str:
    candidates = [s for s in STATUSES if _stands_for(table, desk_value, s)]
    choice = first
    if current is not None and path(current, choice) is None:
        reachable = [(len(steps), s) for s in candidates if (steps := path(current, s)) is not None]
        if reachable:
            choice = min(reachable, key=lambda pair: (pair[0], STATUSES.index(pair[1])))[1]
    if choice == "archived":
        others = [s for s in candidates if s != "archived"]
        choice = others[0] if others else choice
    return choice


class Outcome(enum.Enum):
    IN_SYNC = "in_sync"
    TO_DESK = "to_desk"
    TO_CHAIN = "to_chain"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Decision:
    """What to do with one field. `value` is what both sides should end up holding (None: parked, or the
    value None); `rule` says what decided it, for the audit row (never a value)."""

    outcome: Outcome
    value: str | None
    rule: str
    winner: Side | None = None

    @property
    def target(self) -> Side | None:
        """The side that must be written: the chain (desk value wins) or the desk (chain value wins)."""
        if self.outcome is Outcome.TO_CHAIN or (self.outcome is Outcome.CONFLICT and self.winner == "desk"):
            return "chain"
        if self.outcome is Outcome.TO_DESK or (self.outcome is Outcome.CONFLICT and self.winner == "chain"):
            return "desk"
        return None


def decide(
    base: str | NoBase | None,
    chain: str | None,
    desk: str | None,
    strategy: ConflictStrategy,
    chain_changed_at: float | None,
    desk_changed_at: float | None,
) -> Decision:
    """The three-way decision of the module docstring's table."""
    if desk == chain:
        return Decision(Outcome.IN_SYNC, chain, "in sync")
    origin = chain if base is NO_BASE else base
    if desk == origin:
        return Decision(Outcome.TO_DESK, chain, "chain changed")
    if chain == origin:
        return Decision(Outcome.TO_CHAIN, desk, "desk changed")
    winner, rule = _conflict_winner(strategy, chain_changed_at, desk_changed_at)
    value = None if winner is None else (chain if winner == "chain" else desk)
    return Decision(Outcome.CONFLICT, value, rule, winner)


def _conflict_winner(
    strategy: ConflictStrategy, chain_at: float | None, desk_at: float | None
) -> tuple[Side | None, str]:
    if strategy == "on_chain_wins":
        return "chain", strategy
    if strategy == "external_wins":
        return "desk", strategy
    if strategy == "manual":
        return None, strategy
    if desk_at is None or not math.isfinite(desk_at):
        return "chain", "newest_wins: desk time unknown: chain kept"
    if chain_at is None or not math.isfinite(chain_at):
        return "chain", "newest_wins: chain time unknown: chain kept"
    chain_s, desk_s = math.floor(chain_at), math.floor(desk_at)
    if desk_s > chain_s:
        return "desk", "newest_wins: desk newer"
    if chain_s > desk_s:
        return "chain", "newest_wins: chain newer"
    return "chain", "newest_wins: tie: chain kept"


def value_hash(value: str | None) -> str:
    """sha256 hex of a field value for audit rows (which never carry values); None and "" differ."""
    raw = b"none:" if value is None else b"value:" + value.encode()
    return hashlib.sha256(raw).hexdigest()


def update_msg(
    sender: str,
    ticket_id: str,
    *,
    status: str | None = None,
    priority: str | None = None,
    assigned_agent: str | None = None,
) -> tx_pb2.MsgUpdateSupportRequest:
    """One MsgUpdateSupportRequest setting the given fields (the chain reads empty ones as unchanged).

    Refuses `archived` (inbound never archives) and an update that sets nothing (a tx for no change)."""
    if status == "archived" or (status is not None and status not in STATUS_CODES):
        raise ValueError(f"inbound cannot set status {status!r}")
    if status is None and not priority and not assigned_agent:
        raise ValueError("an update must set at least one field")
    return tx_pb2.MsgUpdateSupportRequest(
        sender=sender,
        ticket_id=ticket_id,
        status=cast("types_pb2.SupportStatus", STATUS_CODES[status] if status is not None else 0),
        priority=priority or "",
        assigned_agent=assigned_agent or "",
    )
