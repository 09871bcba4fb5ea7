"""Domain types of the broker. They know nothing of gRPC or of the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from onceonly.vocabulary import (
    CheckStatus,
    Decision,
    DenialReason,
    Disclosure,
    DocumentType,
    LegalBasisKind,
    OfficerIdentification,
    OrganisationKind,
    SubjectId,
)

__all__ = [
    "ALLOWED",
    "Agreement",
    "AgreementRef",
    "AllowedUse",
    "CheckOutcome",
    "CheckRequest",
    "CheckStatus",
    "ConsumerRef",
    "Decision",
    "DenialReason",
    "DocumentType",
    "LegalBasis",
    "LegalBasisKind",
    "MasterAgreement",
    "OfficerIdentification",
    "Organisation",
    "OrganisationKind",
    "PolicyDecision",
    "PolicySnapshot",
    "PurposeRef",
    "QuotaBreach",
    "StoredReply",
    "SubjectId",
    "TraceRecord",
    "TracedOutcome",
    "VerificationRequest",
    "VerifyResult",
    "Veto",
    "Violation",
]


@dataclass(frozen=True, slots=True)
class ConsumerRef:
    organization_id: str
    unit: str
    officer_id: str
    officer_document: SubjectId | None = None
    officer_identification: OfficerIdentification | None = None
    """How ``officer_id`` was identified; set by the edge from the caller's credentials."""


@dataclass(frozen=True, slots=True)
class PurposeRef:
    procedure_code: str
    purpose_text: str
    case_file_id: str


@dataclass(frozen=True, slots=True)
class LegalBasis:
    kind: LegalBasisKind
    reference: str


@dataclass(frozen=True, slots=True)
class CheckRequest:
    certificate_type_id: str
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """A validated verification request. ``digest`` identifies its body for idempotency."""

    request_id: str
    consumer: ConsumerRef
    purpose: PurposeRef
    legal_basis: LegalBasis
    subject: SubjectId
    checks: tuple[CheckRequest, ...]
    digest: str


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    certificate_type_id: str
    provider_id: str
    status: CheckStatus
    claims: Mapping[str, Any] | None = None
    attestation: str | None = None
    detail: str = ""
    latency_ms: int = 0
    evidence: str = ""  # the provider's signed evidence, checked before attesting


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The answer to a granted request: one outcome per check."""

    request_id: str
    trace_id: str
    outcomes: tuple[CheckOutcome, ...]
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken policy rule: which rule, about what, and why."""

    reason: DenialReason
    subject: str
    description: str


@dataclass(frozen=True, slots=True)
class AgreementRef:
    """The agreement version under which a certificate type was verified."""

    certificate_type_id: str
    agreement_id: str
    version: int


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What policy decided: allowed (no violations) or denied (every broken rule; the first decides)."""

    violations: tuple[Violation, ...] = ()
    grounds: tuple[AgreementRef, ...] = ()
    """When allowed: the agreement (and version) that allows each certificate type."""

    @property
    def allowed(self) -> bool:
        return not self.violations

    @property
    def reason(self) -> DenialReason | None:
        """The deciding reason of a denial (``None`` when allowed)."""
        return self.violations[0].reason if self.violations else None

    def __str__(self) -> str:
        return self.violations[0].description if self.violations else "allowed"


ALLOWED = PolicyDecision()
"""The decision that allows a request."""


@dataclass(frozen=True, slots=True)
class TracedOutcome:
    """What a trace keeps of a check outcome: never the claims."""

    certificate_type_id: str
    provider_id: str
    status: CheckStatus
    latency_ms: int
    evidence_digest: str = ""  # SHA-256 of the provider's evidence: binds the trace to it


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """The purpose-tagged trace of one request. Holds no raw identifier, no attested value."""

    trace_id: str
    request_id: str
    request_digest: str
    created_at: datetime
    consumer_organization_id: str
    consumer_unit: str
    officer_id: str
    procedure_code: str
    purpose_text: str
    case_file_id: str
    legal_basis_kind: LegalBasisKind
    legal_basis_reference: str
    subject_document_type: DocumentType
    subject_ref: str  # keyed pseudonym of the subject, never the document number
    certificate_type_ids: tuple[str, ...]
    decision: Decision
    denial_reason: DenialReason | None
    denial_detail: str
    outcomes: tuple[TracedOutcome, ...]
    duration_ms: int
    officer_identification: OfficerIdentification | None = None
    agreements: tuple[AgreementRef, ...] = ()
    """The agreement version that allowed each certificate type (granted requests; empty in
    traces written before it was recorded)."""
    """How the officer was identified (``None`` in traces written before it was recorded)."""


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The answer given to a request, kept so a retry with the same id gets the same answer.

    ``payload`` is the serialized answer (a ``VerifyResponse`` or a ``google.rpc.Status``
    for ``kind == "status"``); stores keep it encrypted at rest.
    """

    organization_id: str
    request_id: str
    request_digest: str
    kind: str  # "response" | "status"
    payload: bytes


