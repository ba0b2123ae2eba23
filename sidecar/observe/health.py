"""The sidecar's own view of its health, updated by components and read by /webhooks/health and gRPC."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

# "unauthorized": the desk answers 401 to the sidecar's credentials (problems say why; jobs wait).
DeskState = Literal["healthy", "unhealthy", "unauthorized", "not_configured", "unknown"]


@dataclass
class ChainHealth:
    reachable: bool = False
    chain_id: str | None = None
    head_height: int | None = None
    catching_up: bool = False
    last_error: str | None = None
    checked_at: float | None = None


@dataclass
class HealthState:
    """Mutable, owned by the event loop thread; components set their part, readers compute a report."""

    chain: ChainHealth = field(default_factory=ChainHealth)
    desks: dict[str, DeskState] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def set_problem(self, component: str, problem: str | None) -> None:
        """Record (or clear, with None) a reason the sidecar is unhealthy."""
        if problem is None:
            self.problems.pop(component, None)
        else:
            self.problems[component] = problem

    @property
    def healthy(self) -> bool:
        desks_ok = all(state in ("healthy", "not_configured") for state in self.desks.values())
        return self.chain.reachable and not self.chain.catching_up and not self.problems and desks_ok
