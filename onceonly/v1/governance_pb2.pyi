import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrganisationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORGANISATION_KIND_UNSPECIFIED: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_CONSUMER: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_PROVIDER: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_OVERSIGHT: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_OPERATOR: _ClassVar[OrganisationKind]
ORGANISATION_KIND_UNSPECIFIED: OrganisationKind
ORGANISATION_KIND_CONSUMER: OrganisationKind
ORGANISATION_KIND_PROVIDER: OrganisationKind
ORGANISATION_KIND_OVERSIGHT: OrganisationKind
ORGANISATION_KIND_OPERATOR: OrganisationKind

class Organisation(_message.Message):
    __slots__ = ("id", "name", "kind", "contact")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    kind: OrganisationKind
    contact: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[OrganisationKind, str]] = ..., contact: _Optional[str] = ...) -> None: ...

class RegisterOrganisationRequest(_message.Message):
    __slots__ = ("organisation",)
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    organisation: Organisation
    def __init__(self, organisation: _Optional[_Union[Organisation, _Mapping]] = ...) -> None: ...

class RegisterOrganisationResponse(_message.Message):
    __slots__ = ("organisation", "event")
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    organisation: Organisation
    event: GovernanceEvent
    def __init__(self, organisation: _Optional[_Union[Organisation, _Mapping]] = ..., event: _Optional[_Union[GovernanceEvent, _Mapping]] = ...) -> None: ...

class ListOrganisationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListOrganisationsResponse(_message.Message):
    __slots__ = ("organisations",)
    ORGANISATIONS_FIELD_NUMBER: _ClassVar[int]
    organisations: _containers.RepeatedCompositeFieldContainer[Organisation]
    def __init__(self, organisations: _Optional[_Iterable[_Union[Organisation, _Mapping]]] = ...) -> None: ...

class GovernanceActor(_message.Message):
    __slots__ = ("organization_id", "role", "via")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    role: str
    via: str
    def __init__(self, organization_id: _Optional[str] = ..., role: _Optional[str] = ..., via: _Optional[str] = ...) -> None: ...

class GovernanceEvent(_message.Message):
    __slots__ = ("seq", "at", "actor", "action", "subject", "body_json", "prev_hash", "hash", "signature")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: _timestamp_pb2.Timestamp
    actor: GovernanceActor
    action: str
    subject: str
    body_json: str
    prev_hash: str
    hash: str
    signature: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[_Union[GovernanceActor, _Mapping]] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., body_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class GetGovernanceLogRequest(_message.Message):
    __slots__ = ("after_seq", "page_size")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    page_size: int
    def __init__(self, after_seq: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class GovernanceLog(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[GovernanceEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[GovernanceEvent, _Mapping]]] = ...) -> None: ...
