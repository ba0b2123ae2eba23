"""What an audit row may hold, so ticket content and secrets never are stored: the one cleaning rule.

`clean_entry` (as `clean_fields`) is applied by `append_audit_txn` to every row, whichever component
appends it (the Auditor, webhook intake, the ticket and inbox stores, the signer), so no path can skip it.

  * detail values are ids, hashes, counts, flags or short labels: None, bool, int, float, or a
    string of at most 200 characters without line breaks, or a list of up to 50 of those;
  * a detail key whose words include subject, description, message, body, content, text,
    comment, title, summary, payload, plaintext, token, secret, password, authorization, auth or
    mnemonic, or that names a private, signing, api or secret key, is refused, unless its last
    word marks an identifier (id, ids, hash, sha256, count, len, bytes, name, names):
    `body_sha256` and `external_key` are fine, `body` and `api_key` are not;
  * every string (details, error, and the other columns) passes the log redactor, so a configured
    secret or an Authorization header value is masked; `error` is cut to 500 characters.
A refused detail is dropped, its key is listed under `dropped`, and a warning names the key.
Cleaning a clean entry changes nothing, so a caller may clean before appending.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sidecar.observe.logs import Redactor

if TYPE_CHECKING:
    from sidecar.store.audit import AuditEntry

log = logging.getLogger("sidecar.observe.audit")

MAX_VALUE_CHARS = 200
MAX_LIST_ITEMS = 50
MAX_ERROR_CHARS = 500
CONTENT_WORDS = frozenset(
    {
        *("subject", "description", "message", "body", "content", "text", "comment", "comments", "title"),
        *("summary", "payload", "plaintext", "token", "tokens", "secret", "password", "passphrase"),
        *("authorization", "auth", "mnemonic"),
    }
)
_KEY_NAMES = re.compile(r"(private|signing|api|secret)[^a-z0-9]*key")
_LINE_BREAKS = re.compile(r"[\r\n]+")
ID_WORDS = frozenset({"id", "ids", "hash", "sha256", "count", "len", "bytes", "name", "names"})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # an entry class's field names, read once (`fields` is slow)


@functools.lru_cache(maxsize=1024)  # a pure function of the key; every audit row asks it of each detail key
def is_content_key(key: str) -> bool:
    """True when a detail key names content or a credential rather than an identifier."""
    words = [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]
    if not words:
        return True
    if words[-1] in ID_WORDS:
        return False
    return any(w in CONTENT_WORDS for w in words) or bool(_KEY_NAMES.search(key.lower()))


def _scalar_ok(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and len(value) <= MAX_VALUE_CHARS and "\n" not in value and "\r" not in value


def clean_details(details: Mapping[str, Any], redact: Redactor) -> tuple[dict[str, Any], list[str]]:
    """Apply the module's rule: return the details that may be stored and the keys dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in details.items():
        ok = not is_content_key(str(key))
        if ok and isinstance(value, (list, tuple)):
            ok = len(value) <= MAX_LIST_ITEMS and all(_scalar_ok(v) for v in value)
        elif ok:
            ok = _scalar_ok(value)
        if not ok:
            # A key name is stored as a short label too: one line, redacted, so a second cleaning keeps it.
            dropped.append(redact(_LINE_BREAKS.sub(" ", str(key)))[:MAX_VALUE_CHARS])
            continue
        kept[redact(str(key))] = _redact_value(value, redact)
    return kept, sorted(dropped)[:MAX_LIST_ITEMS]


def _redact_value(value: Any, redact: Redactor) -> Any:
    # Cut again after masking (a mask can be longer than what it hides), so a clean value stays clean.
    if isinstance(value, str):
        return redact(value)[:MAX_VALUE_CHARS]
    if isinstance(value, (list, tuple)):
        return [redact(v)[:MAX_VALUE_CHARS] if isinstance(v, str) else v for v in value]
    return value


def clean_entry(entry: AuditEntry, redact: Redactor) -> AuditEntry:
    """The entry as it will be stored."""
    return type(entry)(**clean_fields(entry, redact))


def clean_fields(entry: AuditEntry, redact: Redactor) -> dict[str, Any]:
    """`clean_entry`'s fields by name, without building the entry: the chain's row is made from them (every
    webhook delivery's row is cleaned in the writer thread, holding the GIL)."""
    details, dropped = clean_details(entry.details, redact)
    if dropped:
        log.warning("audit details dropped", extra={"event_type": entry.event_type, "keys": dropped})
        details["dropped"] = dropped
    names = _FIELD_NAMES.get(type(entry))
    if names is None:
        names = _FIELD_NAMES[type(entry)] = tuple(f.name for f in dataclasses.fields(entry))
    cleaned: dict[str, Any] = {}
    for name in names:
        value = getattr(entry, name)
        if name == "details":
            value = details
        elif name == "error":
            value = redact(value)[:MAX_ERROR_CHARS] if value is not None else None
        elif isinstance(value, str):
            value = redact(value)[:MAX_VALUE_CHARS]
        cleaned[name] = value
    return cleaned
