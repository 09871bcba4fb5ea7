"""Checks for one provider that the broker asks together leave in one AttestBatch call.

Observed at the providers: their servicers are wrapped to count the calls they serve (and what
each carried); everything else runs as in production, over mutual TLS.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.broker.domain import LegalBasisKind, SubjectId
from onceonly.broker.providers import (
    GrpcProviderClient,
    ProviderError,
    ProviderQuery,
    ProviderTimeout,
)
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import ProviderServicer
from onceonly.v1 import broker_pb2
from tests.conftest import (
    HOUSING_CHECKS,
    GatedAdapter,
    Platform,
    SlowAdapter,
    resident,
    session_pki,
    verify_request,
)

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls the providers served: ``Attest``, ``AttestBatch`` and the checks batches carried."""
    counts: Counter[str] = Counter()
    attest, batch = ProviderServicer.Attest, ProviderServicer.AttestBatch

    async def counting_attest(self: ProviderServicer, request: Any, context: Any) -> Any:
        counts["Attest"] += 1
        return await attest(self, request, context)

    async def counting_batch(self: ProviderServicer, request: Any, context: Any) -> Any:
        counts["AttestBatch"] += 1
        counts["batched checks"] += len(request.checks)
        return await batch(self, request, context)

    monkeypatch.setattr(ProviderServicer, "Attest", counting_attest)
    monkeypatch.setattr(ProviderServicer, "AttestBatch", counting_batch)
    return counts


async def _verify_many(
    platform: Platform, n: int, **broker: Any
) -> tuple[BrokerApp, list[broker_pb2.VerifyResponse]]:
    await platform.start_reference_providers()
    app = await platform.start_broker(**broker)
    stub = platform.stub(app)
    requests = [verify_request(request_id=f"batch-{i}") for i in range(n)]
    return app, list(await asyncio.gather(*(stub.Verify(r, timeout=10) for r in requests)))


async def test_concurrent_requests_share_calls_and_every_check_is_asked_once(
    platform: Platform, served: Counter[str]
) -> None:
    _, replies = await _verify_many(platform, 32)
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for r in replies for o in r.outcomes)
    asked = 32 * len(HOUSING_CHECKS)
    assert served["Attest"] + served["batched checks"] == asked
    assert served["AttestBatch"] > 0
    assert served["Attest"] + served["AttestBatch"] < asked  # fewer calls than checks
    assert len(platform.trace_rows()) == 32


async def test_batching_off_asks_each_check_alone(platform: Platform, served: Counter[str]) -> None:
    _, replies = await _verify_many(platform, 16, provider_batch=1)
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for r in replies for o in r.outcomes)
    assert served == Counter({"Attest": 16 * len(HOUSING_CHECKS)})


async def test_a_provider_without_batches_is_asked_one_check_at_a_time(
    platform: Platform, served: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unimplemented(self: ProviderServicer, request: Any, context: Any) -> Any:
        served["AttestBatch refused"] += 1
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    monkeypatch.setattr(ProviderServicer, "AttestBatch", unimplemented)
    app, first = await _verify_many(platform, 16)
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for r in first for o in r.outcomes)
    refused = served["AttestBatch refused"]
    assert refused >= 1  # by the batches in flight when each provider first said so
    alone = served["Attest"]
    stub = platform.stub(app)
    again = await asyncio.gather(
        *(stub.Verify(verify_request(request_id=f"more-{i}"), timeout=10) for i in range(16))
    )
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for r in again for o in r.outcomes)
    assert served["AttestBatch refused"] == refused  # learnt: one check at a time from then on
    assert served["Attest"] - alone == 16 * len(HOUSING_CHECKS)


def _query(request_id: str, number: str, **parameters: str) -> ProviderQuery:
    return ProviderQuery(
        request_id=request_id,
        trace_id="t" * 32,
        certificate_type_id="tax.income-below-threshold/v1",
        subject=SubjectId("DNI", number),  # type: ignore[arg-type]
        parameters=parameters or {"threshold_eur": "20000"},
        consumer_organization_id="L01280796",
        procedure_code="HOUSING-RENT-SUBSIDY",
        legal_basis_kind=LegalBasisKind.LAW,
    )


async def test_each_check_of_a_batch_gets_its_own_answer_refusal_or_timeout(
    platform: Platform, served: Counter[str]
) -> None:
    tax = await platform.start_provider(reference_adapter("tax"))
    client = GrpcProviderClient("tax", tax.target, tls=session_pki().broker)
    try:
        someone = resident()
        answers = await asyncio.gather(
            client.attest(_query("q-1", someone.document_number), 5),
            client.attest(_query("q-2", someone.document_number, threshold_eur="lots"), 5),
            client.attest(_query("q-3", "00000000T"), 5),
            return_exceptions=True,
        )
    finally:
        await client.close()
    assert served["AttestBatch"] == 1 and served["batched checks"] == 3
    found, refused, unknown = answers
    assert not isinstance(found, BaseException) and found.found and found.evidence
    assert isinstance(refused, ProviderError) and not refused.provider_fault
    assert "threshold_eur" in str(refused)
    assert not isinstance(unknown, BaseException) and not unknown.found and unknown.evidence


async def test_a_check_past_its_deadline_times_out_alone(platform: Platform) -> None:
    slow = await platform.start_provider(SlowAdapter(reference_adapter("tax"), 0.5))
    client = GrpcProviderClient("tax", slow.target, tls=session_pki().broker)
    try:
        someone = resident()
        hurried, patient = await asyncio.gather(
            client.attest(_query("q-1", someone.document_number), 0.1),
            client.attest(_query("q-2", someone.document_number), 5),
            return_exceptions=True,
        )
    finally:
        await client.close()
    assert isinstance(hurried, ProviderTimeout)
    assert not isinstance(patient, BaseException) and patient.found


async def test_checks_asked_while_the_calls_are_full_wait_and_leave_together(
    platform: Platform, served: Counter[str]
) -> None:
    gated = GatedAdapter(reference_adapter("tax"))
    tax = await platform.start_provider(gated)
    client = GrpcProviderClient("tax", tax.target, tls=session_pki().broker, calls_in_flight=1)
    try:
        someone = resident()
        first = asyncio.create_task(client.attest(_query("q-0", someone.document_number), 10))
        await asyncio.wait_for(gated.entered.wait(), 10)  # the one call allowed is under way
        rest = [
            asyncio.create_task(client.attest(_query(f"q-{i}", someone.document_number), 10))
            for i in range(1, 6)
        ]
        await asyncio.sleep(0.2)
        assert served == Counter({"Attest": 1})  # the others wait for it
        gated.gate.set()
        answers = await asyncio.gather(first, *rest)
    finally:
        await client.close()
    assert all(a.found and a.evidence for a in answers)
    assert served == Counter({"Attest": 1, "AttestBatch": 1, "batched checks": 5})
