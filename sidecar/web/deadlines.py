"""Slow clients are cut off: a request's headers, and then its body, must arrive within a deadline.

uvicorn has neither. Its keep-alive timer starts only after a response and any byte cancels it,
so a client that sends a header line now and then, or a body a byte a second, holds a connection
(and, under `limit_concurrency`, a slot) for as long as it likes. Both deadlines live in the
connection's protocol (no ASGI code runs before the headers are complete, and a timer per connection
costs less than a timeout around every `receive` of every request): the headers must be complete
within the timeout of the connection's start or of the previous response, the body within the
timeout of the headers. A late body is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import h11
from starlette.types import Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)
# How early a deadline timer may fire and still count as due (the event loop runs timers up to its clock's
# resolution early): far below any deadline here, so it never cuts a connection off noticeably early.
_EARLY = 0.001
TIMEOUT_BODY = json.dumps({"status": "timeout", "error": "the request was not received in time"}).encode()
# Where a request's scope carries its RequestDeadline (ASGI's place for what a server adds to a scope).
DEADLINE = "sidecar.deadline"
_TIMEOUT_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(TIMEOUT_BODY)).encode()),
    (b"connection", b"close"),
]


class RequestDeadline:
    """In each request's scope (`scope["extensions"][DEADLINE]`): `passed` once its body came too late and
    was answered 408, so the app can tell that from a client that went away (both read `http.disconnect`)."""

    __slots__ = ("passed",)

    def __init__(self) -> None:
        self.passed = False


def body_late(scope: Scope) -> bool:
    """Whether the request's body deadline passed (408 already sent)."""
    deadline = scope.get("extensions", {}).get(DEADLINE)
    return deadline is not None and bool(deadline.passed)


class _HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers are not complete
    within `header_timeout` of the connection's start or of the previous response, or whose request's
    body is not complete within `header_timeout` of its headers (answered 408 first, unless an answer
    has started: the app then hears that the client went away, and what it sends is dropped, so the
    client always gets the same answer).

    One timer per connection, moved lazily: a request or a response only moves the due time forward,
    and the timer, when it fires early, sleeps again until the due time (no timer scheduled and
    cancelled per request)."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _header_due = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not cycle:  # a request's headers are complete: its body is due
            self._arm_header_deadline()
            # Before the app's task first runs, so any copy of the scope it makes holds the same object.
            extensions = cast(dict[str, Any], self.cycle.scope.setdefault("extensions", {}))
            extensions[DEADLINE] = RequestDeadline()

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a request it cannot parse (say, a broken chunked body the app never read) with
        a 400 of its own while the app may still be answering it: the request is over for the app too,
        so the app's answer is dropped quietly instead of raising h11 errors into the log (which would
        let any sender write tracebacks there at will)."""
        super().send_400_response(msg)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._header_due = self.loop.time() + self.header_timeout
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(self._header_due, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self._header_due - self.loop.time() > _EARLY:  # moved by a request or response since: wait out the rest
            self._header_timer = self.loop.call_at(self._header_due, self._header_deadline_passed)
            return
        if self.transport.is_closing():
            return
        # IDLE: no complete request line and headers yet. SEND_BODY: a request whose body is not complete.
        # A request read whole and being answered is the app's business, not this timer's (its response
        # arms the timer again).
        if self.conn.their_state is h11.IDLE:
            log.debug("request headers not received in time; connection closed")
            self.conn.send(h11.ConnectionClosed())
            self.transport.close()
        elif self.conn.their_state is h11.SEND_BODY:
            log.debug("request body not received in time; connection closed")
            self._body_late()

    def _body_late(self) -> None:
        """408 (when no answer has started), then close; the app's `receive` answers `http.disconnect`."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.response_started = cycle.response_complete = True
            for event in (
                h11.Response(status_code=408, headers=_TIMEOUT_HEADERS, reason=b"Request Timeout"),
                h11.Data(data=TIMEOUT_BODY),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        if cycle is not None:
            deadline = cast(dict[str, Any], cycle.scope.get("extensions", {})).get(DEADLINE)
            if isinstance(deadline, RequestDeadline):
                deadline.passed = True
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def header_deadline_protocol(timeout: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for header and body deadlines of `timeout` seconds."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout": timeout})
