"""Finding a path of Jira transitions to a status, one hop at a time.

Jira shows only the transitions out of an issue's current status (GET .../transitions), and real
workflows are not fully connected (a JSM service request reaches Resolved only from In Progress).
So the client walks: each hop is chosen from what it has seen of the workflow so far (a BFS over
the transitions learnt from earlier reads), else by exploring a status it has not seen the way
out of. Exploring never enters a done-category status other than the target, so a walk cannot
resolve or close an issue on the way to somewhere else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_STEPS = 4  # transitions one status change may take
DONE = "done"


@dataclass(frozen=True)
class Hop:
    """One available transition: its id, name, target status and that status's category key."""

    id: str
    name: str
    to: str
    category: str
    fields: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)  # the transition screen


def parse_hops(answer: dict[str, Any]) -> list[Hop]:
    """The usable transitions of a GET .../transitions answer (unavailable ones and junk skipped)."""
    hops: list[Hop] = []
    for item in answer.get("transitions") or []:
        if not isinstance(item, dict) or "id" not in item or item.get("isAvailable", True) is False:
            continue
        to = _object(item.get("to"))
        category = _object(to.get("statusCategory"))
        screen = _object(item.get("fields"))
        hops.append(
            Hop(
                str(item["id"]),
                str(item.get("name", "")),
                str(to.get("name", "")),
                str(category.get("key", "")),
                {str(k): v for k, v in screen.items() if isinstance(v, dict)},
            )
        )
    return hops


def describe(hops: list[Hop]) -> str:
    return ", ".join(f"{h.name!r} -> {h.to!r}" for h in hops) or "none"


class WorkflowMap:
    """The transitions seen out of each status, per issue type, learnt from every read (process memory)."""

    def __init__(self) -> None:
        self._out: dict[tuple[str, str], list[Hop]] = {}

    def learn(self, issue_type: str, status: str, hops: list[Hop]) -> None:
        self._out[(issue_type.lower(), status.lower())] = list(hops)

    def next_hop(
        self, issue_type: str, current: str, target: str, hops: list[Hop], visited: set[str], mapped: set[str]
    ) -> Hop | None:
        """The transition to take now out of `hops` (read at `current`), or None when no way is known or
        left to explore; `visited` (lower-case names) are statuses this walk has already left, `mapped`
        (lower-case) the statuses of jira.status_map, the only ones a walk explores through."""
        kind, here, goal = issue_type.lower(), current.lower(), target.lower()
        direct = [h for h in hops if h.to.lower() == goal]
        if direct:
            return direct[0]

        # Over learnt transitions too, never through a done status (the target itself may be one).
        def arrives(hop: Hop) -> bool:
            return hop.to.lower() == goal

        known = self._bfs(kind, here, hops, visited, arrives, lambda hop: hop.category != DONE)
        if known is not None:
            return known

        # Explore: the first hop towards the nearest status whose way out is not known yet, only through
        # mapped statuses and never through (or into) a done one, so a walk towards somewhere else cannot
        # resolve or close the issue, nor leave it at a status the sidecar has no meaning for.
        def passable(hop: Hop) -> bool:
            return hop.category != DONE and hop.to.lower() in mapped

        def unlearned(hop: Hop) -> bool:
            return passable(hop) and (kind, hop.to.lower()) not in self._out

        return self._bfs(kind, here, hops, visited, unlearned, passable)

    def _bfs(
        self,
        kind: str,
        here: str,
        hops: list[Hop],
        visited: set[str],
        found: Callable[[Hop], bool],
        passable: Callable[[Hop], bool],
    ) -> Hop | None:
        """The first hop of a shortest path over the learnt transitions (the fresh `hops` out of `here`) to
        a status `found` accepts, entering only `passable` hops' statuses and none this walk has left."""
        queue: deque[tuple[Hop, Hop]] = deque((h, h) for h in hops)
        seen = {here, *visited}
        while queue:
            hop, first = queue.popleft()
            status = hop.to.lower()
            if status in seen:
                continue
            if found(hop):
                return first
            seen.add(status)
            if not passable(hop):
                continue
            for onward in self._out.get((kind, status), []):
                queue.append((onward, first))
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
