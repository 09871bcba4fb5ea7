"""Verify end to end over gRPC: outcomes per check, fan-out with failures, idempotency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from google.protobuf import struct_pb2

from onceonly.broker.app import BrokerApp
from onceonly.consumers.client import AlreadyExists, BrokerClient
from onceonly.evidence import EvidenceSigner, evidence_claims
from onceonly.providers import synthetic
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import SERVICE_NAME as PROVIDER_SERVICE
from onceonly.providers.sdk import ProviderServicer
from onceonly.serving import start_server
from onceonly.v1 import broker_pb2, provider_pb2, provider_pb2_grpc
from tests.conftest import (
    HOUSEHOLD,
    HOUSING_CHECKS,
    INCOME,
    RESIDENCE,
    TAX_COMPLIANCE,
    UNEMPLOYMENT,
    Platform,
    SlowAdapter,
    WrappedAdapter,
    expect_broker_error,
    expected_housing_claims,
    resident,
    verify_failure,
    verify_kwargs,
    verify_request,
)


async def test_housing_checks_are_verified_with_the_synthetic_claims(client: BrokerClient) -> None:
    r = resident(lambda r: r.municipality_code == "28079")
    result = await client.verify(**verify_kwargs(r), request_id="req-happy-1")

    assert result.request_id == "req-happy-1"
    assert len(result.trace_id) >= 16
    assert [o.certificate_type_id for o in result.outcomes] == [cid for cid, _ in HOUSING_CHECKS]
    expected = expected_housing_claims(r)
    for outcome in result.outcomes:
        assert outcome.status == "VERIFIED", outcome
        assert dict(outcome.claims) == expected[outcome.certificate_type_id]
        assert outcome.attestation.count(".") == 2  # a compact JWS
        assert outcome.detail == ""
    providers = {o.certificate_type_id: o.provider_id for o in result.outcomes}
    assert providers == {
        RESIDENCE: "registry",
        TAX_COMPLIANCE: "tax",
        INCOME: "tax",
        UNEMPLOYMENT: "employment",
    }


async def test_a_resident_unknown_to_one_agency_is_subject_not_found_there(client: BrokerClient) -> None:
    r = resident_unknown_to_tax()
    result = await client.verify(**verify_kwargs(r))

    statuses = {o.certificate_type_id: o.status for o in result.outcomes}
    assert statuses == {
        RESIDENCE: "VERIFIED",
        TAX_COMPLIANCE: "SUBJECT_NOT_FOUND",
        INCOME: "SUBJECT_NOT_FOUND",
        UNEMPLOYMENT: "VERIFIED",
    }
    for outcome in result.outcomes:
        if outcome.status == "SUBJECT_NOT_FOUND":
            assert outcome.attestation == ""
            assert dict(outcome.claims) == {}
            assert outcome.detail


def resident_unknown_to_tax() -> synthetic.Resident:
    return synthetic.find(lambda r: r.known_to_registry and r.known_to_employment and not r.known_to_tax)


async def test_one_slow_and_one_stopped_provider_do_not_fail_the_others(platform: Platform) -> None:
    await platform.start_reference_providers(tax=SlowAdapter(reference_adapter("tax"), delay_s=30))
    await platform.providers["employment"].stop(0)
    app = await platform.start_broker(provider_timeout_ms=300)
    client = platform.client(app)
    r = resident()
    checks = (*HOUSING_CHECKS, (HOUSEHOLD, {}))

    started = time.monotonic()
    result = await client.verify(**verify_kwargs(r, checks=checks))
    elapsed = time.monotonic() - started

    statuses = {o.certificate_type_id: o.status for o in result.outcomes}
    assert statuses == {
        RESIDENCE: "VERIFIED",
        HOUSEHOLD: "VERIFIED",
        TAX_COMPLIANCE: "TIMEOUT",
        INCOME: "TIMEOUT",
        UNEMPLOYMENT: "UNAVAILABLE",
    }
    assert result.outcome(HOUSEHOLD).claims == {"household_size": r.household_size}
    for outcome in result.outcomes:
        assert bool(outcome.attestation) == (outcome.status == "VERIFIED")
    # Sanity bound only: far below the slow provider's 30 s, so the call was not waited out.
    assert elapsed < 10
    (row,) = platform.trace_rows(request_id=result.request_id)
    assert row["decision"] == "GRANTED"


class _WrongClaimsAdapter(WrappedAdapter):
    """Answers tax compliance with a claim of the wrong type (caught by the provider SDK)."""

    async def attest(self, query):
        return {"compliant": "yes"}


class _WireMalformedServicer(ProviderServicer):
    """A provider that puts malformed claims on the wire, bypassing the SDK's own checks
    (and signing them, so that it is the claims the broker refuses, not the evidence)."""

    async def Attest(self, request, context):
        values: dict[str, Any] = {"compliant": "yes", "secret_income": 12345}
        claims = struct_pb2.Struct()
        claims.update(values)
        assert self._evidence is not None
        evidence = self._evidence.sign(
            evidence_claims(
                request_id=request.request_id,
                trace_id=request.trace_id,
                certificate_type_id=request.certificate_type_id,
                subject=f"DNI:{request.subject.document_number}"
                if request.subject.document_type == 1
                else f"NIE:{request.subject.document_number}",
                parameters=dict(request.parameters),
                found=True,
                claims=values,
            )
        )
        return provider_pb2.AttestResponse(
            result=provider_pb2.AttestResponse.RESULT_FOUND, claims=claims, evidence=evidence
        )


async def test_malformed_claims_from_the_adapter_are_an_error_without_attestation(platform: Platform) -> None:
    await platform.start_reference_providers(tax=_WrongClaimsAdapter(reference_adapter("tax")))
    app = await platform.start_broker()
    result = await platform.client(app).verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))

    tax = result.outcome(TAX_COMPLIANCE)
    assert tax.status == "ERROR"
    assert tax.attestation == ""
    assert dict(tax.claims) == {}
    assert result.outcome(RESIDENCE).status == "VERIFIED"


async def test_malformed_claims_on_the_wire_are_an_error_without_attestation(platform: Platform) -> None:
    await platform.start_provider(reference_adapter("registry"))
    await platform.start_provider(reference_adapter("employment"))
    servicer = _WireMalformedServicer(
        reference_adapter("tax"), EvidenceSigner.from_tls(platform.pki.server_tls("tax"))
    )
    tax = await start_server(
        "127.0.0.1:0",
        [lambda s: provider_pb2_grpc.add_ProviderServicer_to_server(servicer, s)],
        [PROVIDER_SERVICE],
        tls=platform.pki.server_tls("tax"),
    )
    platform.adopt_provider("tax", tax)
    app = await platform.start_broker()
    result = await platform.client(app).verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))

    outcome = result.outcome(TAX_COMPLIANCE)
    assert outcome.status == "ERROR"
    assert outcome.attestation == ""
    assert dict(outcome.claims) == {}
    assert "malformed claims" in outcome.detail
    assert "12345" not in outcome.detail
    assert result.outcome(RESIDENCE).status == "VERIFIED"


# --- idempotency --------------------------------------------------------------------------


async def test_same_request_id_and_body_gets_the_same_answer_once_traced(
    platform: Platform, broker: BrokerApp
) -> None:
    stub = platform.stub(broker)
    request = verify_request(request_id="req-idem-1")

    first = await stub.Verify(request, timeout=10)
    second = await stub.Verify(request, timeout=10)

    assert second == first
    assert second.trace_id == first.trace_id
    assert [o.attestation for o in second.outcomes] == [o.attestation for o in first.outcomes]
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in first.outcomes)
    assert len(platform.trace_rows(request_id="req-idem-1")) == 1
    assert len(platform.reply_rows()) == 1


async def test_same_request_id_with_another_body_is_already_exists(
    platform: Platform, broker: BrokerApp
) -> None:
    client = platform.client(broker)
    r = resident()
    await client.verify(**verify_kwargs(r), request_id="req-idem-2")

    err = await expect_broker_error(
        client.verify(**verify_kwargs(r, checks=HOUSING_CHECKS[:1]), request_id="req-idem-2")
    )

    assert isinstance(err, AlreadyExists)
    assert err.code == "ALREADY_EXISTS"
    assert err.reason == "DUPLICATE_REQUEST_ID"
    assert len(platform.trace_rows(request_id="req-idem-2")) == 1


async def test_a_retry_after_a_restart_is_answered_from_the_ledger(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    request = verify_request(request_id="req-restart-1")
    first = await platform.stub(app).Verify(request, timeout=10)
    await app.stop(0)

    again = await platform.start_broker()
    second = await platform.stub(again).Verify(request, timeout=10)

    assert second == first
    assert len(platform.trace_rows(request_id="req-restart-1")) == 1

    other_body = verify_request(request_id="req-restart-1", checks=HOUSING_CHECKS[:1])
    try:
        await platform.stub(again).Verify(other_body, timeout=10)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
    else:
        raise AssertionError("a reused id with another body must be refused after a restart too")


async def test_concurrent_duplicates_are_decided_once(platform: Platform, broker: BrokerApp) -> None:
    stub = platform.stub(broker)
    request = verify_request(request_id="req-concurrent-1")

    answers = await asyncio.gather(*(stub.Verify(request, timeout=10) for _ in range(5)))

    assert all(a == answers[0] for a in answers)
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in answers[0].outcomes)
    assert len(platform.trace_rows(request_id="req-concurrent-1")) == 1
    assert len(platform.trace_rows()) == 1


async def test_a_denied_retry_after_a_restart_keeps_its_trace_id(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    request = verify_request(request_id="req-restart-denied", procedure_code="PARKING-PERMIT")
    first = await verify_failure(platform.stub(app), request)
    await app.stop(0)

    again = await platform.start_broker()
    second = await verify_failure(platform.stub(again), request)
    other_body = verify_request(request_id="req-restart-denied", procedure_code="OTHER-PROCEDURE")
    third = await verify_failure(platform.stub(again), other_body)

    assert first.info is not None and second.info is not None and third.info is not None
    assert second.code == grpc.StatusCode.PERMISSION_DENIED
    assert second.info.metadata["trace_id"] == first.info.metadata["trace_id"]
    (row,) = platform.trace_rows(request_id="req-restart-denied")
    assert row["trace_id"] == first.info.metadata["trace_id"]
    assert third.code == grpc.StatusCode.ALREADY_EXISTS
    assert third.info.reason == "DUPLICATE_REQUEST_ID"
