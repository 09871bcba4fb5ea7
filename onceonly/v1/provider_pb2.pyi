import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from onceonly.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SupportedCertificateType(_message.Message):
    __slots__ = ("certificate_type_id", "parameters", "claims")
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    parameters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldSpec]
    claims: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldSpec]
    def __init__(self, certificate_type_id: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[_common_pb2.FieldSpec, _Mapping]]] = ..., claims: _Optional[_Iterable[_Union[_common_pb2.FieldSpec, _Mapping]]] = ...) -> None: ...

class ProviderDescription(_message.Message):
    __slots__ = ("provider_id", "name", "certificate_types", "evidence_certificate")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    name: str
    certificate_types: _containers.RepeatedCompositeFieldContainer[SupportedCertificateType]
    evidence_certificate: str
    def __init__(self, provider_id: _Optional[str] = ..., name: _Optional[str] = ..., certificate_types: _Optional[_Iterable[_Union[SupportedCertificateType, _Mapping]]] = ..., evidence_certificate: _Optional[str] = ...) -> None: ...

class AttestRequest(_message.Message):
    __slots__ = ("request_id", "trace_id", "certificate_type_id", "subject", "parameters", "consumer_organization_id", "procedure_code", "legal_basis_kind", "trace_context")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_KIND_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    trace_id: str
    certificate_type_id: str
    subject: _common_pb2.Subject
    parameters: _containers.ScalarMap[str, str]
    consumer_organization_id: str
    procedure_code: str
    legal_basis_kind: _common_pb2.LegalBasisKind
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., certificate_type_id: _Optional[str] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., parameters: _Optional[_Mapping[str, str]] = ..., consumer_organization_id: _Optional[str] = ..., procedure_code: _Optional[str] = ..., legal_basis_kind: _Optional[_Union[_common_pb2.LegalBasisKind, str]] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AttestResponse(_message.Message):
    __slots__ = ("result", "claims", "evidence", "ready_at", "ticket")
    class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RESULT_UNSPECIFIED: _ClassVar[AttestResponse.Result]
        RESULT_FOUND: _ClassVar[AttestResponse.Result]
        RESULT_SUBJECT_NOT_FOUND: _ClassVar[AttestResponse.Result]
        RESULT_PENDING: _ClassVar[AttestResponse.Result]
    RESULT_UNSPECIFIED: AttestResponse.Result
    RESULT_FOUND: AttestResponse.Result
    RESULT_SUBJECT_NOT_FOUND: AttestResponse.Result
    RESULT_PENDING: AttestResponse.Result
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    READY_AT_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    result: AttestResponse.Result
    claims: _struct_pb2.Struct
    evidence: str
    ready_at: _timestamp_pb2.Timestamp
    ticket: str
    def __init__(self, result: _Optional[_Union[AttestResponse.Result, str]] = ..., claims: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., evidence: _Optional[str] = ..., ready_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ticket: _Optional[str] = ...) -> None: ...

class CollectRequest(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    def __init__(self, ticket: _Optional[str] = ...) -> None: ...

class AttestBatchRequest(_message.Message):
    __slots__ = ("checks",)
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    checks: _containers.RepeatedCompositeFieldContainer[AttestRequest]
    def __init__(self, checks: _Optional[_Iterable[_Union[AttestRequest, _Mapping]]] = ...) -> None: ...

class AttestBatchResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AttestOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AttestOutcome, _Mapping]]] = ...) -> None: ...

class AttestOutcome(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: AttestResponse
    error: _status_pb2.Status
    def __init__(self, response: _Optional[_Union[AttestResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...