@dataclass(frozen=True, slots=True)
class Organisation:
    """A member organisation: its code (the certificate's ``O``), name, kind and contact."""

    id: str
    name: str
    kind: OrganisationKind = OrganisationKind.CONSUMER
    contact: str = ""


@dataclass(frozen=True, slots=True)
class Agreement:
    """A data-sharing agreement: who may ask for what, why, under which basis, and when."""

    id: str
    organization_id: str
    procedure_codes: frozenset[str]
    """The procedures it serves (one or more)."""
    certificate_type_ids: frozenset[str]
    legal_bases: frozenset[LegalBasisKind]
    legal_references: frozenset[str]
    consent_required: bool
    valid_from: datetime
    valid_until: datetime | None
    description: str = ""
    officer_token_required: bool = False
    """The officer must be authenticated by a token, not only asserted by an application."""
    officer_document_required: bool = False
    """The request must carry the officer's own identity document (for the self-query ban)."""
    version: int = 1
    """The version in force (each change to an agreement's terms is a new version)."""
    suspended: str = ""
    """Why an oversight body suspended it (empty: not suspended); it then allows nothing."""
    disclosure: Disclosure = Disclosure.IMMEDIATE
    """When residents may see the accesses made under it."""
    disclosure_until: date | None = None
    """DEFERRED: the day from which they may."""
    disclosure_law: str = ""
    """WITHHELD: the law that allows it."""
    master_agreement_id: str = ""
    """The master agreement whose clauses bind it (empty: recorded before master agreements)."""
    master_version: int = 0
    quota_per_minute: int = 0
    """Its master agreement's cap on the consumer's requests per minute (0: none)."""
    quota_per_day: int = 0
    data_protection_officer: str = ""
    """Consulted: the consumer's data-protection officer (a named role)."""


@dataclass(frozen=True, slots=True)
class MasterAgreement:
    """A master data-sharing agreement: standard clauses, as data, that agreements are bound to.

    An agreement under it may serve only its procedures (all, when it lists none), cover only its
    certificate types, allow only its legal bases, cite only its laws and choose only its
    disclosures; its consumer's requests are capped by its quotas.
    """

    id: str
    title: str
    procedure_codes: frozenset[str]
    purposes: tuple[str, ...]
    certificate_type_ids: frozenset[str]
    legal_bases: frozenset[LegalBasisKind]
    laws: frozenset[str]
    disclosures: frozenset[Disclosure] = frozenset({Disclosure.IMMEDIATE})
    retention_days: int = 0
    """How long the traces of requests under it are kept (0: not stated)."""
    quota_per_minute: int = 0
    """Requests per minute each consumer may make under it (0: no cap)."""
    quota_per_day: int = 0
    endorsed_by: str = ""
    """The governing body (an operator or oversight organisation) that must endorse each agreement
    under it before it comes into force (empty: none)."""
    version: int = 1


@dataclass(frozen=True, slots=True)
class QuotaBreach:
    """A master agreement's cap reached: which window (``minute`` or ``day``), its cap, and how
    long until the window ends."""

    master_agreement_id: str
    window: str
    cap: int
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class AllowedUse:
    """A way a consumer may use a certificate type now: agreement, version, procedure, legal bases."""

    agreement_id: str
    agreement_version: int
    procedure_code: str
    legal_bases: tuple[LegalBasisKind, ...]


@dataclass(frozen=True, slots=True)
class Veto:
    """A provider's veto over an agreement, for the certificate types it serves."""

    agreement_id: str
    provider_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    organisations: Mapping[str, Organisation]
    agreements: tuple[Agreement, ...]
    vetoes: tuple[Veto, ...]
