import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from onceonly.v1 import broker_pb2 as _broker_pb2
from onceonly.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditTaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_TASK_STATE_UNSPECIFIED: _ClassVar[AuditTaskState]
    AUDIT_TASK_STATE_OPEN: _ClassVar[AuditTaskState]
    AUDIT_TASK_STATE_JUSTIFIED: _ClassVar[AuditTaskState]
    AUDIT_TASK_STATE_OVERDUE: _ClassVar[AuditTaskState]

class UsageDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_DIMENSION_UNSPECIFIED: _ClassVar[UsageDimension]
    USAGE_DIMENSION_CONSUMER: _ClassVar[UsageDimension]
    USAGE_DIMENSION_PROCEDURE: _ClassVar[UsageDimension]
    USAGE_DIMENSION_LEGAL_BASIS_KIND: _ClassVar[UsageDimension]
    USAGE_DIMENSION_CERTIFICATE_TYPE: _ClassVar[UsageDimension]
    USAGE_DIMENSION_PROVIDER: _ClassVar[UsageDimension]
    USAGE_DIMENSION_OUTCOME: _ClassVar[UsageDimension]
    USAGE_DIMENSION_DENIAL_REASON: _ClassVar[UsageDimension]

class UsageBucket(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_BUCKET_UNSPECIFIED: _ClassVar[UsageBucket]
    USAGE_BUCKET_HOUR: _ClassVar[UsageBucket]
    USAGE_BUCKET_DAY: _ClassVar[UsageBucket]
    USAGE_BUCKET_MONTH: _ClassVar[UsageBucket]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_GRANTED: _ClassVar[Decision]
    DECISION_DENIED: _ClassVar[Decision]

class UsageGrouping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUPING_UNSPECIFIED: _ClassVar[UsageGrouping]
    USAGE_GROUPING_PROVIDER: _ClassVar[UsageGrouping]
    USAGE_GROUPING_CONSUMER: _ClassVar[UsageGrouping]
    USAGE_GROUPING_PROCEDURE: _ClassVar[UsageGrouping]
AUDIT_TASK_STATE_UNSPECIFIED: AuditTaskState
AUDIT_TASK_STATE_OPEN: AuditTaskState
AUDIT_TASK_STATE_JUSTIFIED: AuditTaskState
AUDIT_TASK_STATE_OVERDUE: AuditTaskState
USAGE_DIMENSION_UNSPECIFIED: UsageDimension
USAGE_DIMENSION_CONSUMER: UsageDimension
USAGE_DIMENSION_PROCEDURE: UsageDimension
USAGE_DIMENSION_LEGAL_BASIS_KIND: UsageDimension
USAGE_DIMENSION_CERTIFICATE_TYPE: UsageDimension
USAGE_DIMENSION_PROVIDER: UsageDimension
USAGE_DIMENSION_OUTCOME: UsageDimension
USAGE_DIMENSION_DENIAL_REASON: UsageDimension
USAGE_BUCKET_UNSPECIFIED: UsageBucket
USAGE_BUCKET_HOUR: UsageBucket
USAGE_BUCKET_DAY: UsageBucket
USAGE_BUCKET_MONTH: UsageBucket
DECISION_UNSPECIFIED: Decision
DECISION_GRANTED: Decision
DECISION_DENIED: Decision
USAGE_GROUPING_UNSPECIFIED: UsageGrouping
USAGE_GROUPING_PROVIDER: UsageGrouping
USAGE_GROUPING_CONSUMER: UsageGrouping
USAGE_GROUPING_PROCEDURE: UsageGrouping

class DrawAuditSampleRequest(_message.Message):
    __slots__ = ("consumer_organization_id", "since", "until", "size", "seed", "days_to_answer")
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DAYS_TO_ANSWER_FIELD_NUMBER: _ClassVar[int]
    consumer_organization_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    size: int
    seed: str
    days_to_answer: int
    def __init__(self, consumer_organization_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size: _Optional[int] = ..., seed: _Optional[str] = ..., days_to_answer: _Optional[int] = ...) -> None: ...

class AuditTask(_message.Message):
    __slots__ = ("task_id", "sample_id", "consumer_organization_id", "trace", "state", "deadline", "justification", "answered_by", "answered_at", "late")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    sample_id: str
    consumer_organization_id: str
    trace: TraceEntry
    state: AuditTaskState
    deadline: _timestamp_pb2.Timestamp
    justification: str
    answered_by: str
    answered_at: _timestamp_pb2.Timestamp
    late: bool
    def __init__(self, task_id: _Optional[str] = ..., sample_id: _Optional[str] = ..., consumer_organization_id: _Optional[str] = ..., trace: _Optional[_Union[TraceEntry, _Mapping]] = ..., state: _Optional[_Union[AuditTaskState, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., justification: _Optional[str] = ..., answered_by: _Optional[str] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., late: _Optional[bool] = ...) -> None: ...

class AuditSample(_message.Message):
    __slots__ = ("sample_id", "seed", "population", "tasks", "drawn_at", "consumer_organization_id", "since", "until", "drawn_by")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DRAWN_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    DRAWN_BY_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    seed: str
    population: int
    tasks: _containers.RepeatedCompositeFieldContainer[AuditTask]
    drawn_at: _timestamp_pb2.Timestamp
    consumer_organization_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    drawn_by: str
    def __init__(self, sample_id: _Optional[str] = ..., seed: _Optional[str] = ..., population: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[AuditTask, _Mapping]]] = ..., drawn_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumer_organization_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., drawn_by: _Optional[str] = ...) -> None: ...

class ListAuditTasksRequest(_message.Message):
    __slots__ = ("sample_id", "consumer_organization_id", "state", "page_size")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    consumer_organization_id: str
    state: AuditTaskState
    page_size: int
    def __init__(self, sample_id: _Optional[str] = ..., consumer_organization_id: _Optional[str] = ..., state: _Optional[_Union[AuditTaskState, str]] = ..., page_size: _Optional[int] = ...) -> None: ...

class AuditTasks(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[AuditTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[AuditTask, _Mapping]]] = ...) -> None: ...

