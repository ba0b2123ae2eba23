"""The desks' webhook receivers: verify, deduplicate, record, answer fast.

A webhook is a hint (ARCHITECTURE.md, "Inbound"). Checks run cheapest first: rate limits (per source
address, per failing source, overall: web.limits), source allow-list (the TCP peer), body size,
signature or shared secret over the exact bytes received, JSON, timestamp, delivery id and body hash.
What passes is recorded (ids and a body hash, never the body) with its audit row, through a bounded
number of writer slots (webhook.max_queued_writes deliveries waiting at once). Deliveries that arrive
while a commit runs share the next transaction (the store's GroupCommit): each is answered only after
its own row is durable, and a failed group transaction answers each of its deliveries 503, so Jira
retries it. Jira retries on 408/409/425/429/5xx, so a duplicate or a stale delivery is answered 200:
there is nothing a retry could fix. Applying deliveries to the chain is the inbound engine's job, not
this module's.

The port faces the internet, so a rejection costs nothing durable: it is counted in metrics and
summed up in memory (web.rejections), never written or logged one by one. Its answer names what
failed in fixed words and never what is configured (whether a secret or an allow-list exists).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sidecar.boundedjson import loads as bounded_loads
from sidecar.config_schema import WebhookConfig
from sidecar.digits import is_decimal
from sidecar.observe.audit import Auditor
from sidecar.observe.logs import current_redactor
from sidecar.observe.metrics import Metrics, Service, WebhookOutcome
from sidecar.store.audit import AuditEntry
from sidecar.store.db import GroupCommit, GroupFailed, Store, WriterBusy, WriteSlots
from sidecar.store.webhooks import Delivery, Recording, record_deliveries_txn, record_delivery_txn
from sidecar.timestamps import iso_seconds
from sidecar.web.deadlines import body_late
from sidecar.web.limits import SourceLimits, retry_after
from sidecar.web.rejections import RejectionSummary

log = logging.getLogger(__name__)
STATUS: dict[WebhookOutcome, int] = {
    "accepted": 200,
    "duplicate": 200,
    "echo": 200,
    "stale": 200,
    "bad_signature": 401,
    "forbidden_source": 403,
    "too_large": 413,
    "rate_limited": 429,
    "malformed": 400,
    "overloaded": 503,
}
# The words a rejection answers with: what failed, never whether a secret or an allow-list is configured.
REASONS: dict[WebhookOutcome, str] = {
    "bad_signature": "bad signature",
    "forbidden_source": "forbidden",
    "rate_limited": "too many requests",
    "too_large": "body too large",
    "overloaded": "busy, retry later",
}
# How far a desk's timestamp may be ahead of our clock (clock skew); further is refused, since a body
# stamped in the future would stay inside webhook.max_age, i.e. replayable, for longer.
MAX_FUTURE_SKEW = 300.0
# The most deliveries one transaction records: keeps a commit (and the follower's writes queued behind it)
# short. Only reached when webhook.max_queued_writes is set above it.
MAX_GROUP = 256
# The only headers a receiver reads: picked from the request's raw list, not decoded all into a dict.
HEADERS = frozenset(
    {
        b"content-length",
        b"content-type",
        b"x-atlassian-webhook-identifier",
        b"x-hub-signature",
        b"x-waldur-signature",
        b"x-webhook-secret",
    }
)


class BodyLate(Exception):
    """The request's body deadline passed: the server answered 408 itself, so nothing is counted here (as
    before the body deadline moved into the protocol)."""


class Rejected(Exception):
    """`reason` defaults to the outcome's fixed words; malformed bodies say what is wrong with them."""

    def __init__(self, outcome: WebhookOutcome, reason: str | None = None, *, retry_in: float | None = None) -> None:
        self.outcome = outcome
        self.reason = reason or REASONS.get(outcome, outcome)
        self.retry_in = retry_in
        super().__init__(self.reason)


