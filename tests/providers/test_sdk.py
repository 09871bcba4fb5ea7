"""The provider SDK over real grpc.aio servers: results, status codes, health, reflection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from onceonly.fields import FieldSpec, FieldType
from onceonly.identity import make_dni, make_nie
from onceonly.providers.sdk import (
    SERVICE_NAME,
    AttestQuery,
    CertificateTypeSupport,
    Deferred,
    InvalidQuery,
    ProviderAdapter,
    ProviderServicer,
    SubjectNotFound,
    start_provider,
)
from onceonly.serving import RunningServer
from onceonly.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from tests.conftest import broker_channel, health_stub, provider_tls, reflection_stub

KNOWN = make_dni(12345678)
UNKNOWN = make_dni(87654321)
FOUND = provider_pb2.AttestResponse.RESULT_FOUND
NOT_FOUND = provider_pb2.AttestResponse.RESULT_SUBJECT_NOT_FOUND


class ToyAdapter(ProviderAdapter):
    """One certificate type; ``behaviour`` picks a well-behaved or a buggy answer."""

    provider_id = "toy"
    name = "Toy Agency"

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.queries: list[AttestQuery] = []

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        return (
            CertificateTypeSupport(
                "toy.check/v1",
                parameters=(
                    FieldSpec("limit", FieldType.INTEGER, True, "A limit"),
                    FieldSpec("strict", FieldType.BOOLEAN, False),
                    FieldSpec("on", FieldType.DATE, False),
                ),
                claims=(FieldSpec("ok", FieldType.BOOLEAN), FieldSpec("count", FieldType.INTEGER)),
            ),
        )

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        self.queries.append(query)
        if query.document_number != KNOWN and query.document_type != "NIE":
            raise SubjectNotFound(query.document_number)
        match self.behaviour:
            case "undeclared":
                return {"ok": True, "count": 1, "income_eur": 12000}
            case "ill-typed":
                return {"ok": "yes", "count": 1}
            case "missing":
                return {"ok": True}
            case "not-a-mapping":
                return ["ok"]  # type: ignore[return-value]
            case "crash":
                raise RuntimeError("database password=hunter2 at db.internal:5432")
            case "invalid":
                raise InvalidQuery("limit", "too large for this agency")
        return {"ok": query.parameters["limit"] > 10, "count": 3}


@asynccontextmanager
async def serving(adapter: ProviderAdapter) -> AsyncIterator[tuple[RunningServer, grpc.aio.Channel]]:
    running = await start_provider(adapter, tls=provider_tls(adapter))
    channel = broker_channel(running.target)
    try:
        yield running, channel
    finally:
        await channel.close()
        await running.stop(0)


def request(
    number: str = KNOWN,
    certificate_type_id: str = "toy.check/v1",
    document_type: int = common_pb2.DOCUMENT_TYPE_DNI,
    **parameters: str,
) -> provider_pb2.AttestRequest:
    return provider_pb2.AttestRequest(
        request_id="req-1",
        trace_id="trace-1",
        certificate_type_id=certificate_type_id,
        subject=common_pb2.Subject(document_type=cast(Any, document_type), document_number=number),
        parameters=parameters or {"limit": "42"},
        consumer_organization_id="L01280796",
        procedure_code="HOUSING-RENT-SUBSIDY",
        legal_basis_kind=common_pb2.LEGAL_BASIS_KIND_LAW,
    )


async def attest_error(behaviour: str, req: provider_pb2.AttestRequest | None = None) -> grpc.aio.AioRpcError:
    async with serving(ToyAdapter(behaviour)) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await provider_pb2_grpc.ProviderStub(channel).Attest(req or request(), timeout=5)
    return caught.value


async def test_describe_lists_declared_types() -> None:
    async with serving(ToyAdapter()) as (_, channel):
        description = await provider_pb2_grpc.ProviderStub(channel).Describe(
            provider_pb2.DescribeRequest(), timeout=5
        )
    assert (description.provider_id, description.name) == ("toy", "Toy Agency")
    [supported] = description.certificate_types
    assert supported.certificate_type_id == "toy.check/v1"
    assert [(p.name, p.type, p.required) for p in supported.parameters] == [
        ("limit", common_pb2.PARAMETER_TYPE_INTEGER, True),
        ("strict", common_pb2.PARAMETER_TYPE_BOOLEAN, False),
        ("on", common_pb2.PARAMETER_TYPE_DATE, False),
    ]
    assert supported.parameters[0].description == "A limit"
    assert [c.name for c in supported.claims] == ["ok", "count"]


async def test_attest_found_passes_parsed_query_and_returns_claims() -> None:
    adapter = ToyAdapter()
    async with serving(adapter) as (_, channel):
        response = await provider_pb2_grpc.ProviderStub(channel).Attest(
            request(" 12345678-z ", limit="42", strict="yes", on="2026-01-31"), timeout=5
        )
    assert response.result == FOUND
    assert dict(response.claims) == {"ok": True, "count": 3}
    [query] = adapter.queries
    assert query.document_type == "DNI"
    assert query.document_number == KNOWN  # normalised before the adapter sees it
    assert dict(query.parameters) == {"limit": 42, "strict": True, "on": "2026-01-31"}
    assert (query.request_id, query.trace_id, query.legal_basis_kind) == ("req-1", "trace-1", "LAW")
    assert (query.consumer_organization_id, query.procedure_code) == ("L01280796", "HOUSING-RENT-SUBSIDY")


async def test_attest_subject_not_found() -> None:
    async with serving(ToyAdapter()) as (_, channel):
        response = await provider_pb2_grpc.ProviderStub(channel).Attest(request(UNKNOWN), timeout=5)
    assert response.result == NOT_FOUND
    assert not response.HasField("claims")


async def test_nie_subject_reaches_adapter() -> None:
    async with serving(ToyAdapter()) as (_, channel):
        response = await provider_pb2_grpc.ProviderStub(channel).Attest(
            request(make_nie("X", 1234567), document_type=common_pb2.DOCUMENT_TYPE_NIE), timeout=5
        )
    assert response.result == FOUND


async def test_unknown_certificate_type_is_not_found() -> None:
    error = await attest_error("ok", request(certificate_type_id="tax.compliance/v1"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "tax.compliance/v1" in (error.details() or "")


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"strict": "true"}, "limit"),  # required parameter missing
        ({"limit": "many"}, "limit"),  # not an integer
        ({"limit": "1", "strict": "perhaps"}, "strict"),
        ({"limit": "1", "on": "31/01/2026"}, "on"),
        ({"limit": "1", "colour": "blue"}, "colour"),  # not declared
    ],
)
async def test_bad_parameter_is_invalid_argument_naming_field(parameters: dict[str, str], field: str) -> None:
    error = await attest_error(
        "ok", request(KNOWN, "toy.check/v1", common_pb2.DOCUMENT_TYPE_DNI, **parameters)
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


async def test_invalid_document_is_invalid_argument() -> None:
    error = await attest_error("ok", request("12345678A"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "document_number" in (error.details() or "")
    error = await attest_error("ok", request(document_type=common_pb2.DOCUMENT_TYPE_UNSPECIFIED))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_adapter_invalid_query_is_invalid_argument_naming_field() -> None:
    error = await attest_error("invalid")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in (error.details() or "")


@pytest.mark.parametrize("behaviour", ["undeclared", "ill-typed", "missing", "not-a-mapping"])
async def test_bad_claims_are_internal_without_traceback(
    behaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="onceonly.providers.sdk"):
        error = await attest_error(behaviour)
    assert error.code() is grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert "invalid claims" in details
    assert "Traceback" not in details and "File " not in details
    assert "12000" not in details  # an undeclared value is never echoed
    assert any("invalid claims" in r.getMessage() for r in caplog.records)


async def test_adapter_crash_is_internal_and_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="onceonly.providers.sdk"):
        error = await attest_error("crash")
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "adapter failed"
    assert "Traceback" not in (error.debug_error_string() or "")
    assert "hunter2" not in (error.debug_error_string() or "")
    [record] = [r for r in caplog.records if r.getMessage() == "adapter failed"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_health_serving_then_not_serving_when_stop_begins() -> None:
    running = await start_provider(ToyAdapter(), tls=provider_tls(ToyAdapter()))
    async with broker_channel(running.target) as channel:
        health = health_stub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.ensure_future(running.stop(grace=2))
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await stopping


class AgencyWithASource(ToyAdapter):
    """An adapter over a system that can go down: its health says so."""

    def __init__(self) -> None:
        super().__init__()
        self.source_down: str | None = None
        self.raise_in_check = False

    async def health(self) -> str | None:
        if self.raise_in_check:
            raise ConnectionError("legacy system refused the connection")
        return self.source_down


async def test_health_follows_the_agencys_own_system() -> None:
    """The provider process being up is not enough: while the adapter says its source is down (or
    its check fails) the provider reports NOT_SERVING, and SERVING again once it is back."""
    adapter = AgencyWithASource()
    running = await start_provider(adapter, tls=provider_tls(adapter), health_check_s=0.05)
    try:
        async with broker_channel(running.target) as channel:
            health = health_stub(channel)

            async def until(wanted: int) -> None:
                for _ in range(200):  # at most 10 s
                    replies = [
                        await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                        for name in ("", SERVICE_NAME)
                    ]
                    if all(r.status == wanted for r in replies):
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"health never became {wanted}")

            await until(health_pb2.HealthCheckResponse.SERVING)
            adapter.source_down = "the registry database does not answer"
            await until(health_pb2.HealthCheckResponse.NOT_SERVING)
            adapter.source_down = None
            await until(health_pb2.HealthCheckResponse.SERVING)
            adapter.raise_in_check = True
            await until(health_pb2.HealthCheckResponse.NOT_SERVING)
    finally:
        await running.stop(grace=1)


async def test_reflection_lists_provider_service() -> None:
    async with serving(ToyAdapter()) as (_, channel):
        stub = reflection_stub(channel)
        call = stub.ServerReflectionInfo(timeout=5)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        reply = await call.read()
        await call.done_writing()
        call.cancel()
    names = {s.name for s in reply.list_services_response.service}
    assert SERVICE_NAME == "onceonly.v1.Provider"
    assert SERVICE_NAME in names


def test_servicer_rejects_duplicate_types_and_missing_identity() -> None:
    class Twice(ToyAdapter):
        def certificate_types(self) -> Sequence[CertificateTypeSupport]:
            return (*super().certificate_types(), *super().certificate_types())

    with pytest.raises(ValueError, match="twice"):
        ProviderServicer(Twice())

    class Nameless(ToyAdapter):
        provider_id = ""

    with pytest.raises(ValueError, match="provider_id"):
        ProviderServicer(Nameless())


def _details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """The ``ErrorInfo`` of a refusal and the fields its ``BadRequest`` names."""
    status = rpc_status.from_call(cast(Any, error))  # the stubs know only the sync Call
    assert status is not None, "the refusal carries no google.rpc.Status"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return info, fields


@pytest.mark.parametrize(
    ("behaviour", "req", "reason", "fields"),
    [
        ("invalid", None, "INVALID_ARGUMENT", ["parameters.limit"]),
        ("ok", request(colour="blue"), "INVALID_ARGUMENT", ["parameters.colour"]),
        ("ok", request("12345678A"), "INVALID_ARGUMENT", ["subject.document_number"]),
        ("ok", request(certificate_type_id="tax.compliance/v1"), "CERTIFICATE_TYPE_NOT_SERVED", [
            "certificate_type_id"
        ]),
        ("crash", None, "INTERNAL", []),
    ],
)  # fmt: skip
async def test_refusals_carry_error_info_as_the_brokers_do(
    behaviour: str, req: provider_pb2.AttestRequest | None, reason: str, fields: list[str]
) -> None:
    error = await attest_error(behaviour, req)
    info, named = _details(error)
    assert (info.domain, info.reason) == ("onceonly.v1", reason)
    assert named == fields


class LaterAgency(ToyAdapter):
    """Answers the first question later: ready once ``ready`` is set; collect says "not yet" until then."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.ready_at = datetime.now(UTC) + timedelta(hours=2)

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        raise Deferred(self.ready_at)

    async def collect(self, query: AttestQuery, ticket: str) -> Mapping[str, Any]:
        if not self.ready:
            raise Deferred(self.ready_at, ticket)
        return await ToyAdapter.attest(self, query)