class JustifyAuditTaskRequest(_message.Message):
    __slots__ = ("task_id", "justification")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    justification: str
    def __init__(self, task_id: _Optional[str] = ..., justification: _Optional[str] = ...) -> None: ...

class GetProofRequest(_message.Message):
    __slots__ = ("trace_id",)
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    def __init__(self, trace_id: _Optional[str] = ...) -> None: ...

class AttestationDigest(_message.Message):
    __slots__ = ("certificate_type_id", "provider_id", "sha256")
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    provider_id: str
    sha256: str
    def __init__(self, certificate_type_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class Proof(_message.Message):
    __slots__ = ("trace", "consumer_organization_name", "verification_code", "record_hash", "attestations", "sealed")
    TRACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_CODE_FIELD_NUMBER: _ClassVar[int]
    RECORD_HASH_FIELD_NUMBER: _ClassVar[int]
    ATTESTATIONS_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    trace: TraceEntry
    consumer_organization_name: str
    verification_code: str
    record_hash: str
    attestations: _containers.RepeatedCompositeFieldContainer[AttestationDigest]
    sealed: bool
    def __init__(self, trace: _Optional[_Union[TraceEntry, _Mapping]] = ..., consumer_organization_name: _Optional[str] = ..., verification_code: _Optional[str] = ..., record_hash: _Optional[str] = ..., attestations: _Optional[_Iterable[_Union[AttestationDigest, _Mapping]]] = ..., sealed: _Optional[bool] = ...) -> None: ...

class VerifyProofRequest(_message.Message):
    __slots__ = ("verification_code",)
    VERIFICATION_CODE_FIELD_NUMBER: _ClassVar[int]
    verification_code: str
    def __init__(self, verification_code: _Optional[str] = ...) -> None: ...

class ProofVerification(_message.Message):
    __slots__ = ("matches", "created_at", "consumer_organization_id", "consumer_organization_name", "procedure_code", "decision", "certificate_type_ids", "intact", "sealed", "chain_id", "seq")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_NAME_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_IDS_FIELD_NUMBER: _ClassVar[int]
    INTACT_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    matches: bool
    created_at: _timestamp_pb2.Timestamp
    consumer_organization_id: str
    consumer_organization_name: str
    procedure_code: str
    decision: Decision
    certificate_type_ids: _containers.RepeatedScalarFieldContainer[str]
    intact: bool
    sealed: bool
    chain_id: str
    seq: int
    def __init__(self, matches: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumer_organization_id: _Optional[str] = ..., consumer_organization_name: _Optional[str] = ..., procedure_code: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., certificate_type_ids: _Optional[_Iterable[str]] = ..., intact: _Optional[bool] = ..., sealed: _Optional[bool] = ..., chain_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("since", "until", "group_by", "bucket", "consumer_organization_id", "procedure_code", "legal_basis_kind", "certificate_type_id", "provider_id", "outcome", "denial_reason", "open_data")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_KIND_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DENIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    OPEN_DATA_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    group_by: _containers.RepeatedScalarFieldContainer[UsageDimension]
    bucket: UsageBucket
    consumer_organization_id: str
    procedure_code: str
    legal_basis_kind: _common_pb2.LegalBasisKind
    certificate_type_id: str
    provider_id: str
    outcome: str
    denial_reason: str
    open_data: bool
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Iterable[_Union[UsageDimension, str]]] = ..., bucket: _Optional[_Union[UsageBucket, str]] = ..., consumer_organization_id: _Optional[str] = ..., procedure_code: _Optional[str] = ..., legal_basis_kind: _Optional[_Union[_common_pb2.LegalBasisKind, str]] = ..., certificate_type_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., outcome: _Optional[str] = ..., denial_reason: _Optional[str] = ..., open_data: _Optional[bool] = ...) -> None: ...

