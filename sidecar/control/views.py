"""Store rows as the control API's messages (one converter per kind, shared by every call)."""

from __future__ import annotations

from virtengine.servicedesk.v1 import control_pb2

from sidecar.observe.logs import current_redactor
from sidecar.store.inbound import ConflictRow
from sidecar.store.intents import IntentView
from sidecar.store.jobs import Job
from sidecar.store.pauses import Pause
from sidecar.timestamps import iso


def job_message(j: Job) -> control_pb2.Job:
    return control_pb2.Job(
        id=j.id,
        dedupe_key=j.dedupe_key,
        kind=j.kind,
        desk=j.desk,
        ticket_id=j.ticket_id or "",
        state=j.state,
        attempts=j.attempts,
        next_run_at=iso(j.next_run_at) or "",
        last_error=current_redactor()(j.last_error or ""),
        created_at=iso(j.created_at) or "",
        updated_at=iso(j.updated_at) or "",
    )


def intent_message(v: IntentView) -> control_pb2.TxIntent:
    return control_pb2.TxIntent(
        id=v.intent.id,
        msg_type=v.intent.msg_type,
        ticket_id=v.intent.ticket_id or "",
        state=v.intent.state,
        tx_hash=v.tx_hash or "",
        height=v.height or 0,
        code=v.intent.code or 0,
        log=current_redactor()(v.intent.log or ""),
        attempts=v.intent.attempts,
        created_at=iso(v.created_at) or "",
    )


def conflict_message(c: ConflictRow) -> control_pb2.Conflict:
    """A conflict as operators see it: values are field values (statuses, priorities, agent addresses)."""
    return control_pb2.Conflict(
        id=c.id,
        ticket_id=c.ticket_id,
        desk=c.desk,
        field=c.field,
        base_value=c.base_value or "",
        chain_value=c.chain_value or "",
        desk_value=c.desk_value or "",
        strategy=c.strategy,
        state=c.state,
        resolution=c.resolution or "",
        detected_at=iso(c.detected_at) or "",
        resolved_at=iso(c.resolved_at) or "",
    )


def pause_message(p: Pause) -> control_pb2.PauseState:
    return control_pb2.PauseState(
        direction=p.direction, desk=p.desk, since=iso(p.since) or "", by=p.by, reason=p.reason
    )
