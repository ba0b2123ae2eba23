"""JSON from anyone we do not control, parsed with limits on size and nesting.

Python's decoder recurses once per `[` or `{`: a body of a thousand brackets raises RecursionError,
which no caller expects, and a value nested a few hundred levels deep parses but breaks whatever walks it
recursively later (redaction, re-encoding). Every parse of outside input (envelopes opened from the chain,
webhooks, desk answers, node answers) goes through `loads`, which refuses both with a ValueError subclass,
so one hostile item becomes one recorded outcome.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

DEFAULT_MAX_DEPTH = 64


def _interned(obj: dict[str, Any]) -> dict[str, Any]:
    return {sys.intern(key): value for key, value in obj.items()}


class JsonLimitError(ValueError):
    """The input is not JSON we accept: too large, too deep, or not JSON at all."""


def _refuse_constant(name: str) -> Any:
    raise JsonLimitError(f"not JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonLimitError("not JSON this parser accepts: a number out of a double's range")
    return value


# Python's parser takes NaN and Infinity, which JSON has not, and turns 1e400 into inf, which it writes back
# as Infinity: SQLite's JSON functions then call the stored text malformed, and no desk takes it. Refused.
_PLAIN = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


# The parser shares equal keys only within one document; chain events repeat the same twenty-odd keys in
# every payload, and a backfill holds thousands at once (a third of their memory was copies of the keys).
# Interned in the parser's object hook, they need no second walk over the parsed value (10,000 payloads:
# 78 ms, where parsing and then walking took 123 ms).
_INTERNING = json.JSONDecoder(object_hook=_interned, parse_constant=_refuse_constant, parse_float=_finite)


def nesting_depth(value: Any, limit: int) -> int:
    """How deep a parsed value nests arrays and objects (a scalar 0, `[]` 1), walked level by level, never
    recursing. The walk stops past `limit` (answering limit + 1), so a hostile value costs no more than that."""
    containers = (dict, list)
    level = [value] if isinstance(value, containers) else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        inner: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            inner += [child for child in children if isinstance(child, containers)]
        level = inner
    return depth


def loads(data: bytes | str, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH, intern_keys: bool = False) -> Any:
    """`json.loads` with a size cap (bytes of the input) and a nesting cap; errors never quote the input.
    `intern_keys`: every object key is the interned string, for values held in great numbers."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise JsonLimitError(f"JSON of {size} bytes is over the limit of {max_bytes}")
    try:
        text = data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonLimitError(f"JSON is not UTF-8 (byte {exc.start})") from None
    try:
        value = (_INTERNING if intern_keys else _PLAIN).decode(text)
    except JsonLimitError:
        raise
    except RecursionError:  # the C parser counts its nesting against Python's recursion limit
        raise JsonLimitError(f"JSON nests over {max_depth} levels deep, the limit") from None
    except json.JSONDecodeError as exc:
        raise JsonLimitError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python's cap on int digits (4,300): a hostile number is refused like any bad input
        raise JsonLimitError("not JSON this parser accepts: a number too long to convert") from None
    # Nesting is at most the number of opening brackets: counting them (C speed) spares the walk for
    # ordinary small bodies (a 1 KB webhook has a dozen); a larger value is walked once parsed, which costs
    # a fraction of stripping strings from the text would (a 10-height block_results batch: 2 ms, not 11).
    if text.count("[") + text.count("{") > max_depth and nesting_depth(value, max_depth) > max_depth:
        raise JsonLimitError(f"JSON nests over {max_depth} levels deep, the limit")
    return value