@dataclass(frozen=True)
class Parsed:
    """What a delivery says, in ids: never summary, description or comment text."""

    delivery_id: str
    event_type: str
    external_id: str | None
    sent_at: float | None  # unix seconds, when the desk says
    actor: str | None = None  # the desk account that made the change, when the desk says


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    """`sha256=<hex HMAC-SHA256 of the exact body>`, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def parse_jira(body: bytes, headers: Mapping[str, str], body_sha256: str | None = None) -> Parsed:
    """`body_sha256`: the body's hex digest when the caller has it (the receiver does), else computed here."""
    doc = _json_object(body)
    event = doc.get("webhookEvent")
    if not isinstance(event, str) or not event:
        raise Rejected("malformed", "webhookEvent missing")
    issue = _mapping(doc.get("issue"))
    stamp = doc.get("timestamp")
    delivery = headers.get("x-atlassian-webhook-identifier") or body_sha256 or hashlib.sha256(body).hexdigest()
    actor = _mapping(doc.get("user")).get("accountId") or _mapping(_mapping(doc.get("comment")).get("author")).get(
        "accountId"
    )
    return Parsed(
        delivery_id=delivery[:200],
        event_type=event[:100],
        external_id=str(issue["id"])[:100] if issue.get("id") is not None else None,
        sent_at=_epoch_ms(stamp),
        actor=str(actor) if actor else None,
    )


def parse_waldur(body: bytes, headers: Mapping[str, str], body_sha256: str | None = None) -> Parsed:
    """JSON, or form-encoded with `context` as a JSON string (both are hook content types in Waldur).
    `body_sha256` as for parse_jira."""
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        try:
            doc: dict[str, Any] = dict(parse_qsl(body.decode(), strict_parsing=True))
            doc["context"] = bounded_loads(doc.get("context") or "{}", max_bytes=len(body))
        except (UnicodeDecodeError, ValueError):
            raise Rejected("malformed", "form body is not valid") from None
    else:
        doc = _json_object(body)
    event = doc.get("type") or doc.get("event_type")
    if not isinstance(event, str) or not event:
        raise Rejected("malformed", "event type missing")
    context = _mapping(doc.get("context"))
    issue = context.get("issue_uuid")
    # The acting user: logging/middleware.py puts the authenticated request user's fields (user_uuid, ...)
    # into every event's context; an event no request caused (a backend pull) has none.
    user = context.get("user_uuid")
    actor = _uuid_hex(user) if isinstance(user, str) else None
    return Parsed(
        delivery_id=body_sha256 or hashlib.sha256(body).hexdigest(),  # no delivery id from Waldur: same body, retry
        event_type=event[:100],
        external_id=str(issue)[:100] if issue else None,
        sent_at=iso_seconds(doc.get("created")),
        actor=actor,
    )


