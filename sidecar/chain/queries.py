"""The chain's committed ticket state and its registered desk refs, read over abci_query.

Reconcile holds the mirror and the desks against these answers: they come from the node's state, not
from events, so a mirror that missed an event cannot hide it. Only the latest height is asked for (a
node may serve no other); the answer says which height it is.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from virtengine.support.v1 import query_pb2

from sidecar.chain.rpc import CometRpc
from sidecar.chain.transitions import STATUS_CODES
from sidecar.errors import ChainRpcError

SUPPORT_REQUEST_PATH = "/virtengine.support.v1.Query/SupportRequest"
EXTERNAL_REFS_PATH = "/virtengine.support.v1.Query/ExternalTicketRefs"
NOT_FOUND_CODE = 22  # the SDK's NotFound, as x/support answers for an unknown ticket
_STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}


@dataclass(frozen=True)
class ChainTicket:
    """A ticket's synced fields as committed; `height` is the height the node answered for."""

    ticket_id: str
    status: str
    priority: str
    assigned_agent: str | None
    last_sequence: int
    height: int


async def query_ticket(rpc: CometRpc, ticket_id: str) -> ChainTicket | None:
    """The ticket as the chain holds it, or None when the chain does not know it."""
    request = query_pb2.QuerySupportRequestRequest(ticket_id=ticket_id).SerializeToString()
    response = await rpc.abci_query(SUPPORT_REQUEST_PATH, request)
    if _code(response) == NOT_FOUND_CODE:
        return None
    answer = query_pb2.QuerySupportRequestResponse()
    _decode(answer, response, f"support request {ticket_id}")
    ticket = answer.request
    if ticket.id != ticket_id:
        raise ChainRpcError(f"support request query for {ticket_id} answered another ticket", retryable=True)
    return ChainTicket(
        ticket_id=ticket_id,
        status=_STATUS_NAMES.get(int(ticket.status), f"status_{int(ticket.status)}"),
        priority=ticket.priority,
        assigned_agent=ticket.assigned_agent or None,
        last_sequence=int(ticket.last_sequence),
        height=_height(response),
    )


async def query_refs(rpc: CometRpc, ticket_id: str) -> dict[str, str]:
    """The desk tickets registered on chain for the ticket: external system -> external ticket id."""
    request = query_pb2.QueryExternalTicketRefsRequest(resource_id=ticket_id).SerializeToString()
    response = await rpc.abci_query(EXTERNAL_REFS_PATH, request)
    answer = query_pb2.QueryExternalTicketRefsResponse()
    _decode(answer, response, f"external refs of {ticket_id}")
    return {ref.external_system: ref.external_ticket_id for ref in answer.refs if ref.resource_id == ticket_id}


def _code(response: dict[str, Any]) -> int:
    try:
        return int(response.get("code") or 0)
    except (TypeError, ValueError):
        raise ChainRpcError("abci_query answered a malformed code", retryable=True) from None


def _height(response: dict[str, Any]) -> int:
    try:
        return int(response.get("height") or 0)
    except (TypeError, ValueError):
        return 0


def _decode(message: Any, response: dict[str, Any], what: str) -> None:
    """Parse the answer's value into `message`; a refusal or undecodable bytes is a ChainRpcError."""
    code = _code(response)
    if code:
        log = str(response.get("log", ""))[:200]
        raise ChainRpcError(f"query of {what} failed: code {code}: {log}", retryable=True)
    try:
        message.ParseFromString(base64.b64decode(response.get("value") or ""))
    except (DecodeError, binascii.Error, TypeError, ValueError):
        raise ChainRpcError(f"query of {what} answered undecodable bytes", retryable=True) from None
