"""What a desk job's unexpected exception becomes: a reason safe to store, audit and log, or a re-raise.

A job that raises anything but DeskError is dead-lettered so the worker goes on; the reason names the
exception type and where it was raised, plus the message only for types whose messages are known
to carry no ticket content or secrets. Store failures and cancellation are not the job's: they propagate.
"""

from __future__ import annotations

import os
import re
import sqlite3
import traceback

import httpx

from sidecar.boundedjson import JsonLimitError
from sidecar.errors import StoreError

MAX_REASON = 240
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Messages of these types describe the input's shape or a constraint, never its content.
_SAFE_MESSAGES: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, httpx.InvalidURL, JsonLimitError)


def is_store_failure(exc: BaseException) -> bool:
    """The database itself failed (not one job's row conflicting): the process must not carry on."""
    if isinstance(exc, StoreError):
        return True
    return isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError)


def job_failure_reason(exc: BaseException) -> str:
    """`TypeName at file.py:123 in function[: safe message]`, at most MAX_REASON characters."""
    reason = type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        reason += f" at {os.path.basename(last.filename)}:{last.lineno} in {last.name}"
    message = _safe_message(exc)
    if message:
        reason += f": {message}"
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


def _safe_message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        key = exc.args[0]
        return f"missing field {key!r}" if isinstance(key, str) and _IDENTIFIER.fullmatch(key) else ""
    if isinstance(exc, _SAFE_MESSAGES):
        return " ".join(str(exc).split())
    return ""
