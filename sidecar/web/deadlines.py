"""Slow clients are cut off: a request's headers, and then its body, must arrive within a deadline.

uvicorn has neither. Its keep-alive timer starts only after a response and any byte cancels it,
so a client that sends a header line now and then, or a body a byte a second, holds a connection
(and, under `limit_concurrency`, a slot) for as long as it likes. The header deadline lives in the
connection's protocol, because no ASGI code runs before the headers are complete; the body deadline
is ASGI middleware around `receive`, which answers 408 and closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)
# How early a deadline timer may fire and still count as due (the event loop runs timers up to its clock's
# resolution early): far below any deadline here, so it never cuts a connection off noticeably early.
_EARLY = 0.001
TIMEOUT_BODY = json.dumps({"status": "timeout", "error": "the request was not received in time"}).encode()


class BodyTimeout(Exception):
    """Raised into the app from `receive` when the body did not arrive in time (408 already sent)."""


class BodyDeadline:
    """The whole body must arrive within `timeout` seconds of the request's start.

    On expiry the 408 is sent here at once, before the app hears of it: whatever the app then does
    (an error page, an answer of its own) is dropped, so the client always gets the same answer.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        body_done = False
        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def guarded_receive() -> Message:
            nonlocal body_done, timed_out
            if body_done or timed_out:
                if timed_out:
                    raise BodyTimeout
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                if not started:
                    await _send_408(send)
                timed_out = True
                raise BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except BodyTimeout:
            log.debug("request body not received in time; connection closed")
        except Exception:
            if not timed_out:
                raise
            # The app turned the timeout into an error of its own: the 408 was sent, nothing more to do.


async def _send_408(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(TIMEOUT_BODY)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": TIMEOUT_BODY, "more_body": False})


class _HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers are not complete
    within `header_timeout` of the connection's start or of the previous response.

    One timer per connection, moved lazily: a response only moves the due time forward, and the timer,
    when it fires early, sleeps again until the due time (no timer scheduled and cancelled per request)."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _header_due = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

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
        if self._header_due - self.loop.time() > _EARLY:  # moved by a response since: wait out the rest
            self._header_timer = self.loop.call_at(self._header_due, self._header_deadline_passed)
            return
        # IDLE: no complete request line and headers yet. A request being read or answered is the
        # body deadline's and the app's business, not this timer's (its response arms the timer again).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("request headers not received in time; connection closed")
            self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def header_deadline_protocol(timeout: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for a header deadline of `timeout` seconds."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout": timeout})
