from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeskStatus(_message.Message):
    __slots__ = ("name", "configured", "status", "detail", "last_success", "pending_jobs", "dead_jobs", "swept_to", "inbound_queued", "inbound", "outbound")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    PENDING_JOBS_FIELD_NUMBER: _ClassVar[int]
    DEAD_JOBS_FIELD_NUMBER: _ClassVar[int]
    SWEPT_TO_FIELD_NUMBER: _ClassVar[int]
    INBOUND_QUEUED_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    name: str
    configured: bool
    status: str
    detail: str
    last_success: str
    pending_jobs: int
    dead_jobs: int
    swept_to: str
    inbound_queued: int
    inbound: bool
    outbound: bool
    def __init__(self, name: _Optional[str] = ..., configured: bool = ..., status: _Optional[str] = ..., detail: _Optional[str] = ..., last_success: _Optional[str] = ..., pending_jobs: _Optional[int] = ..., dead_jobs: _Optional[int] = ..., swept_to: _Optional[str] = ..., inbound_queued: _Optional[int] = ..., inbound: bool = ..., outbound: bool = ...) -> None: ...

class SignerStatus(_message.Message):
    __slots__ = ("enabled", "address", "sequence", "balance", "pending_intents", "dead_intents", "in_flight", "paused", "last_error")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_INTENTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_INTENTS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    address: str
    sequence: int
    balance: str
    pending_intents: int
    dead_intents: int
    in_flight: int
    paused: str
    last_error: str
    def __init__(self, enabled: bool = ..., address: _Optional[str] = ..., sequence: _Optional[int] = ..., balance: _Optional[str] = ..., pending_intents: _Optional[int] = ..., dead_intents: _Optional[int] = ..., in_flight: _Optional[int] = ..., paused: _Optional[str] = ..., last_error: _Optional[str] = ...) -> None: ...

