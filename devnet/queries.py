"""Read-only `abci_query` paths over committed state, answered with the same protobuf types (and the
same NotFound code 22) as a Cosmos SDK node, so clients need nothing beyond CometBFT's RPC."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth_query
from cosmpy.protos.cosmos.bank.v1beta1 import query_pb2 as bank_query
from cosmpy.protos.cosmos.base.v1beta1 import coin_pb2
from cosmpy.protos.cosmos.crypto.secp256k1 import keys_pb2
from cosmpy.protos.tendermint.abci import types_pb2 as abci
from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import DecodeError
from virtengine.support.v1 import query_pb2, types_pb2

from devnet.app_state import is_address


def _pack(msg: Any) -> ProtoAny:
    packed = ProtoAny()
    packed.Pack(msg, type_url_prefix="/")
    return packed


def error(code: int, log: str, height: int) -> abci.ResponseQuery:
    return abci.ResponseQuery(code=code, log=log, codespace="sdk", height=height)


def not_found(what: str, height: int) -> abci.ResponseQuery:
    return error(22, f"rpc error: code = NotFound desc = {what} not found: key not found", height)


def account(state: dict[str, Any], data: bytes, height: int) -> abci.ResponseQuery:
    address = auth_query.QueryAccountRequest.FromString(data).address
    if not is_address(address):
        return error(18, f"rpc error: code = InvalidArgument desc = invalid address {address!r}: invalid request",
                     height)
    acc = state["accounts"].get(address)
    if acc is None:
        return not_found(f"account {address}", height)
    base = auth_pb2.BaseAccount(address=address, account_number=acc["account_number"], sequence=acc["sequence"])
    if acc["pub_key"]:
        base.pub_key.CopyFrom(_pack(keys_pb2.PubKey(key=base64.b64decode(acc["pub_key"]))))
    value = auth_query.QueryAccountResponse(account=_pack(base)).SerializeToString()
    return abci.ResponseQuery(code=0, value=value, height=height)


def balance(state: dict[str, Any], data: bytes, height: int) -> abci.ResponseQuery:
    """x/bank's Balance: an unknown account, or a denom it does not hold, has a zero balance (not NotFound);
    the devnet's accounts hold only the fee denom."""
    request = bank_query.QueryBalanceRequest.FromString(data)
    if not is_address(request.address):
        return error(18, f"rpc error: code = InvalidArgument desc = invalid address {request.address!r}: "
                         "invalid request", height)
    if not request.denom:
        return error(18, "rpc error: code = InvalidArgument desc = invalid denom: invalid request", height)
    acc = state["accounts"].get(request.address)
    held = acc["balance"] if acc is not None and request.denom == state["params"]["fee_denom"] else 0
    coin = coin_pb2.Coin(denom=request.denom, amount=str(held))
    return abci.ResponseQuery(code=0, value=bank_query.QueryBalanceResponse(balance=coin).SerializeToString(),
                              height=height)


def _payload(encoded: str) -> types_pb2.EncryptedSupportPayload:
    return types_pb2.EncryptedSupportPayload.FromString(base64.b64decode(encoded))


def ticket_proto(ticket: dict[str, Any]) -> types_pb2.SupportRequest:
    msg = types_pb2.SupportRequest(
        id=ticket["id"], ticket_number=ticket["ticket_number"], submitter=ticket["submitter"],
        category=ticket["category"], priority=ticket["priority"], status=ticket["status"],
        assigned_agent=ticket["assigned_agent"], payload=_payload(ticket["payload"]),
        public_metadata=ticket["public_metadata"], recipients=ticket["recipients"],
        response_count=ticket["response_count"], created_at=ticket["created_at"], updated_at=ticket["updated_at"],
        closed_at=ticket["closed_at"], archived_at=ticket["archived_at"], last_sequence=ticket["last_sequence"],
    )
    if ticket["related_entity"]:
        msg.related_entity.CopyFrom(types_pb2.RelatedEntity(**ticket["related_entity"]))
    return msg


def support_request(state: dict[str, Any], data: bytes, height: int) -> abci.ResponseQuery:
    ticket_id = query_pb2.QuerySupportRequestRequest.FromString(data).ticket_id
    ticket = state["tickets"].get(ticket_id)
    if ticket is None:
        return not_found(f"support request {ticket_id}", height)
    value = query_pb2.QuerySupportRequestResponse(request=ticket_proto(ticket)).SerializeToString()
    return abci.ResponseQuery(code=0, value=value, height=height)


def support_responses(state: dict[str, Any], data: bytes, height: int) -> abci.ResponseQuery:
    ticket_id = query_pb2.QuerySupportResponsesRequest.FromString(data).ticket_id
    if ticket_id not in state["tickets"]:
        return not_found(f"support request {ticket_id}", height)
    out = query_pb2.QuerySupportResponsesResponse(responses=[
        types_pb2.SupportResponse(id=r["id"], ticket_id=ticket_id, author=r["author"], is_agent=r["is_agent"],
                                  payload=_payload(r["payload"]), created_at=r["created_at"])
        for r in state["responses"].get(ticket_id, [])
    ])
    return abci.ResponseQuery(code=0, value=out.SerializeToString(), height=height)


def external_refs(state: dict[str, Any], data: bytes, height: int) -> abci.ResponseQuery:
    resource_id = query_pb2.QueryExternalTicketRefsRequest.FromString(data).resource_id
    refs = state["refs"].get(resource_id, {})
    out = query_pb2.QueryExternalTicketRefsResponse(refs=[
        types_pb2.ExternalTicketRef(resource_id=resource_id, external_system=system, **ref)
        for system, ref in sorted(refs.items())
    ])
    return abci.ResponseQuery(code=0, value=out.SerializeToString(), height=height)


STATE_QUERIES: dict[str, Callable[[dict[str, Any], bytes, int], abci.ResponseQuery]] = {
    "/cosmos.auth.v1beta1.Query/Account": account,
    "/cosmos.bank.v1beta1.Query/Balance": balance,
    "/virtengine.support.v1.Query/SupportRequest": support_request,
    "/virtengine.support.v1.Query/SupportResponses": support_responses,
    "/virtengine.support.v1.Query/ExternalTicketRefs": external_refs,
}


def run_state_query(state: dict[str, Any], path: str, data: bytes, height: int) -> abci.ResponseQuery:
    handler = STATE_QUERIES.get(path)
    if handler is None:
        return error(6, f"unknown query path {path}: unknown request", height)
    try:
        return handler(state, data, height)
    except DecodeError as exc:
        return error(18, f"rpc error: code = InvalidArgument desc = {exc}: invalid request", height)
