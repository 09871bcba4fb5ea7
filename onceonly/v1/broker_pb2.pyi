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

class CheckStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_STATUS_UNSPECIFIED: _ClassVar[CheckStatus]
    CHECK_STATUS_VERIFIED: _ClassVar[CheckStatus]
    CHECK_STATUS_SUBJECT_NOT_FOUND: _ClassVar[CheckStatus]
    CHECK_STATUS_UNAVAILABLE: _ClassVar[CheckStatus]
    CHECK_STATUS_TIMEOUT: _ClassVar[CheckStatus]
    CHECK_STATUS_ERROR: _ClassVar[CheckStatus]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_IN_PROGRESS: _ClassVar[JobState]
    JOB_STATE_DONE: _ClassVar[JobState]
    JOB_STATE_EXPIRED: _ClassVar[JobState]
CHECK_STATUS_UNSPECIFIED: CheckStatus
CHECK_STATUS_VERIFIED: CheckStatus
CHECK_STATUS_SUBJECT_NOT_FOUND: CheckStatus
CHECK_STATUS_UNAVAILABLE: CheckStatus
CHECK_STATUS_TIMEOUT: CheckStatus
CHECK_STATUS_ERROR: CheckStatus
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_IN_PROGRESS: JobState
JOB_STATE_DONE: JobState
JOB_STATE_EXPIRED: JobState

class Check(_message.Message):
    __slots__ = ("certificate_type_id", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, certificate_type_id: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("request_id", "consumer", "purpose", "legal_basis", "subject", "checks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    consumer: _common_pb2.Consumer
    purpose: _common_pb2.Purpose
    legal_basis: _common_pb2.LegalBasis
    subject: _common_pb2.Subject
    checks: _containers.RepeatedCompositeFieldContainer[Check]
    def __init__(self, request_id: _Optional[str] = ..., consumer: _Optional[_Union[_common_pb2.Consumer, _Mapping]] = ..., purpose: _Optional[_Union[_common_pb2.Purpose, _Mapping]] = ..., legal_basis: _Optional[_Union[_common_pb2.LegalBasis, _Mapping]] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[Check, _Mapping]]] = ...) -> None: ...

class CheckOutcome(_message.Message):
    __slots__ = ("certificate_type_id", "provider_id", "status", "claims", "attestation", "detail", "latency_ms")
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    provider_id: str
    status: CheckStatus
    claims: _struct_pb2.Struct
    attestation: str
    detail: str
    latency_ms: int
    def __init__(self, certificate_type_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., status: _Optional[_Union[CheckStatus, str]] = ..., claims: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., attestation: _Optional[str] = ..., detail: _Optional[str] = ..., latency_ms: _Optional[int] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("request_id", "trace_id", "outcomes", "decided_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    trace_id: str
    outcomes: _containers.RepeatedCompositeFieldContainer[CheckOutcome]
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., outcomes: _Optional[_Iterable[_Union[CheckOutcome, _Mapping]]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCatalogRequest(_message.Message):
    __slots__ = ("allowed_only",)
    ALLOWED_ONLY_FIELD_NUMBER: _ClassVar[int]
    allowed_only: bool
    def __init__(self, allowed_only: _Optional[bool] = ...) -> None: ...

class AllowedUse(_message.Message):
    __slots__ = ("agreement_id", "agreement_version", "procedure_code", "legal_bases")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASES_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    agreement_version: int
    procedure_code: str
    legal_bases: _containers.RepeatedScalarFieldContainer[_common_pb2.LegalBasisKind]
    def __init__(self, agreement_id: _Optional[str] = ..., agreement_version: _Optional[int] = ..., procedure_code: _Optional[str] = ..., legal_bases: _Optional[_Iterable[_Union[_common_pb2.LegalBasisKind, str]]] = ...) -> None: ...

class CertificateType(_message.Message):
    __slots__ = ("id", "title", "description", "provider_id", "parameters", "claims", "allowed_legal_bases", "attests_value", "allowed", "parameters_schema", "claims_schema", "titles", "descriptions", "introduced", "sunset", "replaced_by")
    class TitlesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DescriptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_LEGAL_BASES_FIELD_NUMBER: _ClassVar[int]
    ATTESTS_VALUE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TITLES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    INTRODUCED_FIELD_NUMBER: _ClassVar[int]
    SUNSET_FIELD_NUMBER: _ClassVar[int]
    REPLACED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    provider_id: str
    parameters: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldSpec]
    claims: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldSpec]
    allowed_legal_bases: _containers.RepeatedScalarFieldContainer[_common_pb2.LegalBasisKind]
    attests_value: bool
    allowed: _containers.RepeatedCompositeFieldContainer[AllowedUse]
    parameters_schema: str
    claims_schema: str
    titles: _containers.ScalarMap[str, str]
    descriptions: _containers.ScalarMap[str, str]
    introduced: str
    sunset: str
    replaced_by: str
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., provider_id: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[_common_pb2.FieldSpec, _Mapping]]] = ..., claims: _Optional[_Iterable[_Union[_common_pb2.FieldSpec, _Mapping]]] = ..., allowed_legal_bases: _Optional[_Iterable[_Union[_common_pb2.LegalBasisKind, str]]] = ..., attests_value: _Optional[bool] = ..., allowed: _Optional[_Iterable[_Union[AllowedUse, _Mapping]]] = ..., parameters_schema: _Optional[str] = ..., claims_schema: _Optional[str] = ..., titles: _Optional[_Mapping[str, str]] = ..., descriptions: _Optional[_Mapping[str, str]] = ..., introduced: _Optional[str] = ..., sunset: _Optional[str] = ..., replaced_by: _Optional[str] = ...) -> None: ...

