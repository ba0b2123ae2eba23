from virtengine.support.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MsgCreateSupportRequest(_message.Message):
    __slots__ = ("sender", "category", "priority", "payload", "related_entity", "public_metadata")
    class PublicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SENDER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RELATED_ENTITY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    sender: str
    category: str
    priority: str
    payload: _types_pb2.EncryptedSupportPayload
    related_entity: _types_pb2.RelatedEntity
    public_metadata: _containers.ScalarMap[str, str]
    def __init__(self, sender: _Optional[str] = ..., category: _Optional[str] = ..., priority: _Optional[str] = ..., payload: _Optional[_Union[_types_pb2.EncryptedSupportPayload, _Mapping]] = ..., related_entity: _Optional[_Union[_types_pb2.RelatedEntity, _Mapping]] = ..., public_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MsgCreateSupportRequestResponse(_message.Message):
    __slots__ = ("ticket_id", "ticket_number")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    ticket_number: str
    def __init__(self, ticket_id: _Optional[str] = ..., ticket_number: _Optional[str] = ...) -> None: ...

class MsgUpdateSupportRequest(_message.Message):
    __slots__ = ("sender", "ticket_id", "category", "priority", "status", "assigned_agent", "payload", "public_metadata")
    class PublicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AGENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    sender: str
    ticket_id: str
    category: str
    priority: str
    status: _types_pb2.SupportStatus
    assigned_agent: str
    payload: _types_pb2.EncryptedSupportPayload
    public_metadata: _containers.ScalarMap[str, str]
    def __init__(self, sender: _Optional[str] = ..., ticket_id: _Optional[str] = ..., category: _Optional[str] = ..., priority: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.SupportStatus, str]] = ..., assigned_agent: _Optional[str] = ..., payload: _Optional[_Union[_types_pb2.EncryptedSupportPayload, _Mapping]] = ..., public_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MsgUpdateSupportRequestResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MsgAddSupportResponse(_message.Message):
    __slots__ = ("sender", "ticket_id", "payload")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    sender: str
    ticket_id: str
    payload: _types_pb2.EncryptedSupportPayload
    def __init__(self, sender: _Optional[str] = ..., ticket_id: _Optional[str] = ..., payload: _Optional[_Union[_types_pb2.EncryptedSupportPayload, _Mapping]] = ...) -> None: ...

class MsgAddSupportResponseResponse(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    def __init__(self, response_id: _Optional[str] = ...) -> None: ...

class MsgArchiveSupportRequest(_message.Message):
    __slots__ = ("sender", "ticket_id", "reason")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sender: str
    ticket_id: str
    reason: str
    def __init__(self, sender: _Optional[str] = ..., ticket_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class MsgArchiveSupportRequestResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MsgRegisterExternalTicket(_message.Message):
    __slots__ = ("sender", "resource_id", "resource_type", "external_system", "external_ticket_id", "external_url")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_URL_FIELD_NUMBER: _ClassVar[int]
    sender: str
    resource_id: str
    resource_type: str
    external_system: str
    external_ticket_id: str
    external_url: str
    def __init__(self, sender: _Optional[str] = ..., resource_id: _Optional[str] = ..., resource_type: _Optional[str] = ..., external_system: _Optional[str] = ..., external_ticket_id: _Optional[str] = ..., external_url: _Optional[str] = ...) -> None: ...

class MsgRegisterExternalTicketResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MsgUpdateExternalTicket(_message.Message):
    __slots__ = ("sender", "resource_id", "resource_type", "external_system", "external_ticket_id", "external_url")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_URL_FIELD_NUMBER: _ClassVar[int]
    sender: str
    resource_id: str
    resource_type: str
    external_system: str
    external_ticket_id: str
    external_url: str
    def __init__(self, sender: _Optional[str] = ..., resource_id: _Optional[str] = ..., resource_type: _Optional[str] = ..., external_system: _Optional[str] = ..., external_ticket_id: _Optional[str] = ..., external_url: _Optional[str] = ...) -> None: ...

class MsgUpdateExternalTicketResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MsgRemoveExternalTicket(_message.Message):
    __slots__ = ("sender", "resource_id", "resource_type", "external_system")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    sender: str
    resource_id: str
    resource_type: str
    external_system: str
    def __init__(self, sender: _Optional[str] = ..., resource_id: _Optional[str] = ..., resource_type: _Optional[str] = ..., external_system: _Optional[str] = ...) -> None: ...

class MsgRemoveExternalTicketResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
