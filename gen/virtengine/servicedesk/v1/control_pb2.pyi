from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeskStatus(_message.Message):
    __slots__ = ("name", "configured", "status", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    configured: bool
    status: str
    detail: str
    def __init__(self, name: _Optional[str] = ..., configured: bool = ..., status: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("healthy", "chain_id", "chain_reachable", "cursor_height", "head_height", "pending_events", "failed_events", "desks", "last_sync", "version", "problems")
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
    def __init__(self, healthy: bool = ..., chain_id: _Optional[str] = ..., chain_reachable: bool = ..., cursor_height: _Optional[int] = ..., head_height: _Optional[int] = ..., pending_events: _Optional[int] = ..., failed_events: _Optional[int] = ..., desks: _Optional[_Iterable[_Union[DeskStatus, _Mapping]]] = ..., last_sync: _Optional[str] = ..., version: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

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
    __slots__ = ("state", "desk", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    DESK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: str
    desk: str
    limit: int
    def __init__(self, state: _Optional[str] = ..., desk: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("include_resolved", "limit")
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    include_resolved: bool
    limit: int
    def __init__(self, include_resolved: bool = ..., limit: _Optional[int] = ...) -> None: ...

class ListConflictsResponse(_message.Message):
    __slots__ = ("conflicts",)
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    conflicts: _containers.RepeatedCompositeFieldContainer[Conflict]
    def __init__(self, conflicts: _Optional[_Iterable[_Union[Conflict, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("jobs_queued",)
    JOBS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    jobs_queued: int
    def __init__(self, jobs_queued: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("state", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: str
    limit: int
    def __init__(self, state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTxIntentsResponse(_message.Message):
    __slots__ = ("intents",)
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[TxIntent]
    def __init__(self, intents: _Optional[_Iterable[_Union[TxIntent, _Mapping]]] = ...) -> None: ...

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
