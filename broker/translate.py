"""Protobuf ⇄ domain translation at the edge, with request validation.

Validation collects every bad field before answering, so a caller fixes them all at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from google.protobuf import struct_pb2

from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import (
    CheckOutcome,
    CheckRequest,
    ConsumerRef,
    LegalBasis,
    OfficerIdentification,
    PurposeRef,
    VerificationRequest,
)
from onceonly.broker.errors import InvalidRequest, UnknownCertificateType
from onceonly.fields import parse_parameter
from onceonly.v1 import broker_pb2, common_pb2
from onceonly.validation import CODE_PATTERN, CONTROL, ID_PATTERN, FieldErrors
from onceonly.wire import CHECK_STATUS, LEGAL_BASIS_KIND, PARAMETER_TYPE

MAX_CHECKS = 10
MAX_PARAMETERS = 16


def verification_request(msg: broker_pb2.VerifyRequest, catalog: Catalog) -> VerificationRequest:
    """Validate a ``VerifyRequest`` into a domain request.

    Raises ``InvalidRequest`` naming every bad field, or ``UnknownCertificateType`` when the
    request is otherwise well formed but asks for a certificate type the catalog lacks.
    """
    c = FieldErrors()
    request_id = c.no_identifiers(
        "request_id", c.text("request_id", msg.request_id, max_len=64, pattern=ID_PATTERN)
    )
    consumer = msg.consumer
    org = c.text("consumer.organization_id", consumer.organization_id, max_len=64, pattern=ID_PATTERN)
    unit = c.text("consumer.unit", consumer.unit, max_len=128)
    officer = c.text("consumer.officer_id", consumer.officer_id, max_len=64, pattern=ID_PATTERN)
    officer_doc = None
    if consumer.HasField("officer_document"):
        officer_doc = c.subject("consumer.officer_document", consumer.officer_document)
    purpose = msg.purpose
    procedure = c.text("purpose.procedure_code", purpose.procedure_code, max_len=64, pattern=CODE_PATTERN)
    purpose_text = c.no_identifiers(
        "purpose.purpose_text",
        c.text("purpose.purpose_text", purpose.purpose_text, max_len=500),
        passports=True,
    )
    case_file = c.no_identifiers(
        "purpose.case_file_id",
        c.text("purpose.case_file_id", purpose.case_file_id, max_len=64, pattern=ID_PATTERN),
    )
    basis_kind = LEGAL_BASIS_KIND.from_proto(msg.legal_basis.kind)
    if basis_kind is None:
        c.add("legal_basis.kind", f"must be {LEGAL_BASIS_KIND.choices()}")
    reference = c.no_identifiers(
        "legal_basis.reference",
        c.text("legal_basis.reference", msg.legal_basis.reference, max_len=200),
        passports=True,
    )
    subject = None
    if not msg.HasField("subject"):
        c.add("subject", "is required")
    else:
        subject = c.subject("subject", msg.subject)

    checks, unknown = _checks(c, msg.checks, catalog)
    if c.violations:
        raise InvalidRequest(c.violations)
    if unknown is not None:
        raise UnknownCertificateType(*unknown)
    assert subject is not None and basis_kind is not None
    request = VerificationRequest(
        request_id=request_id,
        consumer=ConsumerRef(org, unit, officer, officer_doc),
        purpose=PurposeRef(procedure, purpose_text, case_file),
        legal_basis=LegalBasis(basis_kind, reference),
        subject=subject,
        checks=tuple(checks),
        digest="",
    )
    return _with_digest(request)


def _checks(
    c: FieldErrors, messages: Iterable[broker_pb2.Check], catalog: Catalog
) -> tuple[list[CheckRequest], tuple[str, str] | None]:
    msgs = list(messages)
    if not msgs:
        c.add("checks", "at least one check is required")
    elif len(msgs) > MAX_CHECKS:
        c.add("checks", f"at most {MAX_CHECKS} checks per request")
        return [], None
    checks: list[CheckRequest] = []
    unknown: tuple[str, str] | None = None
    seen: set[str] = set()
    for i, check in enumerate(msgs):
        where = f"checks[{i}]"
        cid = c.text(
            f"{where}.certificate_type_id", check.certificate_type_id, max_len=100, pattern=ID_PATTERN
        )
        if cid in seen:
            c.add(f"{where}.certificate_type_id", f"{cid} is asked for twice")
        seen.add(cid)
        definition = catalog.get(cid)
        if definition is None:
            if cid and unknown is None:
                unknown = (cid, f"{where}.certificate_type_id")
            continue
        params: dict[str, str] = {}
        if len(check.parameters) > MAX_PARAMETERS:
            c.add(f"{where}.parameters", f"at most {MAX_PARAMETERS} parameters")
            continue
        for name, value in check.parameters.items():
            spec = definition.parameter(name)
            if spec is None:
                c.add(f"{where}.parameters[{name[:40]}]", f"{definition.id} declares no such parameter")
                continue
            if len(value) > 200 or CONTROL.search(value):
                c.add(f"{where}.parameters[{name}]", "must be at most 200 printable characters")
                continue
            try:
                parse_parameter(spec, value)
            except ValueError as exc:
                c.add(f"{where}.parameters[{name}]", str(exc))
                continue
            params[name] = value.strip()
        for spec in definition.parameters:
            if spec.required and spec.name not in check.parameters:
                c.add(f"{where}.parameters[{spec.name}]", "is required")
        checks.append(CheckRequest(cid, params))
    return checks, unknown


def identified(request: VerificationRequest, how: OfficerIdentification) -> VerificationRequest:
    """``request`` with how its officer was identified (known from the call's credentials)."""
    return dataclasses.replace(
        request, consumer=dataclasses.replace(request.consumer, officer_identification=how)
    )


def canonical_body(request: VerificationRequest) -> bytes:
    """The validated body as canonical JSON (sorted keys): what makes two requests "the same"."""
    body = {
        "consumer": [request.consumer.organization_id, request.consumer.unit, request.consumer.officer_id],
        "officer_document": request.consumer.officer_document.key()
        if request.consumer.officer_document
        else "",
        "purpose": [
            request.purpose.procedure_code,
            request.purpose.purpose_text,
            request.purpose.case_file_id,
        ],
        "legal_basis": [request.legal_basis.kind.value, request.legal_basis.reference],
        "subject": request.subject.key(),
        "checks": [[ch.certificate_type_id, sorted(ch.parameters.items())] for ch in request.checks],
    }
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _with_digest(request: VerificationRequest) -> VerificationRequest:
    """Fingerprint the validated body: equal requests, equal digests.

    This digest names the subject and is never stored: the service keys it
    (:meth:`~onceonly.broker.ports.Pseudonymiser.request_digest`) before anything is written.
    """
    return dataclasses.replace(request, digest=hashlib.sha256(canonical_body(request)).hexdigest())


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(values))
    return s