class UsageFact(_message.Message):
    __slots__ = ("bucket", "dimensions", "checks", "requests", "suppressed")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    dimensions: _containers.RepeatedScalarFieldContainer[str]
    checks: int
    requests: int
    suppressed: bool
    def __init__(self, bucket: _Optional[str] = ..., dimensions: _Optional[_Iterable[str]] = ..., checks: _Optional[int] = ..., requests: _Optional[int] = ..., suppressed: _Optional[bool] = ...) -> None: ...

class UsageFacts(_message.Message):
    __slots__ = ("facts", "hours_rolled_up", "traces_scanned")
    FACTS_FIELD_NUMBER: _ClassVar[int]
    HOURS_ROLLED_UP_FIELD_NUMBER: _ClassVar[int]
    TRACES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[UsageFact]
    hours_rolled_up: int
    traces_scanned: int
    def __init__(self, facts: _Optional[_Iterable[_Union[UsageFact, _Mapping]]] = ..., hours_rolled_up: _Optional[int] = ..., traces_scanned: _Optional[int] = ...) -> None: ...

class TraceFilter(_message.Message):
    __slots__ = ("since", "until", "consumer_organization_id", "officer_id", "procedure_code", "legal_basis_kind", "provider_id", "certificate_type_id", "outcome")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFICER_ID_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_KIND_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    consumer_organization_id: str
    officer_id: str
    procedure_code: str
    legal_basis_kind: _common_pb2.LegalBasisKind
    provider_id: str
    certificate_type_id: str
    outcome: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumer_organization_id: _Optional[str] = ..., officer_id: _Optional[str] = ..., procedure_code: _Optional[str] = ..., legal_basis_kind: _Optional[_Union[_common_pb2.LegalBasisKind, str]] = ..., provider_id: _Optional[str] = ..., certificate_type_id: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class ListTracesRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: TraceFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[TraceFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TracedCheck(_message.Message):
    __slots__ = ("certificate_type_id", "provider_id", "status", "latency_ms")
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    provider_id: str
    status: _broker_pb2.CheckStatus
    latency_ms: int
    def __init__(self, certificate_type_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., status: _Optional[_Union[_broker_pb2.CheckStatus, str]] = ..., latency_ms: _Optional[int] = ...) -> None: ...

class TraceEntry(_message.Message):
    __slots__ = ("trace_id", "request_id", "created_at", "consumer", "purpose", "legal_basis", "subject_document_type", "certificate_type_ids", "decision", "denial_reason", "denial_detail", "checks", "duration_ms", "chain_id", "seq", "officer_identification", "agreements")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_DOCUMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_IDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DENIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    DENIAL_DETAIL_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OFFICER_IDENTIFICATION_FIELD_NUMBER: _ClassVar[int]
    AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    request_id: str
    created_at: _timestamp_pb2.Timestamp
    consumer: _common_pb2.Consumer
    purpose: _common_pb2.Purpose
    legal_basis: _common_pb2.LegalBasis
    subject_document_type: _common_pb2.DocumentType
    certificate_type_ids: _containers.RepeatedScalarFieldContainer[str]
    decision: Decision
    denial_reason: _common_pb2.DenialReason
    denial_detail: str
    checks: _containers.RepeatedCompositeFieldContainer[TracedCheck]
    duration_ms: int
    chain_id: str
    seq: int
    officer_identification: _common_pb2.OfficerIdentification
    agreements: _containers.RepeatedCompositeFieldContainer[TracedAgreement]
    def __init__(self, trace_id: _Optional[str] = ..., request_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumer: _Optional[_Union[_common_pb2.Consumer, _Mapping]] = ..., purpose: _Optional[_Union[_common_pb2.Purpose, _Mapping]] = ..., legal_basis: _Optional[_Union[_common_pb2.LegalBasis, _Mapping]] = ..., subject_document_type: _Optional[_Union[_common_pb2.DocumentType, str]] = ..., certificate_type_ids: _Optional[_Iterable[str]] = ..., decision: _Optional[_Union[Decision, str]] = ..., denial_reason: _Optional[_Union[_common_pb2.DenialReason, str]] = ..., denial_detail: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[TracedCheck, _Mapping]]] = ..., duration_ms: _Optional[int] = ..., chain_id: _Optional[str] = ..., seq: _Optional[int] = ..., officer_identification: _Optional[_Union[_common_pb2.OfficerIdentification, str]] = ..., agreements: _Optional[_Iterable[_Union[TracedAgreement, _Mapping]]] = ...) -> None: ...

