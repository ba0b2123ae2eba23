"""ISO-8601 stamps from desks and webhooks as unix seconds. A leaf module: web and desks both read stamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso_seconds(value: Any) -> float | None:
    """Unix seconds of an ISO-8601 stamp with or without offset ("Z" too; naive is UTC); None for anything
    else, never raising: stamps come from outside."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
