"""The broker's errors: kinds of :class:`onceonly.errors.OnceOnlyError` with the broker's fields.

The core raises these; :mod:`onceonly.status` maps each kind to its gRPC status at the edge.
"""

from __future__ import annotations

from onceonly.broker.domain import DenialReason, Violation
from onceonly.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OnceOnlyError,
    PermissionDenied,
    ResourceExhausted,
    RuleViolation,
    Unavailable,
)

__all__ = [
    "CatalogError",
    "DuplicateRequest",
    "FieldViolation",
    "InvalidRequest",
    "LedgerUnavailable",
    "OnceOnlyError",
    "PolicyDenied",
    "QueryTooLong",
    "QuotaExceeded",
    "UnknownCertificateType",
    "denied",
]


class CatalogError(OnceOnlyError):
    """The catalog file is invalid, or disagrees with a provider's description (stops the broker)."""

    reason = "CATALOG_INVALID"


class InvalidRequest(InvalidArgument):
    """The request is malformed; ``violations`` name each bad field."""


class UnknownCertificateType(NotFound):
    """A check names a certificate type that is not in the catalog."""

    reason = "CERTIFICATE_TYPE_NOT_FOUND"

    def __init__(self, certificate_type_id: str, field: str):
        self.certificate_type_id = certificate_type_id
        super().__init__(
            f"unknown certificate type {certificate_type_id!r}; see `onceonly catalog` (GetCatalog)",
            resource_type="onceonly.v1.CertificateType",
            resource_name=certificate_type_id,
            field=field,
            metadata={"certificate_type_id": certificate_type_id},
        )


class PolicyDenied(PermissionDenied):
    """Policy refused the request; ``denials`` name every broken rule, the first one decides."""

    def __init__(self, violations: list[Violation], trace_id: str = ""):
        if not violations:
            raise ValueError("a denial needs at least one violation")
        self.denials = violations
        self.trace_id = trace_id
        first = violations[0]
        super().__init__(
            f"denied by policy ({first.reason.value}): {first.description}",
            reason=first.reason.value,
            metadata={"trace_id": trace_id, "subject": first.subject},
            violations=[RuleViolation(v.reason.value, v.subject, v.description) for v in violations],
        )

    @property
    def denial_reason(self) -> DenialReason:
        return self.denials[0].reason


class QuotaExceeded(ResourceExhausted):
    """The consumer used up a quota of a master agreement: a policy denial sent as
    ``RESOURCE_EXHAUSTED`` with ``QuotaFailure`` naming the agreement (traced like any denial)."""

    def __init__(self, violations: list[Violation], trace_id: str = "", retry_after_s: float | None = None):
        self.denials = violations
        self.trace_id = trace_id
        first = violations[0]
        super().__init__(
            f"denied by policy ({first.reason.value}): {first.description}",
            reason=first.reason.value,
            retry_after_s=retry_after_s,
            metadata={"trace_id": trace_id, "subject": first.subject},
            quota_violations=[FieldViolation(v.subject, v.description) for v in violations],
        )

    @property
    def denial_reason(self) -> DenialReason:
        return self.denials[0].reason


def denied(
    violations: list[Violation], trace_id: str = "", retry_after_s: float | None = None
) -> OnceOnlyError:
    """The error of a denial: ``QuotaExceeded`` for a quota, ``PolicyDenied`` for any other rule."""
    if violations and violations[0].reason is DenialReason.QUOTA_EXCEEDED:
        return QuotaExceeded(violations, trace_id, retry_after_s)
    return PolicyDenied(violations, trace_id)


class DuplicateRequest(AlreadyExists):
    """The request id was used before with a different body (SCSP 0229)."""

    reason = "DUPLICATE_REQUEST_ID"

    def __init__(self, request_id: str):
        self.request_id = request_id
        super().__init__(
            f"request id {request_id!r} was already used with a different body",
            metadata={"field": "request_id", "request_id": request_id},
        )


class LedgerUnavailable(Unavailable):
    """The trace ledger cannot record; the broker fails closed."""

    reason = "LEDGER_UNAVAILABLE"
    _MESSAGE = "the trace ledger cannot record requests right now; nothing was answered, retry later"

    def __init__(self, cause: str = "") -> None:
        self.cause = cause
        super().__init__(self._MESSAGE)

    def __str__(self) -> str:
        return self.cause or self.message


class QueryTooLong(ResourceExhausted):
    """An oversight query ran past its time budget (it would slow verifications down)."""

    reason = "QUERY_TOO_LONG"

    def __init__(self, budget_s: float) -> None:
        ms = round(budget_s * 1000)
        super().__init__(
            f"the query ran longer than its budget ({ms} ms) and was stopped: narrow the time range "
            "(since, until) or the filter",
            metadata={"budget_ms": str(ms)},
        )