class TracedAgreement(_message.Message):
    __slots__ = ("certificate_type_id", "agreement_id", "version")
    CERTIFICATE_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    certificate_type_id: str
    agreement_id: str
    version: int
    def __init__(self, certificate_type_id: _Optional[str] = ..., agreement_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListTracesResponse(_message.Message):
    __slots__ = ("traces", "next_page_token")
    TRACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    traces: _containers.RepeatedCompositeFieldContainer[TraceEntry]
    next_page_token: str
    def __init__(self, traces: _Optional[_Iterable[_Union[TraceEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("since", "until", "group_by")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    group_by: UsageGrouping
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Union[UsageGrouping, str]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("key", "total", "counts", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "requests_by_decision", "checks_by_status")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RequestsByDecisionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ChecksByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P90_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_BY_DECISION_FIELD_NUMBER: _ClassVar[int]
    CHECKS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    key: str
    total: int
    counts: _containers.ScalarMap[str, int]
    latency_p50_ms: int
    latency_p90_ms: int
    latency_p99_ms: int
    requests_by_decision: _containers.ScalarMap[str, int]
    checks_by_status: _containers.ScalarMap[str, int]
    def __init__(self, key: _Optional[str] = ..., total: _Optional[int] = ..., counts: _Optional[_Mapping[str, int]] = ..., latency_p50_ms: _Optional[int] = ..., latency_p90_ms: _Optional[int] = ..., latency_p99_ms: _Optional[int] = ..., requests_by_decision: _Optional[_Mapping[str, int]] = ..., checks_by_status: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("group_by", "rows", "traces_scanned", "hours_rolled_up")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TRACES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    HOURS_ROLLED_UP_FIELD_NUMBER: _ClassVar[int]
    group_by: UsageGrouping
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    traces_scanned: int
    hours_rolled_up: int
    def __init__(self, group_by: _Optional[_Union[UsageGrouping, str]] = ..., rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., traces_scanned: _Optional[int] = ..., hours_rolled_up: _Optional[int] = ...) -> None: ...

class GetResidentReportRequest(_message.Message):
    __slots__ = ("subject", "purpose", "legal_basis", "case_file_id", "since", "until")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CASE_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    subject: _common_pb2.Subject
    purpose: str
    legal_basis: _common_pb2.LegalBasis
    case_file_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, subject: _Optional[_Union[_common_pb2.Subject, _Mapping]] = ..., purpose: _Optional[str] = ..., legal_basis: _Optional[_Union[_common_pb2.LegalBasis, _Mapping]] = ..., case_file_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportedAccess(_message.Message):
    __slots__ = ("trace_id", "created_at", "consumer_organization_id", "consumer_organization_name", "consumer_unit", "procedure_code", "purpose_text", "legal_basis", "certificate_type_ids", "decision", "denial_reason", "officer_identification", "disclosure")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ORGANIZATION_NAME_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_UNIT_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_IDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DENIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    OFFICER_IDENTIFICATION_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURE_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    consumer_organization_id: str
    consumer_organization_name: str
    consumer_unit: str
    procedure_code: str
    purpose_text: str
    legal_basis: _common_pb2.LegalBasis
    certificate_type_ids: _containers.RepeatedScalarFieldContainer[str]
    decision: Decision
    denial_reason: _common_pb2.DenialReason
    officer_identification: _common_pb2.OfficerIdentification
    disclosure: str
    def __init__(self, trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumer_organization_id: _Optional[str] = ..., consumer_organization_name: _Optional[str] = ..., consumer_unit: _Optional[str] = ..., procedure_code: _Optional[str] = ..., purpose_text: _Optional[str] = ..., legal_basis: _Optional[_Union[_common_pb2.LegalBasis, _Mapping]] = ..., certificate_type_ids: _Optional[_Iterable[str]] = ..., decision: _Optional[_Union[Decision, str]] = ..., denial_reason: _Optional[_Union[_common_pb2.DenialReason, str]] = ..., officer_identification: _Optional[_Union[_common_pb2.OfficerIdentification, str]] = ..., disclosure: _Optional[str] = ...) -> None: ...

class ResidentReport(_message.Message):
    __slots__ = ("accesses", "report_trace_id")
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    REPORT_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    accesses: _containers.RepeatedCompositeFieldContainer[ReportedAccess]
    report_trace_id: str
    def __init__(self, accesses: _Optional[_Iterable[_Union[ReportedAccess, _Mapping]]] = ..., report_trace_id: _Optional[str] = ...) -> None: ...

class GetWitnessedHeadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WitnessedHead(_message.Message):
    __slots__ = ("chain_id", "seq", "head_hash", "signature")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    seq: int
    head_hash: str
    signature: str
    def __init__(self, chain_id: _Optional[str] = ..., seq: _Optional[int] = ..., head_hash: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class WitnessedHeads(_message.Message):
    __slots__ = ("heads",)
    HEADS_FIELD_NUMBER: _ClassVar[int]
    heads: _containers.RepeatedCompositeFieldContainer[WitnessedHead]
    def __init__(self, heads: _Optional[_Iterable[_Union[WitnessedHead, _Mapping]]] = ...) -> None: ...
