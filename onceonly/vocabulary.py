"""The values every part of onceonly shares: kinds of document, legal basis, outcome and denial.

These are plain Python enums; their wire form is derived from the proto enums of the same names
in :mod:`onceonly.wire`. A member's value is its one spelling everywhere outside protobuf — in
``ErrorInfo`` reasons, stored traces, attestation payloads, usage keys, filters, the CLI and the
client library: the proto value's name without the enum's prefix (``DOCUMENT_TYPE_DNI`` →
``DNI``, ``DENIAL_REASON_PROVIDER_VETO`` → ``PROVIDER_VETO``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AgreementAction",
    "AgreementState",
    "CheckStatus",
    "Decision",
    "DenialReason",
    "Disclosure",
    "DocumentType",
    "LegalBasisKind",
    "OfficerIdentification",
    "OrganisationKind",
    "SubjectId",
    "UsageBucket",
    "UsageDimension",
    "UsageGrouping",
]


class DocumentType(enum.StrEnum):
    DNI = "DNI"
    NIE = "NIE"
    PASSPORT = "PASSPORT"


class LegalBasisKind(enum.StrEnum):
    LAW = "LAW"
    CONSENT = "CONSENT"
    NO_OBJECTION = "NO_OBJECTION"
    """The resident was told of the query and did not object (SCSP ``NoOpo``)."""


class CheckStatus(enum.StrEnum):
    VERIFIED = "VERIFIED"
    SUBJECT_NOT_FOUND = "SUBJECT_NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"


class DenialReason(enum.StrEnum):
    """Stable reason codes of policy denials (the ``ErrorInfo`` reason of a denial)."""

    UNKNOWN_CONSUMER = "UNKNOWN_CONSUMER"
    PROCEDURE_NOT_AUTHORISED = "PROCEDURE_NOT_AUTHORISED"
    CERTIFICATE_TYPE_NOT_COVERED = "CERTIFICATE_TYPE_NOT_COVERED"
    LEGAL_BASIS_NOT_ALLOWED = "LEGAL_BASIS_NOT_ALLOWED"
    LEGAL_REFERENCE_NOT_IN_AGREEMENT = "LEGAL_REFERENCE_NOT_IN_AGREEMENT"
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    AGREEMENT_NOT_IN_FORCE = "AGREEMENT_NOT_IN_FORCE"
    PROVIDER_VETO = "PROVIDER_VETO"
    SELF_QUERY_FORBIDDEN = "SELF_QUERY_FORBIDDEN"
    OFFICER_NOT_AUTHENTICATED = "OFFICER_NOT_AUTHENTICATED"
    OFFICER_DOCUMENT_REQUIRED = "OFFICER_DOCUMENT_REQUIRED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    NOT_REPRESENTED = "NOT_REPRESENTED"


class OfficerIdentification(enum.StrEnum):
    """How the officer named by a request was identified."""

    TOKEN = "TOKEN"
    """Authenticated by a bearer token from the agency's identity provider."""
    CERTIFICATE = "CERTIFICATE"
    """Asserted by an application's client certificate."""
    INSECURE = "INSECURE"
    """Named in metadata to a broker in insecure local-development mode."""
    AUTOMATED = "AUTOMATED"
    """No officer: an automated procedure (SCSP ``Automatizado`` = ``S``), run by the application
    whose certificate signed the request."""


class OrganisationKind(enum.StrEnum):
    """What a member organisation of the platform is."""

    CONSUMER = "CONSUMER"
    """An agency that verifies facts about residents (through agreements)."""
    PROVIDER = "PROVIDER"
    """An agency that holds the data and answers checks."""
    OVERSIGHT = "OVERSIGHT"
    """A data-protection or audit body."""
    OPERATOR = "OPERATOR"
    """The platform's operator, who registers organisations."""


class AgreementState(enum.StrEnum):
    """Where a version of an agreement stands."""

    PROPOSED = "PROPOSED"
    """Proposed by the consumer; waiting for each provider concerned to approve it."""
    REJECTED = "REJECTED"
    """A provider vetoed the proposal."""
    APPROVED = "APPROVED"
    """Approved by every provider concerned; in force from its start date."""
    IN_FORCE = "IN_FORCE"
    SUSPENDED = "SUSPENDED"
    """In force, but suspended by an oversight body, or for a provider's data by its veto."""
    EXPIRED = "EXPIRED"
    """Past its end date."""
    SUPERSEDED = "SUPERSEDED"
    """A later version came into force."""
    REVOKED = "REVOKED"


class AgreementAction(enum.StrEnum):
    """What an organisation does to an agreement (besides proposing a version)."""

    APPROVE = "APPROVE"
    """A provider concerned approves a proposed version."""
    VETO = "VETO"
    """A provider concerned vetoes a proposed version (rejecting it) or one in force (suspending
    it for that provider's data)."""
    LIFT_VETO = "LIFT_VETO"
    SUSPEND = "SUSPEND"
    """An oversight body suspends an agreement in force, at once."""
    RESUME = "RESUME"
    REVOKE = "REVOKE"
    ENDORSE = "ENDORSE"
    """The governing body named by the master agreement endorses a proposed version."""
    RELEASE_DISCLOSURE = "RELEASE_DISCLOSURE"
    """A DEFERRED disclosure is released before its date (oversight, or the consumer's
    administrators): residents see the accesses made under that version from then on."""
    """The consumer (or the operator) ends the agreement."""


class Disclosure(enum.StrEnum):
    """When a resident may see that their data was consulted under an agreement."""

    IMMEDIATE = "IMMEDIATE"
    DEFERRED = "DEFERRED"
    """Hidden from the resident until a date (an investigation must not be tipped off)."""
    WITHHELD = "WITHHELD"
    """Never shown to the resident, under a law that allows it (e.g. tax inspections)."""


class Decision(enum.StrEnum):
    GRANTED = "GRANTED"
    DENIED = "DENIED"


class UsageGrouping(enum.StrEnum):
    """How oversight usage statistics are grouped."""

    PROVIDER = "PROVIDER"
    CONSUMER = "CONSUMER"
    PROCEDURE = "PROCEDURE"


class UsageDimension(enum.StrEnum):
    """What usage facts are grouped and filtered by (the value: the aggregate's column)."""

    CONSUMER = "consumer_organization_id"
    PROCEDURE = "procedure_code"
    LEGAL_BASIS_KIND = "legal_basis_kind"
    CERTIFICATE_TYPE = "certificate_type_id"
    PROVIDER = "provider_id"
    OUTCOME = "outcome"
    DENIAL_REASON = "denial_reason"


class UsageBucket(enum.StrEnum):
    """How usage facts are summed over time (unspecified on the wire: the whole range)."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class SubjectId:
    """A resident, named by an identity document (already validated)."""

    document_type: DocumentType
    document_number: str

    def key(self) -> str:
        """Canonical text form, e.g. ``DNI:12345678Z``; input to pseudonyms and digests."""
        return f"{self.document_type.value}:{self.document_number}"
