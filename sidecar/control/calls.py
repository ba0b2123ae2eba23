"""The control calls by what they may do: read-only calls and calls that change the sidecar."""

from __future__ import annotations

READ_ONLY = frozenset({"GetStatus", "GetTicket", "ListJobs", "ListConflicts", "ListTxIntents", "WatchEvents"})
MUTATING = frozenset(
    {
        "RedriveJob",
        "RedriveIntent",
        "ResolveConflict",
        "SyncTicket",
        "Reconcile",
        "Pause",
        "Resume",
        "ResyncSequence",
    }
)


def method_name(full_method: str) -> str:
    """'/virtengine.servicedesk.v1.Control/GetStatus' -> 'GetStatus'."""
    return full_method.rsplit("/", 1)[-1]
