"""The broker's exceptions. One root; each subclass carries structured fields.

The gRPC layer maps each class to a status code in one table (``broker.grpc_api``).
"""

from __future__ import annotations

from dataclasses import dataclass

from onceonly.broker.domain import Violation


class OnceOnlyError(Exception):
    """Root of the broker's errors."""


class CatalogError(OnceOnlyError):
    """The catalog file is invalid, or disagrees with a provider's description."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class InvalidRequest(OnceOnlyError):
    """The request is malformed; ``violations`` name each bad field."""

    def __init__(self, violations: list[FieldViolation]):
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class UnknownCertificateType(OnceOnlyError):
    def __init__(self, certificate_type_id: str, field: str):
        self.certificate_type_id = certificate_type_id
        self.field = field
        super().__init__(f"unknown certificate type {certificate_type_id!r}")


class PolicyDenied(OnceOnlyError):
    """Policy refused the request; ``violations`` name every broken rule, first one decides."""

    def __init__(self, violations: list[Violation], trace_id: str = ""):
        if not violations:
            raise ValueError("a denial needs at least one violation")
        self.violations = violations
        self.trace_id = trace_id
        super().__init__(violations[0].description)

    @property
    def reason(self):
        return self.violations[0].reason


class DuplicateRequest(OnceOnlyError):
    """The request id was used before with a different body (SCSP 0229)."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        super().__init__(f"request id {request_id!r} was already used with a different body")


class LedgerUnavailable(OnceOnlyError):
    """The trace ledger cannot record; the broker fails closed."""
