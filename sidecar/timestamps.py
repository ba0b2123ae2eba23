"""ISO-8601 stamps from desks and webhooks as unix seconds, and unix seconds as the stamps the guide shows. A leaf
module: web, desks and control all read or write stamps."""

from __future__ import annotations

import time
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


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC to the second, as the guide shows: 2024-01-15T10:30:00Z."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
