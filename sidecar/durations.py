"""Durations as people write them ('30s', '5m', '500ms'): a leaf module, since configuration and the
audit export's --since/--until both read them."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(raw: object) -> float:
    """'30s', '5m', '500ms', '2h', '1d' or a bare number of seconds."""
    if isinstance(raw, bool):
        raise ValueError("a duration such as 30s, 5m or 500ms")
    if isinstance(raw, (int, float)):
        return float(raw)
    match = _DURATION.match(str(raw))
    if not match:
        raise ValueError("a duration such as 30s, 5m or 500ms")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