class ProviderInfo(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Catalog(_message.Message):
    __slots__ = ("certificate_types", "providers")
    CERTIFICATE_TYPES_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    certificate_types: _containers.RepeatedCompositeFieldContainer[CertificateType]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderInfo]
    def __init__(self, certificate_types: _Optional[_Iterable[_Union[CertificateType, _Mapping]]] = ..., providers: _Optional[_Iterable[_Union[ProviderInfo, _Mapping]]] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Jwks(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class BulkHeader(_message.Message):
    __slots__ = ("consumer", "purpose", "legal_basis", "checks", "window")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    consumer: _common_pb2.Consumer
    purpose: _common_pb2.Purpose
    legal_basis: _common_pb2.LegalBasis
    checks: _containers.RepeatedCompositeFieldContainer[Check]
    window: int
    def __init__(self, consumer: _Optional[_Union[_common_pb2.Consumer, _Mapping]] = ..., purpose: _Optional[_Union[_common_pb2.Purpose, _Mapping]] = ..., legal_basis: _Optional[_Union[_common_pb2.LegalBasis, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[Check, _Mapping]]] = ..., window: _Optional[int] = ...) -> None: ...

class BulkSubject(_message.Message):
    __slots__ = ("request_id", "subject")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subject: _common_pb2.Subject
    def __init__(self, request_id: _Optional[str] = ..., subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ...) -> None: ...

class BulkVerifyRequest(_message.Message):
    __slots__ = ("header", "subject")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    header: BulkHeader
    subject: BulkSubject
    def __init__(self, header: _Optional[_Union[BulkHeader, _Mapping]] = ..., subject: _Optional[_Union[BulkSubject, _Mapping]] = ...) -> None: ...

class SubmitVerificationRequest(_message.Message):
    __slots__ = ("submission_id", "header", "subjects")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    submission_id: str
    header: BulkHeader
    subjects: _containers.RepeatedCompositeFieldContainer[BulkSubject]
    def __init__(self, submission_id: _Optional[str] = ..., header: _Optional[_Union[BulkHeader, _Mapping]] = ..., subjects: _Optional[_Iterable[_Union[BulkSubject, _Mapping]]] = ...) -> None: ...

class GetVerificationResultRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class VerificationJob(_message.Message):
    __slots__ = ("job_id", "submission_id", "state", "submitted_at", "estimated_done_at", "expires_at", "subjects", "decided", "results", "done_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_DONE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DONE_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    submission_id: str
    state: JobState
    submitted_at: _timestamp_pb2.Timestamp
    estimated_done_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    subjects: int
    decided: int
    results: _containers.RepeatedCompositeFieldContainer[BulkVerifyResult]
    done_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., submission_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., estimated_done_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subjects: _Optional[int] = ..., decided: _Optional[int] = ..., results: _Optional[_Iterable[_Union[BulkVerifyResult, _Mapping]]] = ..., done_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BulkVerifyResult(_message.Message):
    __slots__ = ("request_id", "response", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    response: VerifyResponse
    error: _status_pb2.Status
    def __init__(self, request_id: _Optional[str] = ..., response: _Optional[_Union[VerifyResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...
