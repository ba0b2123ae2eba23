"""Who may steer the control API: each call is identified, checked against what it may do, and
mutating calls are rate-limited, before the servicer sees it.

When a token is configured every call must carry one (`authorization: Bearer <token>`), and the
read-only token only reads; when grpc.client_ca is set the TLS handshake requires a client
certificate it signed. A caller is named by that certificate ("cert:<CN>"), else by its token
("token:grpc-token", "token:grpc-read-token"), else, on a local address with neither configured,
by where it calls from ("unix", "peer:<peer>"). Refused calls
are audited as `control_refused` (never with the token), at a bounded rate so a flood of bad calls
cannot grow the audit log without bound. Health and reflection are left open: they steer nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.config_schema import GrpcConfig
from sidecar.control.caller import reset_caller, set_caller
from sidecar.control.calls import READ_ONLY, method_name
from sidecar.observe.audit import Auditor
from sidecar.ratelimit import TokenBucket
from sidecar.secrets import Secret
from sidecar.store.audit import AuditEntry

log = logging.getLogger(__name__)

CONTROL_SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name

MUTATING_BURST = 20
REFUSALS_AUDITED_PER_SECOND = 0.2  # a steady flood adds 12 rows a minute; the rest are counted in them
REFUSALS_AUDITED_BURST = 10
MAX_NAME_CHARS = 128

Behavior = Callable[..., Any]


@dataclass(frozen=True)
class ControlSecurity:
    """The grpc.* settings and secrets that decide who may call (files are paths; empty = unset)."""

    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""
    token: Secret | None = None  # grpc_token: may call everything
    read_token: Secret | None = None  # grpc_read_token: read-only calls only
    mutating_rate: float = 5.0

    @classmethod
    def from_settings(cls, grpc_settings: GrpcConfig, secrets: Mapping[str, Secret]) -> ControlSecurity:
        """The grpc.* keys, and the grpc_token and grpc_read_token of the configuration's `secrets`."""
        return cls(
            tls_cert=grpc_settings.tls_cert,
            tls_key=grpc_settings.tls_key,
            client_ca=grpc_settings.client_ca,
            token=secrets.get("grpc_token"),
            read_token=secrets.get("grpc_read_token"),
            mutating_rate=grpc_settings.mutating_rate,
        )

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def has_tokens(self) -> bool:
        return self.token is not None or self.read_token is not None


