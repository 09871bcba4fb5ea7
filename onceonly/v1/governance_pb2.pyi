import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from onceonly.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgreementState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGREEMENT_STATE_UNSPECIFIED: _ClassVar[AgreementState]
    AGREEMENT_STATE_PROPOSED: _ClassVar[AgreementState]
    AGREEMENT_STATE_REJECTED: _ClassVar[AgreementState]
    AGREEMENT_STATE_APPROVED: _ClassVar[AgreementState]
    AGREEMENT_STATE_IN_FORCE: _ClassVar[AgreementState]
    AGREEMENT_STATE_SUSPENDED: _ClassVar[AgreementState]
    AGREEMENT_STATE_EXPIRED: _ClassVar[AgreementState]
    AGREEMENT_STATE_SUPERSEDED: _ClassVar[AgreementState]
    AGREEMENT_STATE_REVOKED: _ClassVar[AgreementState]

class AgreementAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGREEMENT_ACTION_UNSPECIFIED: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_APPROVE: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_VETO: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_LIFT_VETO: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_SUSPEND: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_RESUME: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_REVOKE: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_ENDORSE: _ClassVar[AgreementAction]
    AGREEMENT_ACTION_RELEASE_DISCLOSURE: _ClassVar[AgreementAction]

class Disclosure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCLOSURE_UNSPECIFIED: _ClassVar[Disclosure]
    DISCLOSURE_IMMEDIATE: _ClassVar[Disclosure]
    DISCLOSURE_DEFERRED: _ClassVar[Disclosure]
    DISCLOSURE_WITHHELD: _ClassVar[Disclosure]

class OrganisationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORGANISATION_KIND_UNSPECIFIED: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_CONSUMER: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_PROVIDER: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_OVERSIGHT: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_OPERATOR: _ClassVar[OrganisationKind]
AGREEMENT_STATE_UNSPECIFIED: AgreementState
AGREEMENT_STATE_PROPOSED: AgreementState
AGREEMENT_STATE_REJECTED: AgreementState
AGREEMENT_STATE_APPROVED: AgreementState
AGREEMENT_STATE_IN_FORCE: AgreementState
AGREEMENT_STATE_SUSPENDED: AgreementState
AGREEMENT_STATE_EXPIRED: AgreementState
AGREEMENT_STATE_SUPERSEDED: AgreementState
AGREEMENT_STATE_REVOKED: AgreementState
AGREEMENT_ACTION_UNSPECIFIED: AgreementAction
AGREEMENT_ACTION_APPROVE: AgreementAction
AGREEMENT_ACTION_VETO: AgreementAction
AGREEMENT_ACTION_LIFT_VETO: AgreementAction
AGREEMENT_ACTION_SUSPEND: AgreementAction
AGREEMENT_ACTION_RESUME: AgreementAction
AGREEMENT_ACTION_REVOKE: AgreementAction
AGREEMENT_ACTION_ENDORSE: AgreementAction
AGREEMENT_ACTION_RELEASE_DISCLOSURE: AgreementAction
DISCLOSURE_UNSPECIFIED: Disclosure
DISCLOSURE_IMMEDIATE: Disclosure
DISCLOSURE_DEFERRED: Disclosure
DISCLOSURE_WITHHELD: Disclosure
ORGANISATION_KIND_UNSPECIFIED: OrganisationKind
ORGANISATION_KIND_CONSUMER: OrganisationKind
ORGANISATION_KIND_PROVIDER: OrganisationKind
ORGANISATION_KIND_OVERSIGHT: OrganisationKind
ORGANISATION_KIND_OPERATOR: OrganisationKind

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Caller(_message.Message):
    __slots__ = ("organization_id", "role", "via", "officer_id", "organisation")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    OFFICER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    role: str
    via: str
    officer_id: str
    organisation: Organisation
    def __init__(self, organization_id: _Optional[str] = ..., role: _Optional[str] = ..., via: _Optional[str] = ..., officer_id: _Optional[str] = ..., organisation: _Optional[_Union[Organisation, _Mapping]] = ...) -> None: ...

