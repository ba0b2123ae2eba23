"""The x/support keeper: tickets, responses and external refs in the state dict, with the
authorisation rules, status table, counters and events of CHAIN_CONTRACT.md.

Choices the contract leaves open: `MsgUpdateSupportRequest` with the ticket's current status is a
no-op for status; a closed ticket accepts only a status change to archived; an external ref update
re-emits `support_external_ticket_linked` with the new values; a ref removal emits no support_event;
`MsgRegisterExternalTicket` needs the support_agent role."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from virtengine.support.v1 import tx_pb2, types_pb2

from devnet.abci_events import Event
from devnet.app_state import is_address
from devnet.support_events import (
    ALLOWED_TRANSITIONS,
    STATUS_NAMES,
    EnvelopeError,
    payload_fields,
    payload_recipients,
    support_event,
)

CATEGORIES = frozenset({"account", "identity", "billing", "provider", "marketplace", "technical", "security", "other"})
PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
EXTERNAL_SYSTEMS = frozenset({"jira", "waldur"})
STATUS_NUMBERS = {name: number for number, name in STATUS_NAMES.items()}


class SupportError(Exception):
    """A rejected x/support message (codespace `support`)."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(log)
        self.code = code
        self.log = log


def invalid(text: str) -> SupportError:
    return SupportError(2, f"{text}: invalid request")


def parse_ticket_id(ticket_id: str) -> tuple[str, int]:
    """Strict `<bech32>/support/<n>` parse."""
    parts = ticket_id.split("/")
    if len(parts) != 3 or parts[1] != "support" or not is_address(parts[0]):
        raise invalid(f"malformed ticket id {ticket_id!r}")
    if not parts[2].isdigit() or parts[2].startswith("0"):
        raise invalid(f"malformed ticket id {ticket_id!r}")
    return parts[0], int(parts[2])


def encode_payload(payload: types_pb2.EncryptedSupportPayload) -> str:
    return base64.b64encode(payload.SerializeToString(deterministic=True)).decode()


@dataclass
class BlockContext:
    height: int
    time: int  # unix seconds of the block header, never the wall clock