class Refused(Exception):
    """A call the auth layer turns away: its status code, the detail the caller sees, and who it was."""

    def __init__(self, code: grpc.StatusCode, detail: str, who: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.who = who


def bearer(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer <token>` header; '' for another scheme, None when absent."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key.lower() == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _matches(given: str, secret: Secret | None) -> bool:
    # compare_digest over bytes: the time taken does not depend on how much of the token was right
    return secret is not None and hmac.compare_digest(given.encode(), secret.reveal().encode())


def certificate_name(context: grpc.aio.ServicerContext) -> str | None:
    """The subject CN of a client certificate the handshake verified; None without one."""
    if context.peer_identities() is None:
        return None
    auth = context.auth_context()
    names = auth.get("x509_common_name") or auth.get("x509_subject") or []
    if not names:
        return None
    raw = names[0]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return "".join(ch for ch in text if ch.isprintable())[:MAX_NAME_CHARS]


class CallerCheck:
    """Names the caller of one call and decides whether it may go ahead; raises Refused otherwise."""

    def __init__(self, security: ControlSecurity, *, unix: bool) -> None:
        self._security = security
        self._unix = unix
        self._mutating = TokenBucket(security.mutating_rate, burst=MUTATING_BURST)

    def identify(self, method: str, context: grpc.aio.ServicerContext) -> str:
        """With tokens configured every call needs one, whatever else it presents (a read token only
        reads); a verified client certificate names the caller; without either, where it calls from."""
        security = self._security
        subject = certificate_name(context) if security.client_ca else None
        who = f"cert:{subject}" if subject is not None else "unix" if self._unix else f"peer:{context.peer()}"
        if security.has_tokens:
            given = bearer(context.invocation_metadata())
            if given is None:
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, "this call needs `authorization: Bearer <token>`", who)
            if _matches(given, security.token):
                token = "grpc-token"
            elif _matches(given, security.read_token):
                token = "grpc-read-token"
            else:
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid", who)
            who = who if subject is not None else f"token:{token}"
            if token == "grpc-read-token" and method not in READ_ONLY:
                detail = f"{method} changes the sidecar: the read-only token may not call it"
                raise Refused(grpc.StatusCode.PERMISSION_DENIED, detail, who)
            return who
        if security.client_ca and subject is None:  # the handshake requires one: a defence in depth
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "this call needs a client certificate", who)
        return who

    def admit(self, method: str, context: grpc.aio.ServicerContext) -> str:
        """The caller's name when the call may proceed; a mutating call spends the shared budget."""
        who = self.identify(method, context)
        if method not in READ_ONLY:  # calls.MUTATING, and any call not known to be read-only
            wait = self._mutating.try_take()
            if wait > 0:
                raise Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"mutating calls are limited to {self._security.mutating_rate:g} per second; retry in {wait:.1f}s",
                    who,
                )
        return who


class RefusalAudit:
    """Records refused calls in the log and the audit log at a bounded rate, counting the ones it leaves out."""

    def __init__(self, auditor: Auditor | None) -> None:
        self._auditor = auditor
        self._budget = TokenBucket(REFUSALS_AUDITED_PER_SECOND, burst=REFUSALS_AUDITED_BURST)
        self._unrecorded = 0

    async def record(self, method: str, refused: Refused) -> None:
        if self._budget.try_take() > 0:
            self._unrecorded += 1
            return
        details = {"method": method, "unrecorded_before": self._unrecorded}
        self._unrecorded = 0
        status = refused.code.name.lower()
        log.warning("control call refused", extra={"caller": refused.who, "status": status, **details})
        if self._auditor is None:
            return
        entry = AuditEntry("control_refused", actor=refused.who, status=status, error=refused.detail, details=details)
        try:
            await self._auditor.record(entry)
        except Exception:  # a refusal stays a refusal even when the audit write fails
            log.exception("could not audit a refused control call", extra={"method": method})


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped
    """Wraps every Control method handler (unary and streaming) with the caller check."""

    def __init__(self, security: ControlSecurity, auditor: Auditor | None, *, unix: bool) -> None:
        self._check = CallerCheck(security, unix=unix)
        self._refusals = RefusalAudit(auditor)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full_method: str = handler_call_details.method
        if handler is None or not full_method.startswith(f"/{CONTROL_SERVICE}/"):
            return handler
        return _wrapped(handler, method_name(full_method), self._enter)

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> object:
        """Admit the call and set its caller (the token reset_caller takes), or abort it."""
        try:
            who = self._check.admit(method, context)
        except Refused as refused:
            await self._refusals.record(method, refused)
            await context.abort(refused.code, refused.detail)
            raise AssertionError("abort raises") from None
        return set_caller(who)


Enter = Callable[[str, grpc.aio.ServicerContext], Awaitable[object]]


def _guard_unary(behavior: Behavior, method: str, enter: Enter) -> Behavior:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = await enter(method, context)
        try:
            return await behavior(request, context)
        finally:
            reset_caller(token)

    return guarded


def _guard_stream(behavior: Behavior, method: str, enter: Enter) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):  # a stream written with context.write
        return _guard_unary(behavior, method, enter)

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        token = await enter(method, context)
        try:
            async for item in behavior(request, context):
                yield item
        finally:
            with contextlib.suppress(ValueError):  # a stream closed from another context has nothing to reset
                reset_caller(token)

    return guarded


def _wrapped(handler: grpc.RpcMethodHandler, method: str, enter: Enter) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour guarded; serializers untouched."""
    h: Any = handler
    codecs = {"request_deserializer": h.request_deserializer, "response_serializer": h.response_serializer}
    if h.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_guard_unary(h.unary_unary, method, enter), **codecs)
    if h.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_guard_stream(h.unary_stream, method, enter), **codecs)
    if h.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_guard_unary(h.stream_unary, method, enter), **codecs)
    return grpc.stream_stream_rpc_method_handler(_guard_stream(h.stream_stream, method, enter), **codecs)
