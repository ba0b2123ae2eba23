"""Field mapping tables between chain values and desk values, built once from configuration.

Outbound, an unmapped chain value takes the configured default and is reported (UnmappedValue)
so the caller can audit it instead of silently dropping it. Inbound, a desk value may stand for
several chain values (Jira "Closed" <- closed, archived): the current chain value is kept when it
is one of them, so a round trip never rewrites the chain for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.config_schema import JiraConfig, Pairs, WaldurConfig
from sidecar.desks.base import DeskName, UnmappedValue


@dataclass(frozen=True)
class Mapped:
    """A desk value for a chain value; `unmapped` is set when the default stood in for it."""

    value: str | None
    unmapped: UnmappedValue | None = None


class FieldMap:
    """One field's table: chain -> desk (with a default) and the reverse, case-insensitive on the desk side."""

    def __init__(self, desk: DeskName, field: str, pairs: Pairs, default: str | None) -> None:
        self.desk = desk
        self.field = field
        self.default = default
        self._out = dict(pairs)
        self._back: dict[str, list[str]] = {}
        for chain_value, desk_value in pairs:
            self._back.setdefault(desk_value.lower(), []).append(chain_value)

    def to_desk(self, chain_value: str) -> Mapped:
        if chain_value in self._out:
            return Mapped(self._out[chain_value])
        return Mapped(self.default, UnmappedValue(self.desk, self.field, chain_value, self.default))

    def to_chain(self, desk_value: str, current: str | None = None) -> str | None:
        """The chain value for a desk value, or None when the desk value is not in the table."""
        candidates = self._back.get(desk_value.lower(), [])
        if not candidates:
            return None
        if current in candidates:
            return current
        normalized = desk_value.lower().replace(" ", "_")
        return normalized if normalized in candidates else candidates[0]

    def desk_values(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._out.values()))


@dataclass(frozen=True)
class DeskMapping:
    """The tables one desk uses; `category` is None for Jira, where the category travels as a label.
    `assignee` maps chain agent addresses to desk user ids and has no default: nobody is guessed."""

    priority: FieldMap
    status: FieldMap
    assignee: FieldMap
    category: FieldMap | None = None

    def unmapped(
        self, priority: str, status: str, category: str, assignee: str | None = None
    ) -> tuple[UnmappedValue, ...]:
        """Every value of a ticket that only a default (or nothing) stands in for."""
        found = [self.priority.to_desk(priority).unmapped, self.status.to_desk(status).unmapped]
        if self.category is not None:
            found.append(self.category.to_desk(category).unmapped)
        if assignee:
            found.append(self.assignee.to_desk(assignee).unmapped)
        return tuple(u for u in found if u is not None)

    def desk_assignee(self, agent: str | None) -> str | None:
        """The desk user for the ticket's chain agent; None when unassigned or unmapped (left as it is)."""
        return self.assignee.to_desk(agent).value if agent else None


def jira_mapping(config: JiraConfig) -> DeskMapping:
    # Statuses have no default: moving a Jira issue to a guessed status would be worse than an error.
    return DeskMapping(
        priority=FieldMap("jira", "priority", config.priority_map, config.default_priority),
        status=FieldMap("jira", "status", config.status_map, None),
        assignee=FieldMap("jira", "assignee", config.assignee_map, None),
    )


def waldur_mapping(config: WaldurConfig) -> DeskMapping:
    """Types and priorities are names Waldur must know: WaldurDesk checks them against the server's lists.
    An unmapped category takes the type mapped for `other` (None: Waldur's first active request type);
    an empty default_priority sends no priority."""
    return DeskMapping(
        priority=FieldMap("waldur", "priority", config.priority_map, config.default_priority or None),
        status=FieldMap("waldur", "status", config.status_map, None),
        assignee=FieldMap("waldur", "assignee", config.assignee_map, None),
        category=FieldMap("waldur", "type", config.type_map, dict(config.type_map).get("other")),
    )