class MasterAgreement(_message.Message):
    __slots__ = ("id", "version", "title", "procedure_codes", "purposes", "certificate_type_ids", "legal_bases", "laws", "retention_days", "disclosures", "quota_per_minute", "quota_per_day", "endorsed_by", "registered_by", "registered_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODES_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_IDS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASES_FIELD_NUMBER: _ClassVar[int]
    LAWS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    QUOTA_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    ENDORSED_BY_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    title: str
    procedure_codes: _containers.RepeatedScalarFieldContainer[str]
    purposes: _containers.RepeatedScalarFieldContainer[str]
    certificate_type_ids: _containers.RepeatedScalarFieldContainer[str]
    legal_bases: _containers.RepeatedScalarFieldContainer[_common_pb2.LegalBasisKind]
    laws: _containers.RepeatedScalarFieldContainer[str]
    retention_days: int
    disclosures: _containers.RepeatedScalarFieldContainer[Disclosure]
    quota_per_minute: int
    quota_per_day: int
    endorsed_by: str
    registered_by: str
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., title: _Optional[str] = ..., procedure_codes: _Optional[_Iterable[str]] = ..., purposes: _Optional[_Iterable[str]] = ..., certificate_type_ids: _Optional[_Iterable[str]] = ..., legal_bases: _Optional[_Iterable[_Union[_common_pb2.LegalBasisKind, str]]] = ..., laws: _Optional[_Iterable[str]] = ..., retention_days: _Optional[int] = ..., disclosures: _Optional[_Iterable[_Union[Disclosure, str]]] = ..., quota_per_minute: _Optional[int] = ..., quota_per_day: _Optional[int] = ..., endorsed_by: _Optional[str] = ..., registered_by: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterMasterAgreementRequest(_message.Message):
    __slots__ = ("master_agreement",)
    MASTER_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    master_agreement: MasterAgreement
    def __init__(self, master_agreement: _Optional[_Union[MasterAgreement, _Mapping]] = ...) -> None: ...

class MasterAgreementChange(_message.Message):
    __slots__ = ("master_agreement", "event")
    MASTER_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    master_agreement: MasterAgreement
    event: GovernanceEvent
    def __init__(self, master_agreement: _Optional[_Union[MasterAgreement, _Mapping]] = ..., event: _Optional[_Union[GovernanceEvent, _Mapping]] = ...) -> None: ...

class ListMasterAgreementsRequest(_message.Message):
    __slots__ = ("master_agreement_id",)
    MASTER_AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    master_agreement_id: str
    def __init__(self, master_agreement_id: _Optional[str] = ...) -> None: ...

class ListMasterAgreementsResponse(_message.Message):
    __slots__ = ("master_agreements",)
    MASTER_AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    master_agreements: _containers.RepeatedCompositeFieldContainer[MasterAgreement]
    def __init__(self, master_agreements: _Optional[_Iterable[_Union[MasterAgreement, _Mapping]]] = ...) -> None: ...

class AgreementTerms(_message.Message):
    __slots__ = ("organization_id", "unit", "accountable", "procedure_codes", "certificate_type_ids", "legal_bases", "laws", "consent_required", "officer_token_required", "officer_document_required", "valid_from", "valid_until", "description", "disclosure", "disclosure_until", "disclosure_law", "master_agreement_id", "data_protection_officer")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTABLE_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_CODES_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_IDS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASES_FIELD_NUMBER: _ClassVar[int]
    LAWS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    OFFICER_TOKEN_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    OFFICER_DOCUMENT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURE_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURE_LAW_FIELD_NUMBER: _ClassVar[int]
    MASTER_AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_PROTECTION_OFFICER_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    unit: str
    accountable: str
    procedure_codes: _containers.RepeatedScalarFieldContainer[str]
    certificate_type_ids: _containers.RepeatedScalarFieldContainer[str]
    legal_bases: _containers.RepeatedScalarFieldContainer[_common_pb2.LegalBasisKind]
    laws: _containers.RepeatedScalarFieldContainer[str]
    consent_required: bool
    officer_token_required: bool
    officer_document_required: bool
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    description: str
    disclosure: Disclosure
    disclosure_until: str
    disclosure_law: str
    master_agreement_id: str
    data_protection_officer: str
    def __init__(self, organization_id: _Optional[str] = ..., unit: _Optional[str] = ..., accountable: _Optional[str] = ..., procedure_codes: _Optional[_Iterable[str]] = ..., certificate_type_ids: _Optional[_Iterable[str]] = ..., legal_bases: _Optional[_Iterable[_Union[_common_pb2.LegalBasisKind, str]]] = ..., laws: _Optional[_Iterable[str]] = ..., consent_required: _Optional[bool] = ..., officer_token_required: _Optional[bool] = ..., officer_document_required: _Optional[bool] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., disclosure: _Optional[_Union[Disclosure, str]] = ..., disclosure_until: _Optional[str] = ..., disclosure_law: _Optional[str] = ..., master_agreement_id: _Optional[str] = ..., data_protection_officer: _Optional[str] = ...) -> None: ...

class ProviderDecision(_message.Message):
    __slots__ = ("provider_id", "decision", "reason", "at")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    decision: AgreementAction
    reason: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, provider_id: _Optional[str] = ..., decision: _Optional[_Union[AgreementAction, str]] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AgreementVeto(_message.Message):
    __slots__ = ("provider_id", "reason")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    reason: str
    def __init__(self, provider_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AgreementVersion(_message.Message):
    __slots__ = ("agreement_id", "version", "state", "terms", "proposed_by", "proposed_at", "decided_at", "note", "consulted", "waiting_for", "decisions", "vetoes", "suspended", "informed", "master_version", "endorsed_by", "disclosure_released", "quota_per_minute", "quota_per_day")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_BY_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CONSULTED_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    VETOES_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    INFORMED_FIELD_NUMBER: _ClassVar[int]
    MASTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENDORSED_BY_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURE_RELEASED_FIELD_NUMBER: _ClassVar[int]
    QUOTA_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    QUOTA_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    version: int
    state: AgreementState
    terms: AgreementTerms
    proposed_by: str
    proposed_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    note: str
    consulted: _containers.RepeatedScalarFieldContainer[str]
    waiting_for: _containers.RepeatedScalarFieldContainer[str]
    decisions: _containers.RepeatedCompositeFieldContainer[ProviderDecision]
    vetoes: _containers.RepeatedCompositeFieldContainer[AgreementVeto]
    suspended: str
    informed: _containers.RepeatedScalarFieldContainer[str]
    master_version: int
    endorsed_by: str
    disclosure_released: str
    quota_per_minute: int
    quota_per_day: int
    def __init__(self, agreement_id: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[AgreementState, str]] = ..., terms: _Optional[_Union[AgreementTerms, _Mapping]] = ..., proposed_by: _Optional[str] = ..., proposed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ..., consulted: _Optional[_Iterable[str]] = ..., waiting_for: _Optional[_Iterable[str]] = ..., decisions: _Optional[_Iterable[_Union[ProviderDecision, _Mapping]]] = ..., vetoes: _Optional[_Iterable[_Union[AgreementVeto, _Mapping]]] = ..., suspended: _Optional[str] = ..., informed: _Optional[_Iterable[str]] = ..., master_version: _Optional[int] = ..., endorsed_by: _Optional[str] = ..., disclosure_released: _Optional[str] = ..., quota_per_minute: _Optional[int] = ..., quota_per_day: _Optional[int] = ...) -> None: ...

class ProposeAgreementRequest(_message.Message):
    __slots__ = ("agreement_id", "terms")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    terms: AgreementTerms
    def __init__(self, agreement_id: _Optional[str] = ..., terms: _Optional[_Union[AgreementTerms, _Mapping]] = ...) -> None: ...

class ActOnAgreementRequest(_message.Message):
    __slots__ = ("agreement_id", "version", "action", "reason")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    version: int
    action: AgreementAction
    reason: str
    def __init__(self, agreement_id: _Optional[str] = ..., version: _Optional[int] = ..., action: _Optional[_Union[AgreementAction, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class AgreementChange(_message.Message):
    __slots__ = ("agreement", "event")
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    agreement: AgreementVersion
    event: GovernanceEvent
    def __init__(self, agreement: _Optional[_Union[AgreementVersion, _Mapping]] = ..., event: _Optional[_Union[GovernanceEvent, _Mapping]] = ...) -> None: ...

class ListAgreementsRequest(_message.Message):
    __slots__ = ("agreement_id",)
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    def __init__(self, agreement_id: _Optional[str] = ...) -> None: ...

class ListAgreementsResponse(_message.Message):
    __slots__ = ("agreements",)
    AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    agreements: _containers.RepeatedCompositeFieldContainer[AgreementVersion]
    def __init__(self, agreements: _Optional[_Iterable[_Union[AgreementVersion, _Mapping]]] = ...) -> None: ...

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

class ImportGovernanceRequest(_message.Message):
    __slots__ = ("file_text", "file_name", "dry_run")
    FILE_TEXT_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    file_text: str
    file_name: str
    dry_run: bool
    def __init__(self, file_text: _Optional[str] = ..., file_name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ImportChange(_message.Message):
    __slots__ = ("what", "action", "subject", "detail")
    WHAT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    what: str
    action: str
    subject: str
    detail: str
    def __init__(self, what: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ImportGovernanceResponse(_message.Message):
    __slots__ = ("changes", "events")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ImportChange]
    events: _containers.RepeatedCompositeFieldContainer[GovernanceEvent]
    def __init__(self, changes: _Optional[_Iterable[_Union[ImportChange, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[GovernanceEvent, _Mapping]]] = ...) -> None: ...

class GetJoiningStatusRequest(_message.Message):
    __slots__ = ("organization_id",)
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    def __init__(self, organization_id: _Optional[str] = ...) -> None: ...

class ChecklistItem(_message.Message):
    __slots__ = ("name", "done", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    done: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., done: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class JoiningStatus(_message.Message):
    __slots__ = ("organisation", "items", "complete")
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    organisation: Organisation
    items: _containers.RepeatedCompositeFieldContainer[ChecklistItem]
    complete: bool
    def __init__(self, organisation: _Optional[_Union[Organisation, _Mapping]] = ..., items: _Optional[_Iterable[_Union[ChecklistItem, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...
