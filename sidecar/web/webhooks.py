"""The desks' webhook receivers: verify, deduplicate, record, answer fast.

A webhook is a hint (ARCHITECTURE.md, "Inbound"). Checks run cheapest first: source allow-list
(the TCP peer), rate limit, body size, signature or shared secret over the exact bytes received,
JSON, age, delivery id. What passes is recorded (ids and a body hash, never the body) with its audit
row in one transaction. Jira retries on 408/409/425/429/5xx, so a duplicate or a stale delivery is
answered 200: there is nothing a retry could fix. Applying deliveries to the chain is the inbound
engine's job, not this module's.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.boundedjson import loads as bounded_loads
from sidecar.config_schema import WebhookConfig
from sidecar.desks.ratelimit import TokenBucket
from sidecar.observe.audit import Auditor
from sidecar.observe.metrics import Metrics, Service, WebhookOutcome
from sidecar.store.audit import AuditEntry
from sidecar.store.db import Store
from sidecar.store.webhooks import Delivery, record_delivery_txn

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
}


class Rejected(Exception):
    def __init__(self, outcome: WebhookOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


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


def parse_jira(body: bytes, headers: Mapping[str, str]) -> Parsed:
    doc = _json_object(body)
    event = doc.get("webhookEvent")
    if not isinstance(event, str) or not event:
        raise Rejected("malformed", "webhookEvent missing")
    issue = _mapping(doc.get("issue"))
    stamp = doc.get("timestamp")
    delivery = headers.get("x-atlassian-webhook-identifier") or hashlib.sha256(body).hexdigest()
    actor = _mapping(doc.get("user")).get("accountId") or _mapping(_mapping(doc.get("comment")).get("author")).get(
        "accountId"
    )
    return Parsed(
        delivery_id=delivery[:200],
        event_type=event[:100],
        external_id=str(issue["id"])[:100] if issue.get("id") is not None else None,
        sent_at=stamp / 1000 if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None,
        actor=str(actor) if actor else None,
    )


def parse_waldur(body: bytes, headers: Mapping[str, str]) -> Parsed:
    """JSON, or form-encoded with `context` as a JSON string (both are hook content types in Waldur)."""
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
    return Parsed(
        delivery_id=hashlib.sha256(body).hexdigest(),  # Waldur sends no delivery id: the same body is a retry
        event_type=event[:100],
        external_id=str(issue)[:100] if issue else None,
        sent_at=_iso_seconds(doc.get("created")),
    )


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


def _iso_seconds(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class WebhookReceiver:
    """`secrets` maps a desk to its webhook secret (None: not configured); `own_accounts` maps a desk to
    the sidecar's own account there, whose changes come back as echoes."""

    def __init__(
        self,
        settings: WebhookConfig,
        secrets: Mapping[Service, str | None],
        store: Store,
        auditor: Auditor,
        metrics: Metrics,
        own_accounts: Mapping[Service, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._own = {desk: account for desk, account in (own_accounts or {}).items() if account}
        self._secrets = dict(secrets)
        self._store = store
        self._auditor = auditor
        self._metrics = metrics
        self._clock = clock
        self._networks = [ipaddress.ip_network(c, strict=False) for c in settings.allowed_sources]
        rate = settings.rate_limit_per_second
        self._bucket = TokenBucket(rate, burst=rate)
        self._last_flood_audit = 0.0

    def routes(self, prefix: str) -> list[Route]:
        return [
            Route(f"{prefix}/jira", self._endpoint("jira"), methods=["POST"]),
            Route(f"{prefix}/waldur", self._endpoint("waldur"), methods=["POST"]),
        ]

    def _endpoint(self, desk: Service) -> Callable[[Request], Any]:
        async def receive(request: Request) -> Response:
            try:
                outcome, parsed = await self._receive(request, desk)
            except Rejected as exc:
                return await self._rejected(desk, exc)
            self._metrics.count_webhook(desk, outcome)
            return JSONResponse({"status": outcome, "delivery_id": parsed.delivery_id}, status_code=STATUS[outcome])

        return receive

    async def _receive(self, request: Request, desk: Service) -> tuple[WebhookOutcome, Parsed]:
        self._check_source(request)
        wait = self._bucket.try_take()
        if wait:
            raise Rejected("rate_limited", f"over webhook.rate_limit_per_second; retry in {wait:.2f}s")
        body = await self._read(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self._check_signature(desk, body, headers)
        parsed = parse_jira(body, headers) if desk == "jira" else parse_waldur(body, headers)
        now = self._clock()
        outcome: WebhookOutcome = "accepted"
        reason: str | None = None
        if parsed.sent_at is not None and now - parsed.sent_at > self._settings.max_age:
            outcome, reason = "stale", f"older than webhook.max_age ({int(now - parsed.sent_at)}s)"
        elif parsed.actor is not None and parsed.actor == self._own.get(desk):
            outcome, reason = "echo", "the sidecar's own change"
        delivery = Delivery(
            desk,
            parsed.delivery_id,
            parsed.event_type,
            parsed.external_id,
            hashlib.sha256(body).hexdigest(),
            "accepted" if outcome == "accepted" else "ignored",
            reason,
        )
        audit = self._entry(desk, outcome, reason, parsed) if self._auditor.enabled else None
        fresh = await self._store.write("record webhook", record_delivery_txn, delivery, audit, now)
        if not fresh:
            return "duplicate", parsed
        log.info(
            "external callback recorded",
            extra={"desk": desk, "outcome": outcome, "event": parsed.event_type, "delivery_id": parsed.delivery_id},
        )
        return outcome, parsed

    def _check_source(self, request: Request) -> None:
        if not self._networks:
            return
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise Rejected("forbidden_source", "peer address unknown") from None
        if not any(address in network for network in self._networks):
            raise Rejected("forbidden_source", f"{address} is not in webhook.allowed_sources")

    async def _read(self, request: Request) -> bytes:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise Rejected("too_large", f"body of {declared} bytes exceeds webhook.max_body_bytes ({limit})")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected("too_large", f"body exceeds webhook.max_body_bytes ({limit})")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_signature(self, desk: Service, body: bytes, headers: Mapping[str, str]) -> None:
        secret = self._secrets.get(desk)
        signature = headers.get("x-hub-signature" if desk == "jira" else "x-waldur-signature")
        shared = headers.get("x-webhook-secret") if desk == "waldur" else None
        if secret is None:
            if self._settings.require_signature:
                raise Rejected("bad_signature", f"no {desk} webhook secret is configured")
            return
        if signature is not None:
            if not signature_ok(secret, body, signature):
                raise Rejected("bad_signature", "signature does not match the body")
            return
        if shared is not None:
            if not hmac.compare_digest(shared.encode(), secret.encode()):
                raise Rejected("bad_signature", "shared secret does not match")
            return
        if self._settings.require_signature:
            raise Rejected("bad_signature", "signature missing")

    async def _rejected(self, desk: Service, exc: Rejected) -> Response:
        self._metrics.count_webhook(desk, exc.outcome)
        now = self._clock()
        flood = exc.outcome == "rate_limited"
        if not (flood and now - self._last_flood_audit < 1.0):  # a flood is audited once a second
            if flood:
                self._last_flood_audit = now
            await self._auditor.record(self._entry(desk, exc.outcome, exc.reason, None))
        log.warning("webhook rejected", extra={"desk": desk, "outcome": exc.outcome, "reason": exc.reason})
        headers = {"Retry-After": "1"} if flood else None
        return JSONResponse({"status": exc.outcome, "error": exc.reason}, STATUS[exc.outcome], headers=headers)

    @staticmethod
    def _entry(desk: Service, outcome: WebhookOutcome, reason: str | None, parsed: Parsed | None) -> AuditEntry:
        details: dict[str, Any] = {"outcome": outcome}
        if parsed is not None:
            details.update(delivery_id=parsed.delivery_id, event=parsed.event_type, external_id=parsed.external_id)
        accepted = outcome in ("accepted", "duplicate", "echo")
        return AuditEntry(
            "webhook_accepted" if accepted else "webhook_rejected",
            desk=desk,
            direction="inbound",
            actor=desk,
            status=outcome,
            error=None if accepted else reason,
            details=details,
        )
