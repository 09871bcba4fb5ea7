import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from onceonly.v1 import common_pb2 as _common_pb2
from onceonly.v1 import oversight_pb2 as _oversight_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListMyAccessesRequest(_message.Message):
    __slots__ = ("person", "subject", "page_size", "page_token", "language")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    person: int
    subject: _common_pb2.Subject
    page_size: int
    page_token: str
    language: str
    def __init__(self, person: _Optional[int] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class MyAccess(_message.Message):
    __slots__ = ("trace_id", "created_at", "organization_id", "organization_name", "unit", "procedure_code", "purpose_text", "legal_basis", "certificates", "provider_names", "officer_identification", "decision", "denial_reason", "procedure_name")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NAMES_FIELD_NUMBER: _ClassVar[int]
    OFFICER_IDENTIFICATION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DENIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_NAME_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    organization_id: str
    organization_name: str
    unit: str
    procedure_code: str
    purpose_text: str
    legal_basis: _common_pb2.LegalBasis
    certificates: _containers.RepeatedCompositeFieldContainer[CertificateTitle]
    provider_names: _containers.RepeatedScalarFieldContainer[str]
    officer_identification: _common_pb2.OfficerIdentification
    decision: _oversight_pb2.Decision
    denial_reason: _common_pb2.DenialReason
    procedure_name: str
    def __init__(self, trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., organization_id: _Optional[str] = ..., organization_name: _Optional[str] = ..., unit: _Optional[str] = ..., procedure_code: _Optional[str] = ..., purpose_text: _Optional[str] = ..., legal_basis: _Optional[_Union[_common_pb2.LegalBasis, _Mapping]] = ..., certificates: _Optional[_Iterable[_Union[CertificateTitle, _Mapping]]] = ..., provider_names: _Optional[_Iterable[str]] = ..., officer_identification: _Optional[_Union[_common_pb2.OfficerIdentification, str]] = ..., decision: _Optional[_Union[_oversight_pb2.Decision, str]] = ..., denial_reason: _Optional[_Union[_common_pb2.DenialReason, str]] = ..., procedure_name: _Optional[str] = ...) -> None: ...

class CertificateTitle(_message.Message):
    __slots__ = ("certificate_type_id", "title")
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    title: str
    def __init__(self, certificate_type_id: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("person", "label")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    person: int
    label: str
    def __init__(self, person: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class MyAccesses(_message.Message):
    __slots__ = ("accesses", "next_page_token", "person", "people", "retention_days", "view_trace_id")
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    VIEW_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    accesses: _containers.RepeatedCompositeFieldContainer[MyAccess]
    next_page_token: str
    person: int
    people: _containers.RepeatedCompositeFieldContainer[Person]
    retention_days: int
    view_trace_id: str
    def __init__(self, accesses: _Optional[_Iterable[_Union[MyAccess, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., person: _Optional[int] = ..., people: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., retention_days: _Optional[int] = ..., view_trace_id: _Optional[str] = ...) -> None: ...