async def test_a_deferred_answer_is_pending_then_collected_with_evidence_over_the_question() -> None:
    adapter = LaterAgency()
    async with serving(adapter) as (_, channel):
        stub = provider_pb2_grpc.ProviderStub(channel)
        pending = await stub.Attest(request(), timeout=5)
        assert pending.result == provider_pb2.AttestResponse.RESULT_PENDING
        assert pending.ticket and not pending.evidence and not pending.claims.fields
        assert abs(pending.ready_at.ToDatetime(tzinfo=UTC) - adapter.ready_at) < timedelta(milliseconds=1)

        again = await stub.Collect(provider_pb2.CollectRequest(ticket=pending.ticket), timeout=5)
        assert again.result == provider_pb2.AttestResponse.RESULT_PENDING and again.ticket == pending.ticket

        adapter.ready = True
        answer = await stub.Collect(provider_pb2.CollectRequest(ticket=pending.ticket), timeout=5)
        assert answer.result == provider_pb2.AttestResponse.RESULT_FOUND
        assert answer.claims["ok"] is True and "count" in answer.claims
        # Signed over the question first asked (request id, trace id, subject, parameters).
        signed = jwt.decode(answer.evidence, options={"verify_signature": False})
        assert (signed["request_id"], signed["trace_id"]) == ("req-1", "trace-1")

        with pytest.raises(grpc.aio.AioRpcError) as caught:  # answered: the ticket is spent
            await stub.Collect(provider_pb2.CollectRequest(ticket=pending.ticket), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "ask Attest again" in (caught.value.details() or "")


def test_a_deferral_needs_a_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Deferred(datetime(2026, 12, 8, 10, 0))


async def test_a_batch_answers_each_check_as_attest_would() -> None:
    """Each check of an AttestBatch gets Attest's own answer (with its evidence) or its refusal,
    in the order asked; one bad check does not spoil the others."""
    checks = [
        request(KNOWN),
        request(certificate_type_id="tax.compliance/v1"),
        request("12345678A"),
        request(UNKNOWN),
        request(KNOWN, limit="many"),
    ]
    async with serving(ToyAdapter()) as (_, channel):
        stub = provider_pb2_grpc.ProviderStub(channel)
        batch = await stub.AttestBatch(provider_pb2.AttestBatchRequest(checks=checks), timeout=5)
        alone = [await _attest_or_code(stub, check) for check in checks]
    kinds = [o.WhichOneof("outcome") for o in batch.outcomes]
    assert kinds == ["response", "error", "error", "response", "error"]
    assert [o.response.result for o in batch.outcomes if o.HasField("response")] == [FOUND, NOT_FOUND]
    assert [o.error.code for o in batch.outcomes if o.HasField("error")] == [
        grpc.StatusCode.NOT_FOUND.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    ]
    for outcome, single in zip(batch.outcomes, alone, strict=True):
        if outcome.HasField("response"):
            assert isinstance(single, provider_pb2.AttestResponse)
            assert (outcome.response.result, dict(outcome.response.claims)) == (
                single.result,
                dict(single.claims),
            )
            assert outcome.response.evidence and single.evidence  # signed, each
        else:
            assert outcome.error.code == single


async def _attest_or_code(stub: Any, check: provider_pb2.AttestRequest) -> Any:
    try:
        return await stub.Attest(check, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code().value[0]


async def test_a_batch_too_large_is_refused_whole() -> None:
    async with serving(ToyAdapter()) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await provider_pb2_grpc.ProviderStub(channel).AttestBatch(
                provider_pb2.AttestBatchRequest(checks=[request()] * 257), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 256" in (caught.value.details() or "")


async def test_a_crash_in_a_batch_is_that_checks_internal_error_and_is_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(ToyAdapter("crash")) as (_, channel):
        batch = await provider_pb2_grpc.ProviderStub(channel).AttestBatch(
            provider_pb2.AttestBatchRequest(checks=[request(UNKNOWN), request(KNOWN)]), timeout=5
        )
    assert batch.outcomes[0].response.result == NOT_FOUND
    assert batch.outcomes[1].error.code == grpc.StatusCode.INTERNAL.value[0]
    assert "hunter2" not in batch.outcomes[1].error.message
    assert "hunter2" in caplog.text  # logged where the operator can see it
