"""What the broker writes down about a request: the trace record and the attestation payload.

Both are pure functions of the request and what was decided: the trace holds the purpose and
the outcome but never the subject's document number (only its keyed pseudonym) nor an attested
value; the attestation payload is what the broker signs for each verified check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from onceonly.broker.domain import (
    AgreementRef,
    CheckOutcome,
    CheckRequest,
    Decision,
    TracedOutcome,
    TraceRecord,
    VerificationRequest,
    Violation,
)
from onceonly.evidence import evidence_digest

__all__ = ["attestation_payload", "trace_record"]


def trace_record(
    request: VerificationRequest,
    *,
    trace_id: str,
    created_at: datetime,
    subject_ref: str,
    duration_ms: int,
    outcomes: Sequence[CheckOutcome] = (),
    violations: Sequence[Violation] = (),
    grounds: Sequence[AgreementRef] = (),
) -> TraceRecord:
    """The trace of ``request``: granted with ``outcomes``, or denied for ``violations``."""
    return TraceRecord(
        trace_id=trace_id,
        request_id=request.request_id,
        request_digest="",  # the keyed digest is kept with the stored reply only, where it is needed
        created_at=created_at,
        consumer_organization_id=request.consumer.organization_id,
        consumer_unit=request.consumer.unit,
        officer_id=request.consumer.officer_id,
        procedure_code=request.purpose.procedure_code,
        purpose_text=request.purpose.purpose_text,
        case_file_id=request.purpose.case_file_id,
        legal_basis_kind=request.legal_basis.kind,
        legal_basis_reference=request.legal_basis.reference,
        subject_document_type=request.subject.document_type,
        subject_ref=subject_ref,
        certificate_type_ids=tuple(c.certificate_type_id for c in request.checks),
        decision=Decision.DENIED if violations else Decision.GRANTED,
        denial_reason=violations[0].reason if violations else None,
        denial_detail="; ".join(v.description for v in violations),
        outcomes=tuple(
            TracedOutcome(
                o.certificate_type_id,
                o.provider_id,
                o.status,
                o.latency_ms,
                evidence_digest(o.evidence) if o.evidence else "",
            )
            for o in outcomes
        ),
        duration_ms=duration_ms,
        agreements=tuple(grounds),
        officer_identification=request.consumer.officer_identification,
    )


def attestation_payload(
    request: VerificationRequest,
    *,
    trace_id: str,
    issued_at: datetime,
    ttl: timedelta,
    check: CheckRequest,
    provider_id: str,
    claims: Mapping[str, Any],
    evidence: str = "",
) -> dict[str, Any]:
    """The claims the broker signs for one verified check (``iss`` is added by the signer)."""
    issued = int(issued_at.timestamp())
    payload: dict[str, Any] = {
        "sub": request.subject.key(),
        "aud": request.consumer.organization_id,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": f"{trace_id}.{check.certificate_type_id}",
        "request_id": request.request_id,
        "trace_id": trace_id,
        "certificate_type": check.certificate_type_id,
        "provider": provider_id,
        "parameters": dict(check.parameters),
        "claims": dict(claims),
        "purpose": {
            "procedure_code": request.purpose.procedure_code,
            "case_file_id": request.purpose.case_file_id,
        },
        "legal_basis": {
            "kind": request.legal_basis.kind.value,
            "reference": request.legal_basis.reference,
        },
    }
    if evidence:
        payload["provider_evidence_sha256"] = evidence_digest(evidence)
    return payload