def outcome_message(outcome: CheckOutcome) -> broker_pb2.CheckOutcome:
    msg = broker_pb2.CheckOutcome(
        certificate_type_id=outcome.certificate_type_id,
        provider_id=outcome.provider_id,
        status=CHECK_STATUS.to_proto(outcome.status),
        attestation=outcome.attestation or "",
        detail=outcome.detail,
        latency_ms=outcome.latency_ms,
    )
    if outcome.claims is not None:
        msg.claims.CopyFrom(_struct(outcome.claims))
    return msg


def verify_response(
    request_id: str, trace_id: str, outcomes: Iterable[CheckOutcome], decided_at: datetime
) -> broker_pb2.VerifyResponse:
    response = broker_pb2.VerifyResponse(
        request_id=request_id, trace_id=trace_id, outcomes=[outcome_message(o) for o in outcomes]
    )
    response.decided_at.FromDatetime(decided_at)
    return response


def catalog_message(catalog: Catalog) -> broker_pb2.Catalog:
    def fields(specs: Iterable[Any]) -> list[common_pb2.FieldSpec]:
        return [
            common_pb2.FieldSpec(
                name=s.name,
                type=PARAMETER_TYPE.to_proto(s.type),
                required=s.required,
                description=s.description,
            )
            for s in specs
        ]

    return broker_pb2.Catalog(
        certificate_types=[
            broker_pb2.CertificateType(
                id=c.id,
                title=c.title,
                description=c.description,
                provider_id=c.provider_id,
                parameters=fields(c.parameters),
                claims=fields(c.claims),
                allowed_legal_bases=sorted(LEGAL_BASIS_KIND.to_proto(b) for b in c.legal_bases),
                attests_value=c.attests_value,
                parameters_schema=orjson.dumps(c.parameters_schema()).decode(),
                claims_schema=orjson.dumps(c.claims_schema()).decode(),
                titles=dict(c.titles),
                descriptions=dict(c.descriptions),
                introduced=c.introduced.isoformat() if c.introduced else "",
                sunset=c.sunset.isoformat() if c.sunset else "",
                replaced_by=c.replaced_by,
            )
            for c in catalog.certificate_types.values()
        ],
        providers=[broker_pb2.ProviderInfo(id=p.id, name=p.name) for p in catalog.providers.values()],
    )
