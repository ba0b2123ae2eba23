"""JSON from anyone we do not control, parsed with limits on size and nesting.

Python's decoder recurses once per `[` or `{`: a body of a thousand brackets raises RecursionError,
which no caller expects. Every parse of outside input (envelopes opened from the chain, webhooks,
desk answers, node answers) goes through `loads`, which refuses such input with a ValueError
subclass before decoding it, so one hostile item becomes one recorded outcome.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: ~7x faster on escape-rich text
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


class JsonLimitError(ValueError):
    """The input is not JSON we accept: too large, too deep, or not JSON at all."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, ignoring brackets inside strings (C-speed passes
    strip strings and everything but brackets; only the brackets are walked in Python)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads(data: bytes | str, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """`json.loads` with a size cap (bytes of the input) and a nesting cap; errors never quote the input."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise JsonLimitError(f"JSON of {size} bytes is over the limit of {max_bytes}")
    try:
        text = data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonLimitError(f"JSON is not UTF-8 (byte {exc.start})") from None
    # Nesting is at most the number of opening brackets: counting them (C speed) spares the walk for
    # ordinary bodies (a 1 KB webhook has a dozen), and only a body with more needs its depth measured.
    if text.count("[") + text.count("{") > max_depth:
        depth = nesting_depth(text)
        if depth > max_depth:
            raise JsonLimitError(f"JSON nests {depth} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(text)
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise JsonLimitError("JSON nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise JsonLimitError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python's cap on int digits (4,300): a hostile number is refused like any bad input
        raise JsonLimitError("not JSON this parser accepts: a number too long to convert") from None
