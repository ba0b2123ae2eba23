"""The questions operators ask: what the sidecar is doing (GetStatus) and one ticket's story (GetTicket)."""

from __future__ import annotations

import asyncio
import logging

import grpc
from virtengine.servicedesk.v1 import control_pb2

import sidecar
from sidecar.chain.events import parse_ticket_id
from sidecar.chain.signer import Signer
from sidecar.chain.txbuild import query_balance
from sidecar.control.deps import ControlDeps, abort
from sidecar.control.views import conflict_message, intent_message, job_message, pause_message
from sidecar.errors import ChainRpcError
from sidecar.observe.logs import current_redactor
from sidecar.store.status import DeskFigures, StatusFigures, status_figures
from sidecar.store.ticket_view import TicketView, ticket_view
from sidecar.timestamps import iso

log = logging.getLogger(__name__)

# GetStatus answers without the balance rather than wait on a slow node.
BALANCE_TIMEOUT = 2.0
UNFINISHED_INTENTS = ("queued", "signed", "broadcast", "failed")
CONTENT_REFUSED = "include_content: refused, grpc.allow_content is false"


class QueryCalls:
    deps: ControlDeps

    async def GetStatus(
        self, request: control_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetStatusResponse:
        health = self.deps.health
        names = sorted(set(health.desks) | set(self.deps.configured_desks))
        balance = asyncio.create_task(self._balance())
        try:
            figures = await self.deps.store.read("control status", status_figures, names)
        finally:
            money = await balance
        queue = figures.queue
        redact = current_redactor()
        chain = health.chain
        cursor, head = queue.cursor_height or 0, chain.head_height or 0
        return control_pb2.GetStatusResponse(
            healthy=health.healthy,
            chain_id=chain.chain_id or queue.cursor_chain_id or "",
            chain_reachable=chain.reachable,
            cursor_height=cursor,
            head_height=head,
            pending_events=queue.pending_events,
            failed_events=queue.failed_events,
            desks=[self._desk(name, figures.desks[name]) for name in names],
            last_sync=iso(queue.last_sync) or "",
            version=sidecar.__version__,
            problems=[redact(f"{k}: {v}") for k, v in sorted(health.problems.items())],
            signer=self._signer(figures, money),
            pauses=[pause_message(p) for p in figures.pauses],
            lag_blocks=max(0, head - cursor) if cursor and head else 0,
            open_conflicts=queue.conflicts_open,
        )

    def _desk(self, name: str, figures: DeskFigures) -> control_pb2.DeskStatus:
        state = self.deps.health.desks.get(name, "unknown")
        return control_pb2.DeskStatus(
            name=name,
            configured=name in self.deps.configured_desks or state != "not_configured",
            status=state,
            last_success=iso(figures.last_success) or "",
            pending_jobs=figures.pending_jobs,
            dead_jobs=figures.dead_jobs,
            swept_to=iso(figures.swept_to) or "",
            inbound_queued=figures.inbound_queued,
            inbound=name in self.deps.inbound_desks,
            outbound=name in self.deps.outbound_desks,
        )

    def _signer(self, figures: StatusFigures, balance: str) -> control_pb2.SignerStatus:
        signer: Signer | None = self.deps.signer
        counts = figures.intents
        pending = sum(counts.get(state, 0) for state in UNFINISHED_INTENTS)
        if signer is None:
            return control_pb2.SignerStatus(enabled=False, pending_intents=pending, dead_intents=counts.get("dead", 0))
        status = signer.status
        redact = current_redactor()
        return control_pb2.SignerStatus(
            enabled=True,
            address=status.address,
            sequence=status.next_sequence or 0,
            balance=balance,
            pending_intents=pending,
            dead_intents=counts.get("dead", 0),
            in_flight=status.in_flight,
            paused=redact(status.paused or ""),
            last_error=redact(status.last_error or ""),
        )

    async def _balance(self) -> str:
        """The signer's fee-denom balance, or "" when there is no signer or the node does not say in time."""
        signer, rpc = self.deps.signer, self.deps.rpc
        if signer is None or rpc is None:
            return ""
        try:
            async with asyncio.timeout(BALANCE_TIMEOUT):
                return await query_balance(rpc, signer.status.address, self.deps.fee_denom)
        except (ChainRpcError, TimeoutError) as exc:
            log.debug("status without the signer's balance: %s", current_redactor()(str(exc) or "timed out"))
            return ""

    async def GetTicket(
        self, request: control_pb2.GetTicketRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.GetTicketResponse:
        try:
            parse_ticket_id(request.ticket_id)
        except ValueError:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "ticket_id: must be <address>/support/<n>")
        if request.include_content and not self.deps.allow_content:
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, CONTENT_REFUSED)
        view = await self.deps.store.read("control ticket", ticket_view, request.ticket_id)
        if view is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"ticket {request.ticket_id} is not in the mirror")
            raise AssertionError  # abort raised
        answer = ticket_message(view)
        if request.include_content:
            answer.content.CopyFrom(await self._content(request.ticket_id))
        return answer

    async def _content(self, ticket_id: str) -> control_pb2.TicketContent:
        """The ticket's opened subject and description; empty when the support key cannot open it."""
        if self.deps.opener is None:
            return control_pb2.TicketContent()
        try:
            snapshot = await self.deps.opener.snapshot(ticket_id)
        except ValueError:  # a stored payload beyond the JSON limits: nothing to show, nothing to fail
            return control_pb2.TicketContent()
        if snapshot is None or not snapshot.content_available:
            return control_pb2.TicketContent()
        return control_pb2.TicketContent(subject=snapshot.subject, description=snapshot.description)


def ticket_message(view: TicketView) -> control_pb2.GetTicketResponse:
    t = view.ticket
    redact = current_redactor()
    return control_pb2.GetTicketResponse(
        ticket=control_pb2.TicketMirror(
            ticket_id=t.ticket_id,
            customer=t.submitter or "",
            status=t.status or "",
            priority=t.priority or "",
            category=t.category or "",
            assignee=t.assigned_agent or "",
            sequence=t.last_sequence,
            created_height=view.created_height or 0,
            updated_height=t.last_height,
            chain_updated_at=iso(t.chain_updated_at) or "",
            updated_at=iso(view.updated_at) or "",
            content_state=t.content_state,
        ),
        refs=[
            control_pb2.ExternalRef(
                desk=r.desk,
                external_id=r.external_id,
                url=r.url or "",
                verified=r.verified,
                state=r.state,
                created_at=iso(r.created_at) or "",
            )
            for r in view.refs
        ],
        fields=[
            control_pb2.FieldSync(
                desk=f.desk,
                field=f.field,
                base_sha256=f.base_sha256,
                synced_at=iso(f.synced_at) or "",
                synced_from=f.synced_from or "",
                desk_change_id=f.desk_change_id or "",
            )
            for f in view.fields
        ],
        conflicts=[conflict_message(c) for c in view.conflicts],
        jobs=[job_message(j) for j in view.jobs],
        intents=[intent_message(i) for i in view.intents],
        last_errors=[redact(f"{iso(e.at)} {e.source}: {e.error}") for e in view.errors],
    )
