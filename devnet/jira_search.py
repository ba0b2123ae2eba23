"""A small JQL subset and token paging for the Jira simulator's /rest/api/3/search/jql.

Supports what a sync client needs: `labels`, `project`, `key`/`issuekey`, `id`, `status`,
`priority`, `issuetype`, `summary ~`, `created`/`updated` comparisons, joined by AND, with an
optional ORDER BY. Anything else is answered with 400, like a JQL error would be.

Dates (`parse_date`) take JQL's forms (https://support.atlassian.com/jira-software-cloud/docs/jql-fields/,
"Created" / "Updated"): "yyyy/MM/dd HH:mm", "yyyy-MM-dd HH:mm", "yyyy/MM/dd", "yyyy-MM-dd", a period
relative to now ("-15m", "-2h", "-1d", "-1w", a leading + or none for the future) and epoch milliseconds.
Absolute dates are in the searching user's time zone; every simulator user's is UTC (`user_json`). A
date without a time is the start of that day, as in Jira ("created <= 2024-01-01" leaves that day out).
Both sides of a date comparison are taken at minute resolution, the precision of JQL's date forms: the
simulator's choice, which a client that asks with a minute of overlap does not depend on.
`SearchLag` decides when search sees a write: after a lag, on a clock a test can drive.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devnet.jira_rules import DEFAULT_SEARCH_DELAY

TOKEN_RE = re.compile(
    r'\s*(?:("(?:[^"\\]|\\.)*")|(\'(?:[^\'\\]|\\.)*\')|(>=|<=|!=|!~|=|>|<|~|\(|\)|,)|([^\s()=<>!~,"\']+))'
)
FIELD_ALIASES = {"issuekey": "key", "type": "issuetype"}
FIELDS = {"labels", "project", "key", "id", "status", "priority", "issuetype", "summary", "created", "updated"}
DATE_FIELDS = {"created", "updated"}
DATE_OPERATORS = {"=", "!=", ">", ">=", "<", "<="}  # the subset's; Jira also takes IN, IS, WAS on dates


class SearchLag:
    """When a write becomes visible to search: `lag` seconds after it, on `clock`.

    Jira's search index is eventually consistent: the search/jql operation documents
    `reconcileIssues` for read-after-write because a just-written issue may be missing from, or stale
    in, the results (https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/).
    Atlassian's "Search after write with search and reconcile" puts the delay at "a few seconds to
    minutes, depending on the operation. The majority of modifications are shown within seconds"
    (https://developer.atlassian.com/cloud/jira/platform/search-and-reconcile). The simulator's default,
    DEFAULT_SEARCH_DELAY = 3 s (devnet/jira_rules.py), is that majority case; a test makes it longer to
    model the slow tail. A test controls the lag with a ManualClock, or with `flush`, which indexes
    everything written so far.
    """

    def __init__(self, lag: float = DEFAULT_SEARCH_DELAY, clock: Callable[[], float] = time.monotonic) -> None:
        self.lag = lag
        self.clock = clock

    def visible_at(self) -> float:
        """The clock time at which a write made now becomes searchable."""
        return self.clock() + self.lag

    def now(self) -> float:
        """The clock time a search runs at: versions visible at or before it are found."""
        return self.clock()

    @staticmethod
    def flush(versions: Iterable[list[tuple[float, dict[str, Any]]]]) -> None:
        """Make every version written so far visible now (later writes keep their lag)."""
        for history in versions:
            history[:] = [(float("-inf"), snap) for _, snap in history]


class JqlError(ValueError):
    """The query is not valid (or not in the supported subset)."""


@dataclass
class Clause:
    field: str
    op: str  # = != > >= < <= ~ in "not in"
    values: list[str]


@dataclass
class Query:
    clauses: list[Clause]
    order: list[tuple[str, bool]]  # (field, descending)


class UpdatedIndex:
    """Issue keys by `updated`, so that a search for what changed lately (`updated >= "-3m"`, the sidecar's
    sweep) reads its hits, as Jira's index does, and not every issue the simulator holds: an hour's soak
    swept 40,000 issues twice a second, and the simulator's CPU grew with them.

    An issue's entry is the newest `updated` of any version search may still find (`note` keeps the larger),
    so a version the search lag still shows is never missed: the index answers a superset, which the query's
    clauses then narrow down. `reset` sets an issue's entry outright, for the one writer that moves an issue's
    times back (a test or benchmark backdating it, see JiraSim.reindex_as_is). Replaced entries are left in
    the sorted list and skipped, until they outnumber the live ones."""

    def __init__(self) -> None:
        self._entries: list[tuple[datetime, int, str]] = []  # sorted; (updated, serial, key)
        self._live: dict[str, tuple[datetime, int]] = {}  # key -> its live entry's (updated, serial)
        self._serial = 0

    def note(self, key: str, updated: datetime) -> None:
        live = self._live.get(key)
        if live is None or updated > live[0]:
            self.reset(key, updated)

    def reset(self, key: str, updated: datetime) -> None:
        self._serial += 1
        entry = (updated, self._serial, key)
        self._live[key] = entry[:2]
        if not self._entries or self._entries[-1] <= entry:
            self._entries.append(entry)  # the usual case: a write stamped now
        else:
            bisect.insort(self._entries, entry)
        if len(self._entries) > 2 * len(self._live) + 1024:
            self._entries = [e for e in self._entries if self._live.get(e[2]) == e[:2]]

    @property
    def held(self) -> int:
        """Entries in the sorted list, replaced ones included."""
        return len(self._entries)

    def since(self, bound: datetime) -> set[str]:
        """Keys whose entry is at or after `bound`."""
        first = bisect.bisect_left(self._entries, (bound,))
        return {e[2] for e in self._entries[first:] if self._live.get(e[2]) == e[:2]}


def indexed_since(clause: Clause, now: datetime) -> datetime | None:
    """The earliest `updated` a clause can match, when the clause is a lower bound on it (None otherwise):
    at minute resolution, as the clause compares (`>` a minute is at least the next minute, a superset)."""
    if clause.field != "updated" or clause.op not in (">=", ">"):
        return None
    return minute_bound(clause.values[0], now, clause.field)


def tokenize(jql: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; kind is 'str', 'op' or 'word'."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    jql = jql.rstrip()
    while pos < len(jql):
        match = TOKEN_RE.match(jql, pos)
        if not match or match.end() == pos:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {pos}.")
        dq, sq, op, word = match.groups()
        if dq or sq:
            raw = (dq or sq)[1:-1]
            tokens.append(("str", re.sub(r"\\(.)", r"\1", raw)))
        elif op:
            tokens.append(("op", op))
        elif word:
            tokens.append(("word", word))
        pos = match.end()
    return tokens


def parse(jql: str) -> Query:
    tokens = tokenize(jql)
    clauses: list[Clause] = []
    order: list[tuple[str, bool]] = []
    i = 0

    def peek(offset: int = 0) -> tuple[str, str]:
        return tokens[i + offset] if i + offset < len(tokens) else ("end", "")

    while i < len(tokens):
        kind, text = peek()
        if kind == "word" and text.lower() == "order" and peek(1)[1].lower() == "by":
            i += 2
            while i < len(tokens):
                name = FIELD_ALIASES.get(peek()[1].lower(), peek()[1].lower())
                i += 1
                desc = False
                if peek()[1].lower() in ("asc", "desc"):
                    desc = peek()[1].lower() == "desc"
                    i += 1
                order.append((name, desc))
                if peek()[1] != ",":
                    break
                i += 1
            if i < len(tokens):
                raise JqlError(f"Error in the JQL Query: unexpected {peek()[1]!r} after ORDER BY.")
            break
        if clauses:
            if kind == "word" and text.lower() == "and":
                i += 1
            else:
                raise JqlError(f"Error in the JQL Query: expected AND, got {text!r} (the simulator supports AND only).")
        field_kind, field_name = peek()
        name = FIELD_ALIASES.get(field_name.lower(), field_name.lower())
        if field_kind not in ("word", "str") or name not in FIELDS:
            raise JqlError(f"Field '{field_name}' does not exist or you do not have permission to view it.")
        i += 1
        kind, op = peek()
        if kind == "word" and op.lower() == "not" and peek(1)[1].lower() == "in":
            op, i = "not in", i + 2
        elif kind == "word" and op.lower() == "in":
            op, i = "in", i + 1
        elif kind == "op" and op not in "(),":
            i += 1
        else:
            raise JqlError(f"Error in the JQL Query: expected an operator after '{field_name}'.")
        values: list[str] = []
        if op in ("in", "not in"):
            if peek()[1] != "(":
                raise JqlError("Error in the JQL Query: expected '(' after IN.")
            i += 1
            while peek()[1] != ")":
                if peek()[0] not in ("word", "str"):
                    raise JqlError("Error in the JQL Query: expected a value in the list.")
                values.append(peek()[1])
                i += 1
                if peek()[1] == ",":
                    i += 1
            i += 1
        else:
            if peek()[0] not in ("word", "str"):
                raise JqlError(f"Error in the JQL Query: expected a value after '{op}'.")
            values.append(peek()[1])
            i += 1
        if name in DATE_FIELDS:
            if op not in DATE_OPERATORS:
                raise JqlError(f"The operator '{op}' is not supported by the '{field_name}' field.")
            for value in values:  # refused when the query is read, as Jira does, not when an issue is compared
                parse_date(value, datetime.now(UTC), name)
        clauses.append(Clause(name, op, values))
    return Query(clauses, order)


# Jira's refusal of a date it cannot read, word for word as Jira Cloud answers it (quoted in
# mojira/arisa-kt#213 for `updated`: "Date value '2020-05-06T12:15:17.831Z' for field 'updated' is
# invalid. Valid formats include: ..."); the period examples are Jira's own.
BAD_DATE = (
    "Date value '{value}' for field '{field}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
    "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
)


def parse_date(value: str, now: datetime, field: str = "updated") -> datetime:
    """JQL date forms: 'yyyy-MM-dd[ HH:mm]', 'yyyy/MM/dd[ HH:mm]', relative '-5m', epoch ms (UTC)."""
    rel = re.fullmatch(r"([-+]?)(\d{1,9})([wdhm])", value.strip())
    if rel:
        unit = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}[rel.group(3)]
        delta = timedelta(**{unit: int(rel.group(2))})
        return now - delta if rel.group(1) == "-" else now + delta
    try:
        if re.fullmatch(r"[0-9]{1,15}", value):
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        if re.fullmatch(r"[0-9]{4}([-/])[0-9]{2}\1[0-9]{2}( [0-9]{2}:[0-9]{2})?", value):
            fmt = "%Y-%m-%d" if "-" in value[:5] else "%Y/%m/%d"
            return datetime.strptime(value, fmt + (" %H:%M" if " " in value else "")).replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise JqlError(BAD_DATE.format(value=value, field=field))


@functools.lru_cache(maxsize=256)
def minute_bound(value: str, now: datetime, field: str) -> datetime:
    """A date clause's value at minute resolution: parsed once per search, not once per issue it tests."""
    return parse_date(value, now, field).replace(second=0, microsecond=0)


def _compare(left: Any, op: str, right: Any) -> bool:
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    if op not in ops:
        raise JqlError(f"The operator '{op}' is not supported by the simulator for this field.")
    return ops[op](left, right)


def matches(query: Query, snap: dict[str, Any], now: datetime) -> bool:
    """Whether a searchable snapshot satisfies every clause."""
    return all(_clause_matches(clause, snap, now) for clause in query.clauses)


def _clause_matches(clause: Clause, snap: dict[str, Any], now: datetime) -> bool:
    name, op, values = clause.field, clause.op, clause.values
    if name in DATE_FIELDS:
        # both sides at minute resolution (see the module docstring)
        left = snap[name].replace(second=0, microsecond=0)
        return _compare(left, op, minute_bound(values[0], now, name))
    if name == "summary":
        if op not in ("~", "!~"):
            raise JqlError("The operator '=' is not supported by the 'summary' field.")
        found = values[0].lower() in snap["summary"].lower()
        return found if op == "~" else not found
    actual = [v.lower() for v in snap["labels"]] if name == "labels" else [str(snap[name]).lower()]
    wanted = [v.lower() for v in values]
    if op in ("=", "in"):
        return any(v in actual for v in wanted)
    if op in ("!=", "not in"):
        return not any(v in actual for v in wanted)
    raise JqlError(f"The operator '{op}' is not supported by the '{name}' field.")


def sort(query: Query, snaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply ORDER BY (default: id ascending, which keeps pages stable as issues are added)."""
    result = sorted(snaps, key=lambda s: int(s["id"]))
    for name, desc in reversed(query.order):
        if name == "key":
            result.sort(key=lambda s: (s["project"], int(s["key"].rsplit("-", 1)[1])), reverse=desc)
        elif name in ("id", "created", "updated", "summary", "status", "priority", "project", "issuetype"):
            result.sort(key=_sort_key(name), reverse=desc)
        else:
            raise JqlError(f"Not able to sort using field '{name}'.")
    return result


def _sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    def key(snap: dict[str, Any]) -> Any:
        return int(snap["id"]) if name == "id" else snap[name]

    return key


def make_token(jql: str, offset: int) -> str:
    digest = hashlib.sha256(jql.encode()).hexdigest()[:16]
    raw = json.dumps({"q": digest, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(jql: str, token: str) -> int:
    """The offset a token stands for; 400-worthy JqlError if it is foreign or malformed."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(raw["o"])
        same_query = raw["q"] == hashlib.sha256(jql.encode()).hexdigest()[:16]
    except (ValueError, KeyError, TypeError) as exc:
        raise JqlError("The provided next page token is invalid or expired.") from exc
    if not same_query or offset < 0:
        raise JqlError("The provided next page token is invalid or expired.")
    return offset
