"""Reconcile: what the chain holds that the sidecar or the desks lack, found and (unless dry_run) queued.

Heights mode (from_height..to_height, at most MAX_HEIGHTS per call): heights past the follower's cursor
are the follower's to read and are neither checked nor counted, so a to_height above the node's head
is simply clamped there. A page ends after the window of heights (CHUNK x WINDOW) in which `limit`
differences were reached. Tickets mode: one ticket, or the mirror's tickets `limit` at a time. A desk
that cannot be read stops the call with UNAVAILABLE naming it (what was queued before stays queued:
every repair is idempotent), rather than report a desk it did not see as in sync; so does the node.
Page tokens are opaque (base64 of the mode and where to resume) and refused when they belong to
another request.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from typing import Any

import grpc
from virtengine.servicedesk.v1 import control_pb2

from sidecar.chain.events import parse_ticket_id
from sidecar.control.deps import ControlDeps, abort
from sidecar.errors import ChainRpcError
from sidecar.store.audit import AuditEntry
from sidecar.store.reconcile import mirror_ticket_ids
from sidecar.sync.reconcile import (
    DeskUnreachable,
    Difference,
    Found,
    NoCursor,
    Scope,
    missing_events,
    reconcile_ticket,
)
from sidecar.sync.registration import register_refs_as

MAX_HEIGHTS = 10_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000


class ReconcileCalls:
    deps: ControlDeps

    async def Reconcile(
        self, request: control_pb2.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.ReconcileResponse:
        if request.limit < 0 or request.limit > MAX_LIMIT:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"limit: must be 0 (default) to {MAX_LIMIT}")
        limit = request.limit or DEFAULT_LIMIT
        if self.deps.rpc is None:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "Reconcile needs the node's RPC (chain.rpc_url)")
        heights = bool(request.from_height or request.to_height)
        try:
            if heights:
                found, token = await self._heights(request, limit, context)
            else:
                found, token = await self._tickets(request, limit, context)
        except ChainRpcError as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, f"chain: {exc}")
            raise
        except DeskUnreachable as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            raise
        kinds = Counter(d.kind for d in found.differences)
        await self.deps.audit(
            AuditEntry(
                "reconciled",
                ticket_id=request.ticket_id or None,
                desk=request.desk or None,
                status="dry_run" if request.dry_run else "ok",
                details={
                    "mode": "heights" if heights else "tickets",
                    "dry_run": request.dry_run,
                    "checked": found.checked,
                    "queued": found.queued,
                    **{f"{kind}_count": count for kind, count in sorted(kinds.items())},
                },
            )
        )
        return control_pb2.ReconcileResponse(
            differences=[_message(d) for d in found.differences],
            checked=found.checked,
            queued=found.queued,
            next_page_token=token,
        )

    async def _heights(
        self, request: control_pb2.ReconcileRequest, limit: int, context: grpc.aio.ServicerContext
    ) -> tuple[Found, str]:
        first, last = request.from_height, request.to_height
        problem = None
        if first <= 0:
            problem = "from_height: must be > 0 (with to_height: a height range)"
        elif last <= 0:
            problem = "to_height: must be > 0 (with from_height: a height range)"
        elif last < first:
            problem = "to_height: must be >= from_height"
        elif last - first + 1 > MAX_HEIGHTS:
            problem = f"to_height: at most {MAX_HEIGHTS} heights per call (to_height <= {first + MAX_HEIGHTS - 1})"
        elif request.ticket_id:
            problem = "ticket_id: not with a height range (both modes at once)"
        elif request.desk:
            problem = "desk: not with a height range (events are the chain's, not a desk's)"
        if problem is not None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        start = first
        if request.page_token:
            resumed = _resume_height(_decode(request.page_token), first, last)
            if resumed is None:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_token: not from this height range")
                raise AssertionError
            start = resumed
        assert self.deps.rpc is not None
        try:
            found = await missing_events(
                self.deps.rpc,
                self.deps.store,
                start,
                last,
                limit=limit,
                dry_run=request.dry_run,
                key=self.deps.support_key,
            )
        except NoCursor as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"{exc}: nothing to compare heights with")
            raise
        following = _encode({"m": "h", "f": first, "t": last, "n": found.next_height}) if found.next_height else ""
        return found, following

    async def _tickets(
        self, request: control_pb2.ReconcileRequest, limit: int, context: grpc.aio.ServicerContext
    ) -> tuple[Found, str]:
        if request.ticket_id:
            try:
                parse_ticket_id(request.ticket_id)
            except ValueError:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "ticket_id: must be <address>/support/<n>")
        configured = self.deps.configured_desks
        if request.desk and request.desk not in configured:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"desk: {request.desk} is not configured")
        after = ""
        if request.page_token:
            token = _decode(request.page_token)
            resumed = token.get("a") if token.get("m") == "t" else None
            if not isinstance(resumed, str) or not resumed or request.ticket_id:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_token: not from a page of tickets")
                raise AssertionError
            after = resumed
        following = ""
        if request.ticket_id:
            ids = [request.ticket_id]
        else:
            ids = await self.deps.store.read("mirror page", mirror_ticket_ids, after, limit + 1)
            following = _encode({"m": "t", "a": ids[limit - 1]}) if len(ids) > limit else ""
            ids = ids[:limit]
        signer = self.deps.signer
        scope = Scope(
            desks=[request.desk] if request.desk else configured,
            outbound=self.deps.outbound_desks,
            inbound=self.deps.inbound_desks,
            readers=self.deps.desk_readers,
            register=register_refs_as(signer.status.address) if signer is not None else None,
        )
        found = Found()
        assert self.deps.rpc is not None
        for ticket_id in ids:
            try:
                one = await reconcile_ticket(self.deps.rpc, self.deps.store, ticket_id, scope, dry_run=request.dry_run)
            except LookupError as exc:
                await abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
                raise
            found.differences += one.differences
            found.checked += one.checked
            found.queued += one.queued
        return found, following


def _message(d: Difference) -> control_pb2.Difference:
    return control_pb2.Difference(
        kind=d.kind,
        ticket_id=d.ticket_id,
        desk=d.desk,
        field=d.field,
        chain_value=d.chain_value,
        mirror_value=d.mirror_value,
        desk_value=d.desk_value,
        height=d.height,
        event_type=d.event_type,
        action=d.action,
    )


def _resume_height(token: dict[str, Any], first: int, last: int) -> int | None:
    """Where a heights page token resumes, if it belongs to this range."""
    start = token.get("n")
    if token.get("m") != "h" or (token.get("f"), token.get("t")) != (first, last) or not isinstance(start, int):
        return None
    return start if first <= start <= last else None


def _encode(token: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any]:
    """The page token's fields; {} when it is not one of ours (the caller names the problem)."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
