"""VerifyBulk: many subjects under one header, per-subject policy, tracing and resumption."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.consumers.client import (
    BrokerClient,
    Check,
    Consumer,
    Denied,
    InvalidArgument,
    LegalBasis,
    Purpose,
    Subject,
)
from onceonly.providers import synthetic
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from tests.conftest import (
    LAW,
    ORG,
    PROCEDURE,
    TAX_COMPLIANCE,
    UNEMPLOYMENT,
    UNIT,
    Platform,
    known_everywhere,
    rpc_failure,
)

HEADER: dict[str, Any] = {
    "consumer": Consumer(ORG, UNIT, "officer-17"),
    "purpose": Purpose(PROCEDURE, "Yearly re-check of benefit recipients", "REVIEW-2026"),
    "legal_basis": LegalBasis.law(LAW),
    "checks": [Check(TAX_COMPLIANCE), Check(UNEMPLOYMENT)],
}


def subjects(n: int, prefix: str = "b") -> list[tuple[str, Subject]]:
    residents = [r for r in synthetic.population() if known_everywhere(r)][:n]
    return [(f"{prefix}-{i}", Subject(r.document_type, r.document_number)) for i, r in enumerate(residents)]


async def test_every_subject_is_decided_and_traced_once(
    platform: Platform, broker: BrokerApp, client: BrokerClient
) -> None:
    batch = subjects(300)
    items = [item async for item in client.verify_bulk(**HEADER, subjects=batch, window=16)]

    assert sorted(i.request_id for i in items) == sorted(rid for rid, _ in batch)
    assert all(i.error is None and i.verification is not None for i in items)
    by_id = {i.request_id: i for i in items}
    for rid, subject in batch[:20]:
        r = next(x for x in synthetic.population() if x.document_number == subject.document_number)
        outcome = by_id[rid].verification.outcome(TAX_COMPLIANCE)  # type: ignore[union-attr]
        assert outcome.claims == {"compliant": r.tax_compliant}
        assert outcome.attestation
    assert len(platform.trace_rows()) == 300


async def test_policy_and_validation_apply_per_subject(
    platform: Platform, broker: BrokerApp, client: BrokerClient
) -> None:
    good = subjects(2)
    officer = good[0][1]
    header = {**HEADER, "consumer": Consumer(ORG, UNIT, "officer-17", officer_document=officer)}
    batch = [*good, ("bad-letter", Subject.dni("12345678A"))]

    items = {i.request_id: i async for i in client.verify_bulk(**header, subjects=batch)}

    assert isinstance(items[good[0][0]].error, Denied)
    assert items[good[0][0]].error.reason == "SELF_QUERY_FORBIDDEN"  # type: ignore[union-attr]
    assert items[good[1][0]].verification is not None
    bad = items["bad-letter"].error
    assert isinstance(bad, InvalidArgument)
    assert bad.field_violations[0][0] == "subject.document_number"
    # The denied subject is traced; the malformed one never reached policy.
    decisions = sorted(row["decision"] for row in platform.trace_rows())
    assert decisions == ["DENIED", "GRANTED"]


async def test_resending_the_same_ids_answers_from_the_ledger_without_new_traces(
    platform: Platform, broker: BrokerApp
) -> None:
    batch = subjects(50)
    first_client = platform.client(broker)
    # Disconnect part-way: stop reading after 20 results.
    first: dict[str, str] = {}
    async for item in first_client.verify_bulk(**HEADER, subjects=batch, window=8):
        assert item.verification is not None
        first[item.request_id] = item.verification.trace_id
        if len(first) == 20:
            break
    await first_client.close()

    # A new broker process on the same database: nothing is remembered in memory.
    await broker.stop(0)
    restarted = await platform.start_broker()
    second = {
        i.request_id: i.verification.trace_id  # type: ignore[union-attr]
        async for i in platform.client(restarted).verify_bulk(**HEADER, subjects=batch, window=8)
    }

    assert set(second) == {rid for rid, _ in batch}
    assert all(second[rid] == trace for rid, trace in first.items())
    rows = platform.trace_rows()
    assert len(rows) == len({row["request_id"] for row in rows}) == len(batch)


async def test_a_stream_without_a_header_is_refused(platform: Platform, broker: BrokerApp) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target))

    async def only_subjects():
        yield broker_pb2.BulkVerifyRequest(
            subject=broker_pb2.BulkSubject(
                request_id="x",
                subject=common_pb2.Subject(
                    document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number="12345678Z"
                ),
            )
        )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.VerifyBulk(only_subjects()):
            pass
    failure = rpc_failure(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["header"]


async def test_a_bad_header_is_refused_before_any_subject(platform: Platform, broker: BrokerApp) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target))
    header = broker_pb2.BulkHeader(
        consumer=common_pb2.Consumer(organization_id=ORG, unit=UNIT, officer_id="o"),
        purpose=common_pb2.Purpose(procedure_code=PROCEDURE, purpose_text="", case_file_id="c"),
        legal_basis=common_pb2.LegalBasis(kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference=LAW),
        checks=[broker_pb2.Check(certificate_type_id=TAX_COMPLIANCE)],
    )

    async def requests():
        yield broker_pb2.BulkVerifyRequest(header=header)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.VerifyBulk(requests()):
            pass
    failure = rpc_failure(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["header.purpose.purpose_text"]
    assert platform.trace_rows() == []
