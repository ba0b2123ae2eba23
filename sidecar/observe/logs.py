"""Structured logging with redaction: one event per line, secrets removed from every line.

The redaction runs in the handler's formatter on each value (the message, every extra, the
traceback) before the line is rendered: rendering escapes `"`, `\\`, newlines and non-ASCII in
JSON, so a secret would no longer match once rendered. Text lines are also redacted whole.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

# Anything that looks like an Authorization header value, wherever it appears.
_AUTH_PATTERN = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer|token)\s+[A-Za-z0-9+/=._~-]+")
_MASK = "<redacted>"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class Redactor:
    """Replaces known secret values and Authorization-shaped text with a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first so a secret containing another is masked whole; tiny values would mask noise.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return _AUTH_PATTERN.sub(lambda m: m.group(1) + _MASK, text)


_current = Redactor()


def current_redactor() -> Redactor:
    """The process's redactor (every configured secret once setup_logging ran), for outputs other than logs."""
    return _current


def redact_value(value: Any, redact: Redactor) -> Any:
    """`value` with every string in it redacted; values JSON cannot carry become their redacted str()."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {redact(str(k)): redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(v, redact) for v in value]
    return redact(str(value))


_ENCODE = json.JSONEncoder(default=str, separators=(",", ":")).encode  # built once, not per line


class _Formatter(logging.Formatter):
    def __init__(self, redact: Redactor, as_json: bool) -> None:
        super().__init__()
        self._redact = redact
        self._as_json = as_json
        self._second, self._stamp = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        redact = self._redact
        extras = {
            k: redact_value(v, redact) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        message = redact(record.getMessage())
        error = redact(self.formatException(record.exc_info)) if record.exc_info else None
        if self._as_json:
            doc: dict[str, Any] = {
                "ts": f"{self._utc_second(record.created)}.{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
                **extras,
            }
            if error:
                doc["error"] = error
            return _ENCODE(doc)  # values are redacted already
        fields = " ".join(f"{k}={v}" for k, v in extras.items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {message}"
        line += f" {fields}" if fields else ""
        line += f"\n{error}" if error else ""
        return redact(line)  # unescaped text: a secret split across two values is caught here too

    def _utc_second(self, created: float) -> str:
        """The record's whole UTC second, formatted once per second rather than per line (under the handler's lock)."""
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._stamp


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = (), stream: TextIO | None = None) -> Redactor:
    """Configure the root logger once for the process; return the redactor for other outputs."""
    global _current
    # No line shows the caller's file and line, the thread or the process: records skip gathering them (the
    # logging HOWTO's "Optimization" switches; ~1 us of every line, which the webhook receiver writes per delivery).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    redactor = Redactor(secrets)
    _current = redactor
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(redactor, as_json=(fmt == "json")))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "websockets", "hpack", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
