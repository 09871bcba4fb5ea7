"""The one table from error kind to gRPC status and details (onceonly.errors, onceonly.status)."""

from __future__ import annotations

import pytest
from google.protobuf import message
from google.rpc import code_pb2, error_details_pb2

from onceonly.broker.admission import Overloaded
from onceonly.broker.domain import DenialReason, Violation
from onceonly.broker.errors import (
    DuplicateRequest,
    InvalidRequest,
    LedgerUnavailable,
    PolicyDenied,
    UnknownCertificateType,
)
from onceonly.errors import (
    ERROR_DOMAIN,
    FailedPrecondition,
    FieldViolation,
    MalformedMessage,
    OnceOnlyError,
    RuleViolation,
    unauthenticated,
)
from onceonly.status import code_name, status_for
from onceonly.v1 import common_pb2


def unpacked(exc: BaseException) -> tuple[int, str, error_details_pb2.ErrorInfo, list[message.Message]]:
    status = status_for(exc)
    kinds = (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.ResourceInfo,
        error_details_pb2.RetryInfo,
    )
    details: list[message.Message] = []
    for packed in status.details:
        [kind] = [k for k in kinds if packed.Is(k.DESCRIPTOR)]
        detail = kind()
        packed.Unpack(detail)
        details.append(detail)
    info = details[0]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.domain == ERROR_DOMAIN
    return status.code, status.message, info, details[1:]


def test_invalid_request_names_every_field() -> None:
    code, text, info, [bad] = unpacked(
        InvalidRequest([FieldViolation("subject", "is required"), FieldViolation("purpose", "is required")])
    )
    assert code == code_pb2.INVALID_ARGUMENT
    assert (info.reason, info.metadata["field"]) == ("INVALID_ARGUMENT", "subject")
    assert text == "invalid request: subject is required (and 1 more)"
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["subject", "purpose"]


def test_a_policy_denial_names_its_rules_and_its_enum_number() -> None:
    denial = PolicyDenied(
        [
            Violation(DenialReason.PROVIDER_VETO, "tax.compliance/v1", "vetoed by tax"),
            Violation(DenialReason.CONSENT_REQUIRED, "registry.residence/v1", "needs consent"),
        ],
        trace_id="t-1",
    )
    code, text, info, [rules] = unpacked(denial)
    assert code == code_pb2.PERMISSION_DENIED
    assert info.reason == "PROVIDER_VETO"
    assert info.metadata["trace_id"] == "t-1"
    assert info.metadata["denial_reason"] == str(common_pb2.DENIAL_REASON_PROVIDER_VETO)
    assert text == "denied by policy (PROVIDER_VETO): vetoed by tax"
    assert isinstance(rules, error_details_pb2.PreconditionFailure)
    assert [v.type for v in rules.violations] == ["PROVIDER_VETO", "CONSENT_REQUIRED"]


def test_an_unknown_certificate_type_is_a_missing_resource() -> None:
    code, _, info, [resource, bad] = unpacked(
        UnknownCertificateType("nope/v1", "checks[0].certificate_type_id")
    )
    assert code == code_pb2.NOT_FOUND
    assert info.reason == "CERTIFICATE_TYPE_NOT_FOUND"
    assert isinstance(resource, error_details_pb2.ResourceInfo) and resource.resource_name == "nope/v1"
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert bad.field_violations[0].field == "checks[0].certificate_type_id"


def test_overload_says_when_to_retry() -> None:
    code, _, info, [retry] = unpacked(Overloaded(8, 0.25))
    assert (code, info.reason) == (code_pb2.RESOURCE_EXHAUSTED, "OVERLOADED")
    assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.ToMilliseconds() == 250


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (DuplicateRequest("r-1"), code_pb2.ALREADY_EXISTS, "DUPLICATE_REQUEST_ID"),
        (LedgerUnavailable("disk full"), code_pb2.UNAVAILABLE, "LEDGER_UNAVAILABLE"),
        (unauthenticated("TOKEN_EXPIRED", "expired"), code_pb2.UNAUTHENTICATED, "TOKEN_EXPIRED"),
        (MalformedMessage("onceonly.v1.VerifyRequest"), code_pb2.INVALID_ARGUMENT, "MALFORMED_MESSAGE"),
    ],
)
def test_each_kind_has_its_code(error: OnceOnlyError, code: int, reason: str) -> None:
    got, _, info, _ = unpacked(error)
    assert (got, info.reason) == (code, reason)
    assert code_name(error) == code_pb2.Code.Name(code)


def test_the_ledgers_cause_stays_in_the_logs_not_in_the_answer() -> None:
    _, text, _, _ = unpacked(LedgerUnavailable("sqlite3.OperationalError: disk I/O error at /var/x.db"))
    assert "sqlite" not in text and "/var" not in text


def test_anything_unplanned_is_internal_and_says_nothing() -> None:
    code, text, info, details = unpacked(KeyError("secret-path /etc/shadow"))
    assert (code, info.reason, text, details) == (code_pb2.INTERNAL, "INTERNAL", "internal error", [])


def test_a_state_that_forbids_the_request_is_a_failed_precondition_naming_its_rules() -> None:
    refused = FailedPrecondition(
        "agreement madrid-housing v2 is REVOKED: it cannot be approved",
        reason="TRANSITION_NOT_ALLOWED",
        violations=[RuleViolation("TRANSITION_NOT_ALLOWED", "madrid-housing/2", "REVOKED → APPROVE")],
    )
    code, text, info, [rules] = unpacked(refused)
    assert (code, info.reason, code_name(refused)) == (
        code_pb2.FAILED_PRECONDITION,
        "TRANSITION_NOT_ALLOWED",
        "FAILED_PRECONDITION",
    )
    assert text.startswith("agreement madrid-housing v2 is REVOKED")
    assert isinstance(rules, error_details_pb2.PreconditionFailure)
    assert [(v.type, v.subject) for v in rules.violations] == [("TRANSITION_NOT_ALLOWED", "madrid-housing/2")]