class PauseState(_message.Message):
    __slots__ = ("direction", "desk", "since", "by", "reason")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    direction: str
    desk: str
    since: str
    by: str
    reason: str
    def __init__(self, direction: _Optional[str] = ..., desk: _Optional[str] = ..., since: _Optional[str] = ..., by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("healthy", "chain_id", "chain_reachable", "cursor_height", "head_height", "pending_events", "failed_events", "desks", "last_sync", "version", "problems", "signer", "pauses", "lag_blocks", "open_conflicts")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    HEAD_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PENDING_EVENTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DESKS_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    PAUSES_FIELD_NUMBER: _ClassVar[int]
    LAG_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    OPEN_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    chain_id: str
    chain_reachable: bool
    cursor_height: int
    head_height: int
    pending_events: int
    failed_events: int
    desks: _containers.RepeatedCompositeFieldContainer[DeskStatus]
    last_sync: str
    version: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    signer: SignerStatus
    pauses: _containers.RepeatedCompositeFieldContainer[PauseState]
    lag_blocks: int
    open_conflicts: int
    def __init__(self, healthy: bool = ..., chain_id: _Optional[str] = ..., chain_reachable: bool = ..., cursor_height: _Optional[int] = ..., head_height: _Optional[int] = ..., pending_events: _Optional[int] = ..., failed_events: _Optional[int] = ..., desks: _Optional[_Iterable[_Union[DeskStatus, _Mapping]]] = ..., last_sync: _Optional[str] = ..., version: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ..., signer: _Optional[_Union[SignerStatus, _Mapping]] = ..., pauses: _Optional[_Iterable[_Union[PauseState, _Mapping]]] = ..., lag_blocks: _Optional[int] = ..., open_conflicts: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "dedupe_key", "kind", "desk", "ticket_id", "state", "attempts", "next_run_at", "last_error", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    dedupe_key: str
    kind: str
    desk: str
    ticket_id: str
    state: str
    attempts: int
    next_run_at: str
    last_error: str
    created_at: str
    updated_at: str
    def __init__(self, id: _Optional[int] = ..., dedupe_key: _Optional[str] = ..., kind: _Optional[str] = ..., desk: _Optional[str] = ..., ticket_id: _Optional[str] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., next_run_at: _Optional[str] = ..., last_error: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "desk", "limit", "ticket_id", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: str
    desk: str
    limit: int
    ticket_id: str
    page_token: str
    def __init__(self, state: _Optional[str] = ..., desk: _Optional[str] = ..., limit: _Optional[int] = ..., ticket_id: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedriveJobRequest(_message.Message):
    __slots__ = ("id", "all_dead", "desk")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALL_DEAD_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    id: int
    all_dead: bool
    desk: str
    def __init__(self, id: _Optional[int] = ..., all_dead: bool = ..., desk: _Optional[str] = ...) -> None: ...

class RedriveJobResponse(_message.Message):
    __slots__ = ("redriven",)
    REDRIVEN_FIELD_NUMBER: _ClassVar[int]
    redriven: int
    def __init__(self, redriven: _Optional[int] = ...) -> None: ...

class Conflict(_message.Message):
    __slots__ = ("id", "ticket_id", "desk", "field", "base_value", "chain_value", "desk_value", "strategy", "state", "resolution", "detected_at", "resolved_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESK_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    ticket_id: str
    desk: str
    field: str
    base_value: str
    chain_value: str
    desk_value: str
    strategy: str
    state: str
    resolution: str
    detected_at: str
    resolved_at: str
    def __init__(self, id: _Optional[int] = ..., ticket_id: _Optional[str] = ..., desk: _Optional[str] = ..., field: _Optional[str] = ..., base_value: _Optional[str] = ..., chain_value: _Optional[str] = ..., desk_value: _Optional[str] = ..., strategy: _Optional[str] = ..., state: _Optional[str] = ..., resolution: _Optional[str] = ..., detected_at: _Optional[str] = ..., resolved_at: _Optional[str] = ...) -> None: ...

class ListConflictsRequest(_message.Message):
    __slots__ = ("include_resolved", "limit", "desk", "ticket_id", "page_token", "state")
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    include_resolved: bool
    limit: int
    desk: str
    ticket_id: str
    page_token: str
    state: str
    def __init__(self, include_resolved: bool = ..., limit: _Optional[int] = ..., desk: _Optional[str] = ..., ticket_id: _Optional[str] = ..., page_token: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ListConflictsResponse(_message.Message):
    __slots__ = ("conflicts", "next_page_token")
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conflicts: _containers.RepeatedCompositeFieldContainer[Conflict]
    next_page_token: str
    def __init__(self, conflicts: _Optional[_Iterable[_Union[Conflict, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveConflictRequest(_message.Message):
    __slots__ = ("id", "winner", "operator")
    ID_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    id: int
    winner: str
    operator: str
    def __init__(self, id: _Optional[int] = ..., winner: _Optional[str] = ..., operator: _Optional[str] = ...) -> None: ...

class ResolveConflictResponse(_message.Message):
    __slots__ = ("conflict",)
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    conflict: Conflict
    def __init__(self, conflict: _Optional[_Union[Conflict, _Mapping]] = ...) -> None: ...

class SyncTicketRequest(_message.Message):
    __slots__ = ("ticket_id", "direction", "desk")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    direction: str
    desk: str
    def __init__(self, ticket_id: _Optional[str] = ..., direction: _Optional[str] = ..., desk: _Optional[str] = ...) -> None: ...

class SyncTicketResponse(_message.Message):
    __slots__ = ("jobs_queued", "jobs", "rereads_queued", "rereads_pending")
    JOBS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    REREADS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    REREADS_PENDING_FIELD_NUMBER: _ClassVar[int]
    jobs_queued: int
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    rereads_queued: int
    rereads_pending: int
    def __init__(self, jobs_queued: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., rereads_queued: _Optional[int] = ..., rereads_pending: _Optional[int] = ...) -> None: ...

class TxIntent(_message.Message):
    __slots__ = ("id", "msg_type", "ticket_id", "state", "tx_hash", "height", "code", "log", "attempts", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MSG_TYPE_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    msg_type: str
    ticket_id: str
    state: str
    tx_hash: str
    height: int
    code: int
    log: str
    attempts: int
    created_at: str
    def __init__(self, id: _Optional[int] = ..., msg_type: _Optional[str] = ..., ticket_id: _Optional[str] = ..., state: _Optional[str] = ..., tx_hash: _Optional[str] = ..., height: _Optional[int] = ..., code: _Optional[int] = ..., log: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListTxIntentsRequest(_message.Message):
    __slots__ = ("state", "limit", "ticket_id", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: str
    limit: int
    ticket_id: str
    page_token: str
    def __init__(self, state: _Optional[str] = ..., limit: _Optional[int] = ..., ticket_id: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTxIntentsResponse(_message.Message):
    __slots__ = ("intents", "next_page_token")
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[TxIntent]
    next_page_token: str
    def __init__(self, intents: _Optional[_Iterable[_Union[TxIntent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedriveIntentRequest(_message.Message):
    __slots__ = ("id", "all_dead")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALL_DEAD_FIELD_NUMBER: _ClassVar[int]
    id: int
    all_dead: bool
    def __init__(self, id: _Optional[int] = ..., all_dead: bool = ...) -> None: ...

class RedriveIntentResponse(_message.Message):
    __slots__ = ("redriven",)
    REDRIVEN_FIELD_NUMBER: _ClassVar[int]
    redriven: int
    def __init__(self, redriven: _Optional[int] = ...) -> None: ...

class GetTicketRequest(_message.Message):
    __slots__ = ("ticket_id", "include_content")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    include_content: bool
    def __init__(self, ticket_id: _Optional[str] = ..., include_content: bool = ...) -> None: ...

class TicketMirror(_message.Message):
    __slots__ = ("ticket_id", "customer", "status", "priority", "category", "assignee", "sequence", "created_height", "updated_height", "chain_updated_at", "updated_at", "content_state")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHAIN_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_STATE_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    customer: str
    status: str
    priority: str
    category: str
    assignee: str
    sequence: int
    created_height: int
    updated_height: int
    chain_updated_at: str
    updated_at: str
    content_state: str
    def __init__(self, ticket_id: _Optional[str] = ..., customer: _Optional[str] = ..., status: _Optional[str] = ..., priority: _Optional[str] = ..., category: _Optional[str] = ..., assignee: _Optional[str] = ..., sequence: _Optional[int] = ..., created_height: _Optional[int] = ..., updated_height: _Optional[int] = ..., chain_updated_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., content_state: _Optional[str] = ...) -> None: ...

class ExternalRef(_message.Message):
    __slots__ = ("desk", "external_id", "url", "verified", "state", "created_at")
    DESK_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    desk: str
    external_id: str
    url: str
    verified: bool
    state: str
    created_at: str
    def __init__(self, desk: _Optional[str] = ..., external_id: _Optional[str] = ..., url: _Optional[str] = ..., verified: bool = ..., state: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class FieldSync(_message.Message):
    __slots__ = ("desk", "field", "base_sha256", "synced_at", "synced_from", "desk_change_id")
    DESK_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    BASE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SYNCED_AT_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FROM_FIELD_NUMBER: _ClassVar[int]
    DESK_CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    desk: str
    field: str
    base_sha256: str
    synced_at: str
    synced_from: str
    desk_change_id: str
    def __init__(self, desk: _Optional[str] = ..., field: _Optional[str] = ..., base_sha256: _Optional[str] = ..., synced_at: _Optional[str] = ..., synced_from: _Optional[str] = ..., desk_change_id: _Optional[str] = ...) -> None: ...

class TicketContent(_message.Message):
    __slots__ = ("subject", "description")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subject: str
    description: str
    def __init__(self, subject: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class GetTicketResponse(_message.Message):
    __slots__ = ("ticket", "refs", "fields", "conflicts", "jobs", "intents", "last_errors", "content")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ticket: TicketMirror
    refs: _containers.RepeatedCompositeFieldContainer[ExternalRef]
    fields: _containers.RepeatedCompositeFieldContainer[FieldSync]
    conflicts: _containers.RepeatedCompositeFieldContainer[Conflict]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    intents: _containers.RepeatedCompositeFieldContainer[TxIntent]
    last_errors: _containers.RepeatedScalarFieldContainer[str]
    content: TicketContent
    def __init__(self, ticket: _Optional[_Union[TicketMirror, _Mapping]] = ..., refs: _Optional[_Iterable[_Union[ExternalRef, _Mapping]]] = ..., fields: _Optional[_Iterable[_Union[FieldSync, _Mapping]]] = ..., conflicts: _Optional[_Iterable[_Union[Conflict, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., intents: _Optional[_Iterable[_Union[TxIntent, _Mapping]]] = ..., last_errors: _Optional[_Iterable[str]] = ..., content: _Optional[_Union[TicketContent, _Mapping]] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("from_height", "to_height", "ticket_id", "desk", "dry_run", "limit", "page_token")
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TO_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    from_height: int
    to_height: int
    ticket_id: str
    desk: str
    dry_run: bool
    limit: int
    page_token: str
    def __init__(self, from_height: _Optional[int] = ..., to_height: _Optional[int] = ..., ticket_id: _Optional[str] = ..., desk: _Optional[str] = ..., dry_run: bool = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Difference(_message.Message):
    __slots__ = ("kind", "ticket_id", "desk", "field", "chain_value", "mirror_value", "desk_value", "height", "event_type", "action")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIRROR_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESK_VALUE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    ticket_id: str
    desk: str
    field: str
    chain_value: str
    mirror_value: str
    desk_value: str
    height: int
    event_type: str
    action: str
    def __init__(self, kind: _Optional[str] = ..., ticket_id: _Optional[str] = ..., desk: _Optional[str] = ..., field: _Optional[str] = ..., chain_value: _Optional[str] = ..., mirror_value: _Optional[str] = ..., desk_value: _Optional[str] = ..., height: _Optional[int] = ..., event_type: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("differences", "checked", "queued", "next_page_token")
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    differences: _containers.RepeatedCompositeFieldContainer[Difference]
    checked: int
    queued: int
    next_page_token: str
    def __init__(self, differences: _Optional[_Iterable[_Union[Difference, _Mapping]]] = ..., checked: _Optional[int] = ..., queued: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("direction", "desk", "reason")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    direction: str
    desk: str
    reason: str
    def __init__(self, direction: _Optional[str] = ..., desk: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("pauses",)
    PAUSES_FIELD_NUMBER: _ClassVar[int]
    pauses: _containers.RepeatedCompositeFieldContainer[PauseState]
    def __init__(self, pauses: _Optional[_Iterable[_Union[PauseState, _Mapping]]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("direction", "desk")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    direction: str
    desk: str
    def __init__(self, direction: _Optional[str] = ..., desk: _Optional[str] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("resumed", "pauses")
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    PAUSES_FIELD_NUMBER: _ClassVar[int]
    resumed: int
    pauses: _containers.RepeatedCompositeFieldContainer[PauseState]
    def __init__(self, resumed: _Optional[int] = ..., pauses: _Optional[_Iterable[_Union[PauseState, _Mapping]]] = ...) -> None: ...

class ResyncSequenceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResyncSequenceResponse(_message.Message):
    __slots__ = ("address", "previous_sequence", "sequence")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    address: str
    previous_sequence: int
    sequence: int
    def __init__(self, address: _Optional[str] = ..., previous_sequence: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("kinds", "ticket_id", "desk")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    ticket_id: str
    desk: str
    def __init__(self, kinds: _Optional[_Iterable[str]] = ..., ticket_id: _Optional[str] = ..., desk: _Optional[str] = ...) -> None: ...

class ControlEvent(_message.Message):
    __slots__ = ("seq", "at", "kind", "action", "ticket_id", "desk", "direction", "height", "id", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: str
    kind: str
    action: str
    ticket_id: str
    desk: str
    direction: str
    height: int
    id: int
    detail: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[str] = ..., kind: _Optional[str] = ..., action: _Optional[str] = ..., ticket_id: _Optional[str] = ..., desk: _Optional[str] = ..., direction: _Optional[str] = ..., height: _Optional[int] = ..., id: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