def _uuid_hex(value: str) -> str | None:
    try:
        return uuid.UUID(value[:64]).hex
    except ValueError:
        return None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = bounded_loads(body, max_bytes=len(body))  # the size was capped while reading; depth here
    except ValueError:
        raise Rejected("malformed", "body is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("malformed", "body is not a JSON object")
    return doc


def _epoch_ms(value: object) -> float | None:
    """Jira's millisecond timestamp as seconds; NaN and the infinities are no time (the bounded parser refuses
    them; this does not rely on it): NaN would pass every age check and an infinity overflows the arithmetic."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = value / 1000
    except OverflowError:  # an integer too large for a float
        return None
    return seconds if math.isfinite(seconds) else None


class WebhookReceiver:
    """`secrets` maps a desk to its webhook secret (None: not configured); `own_account` names the sidecar's
    own account at a desk (None: not known, or not yet), whose changes come back as echoes. `rejections` is
    the summary the app flushes on a loop and at shutdown. `group_commit=False` gives each delivery its own
    transaction (the former path, kept as the benchmark's baseline)."""

    def __init__(
        self,
        settings: WebhookConfig,
        secrets: Mapping[Service, str | None],
        store: Store,
        auditor: Auditor,
        metrics: Metrics,
        own_account: Callable[[Service], str | None] = lambda desk: None,
        clock: Callable[[], float] = time.time,
        *,
        group_commit: bool = True,
    ) -> None:
        self._settings = settings
        self._own = own_account  # asked per delivery: Waldur's is learnt from the desk once the sidecar runs
        self._secrets = dict(secrets)
        self._store = store
        self._auditor = auditor
        self._metrics = metrics
        self._clock = clock
        self._networks = [ipaddress.ip_network(c, strict=False) for c in settings.allowed_sources]
        self._limits = SourceLimits(
            settings.rate_limit_per_second, settings.rate_limit_per_source, settings.auth_failures_per_source
        )
        self._slots = WriteSlots(settings.max_queued_writes)
        self.intake: GroupCommit[Recording, bool] | None = None
        if group_commit:
            self.intake = GroupCommit(store, "record webhooks", record_deliveries_txn, self._slots, MAX_GROUP)
        self.rejections = RejectionSummary(store, auditor, clock=clock)
        self.on_accepted: Callable[[], None] | None = None  # told of each new hint (app.py: wakes inbound sync)

    def routes(self, prefix: str) -> list[Route]:
        return [Route(path, endpoint, methods=["POST"]) for path, endpoint in self.endpoints(prefix).items()]

    def endpoints(self, prefix: str) -> dict[str, _Endpoint]:
        """The receivers' paths and their plain ASGI endpoints (POST only: see `routes`)."""
        return {f"{prefix}/jira": _Endpoint(self, "jira"), f"{prefix}/waldur": _Endpoint(self, "waldur")}

    async def answer(self, scope: Scope, receive: Receive, send: Send, desk: Service) -> None:
        """One delivery, from the request's ASGI scope to its answer."""
        client = scope.get("client")
        host = (client[0] if client else "")[:64]
        try:
            outcome, parsed = await self._receive(scope, receive, desk, host)
        except Rejected as exc:
            await self._rejected(send, desk, host, exc)
            return
        except BodyLate:
            return
        self._metrics.count_webhook(desk, outcome)
        await _send_json(send, STATUS[outcome], {"status": outcome, "delivery_id": parsed.delivery_id})
        if outcome != "duplicate":  # logged once answered: the deliveries of a group are not kept waiting by it
            log.info(
                "external callback recorded",
                extra={"desk": desk, "outcome": outcome, "event": parsed.event_type, "delivery_id": parsed.delivery_id},
            )

    async def _receive(self, scope: Scope, receive: Receive, desk: Service, host: str) -> tuple[WebhookOutcome, Parsed]:
        wait = self._limits.admit(host)
        if wait:
            raise Rejected("rate_limited", retry_in=wait)
        try:
            self._check_source(host)
            headers = _headers(scope)
            body = await self._read(scope, receive, headers)
            self._check_signature(desk, body, headers)
        except Rejected:  # not authenticated (source, size, signature): charged to the smaller budget
            self._limits.failed(host)
            raise
        digest = hashlib.sha256(body).hexdigest()  # ~3 us for a 1 KB body: cheaper here than a thread hop
        parsed = parse_jira(body, headers, digest) if desk == "jira" else parse_waldur(body, headers, digest)
        now = self._clock()
        self._check_time(desk, parsed, now)
        outcome: WebhookOutcome = "accepted"
        reason: str | None = None
        if parsed.sent_at is not None and now - parsed.sent_at > self._settings.max_age:
            outcome, reason = "stale", f"older than webhook.max_age ({int(now - parsed.sent_at)}s)"
        elif parsed.actor is not None and parsed.actor == self._own(desk):
            outcome, reason = "echo", "the sidecar's own change"
        delivery = Delivery(
            desk,
            parsed.delivery_id,
            parsed.event_type,
            parsed.external_id,
            digest,
            "accepted" if outcome == "accepted" else "ignored",
            reason,
        )
        audit = self._audit_entry(desk, delivery, outcome)
        try:
            fresh = await self._record(delivery, audit, now)
        except (WriterBusy, GroupFailed):  # not queued, or its whole group rolled back: a retry can succeed
            raise Rejected("overloaded", retry_in=1.0) from None
        if not fresh:
            return "duplicate", parsed
        if self.on_accepted is not None:
            self.on_accepted()
        return outcome, parsed

    def _audit_entry(self, desk: Service, delivery: Delivery, outcome: WebhookOutcome) -> AuditEntry | None:
        """The delivery's audit row, or None when audit is off. `append_audit_txn` cleans every row with the
        process's redactor in the writer thread, so cleaning it here as well is only needed (and only done)
        when this auditor has a redactor of its own: the rule then runs once, not twice, per delivery."""
        if not self._auditor.enabled:
            return None
        entry = self._entry(desk, delivery, outcome)
        return entry if self._auditor.redact is current_redactor() else self._auditor.clean(entry)

    async def _record(self, delivery: Delivery, audit: AuditEntry | None, now: float) -> bool:
        """True once the delivery and its audit row are committed; False for a repeat (nothing written)."""
        if self.intake is not None:
            return await self.intake.submit(Recording(delivery, audit, now))
        return await self._store.write_within(self._slots, "record webhook", record_delivery_txn, delivery, audit, now)

    def _check_source(self, host: str) -> None:
        if not self._networks:
            return
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise Rejected("forbidden_source") from None
        if not any(address in network for network in self._networks):
            raise Rejected("forbidden_source")

    async def _read(self, scope: Scope, receive: Receive, headers: Mapping[str, str]) -> bytes:
        limit = self._settings.max_body_bytes
        declared = headers.get("content-length")
        if declared and is_decimal(declared) and int(declared) > limit:
            raise Rejected("too_large")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:  # the ASGI messages themselves: Request.stream's generator costs more than the loop
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: the client went away mid-body, or was too slow
                raise BodyLate if body_late(scope) else Rejected("malformed", "body incomplete")
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(chunk)
            if size > limit:
                raise Rejected("too_large")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _signature_required(self, desk: Service) -> bool:
        """A configured secret always requires a signature; webhook.require_signature: false only lets a desk
        with no secret send unsigned hooks."""
        return self._secrets.get(desk) is not None or self._settings.require_signature

    def _check_signature(self, desk: Service, body: bytes, headers: Mapping[str, str]) -> None:
        secret = self._secrets.get(desk)
        if secret is None:
            if self._signature_required(desk):
                raise Rejected("bad_signature")  # the same words as a wrong signature: no hint that none is set
            return
        signature = headers.get("x-hub-signature" if desk == "jira" else "x-waldur-signature")
        shared = headers.get("x-webhook-secret") if desk == "waldur" else None
        if signature is not None:
            ok = signature_ok(secret, body, signature)
        elif shared is not None:
            ok = hmac.compare_digest(shared.encode(), secret.encode())
        else:
            ok = False
        if not ok:
            raise Rejected("bad_signature")

    def _check_time(self, desk: Service, parsed: Parsed, now: float) -> None:
        """A signed body must say when it was sent (else max_age could not bound its replay), and not too far
        ahead of our clock."""
        if parsed.sent_at is None:
            if self._signature_required(desk):
                raise Rejected("malformed", "timestamp missing")
            return
        if parsed.sent_at - now > MAX_FUTURE_SKEW:
            raise Rejected("malformed", "timestamp is in the future")

    async def _rejected(self, send: Send, desk: Service, host: str, exc: Rejected) -> None:
        """Counted and noted in memory only: a rejection writes nothing and logs nothing by itself."""
        self._metrics.count_webhook(desk, exc.outcome)
        self.rejections.note(desk, exc.outcome, host or "unknown", exc.reason)
        extra = [(b"retry-after", retry_after(exc.retry_in).encode())] if exc.retry_in is not None else []
        await _send_json(send, STATUS[exc.outcome], {"status": exc.outcome, "error": exc.reason}, extra)

    @staticmethod
    def _entry(desk: Service, delivery: Delivery, outcome: WebhookOutcome) -> AuditEntry:
        """The audit row of a recorded delivery: `webhook_accepted`, or `webhook_ignored` (stale, echo)."""
        return AuditEntry(
            "webhook_accepted" if delivery.state == "accepted" else "webhook_ignored",
            desk=desk,
            direction="inbound",
            actor=desk,
            status=outcome,
            error=delivery.reason,
            details={
                "outcome": outcome,
                "delivery_id": delivery.delivery_id,
                "event": delivery.event_type,
                "external_id": delivery.external_id,
                "body_sha256": delivery.body_sha256,
            },
        )


class _Endpoint:
    """A receiver's route as a plain ASGI app: no Request object or Response class per delivery (intake is
    the port's hot path), the same answers as Starlette's JSONResponse would give."""

    def __init__(self, receiver: WebhookReceiver, desk: Service) -> None:
        self._receiver = receiver
        self._desk: Service = desk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._receiver.answer(scope, receive, send, self._desk)


def _headers(scope: Scope) -> dict[str, str]:
    """The headers a receiver reads (HEADERS), by lowercase name; of a repeated one, the last."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.lower()
        if key in HEADERS:
            found[key.decode("latin-1")] = value.decode("latin-1")
    return found


# JSONResponse's rendering, from an encoder built once: json.dumps builds one per call when given options.
_render = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


async def _send_json(
    send: Send, status: int, doc: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """`doc` as JSONResponse renders it (compact, UTF-8), with `extra` headers."""
    body = _render(doc).encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
