from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SupportStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPORT_STATUS_UNSPECIFIED: _ClassVar[SupportStatus]
    SUPPORT_STATUS_OPEN: _ClassVar[SupportStatus]
    SUPPORT_STATUS_ASSIGNED: _ClassVar[SupportStatus]
    SUPPORT_STATUS_IN_PROGRESS: _ClassVar[SupportStatus]
    SUPPORT_STATUS_WAITING_CUSTOMER: _ClassVar[SupportStatus]
    SUPPORT_STATUS_WAITING_SUPPORT: _ClassVar[SupportStatus]
    SUPPORT_STATUS_RESOLVED: _ClassVar[SupportStatus]
    SUPPORT_STATUS_CLOSED: _ClassVar[SupportStatus]
    SUPPORT_STATUS_ARCHIVED: _ClassVar[SupportStatus]
SUPPORT_STATUS_UNSPECIFIED: SupportStatus
SUPPORT_STATUS_OPEN: SupportStatus
SUPPORT_STATUS_ASSIGNED: SupportStatus
SUPPORT_STATUS_IN_PROGRESS: SupportStatus
SUPPORT_STATUS_WAITING_CUSTOMER: SupportStatus
SUPPORT_STATUS_WAITING_SUPPORT: SupportStatus
SUPPORT_STATUS_RESOLVED: SupportStatus
SUPPORT_STATUS_CLOSED: SupportStatus
SUPPORT_STATUS_ARCHIVED: SupportStatus

class WrappedKeyEntry(_message.Message):
    __slots__ = ("recipient_id", "wrapped_key", "algorithm", "ephemeral_pub_key")
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUB_KEY_FIELD_NUMBER: _ClassVar[int]
    recipient_id: str
    wrapped_key: bytes
    algorithm: str
    ephemeral_pub_key: bytes
    def __init__(self, recipient_id: _Optional[str] = ..., wrapped_key: _Optional[bytes] = ..., algorithm: _Optional[str] = ..., ephemeral_pub_key: _Optional[bytes] = ...) -> None: ...

class EncryptedPayloadEnvelope(_message.Message):
    __slots__ = ("version", "algorithm_id", "algorithm_version", "recipient_key_ids", "recipient_public_keys", "wrapped_keys", "nonce", "ciphertext", "sender_pub_key", "sender_signature", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEYS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    SENDER_PUB_KEY_FIELD_NUMBER: _ClassVar[int]
    SENDER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    version: int
    algorithm_id: str
    algorithm_version: int
    recipient_key_ids: _containers.RepeatedScalarFieldContainer[str]
    recipient_public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    wrapped_keys: _containers.RepeatedCompositeFieldContainer[WrappedKeyEntry]
    nonce: bytes
    ciphertext: bytes
    sender_pub_key: bytes
    sender_signature: bytes
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, version: _Optional[int] = ..., algorithm_id: _Optional[str] = ..., algorithm_version: _Optional[int] = ..., recipient_key_ids: _Optional[_Iterable[str]] = ..., recipient_public_keys: _Optional[_Iterable[bytes]] = ..., wrapped_keys: _Optional[_Iterable[_Union[WrappedKeyEntry, _Mapping]]] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., sender_pub_key: _Optional[bytes] = ..., sender_signature: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EncryptedSupportPayload(_message.Message):
    __slots__ = ("envelope", "envelope_ref", "envelope_hash", "payload_size")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_REF_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_HASH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    envelope: EncryptedPayloadEnvelope
    envelope_ref: str
    envelope_hash: bytes
    payload_size: int
    def __init__(self, envelope: _Optional[_Union[EncryptedPayloadEnvelope, _Mapping]] = ..., envelope_ref: _Optional[str] = ..., envelope_hash: _Optional[bytes] = ..., payload_size: _Optional[int] = ...) -> None: ...

class RelatedEntity(_message.Message):
    __slots__ = ("type", "id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    type: str
    id: str
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ExternalTicketRef(_message.Message):
    __slots__ = ("resource_id", "resource_type", "external_system", "external_ticket_id", "external_url", "created_by", "created_at", "updated_at")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    resource_type: str
    external_system: str
    external_ticket_id: str
    external_url: str
    created_by: str
    created_at: int
    updated_at: int
    def __init__(self, resource_id: _Optional[str] = ..., resource_type: _Optional[str] = ..., external_system: _Optional[str] = ..., external_ticket_id: _Optional[str] = ..., external_url: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ...) -> None: ...

class SupportRequest(_message.Message):
    __slots__ = ("id", "ticket_number", "submitter", "category", "priority", "status", "assigned_agent", "payload", "related_entity", "public_metadata", "recipients", "response_count", "created_at", "updated_at", "closed_at", "archived_at", "last_sequence")
    class PublicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AGENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RELATED_ENTITY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    ticket_number: str
    submitter: str
    category: str
    priority: str
    status: SupportStatus
    assigned_agent: str
    payload: EncryptedSupportPayload
    related_entity: RelatedEntity
    public_metadata: _containers.ScalarMap[str, str]
    recipients: _containers.RepeatedScalarFieldContainer[str]
    response_count: int
    created_at: int
    updated_at: int
    closed_at: int
    archived_at: int
    last_sequence: int
    def __init__(self, id: _Optional[str] = ..., ticket_number: _Optional[str] = ..., submitter: _Optional[str] = ..., category: _Optional[str] = ..., priority: _Optional[str] = ..., status: _Optional[_Union[SupportStatus, str]] = ..., assigned_agent: _Optional[str] = ..., payload: _Optional[_Union[EncryptedSupportPayload, _Mapping]] = ..., related_entity: _Optional[_Union[RelatedEntity, _Mapping]] = ..., public_metadata: _Optional[_Mapping[str, str]] = ..., recipients: _Optional[_Iterable[str]] = ..., response_count: _Optional[int] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., closed_at: _Optional[int] = ..., archived_at: _Optional[int] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class SupportResponse(_message.Message):
    __slots__ = ("id", "ticket_id", "author", "is_agent", "payload", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    IS_AGENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    ticket_id: str
    author: str
    is_agent: bool
    payload: EncryptedSupportPayload
    created_at: int
    def __init__(self, id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., author: _Optional[str] = ..., is_agent: bool = ..., payload: _Optional[_Union[EncryptedSupportPayload, _Mapping]] = ..., created_at: _Optional[int] = ...) -> None: ...