class SupportKeeper:
    """Executes support msgs on one state branch and produces their events."""

    def __init__(self, state: dict[str, Any], ctx: BlockContext) -> None:
        self.state = state
        self.ctx = ctx

    # -- helpers ------------------------------------------------------------------------------
    def _is_agent(self, address: str) -> bool:
        return address in self.state["support_agents"]

    def _ticket(self, ticket_id: str) -> dict[str, Any]:
        parse_ticket_id(ticket_id)
        ticket = self.state["tickets"].get(ticket_id)
        if ticket is None:
            raise SupportError(3, f"support request {ticket_id} not found: not found")
        return ticket

    def _next_sequence(self) -> int:
        counters = self.state["counters"]
        counters["event_sequence"] += 1
        return int(counters["event_sequence"])

    def _event(self, event_type: str, ticket: dict[str, Any], seq: int, fields: dict[str, Any],
               suffix: str = "") -> Event:
        ticket["last_sequence"] = seq
        return support_event(event_type, f"{ticket['id']}/{seq}{suffix}", height=self.ctx.height, sequence=seq,
                             timestamp=self.ctx.time, fields={"ticket_id": ticket["id"], **fields})

    def _status_changed(self, ticket: dict[str, Any], seq: int, old: int, by: str) -> Event:
        return self._event("support_request_status_changed", ticket, seq, {
            "old_status": STATUS_NAMES[old], "new_status": STATUS_NAMES[ticket["status"]], "updated_by": by,
        }, suffix="/status")

    def _set_status(self, ticket: dict[str, Any], status: int) -> None:
        ticket["status"] = status
        name = STATUS_NAMES[status]
        if name in ("resolved", "closed"):
            ticket["closed_at"] = self.ctx.time
        elif name == "archived":
            ticket["archived_at"] = self.ctx.time
        else:
            ticket["closed_at"] = 0

    def _payload(self, payload: types_pb2.EncryptedSupportPayload) -> dict[str, Any]:
        try:
            return payload_fields(payload)
        except EnvelopeError as exc:
            raise SupportError(10, f"{exc}: invalid payload") from exc

    def _must_participate(self, ticket: dict[str, Any], sender: str) -> None:
        if sender != ticket["submitter"] and not self._is_agent(sender):
            raise SupportError(4, f"{sender} is neither the submitter nor a support agent: unauthorized")

    # -- messages -----------------------------------------------------------------------------
    def execute(self, msg: Message) -> tuple[Message, list[Event]]:
        handler = getattr(self, "_" + type(msg).__name__)
        result: tuple[Message, list[Event]] = handler(msg)
        return result

    def _MsgCreateSupportRequest(self, msg: tx_pb2.MsgCreateSupportRequest) -> tuple[Message, list[Event]]:
        priority = msg.priority or "normal"
        if msg.category not in CATEGORIES:
            raise invalid(f"unknown category {msg.category!r}")
        if priority not in PRIORITIES:
            raise invalid(f"unknown priority {priority!r}")
        if not msg.HasField("payload"):
            raise SupportError(10, "a support request needs an encrypted payload: invalid payload")
        fields = self._payload(msg.payload)
        related = None
        if msg.HasField("related_entity") and (msg.related_entity.type or msg.related_entity.id):
            if not (msg.related_entity.type and msg.related_entity.id):
                raise invalid("related_entity needs both type and id")
            related = {"type": msg.related_entity.type, "id": msg.related_entity.id}
        counters = self.state["counters"]
        n = counters["per_submitter"].get(msg.sender, 0) + 1
        counters["per_submitter"][msg.sender] = n
        counters["ticket_number"] += 1
        ticket_id = f"{msg.sender}/support/{n}"
        number = f"SUP-{counters['ticket_number']:06d}"
        recipients = payload_recipients(msg.payload)
        ticket = {
            "id": ticket_id, "ticket_number": number, "submitter": msg.sender, "category": msg.category,
            "priority": priority, "status": 1, "assigned_agent": "", "payload": encode_payload(msg.payload),
            "related_entity": related, "public_metadata": dict(sorted(msg.public_metadata.items())),
            "recipients": recipients, "response_count": 0, "created_at": self.ctx.time,
            "updated_at": self.ctx.time, "closed_at": 0, "archived_at": 0, "last_sequence": 0,
        }
        self.state["tickets"][ticket_id] = ticket
        body: dict[str, Any] = {"ticket_number": number, "submitter": msg.sender, "category": msg.category,
                                "priority": priority, "status": "open", **fields}
        if recipients:
            body["recipients"] = list(msg.payload.envelope.recipient_key_ids)
        if related:
            body["related_entity"] = related
        event = self._event("support_request_created", ticket, self._next_sequence(), body)
        return tx_pb2.MsgCreateSupportRequestResponse(ticket_id=ticket_id, ticket_number=number), [event]

    def _MsgUpdateSupportRequest(self, msg: tx_pb2.MsgUpdateSupportRequest) -> tuple[Message, list[Event]]:
        ticket = self._ticket(msg.ticket_id)
        self._must_participate(ticket, msg.sender)
        agent_fields = msg.priority or msg.status or msg.assigned_agent
        if agent_fields and not self._is_agent(msg.sender):
            raise SupportError(4, "only a support agent may change priority, status or assigned_agent: unauthorized")
        current = STATUS_NAMES[ticket["status"]]
        new_status = ticket["status"] if msg.status in (0, ticket["status"]) else int(msg.status)
        if msg.category and msg.category not in CATEGORIES:
            raise invalid(f"unknown category {msg.category!r}")
        if msg.priority and msg.priority not in PRIORITIES:
            raise invalid(f"unknown priority {msg.priority!r}")
        if msg.assigned_agent and not self._is_agent(msg.assigned_agent):
            raise invalid(f"assigned_agent {msg.assigned_agent} is not a support agent")
        if new_status not in STATUS_NAMES:
            raise invalid(f"unknown status {msg.status}")
        if new_status != ticket["status"] and STATUS_NAMES[new_status] not in ALLOWED_TRANSITIONS[current]:
            raise SupportError(5, f"status transition from {current} to {STATUS_NAMES[new_status]} is not allowed: "
                                  "invalid status transition")
        other_fields = (msg.category or msg.priority or msg.assigned_agent or msg.HasField("payload")
                        or msg.public_metadata)
        if current == "archived" or (current == "closed" and (new_status == ticket["status"] or other_fields)):
            raise SupportError(11, f"support request {ticket['id']} is {current}: ticket is closed")
        fields = self._payload(msg.payload) if msg.HasField("payload") else {}
        old_status = ticket["status"]
        ticket["category"] = msg.category or ticket["category"]
        ticket["priority"] = msg.priority or ticket["priority"]
        ticket["assigned_agent"] = msg.assigned_agent or ticket["assigned_agent"]
        if msg.HasField("payload"):
            ticket["payload"] = encode_payload(msg.payload)
            self._add_recipients(ticket, payload_recipients(msg.payload))
        ticket["public_metadata"] = dict(sorted({**ticket["public_metadata"], **msg.public_metadata}.items()))
        if new_status != old_status:
            self._set_status(ticket, new_status)
        ticket["updated_at"] = self.ctx.time
        body: dict[str, Any] = {"updated_by": msg.sender, "priority": ticket["priority"],
                                "category": ticket["category"]}
        if ticket["assigned_agent"]:
            body["assigned_agent"] = ticket["assigned_agent"]
        body["status"] = STATUS_NAMES[ticket["status"]]
        body.update(fields)
        seq = self._next_sequence()
        events = [self._event("support_request_updated", ticket, seq, body)]
        if new_status != old_status:
            events.append(self._status_changed(ticket, seq, old_status, msg.sender))
        return tx_pb2.MsgUpdateSupportRequestResponse(), events

    def _add_recipients(self, ticket: dict[str, Any], recipients: list[str]) -> None:
        ticket["recipients"] = ticket["recipients"] + [r for r in recipients if r not in ticket["recipients"]]

    def _MsgAddSupportResponse(self, msg: tx_pb2.MsgAddSupportResponse) -> tuple[Message, list[Event]]:
        ticket = self._ticket(msg.ticket_id)
        self._must_participate(ticket, msg.sender)
        current = STATUS_NAMES[ticket["status"]]
        if current in ("closed", "archived"):
            raise SupportError(11, f"support request {ticket['id']} is {current}: ticket is closed")
        if ticket["response_count"] >= self.state["params"]["max_responses"]:
            raise SupportError(6, f"support request {ticket['id']} already has "
                                  f"{ticket['response_count']} responses: too many responses")
        if not msg.HasField("payload"):
            raise SupportError(10, "a response needs an encrypted payload: invalid payload")
        fields = self._payload(msg.payload)
        got = payload_recipients(msg.payload)
        missing = [r for r in ticket["recipients"] if r not in got]
        if missing:
            raise SupportError(7, f"response is not encrypted to recipient(s) {', '.join(missing)}: "
                                  "recipient missing")
        is_agent = self._is_agent(msg.sender)
        ticket["response_count"] += 1
        response_id = f"{ticket['id']}/response/{ticket['response_count']}"
        self.state["responses"].setdefault(ticket["id"], []).append({
            "id": response_id, "author": msg.sender, "is_agent": is_agent,
            "payload": encode_payload(msg.payload), "created_at": self.ctx.time,
        })
        self._add_recipients(ticket, got)
        ticket["updated_at"] = self.ctx.time
        seq = self._next_sequence()
        events = [self._event("support_response_added", ticket, seq, {
            "response_id": response_id, "author": msg.sender, "is_agent": is_agent, **fields})]
        target = "in_progress" if current == "resolved" else ("waiting_customer" if is_agent else "waiting_support")
        if target != current and target in ALLOWED_TRANSITIONS[current]:
            old = ticket["status"]
            self._set_status(ticket, STATUS_NUMBERS[target])
            events.append(self._status_changed(ticket, seq, old, msg.sender))
        return tx_pb2.MsgAddSupportResponseResponse(response_id=response_id), events

    def _MsgArchiveSupportRequest(self, msg: tx_pb2.MsgArchiveSupportRequest) -> tuple[Message, list[Event]]:
        ticket = self._ticket(msg.ticket_id)
        self._must_participate(ticket, msg.sender)
        current = STATUS_NAMES[ticket["status"]]
        if "archived" not in ALLOWED_TRANSITIONS[current]:
            raise SupportError(5, f"status transition from {current} to archived is not allowed: "
                                  "invalid status transition")
        self._set_status(ticket, STATUS_NUMBERS["archived"])
        ticket["updated_at"] = self.ctx.time
        body: dict[str, Any] = {"archived_by": msg.sender}
        if msg.reason:
            body["reason"] = msg.reason
        event = self._event("support_request_archived", ticket, self._next_sequence(), body)
        return tx_pb2.MsgArchiveSupportRequestResponse(), [event]

    def _ref_target(self, msg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if msg.resource_type != "support_request":
            raise invalid(f"unknown resource_type {msg.resource_type!r}")
        if msg.external_system not in EXTERNAL_SYSTEMS:
            raise invalid(f"unknown external_system {msg.external_system!r}")
        ticket = self._ticket(msg.resource_id)
        return ticket, self.state["refs"].setdefault(ticket["id"], {})

    def _linked(self, ticket: dict[str, Any], ref: dict[str, Any], system: str, by: str) -> Event:
        body: dict[str, Any] = {"external_system": system, "external_ticket_id": ref["external_ticket_id"]}
        if ref["external_url"]:
            body["external_url"] = ref["external_url"]
        body["linked_by"] = by
        return self._event("support_external_ticket_linked", ticket, self._next_sequence(), body)

    def _MsgRegisterExternalTicket(self, msg: tx_pb2.MsgRegisterExternalTicket) -> tuple[Message, list[Event]]:
        if not self._is_agent(msg.sender):
            raise SupportError(4, f"{msg.sender} does not hold the support_agent role: unauthorized")
        ticket, refs = self._ref_target(msg)
        if not msg.external_ticket_id:
            raise invalid("external_ticket_id is empty")
        if msg.external_system in refs:
            raise SupportError(8, f"{ticket['id']} already has a {msg.external_system} ref: external ref exists")
        ref = refs[msg.external_system] = {
            "resource_type": msg.resource_type, "external_ticket_id": msg.external_ticket_id,
            "external_url": msg.external_url, "created_by": msg.sender,
            "created_at": self.ctx.time, "updated_at": self.ctx.time,
        }
        return tx_pb2.MsgRegisterExternalTicketResponse(), [self._linked(ticket, ref, msg.external_system, msg.sender)]

    def _own_ref(self, msg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        ticket, refs = self._ref_target(msg)
        ref = refs.get(msg.external_system)
        if ref is None:
            raise SupportError(9, f"{ticket['id']} has no {msg.external_system} ref: external ref not found")
        if ref["created_by"] != msg.sender:
            raise SupportError(4, f"only {ref['created_by']} may change this ref: unauthorized")
        return ticket, refs

    def _MsgUpdateExternalTicket(self, msg: tx_pb2.MsgUpdateExternalTicket) -> tuple[Message, list[Event]]:
        ticket, refs = self._own_ref(msg)
        ref = refs[msg.external_system]
        ref["external_ticket_id"] = msg.external_ticket_id or ref["external_ticket_id"]
        ref["external_url"] = msg.external_url or ref["external_url"]
        ref["updated_at"] = self.ctx.time
        return tx_pb2.MsgUpdateExternalTicketResponse(), [self._linked(ticket, ref, msg.external_system, msg.sender)]

    def _MsgRemoveExternalTicket(self, msg: tx_pb2.MsgRemoveExternalTicket) -> tuple[Message, list[Event]]:
        ticket, refs = self._own_ref(msg)
        del refs[msg.external_system]
        if not refs:
            del self.state["refs"][ticket["id"]]
        return tx_pb2.MsgRemoveExternalTicketResponse(), []

    # -- block end ----------------------------------------------------------------------------
    def end_block(self) -> list[Event]:
        """Retention: archive resolved/closed tickets past one age, purge archived ones past another."""
        params = self.state["params"]
        archive_after, purge_after = params["archive_after_seconds"], params["purge_after_seconds"]
        events: list[Event] = []
        now = self.ctx.time
        for ticket in list(self.state["tickets"].values()):
            name = STATUS_NAMES[ticket["status"]]
            closed_for = now - ticket["closed_at"]
            if archive_after is not None and name in ("resolved", "closed") and closed_for >= archive_after:
                self._set_status(ticket, STATUS_NUMBERS["archived"])
                events.append(self._event("support_request_archived", ticket, self._next_sequence(), {
                    "archived_by": "system", "reason": f"retention: {name} for {_age(archive_after)}"}))
            elif purge_after is not None and name == "archived" and now - ticket["archived_at"] >= purge_after:
                events.append(self._event("support_request_purged", ticket, self._next_sequence(), {
                    "purged_by": "system", "reason": f"retention: {_age(purge_after)}"}))
                del self.state["tickets"][ticket["id"]]
                self.state["responses"].pop(ticket["id"], None)
                self.state["refs"].pop(ticket["id"], None)
        return events


def _age(seconds: int) -> str:
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    return f"{seconds} seconds"
