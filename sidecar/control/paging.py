"""A list request's arguments, checked before any SQL runs: its page (limit, token) and its filters.

Pages are keyset pages on the row id, newest first: a token holds the last id returned, so rows added
while an operator pages show up on a new first page and never shift or repeat the pages after it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn, TypeVar

import grpc

from sidecar.chain.events import parse_ticket_id
from sidecar.digits import is_decimal

Listing = Literal["jobs", "intents", "conflicts"]
DESKS = ("jira", "waldur")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_VERSION = "v1"
_MAX_TOKEN_CHARS = 100
T = TypeVar("T")


class BadArgument(ValueError):
    """A request field the call cannot use; the message starts with the field's name (never echoes its value)."""


@dataclass(frozen=True)
class Page:
    limit: int
    before_id: int | None  # rows with a smaller id only; None on the first page

    @property
    def fetch(self) -> int:
        """One row more than the page holds: its presence says another page follows."""
        return self.limit + 1


def page_of(listing: Listing, limit: int, token: str) -> Page:
    if limit < 0 or limit > MAX_LIMIT:
        raise BadArgument(f"limit: must be 1..{MAX_LIMIT} (0 means {DEFAULT_LIMIT})")
    return Page(limit or DEFAULT_LIMIT, _before_id(listing, token) if token else None)


def cut(listing: Listing, rows: Sequence[T], page: Page, id_of: Callable[[T], int]) -> tuple[list[T], str]:
    """The page's rows and the token of the next page ('' when this one is the last)."""
    if len(rows) <= page.limit:
        return list(rows), ""
    kept = list(rows[: page.limit])
    return kept, _token(listing, id_of(kept[-1]))


def _token(listing: Listing, last_id: int) -> str:
    raw = f"{_VERSION}:{listing}:{last_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _before_id(listing: Listing, token: str) -> int:
    bad = BadArgument(f"page_token: not a token of this {listing} list (pass next_page_token as returned)")
    if len(token) > _MAX_TOKEN_CHARS:
        raise bad
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode("ascii")
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise bad from exc
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != _VERSION or parts[1] != listing or not is_decimal(parts[2]):
        raise bad
    last_id = int(parts[2])
    if last_id < 1:
        raise bad
    return last_id


def check_state(value: str, states: Sequence[str]) -> str | None:
    if not value:
        return None
    if value not in states:
        raise BadArgument(f"state: must be one of {', '.join(states)}")
    return value


def check_desk(value: str) -> str | None:
    if not value:
        return None
    if value not in DESKS:
        raise BadArgument(f"desk: must be {' or '.join(DESKS)}")
    return value


def check_ticket_id(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_ticket_id(value)
    except ValueError as exc:
        raise BadArgument("ticket_id: must be <address>/support/<n>") from exc
    return value


async def refuse(context: grpc.aio.ServicerContext, code: grpc.StatusCode, detail: str) -> NoReturn:
    """context.abort, typed as what it does: it raises."""
    await context.abort(code, detail)
    raise AssertionError("context.abort returned")
