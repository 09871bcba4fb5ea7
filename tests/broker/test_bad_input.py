"""Malformed requests: INVALID_ARGUMENT naming the field, nothing traced, nothing leaked."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from tests.conftest import (
    HOUSING_CHECKS,
    INCOME,
    RESIDENCE,
    Platform,
    resident,
    verify_failure,
    verify_request,
)

Mutation = Callable[[broker_pb2.VerifyRequest], None]


def _subject(doc_type: int, number: str) -> Mutation:
    def mutate(req: broker_pb2.VerifyRequest) -> None:
        req.subject.document_type = doc_type  # type: ignore[assignment]
        req.subject.document_number = number

    return mutate


def _set(path: str, value: object) -> Mutation:
    def mutate(req: broker_pb2.VerifyRequest) -> None:
        *parents, leaf = path.split(".")
        target = req
        for name in parents:
            target = getattr(target, name)
        setattr(target, leaf, value)

    return mutate


def _checks(*checks: tuple[str, dict[str, str]]) -> Mutation:
    def mutate(req: broker_pb2.VerifyRequest) -> None:
        del req.checks[:]
        req.checks.extend(broker_pb2.Check(certificate_type_id=c, parameters=p) for c, p in checks)

    return mutate


def _clear_subject(req: broker_pb2.VerifyRequest) -> None:
    req.ClearField("subject")


def _parts(dni: str) -> tuple[str, str, str, str]:
    return dni[:2], dni[2:5], dni[5:8], dni[8]


def _dni_with_wrong_letter() -> str:
    number = resident(lambda r: r.document_type == "DNI").document_number
    return number[:-1] + ("A" if number[-1] != "A" else "B")


def _nie_with_wrong_letter() -> str:
    number = resident(lambda r: r.document_type == "NIE").document_number
    return number[:-1] + ("A" if number[-1] != "A" else "B")


CASES: dict[str, tuple[Mutation, str]] = {
    "dni-check-letter": (
        _subject(common_pb2.DOCUMENT_TYPE_DNI, _dni_with_wrong_letter()),
        "subject.document_number",
    ),
    "nie-check-letter": (
        _subject(common_pb2.DOCUMENT_TYPE_NIE, _nie_with_wrong_letter()),
        "subject.document_number",
    ),
    "dni-garbage": (_subject(common_pb2.DOCUMENT_TYPE_DNI, "not-a-dni"), "subject.document_number"),
    "document-type-unspecified": (_subject(0, "12345678Z"), "subject.document_type"),
    "document-type-undefined": (_subject(99, "12345678Z"), "subject.document_type"),
    "subject-missing": (_clear_subject, "subject"),
    "procedure-code-missing": (_set("purpose.procedure_code", ""), "purpose.procedure_code"),
    "purpose-text-missing": (_set("purpose.purpose_text", "   "), "purpose.purpose_text"),
    "case-file-missing": (_set("purpose.case_file_id", ""), "purpose.case_file_id"),
    "legal-basis-kind-missing": (
        _set("legal_basis.kind", common_pb2.LEGAL_BASIS_KIND_UNSPECIFIED),
        "legal_basis.kind",
    ),
    "legal-basis-kind-undefined": (_set("legal_basis.kind", 42), "legal_basis.kind"),
    "legal-reference-missing": (_set("legal_basis.reference", ""), "legal_basis.reference"),
    "request-id-empty": (_set("request_id", ""), "request_id"),
    "organization-missing": (_set("consumer.organization_id", ""), "consumer.organization_id"),
    "officer-missing": (_set("consumer.officer_id", ""), "consumer.officer_id"),
    "purpose-text-oversized": (_set("purpose.purpose_text", "x" * 10_000), "purpose.purpose_text"),
    "request-id-oversized": (_set("request_id", "r" * 1000), "request_id"),
    "too-many-checks": (_checks(*[(RESIDENCE, {"municipality_code": "28079"})] * 11), "checks"),
    "no-checks": (_checks(), "checks"),
    "duplicate-certificate-type": (
        _checks((RESIDENCE, {"municipality_code": "28079"}), (RESIDENCE, {"municipality_code": "08019"})),
        "checks[1].certificate_type_id",
    ),
    "unknown-parameter": (
        _checks((INCOME, {"threshold_eur": "100", "colour": "red"})),
        "checks[0].parameters[colour]",
    ),
    "missing-parameter": (_checks((INCOME, {})), "checks[0].parameters[threshold_eur]"),
    "ill-typed-parameter": (
        _checks((INCOME, {"threshold_eur": "lots"})),
        "checks[0].parameters[threshold_eur]",
    ),
    "parameter-control-characters": (
        _checks((RESIDENCE, {"municipality_code": "28079\x00"})),
        "checks[0].parameters[municipality_code]",
    ),
    "purpose-control-characters": (_set("purpose.purpose_text", "rent\x07subsidy"), "purpose.purpose_text"),
    "unit-newline": (_set("consumer.unit", "Housing\nDROP TABLE"), "consumer.unit"),
    "request-id-control-characters": (_set("request_id", "req\x1b[31m"), "request_id"),
}


def _no_internals(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text
    assert ".py" not in text


@pytest.mark.parametrize("mutation, field", CASES.values(), ids=CASES.keys())
async def test_invalid_request_names_the_field_and_is_not_traced(
    platform: Platform, stub: broker_pb2_grpc.BrokerAsyncStub, mutation: Mutation, field: str
) -> None:
    request = verify_request()
    mutation(request)

    failure = await verify_failure(stub, request)

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.info is not None and failure.info.reason == "INVALID_ARGUMENT"
    assert field in failure.fields, failure.fields
    assert all(v.description for v in failure.bad_request.field_violations)  # type: ignore[union-attr]
    assert field in failure.message
    _no_internals(failure.message)
    _no_internals(failure.raw_details.decode("utf-8", "replace"))
    assert platform.trace_rows() == []
    assert platform.reply_rows() == []


def _someone() -> str:
    return resident(lambda r: r.document_type == "DNI").document_number


def _someone_nie() -> str:
    return resident(lambda r: r.document_type == "NIE").document_number


IDENTIFIERS_IN_FREE_TEXT = {
    "dni-in-purpose": (
        _set("purpose.purpose_text", f"rent subsidy for {_someone()}"),
        "purpose.purpose_text",
    ),
    "dotted-dni-in-purpose": (
        _set("purpose.purpose_text", "applicant {}.{}.{}-{}".format(*_parts(_someone()))),
        "purpose.purpose_text",
    ),
    "nie-in-reference": (
        _set("legal_basis.reference", f"Ley 39/2015 art. 28, {_someone_nie().lower()}"),
        "legal_basis.reference",
    ),
    "passport-in-purpose": (
        _set("purpose.purpose_text", "holder of passport PAA123456"),
        "purpose.purpose_text",
    ),
    "dni-in-case-file": (_set("purpose.case_file_id", f"EXP-{_someone()}"), "purpose.case_file_id"),
    "dni-in-request-id": (_set("request_id", f"req-{_someone()}"), "request_id"),
}


@pytest.mark.parametrize(
    "mutation, field", IDENTIFIERS_IN_FREE_TEXT.values(), ids=IDENTIFIERS_IN_FREE_TEXT.keys()
)
async def test_a_document_number_in_free_text_is_refused_not_stored(
    platform: Platform, stub: broker_pb2_grpc.BrokerAsyncStub, mutation: Mutation, field: str
) -> None:
    """Free text is stored in traces and exported to spans: a resident is named only in ``subject``."""
    request = verify_request()
    mutation(request)

    failure = await verify_failure(stub, request)

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == [field]
    assert platform.trace_rows() == [] and platform.reply_rows() == []


async def test_every_bad_field_is_named_at_once(
    platform: Platform, stub: broker_pb2_grpc.BrokerAsyncStub
) -> None:
    request = verify_request()
    request.request_id = ""
    request.legal_basis.reference = ""
    request.subject.document_number = "00000000A"

    failure = await verify_failure(stub, request)

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.fields) >= {"request_id", "legal_basis.reference", "subject.document_number"}
    assert platform.trace_rows() == []


@pytest.mark.parametrize("certificate_type_id", ["tax.unknown/v1", "registry.residence/v2"])
async def test_unknown_certificate_type_is_not_found(
    platform: Platform, stub: broker_pb2_grpc.BrokerAsyncStub, certificate_type_id: str
) -> None:
    request = verify_request(checks=(HOUSING_CHECKS[0], (certificate_type_id, {})))

    failure = await verify_failure(stub, request)

    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.info is not None and failure.info.reason == "CERTIFICATE_TYPE_NOT_FOUND"
    assert failure.info.metadata["certificate_type_id"] == certificate_type_id
    assert failure.fields == ["checks[1].certificate_type_id"]
    _no_internals(failure.message)
    assert platform.trace_rows() == []
    assert platform.reply_rows() == []


async def test_unknown_consumer_is_denied_and_traced(
    platform: Platform, broker: BrokerApp, stub: broker_pb2_grpc.BrokerAsyncStub
) -> None:
    request = verify_request(organization_id="X99999999")

    failure = await verify_failure(stub, request)

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "UNKNOWN_CONSUMER"
    (row,) = platform.trace_rows()
    assert row["decision"] == "DENIED"
    assert row["denial_reason"] == "UNKNOWN_CONSUMER"
    assert row["consumer_organization_id"] == "X99999999"
    assert row["trace_id"] == failure.info.metadata["trace_id"]
