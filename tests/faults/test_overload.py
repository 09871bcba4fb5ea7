"""Overload beyond capacity: the excess is refused at once, admitted calls finish, then recovery.

A provider held at a gate (or slowed) keeps calls in flight; everything beyond
``max_in_flight`` must end quickly with ``RESOURCE_EXHAUSTED`` (``ErrorInfo`` reason
``OVERLOADED``, a ``RetryInfo``), leave no trace (nothing was decided), and once the load
drops new calls must succeed with nothing reset by hand. Latency bounds here are generous
behavioural bounds ("answered, not queued"), not benchmarks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from onceonly.broker.app import BrokerApp
from onceonly.providers import synthetic
from onceonly.providers.reference import reference_adapter
from onceonly.v1 import broker_pb2, broker_pb2_grpc
from tests.conftest import (
    HOUSING_CHECKS,
    GatedAdapter,
    Platform,
    SlowAdapter,
    known_everywhere,
    rpc_failure,
    verify_request,
)

pytestmark = pytest.mark.faults

PEOPLE = [r for r in synthetic.population() if known_everywhere(r)][:64]
REFUSAL_BOUND_S = 1.0


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def assert_overloaded(exc: grpc.aio.AioRpcError, retry_ms: int) -> None:
    failure = rpc_failure(exc)
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED, failure
    assert failure.info is not None and failure.info.reason == "OVERLOADED"
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR))
    assert retry.retry_delay.ToMilliseconds() == retry_ms


async def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        result = await call
    except grpc.aio.AioRpcError as exc:
        result = exc
    return result, time.perf_counter() - started


def bulk_requests(
    template: broker_pb2.VerifyRequest, n: int, prefix: str, hold: asyncio.Event | None = None
) -> Callable[[], AsyncIterator[broker_pb2.BulkVerifyRequest]]:
    """A bulk stream of ``n`` subjects; with ``hold``, the subjects wait until it is set."""
    header = broker_pb2.BulkHeader(
        consumer=template.consumer,
        purpose=template.purpose,
        legal_basis=template.legal_basis,
        checks=template.checks,
    )
    subjects = [verify_request(PEOPLE[i % len(PEOPLE)]).subject for i in range(n)]

    async def requests() -> AsyncIterator[broker_pb2.BulkVerifyRequest]:
        yield broker_pb2.BulkVerifyRequest(header=header)
        if hold is not None:
            await hold.wait()
        for i, subject in enumerate(subjects):
            yield broker_pb2.BulkVerifyRequest(
                subject=broker_pb2.BulkSubject(request_id=f"{prefix}-{i}", subject=subject)
            )

    return requests


async def gated_broker(platform: Platform, **changes: Any) -> tuple[GatedAdapter, BrokerApp]:
    gated = GatedAdapter(reference_adapter("tax"))
    await platform.start_reference_providers(tax=gated)
    app = await platform.start_broker(
        **{"max_in_flight": 8, "provider_timeout_ms": 20_000, "overload_retry_ms": 150, **changes}
    )
    return gated, app


async def test_calls_beyond_capacity_are_refused_fast_and_the_broker_recovers(platform: Platform) -> None:
    gated, app = await gated_broker(platform)
    assert app.admission is not None
    stub = platform.stub(app)
    admitted = [asyncio.ensure_future(stub.Verify(verify_request(p), timeout=30)) for p in PEOPLE[:8]]
    await until(lambda: app.admission is not None and app.admission.in_flight == 8)

    excess = await asyncio.gather(*(timed(stub.Verify(verify_request(p), timeout=10)) for p in PEOPLE[:40]))
    for result, elapsed in excess:
        assert isinstance(result, grpc.aio.AioRpcError)
        assert_overloaded(result, 150)
        assert elapsed < REFUSAL_BOUND_S
    assert app.admission.rejected == 40
    assert platform.trace_rows() == []  # refused calls were not decided, so not traced

    # The load drops: the admitted calls finish, and new calls are admitted again.
    gated.gate.set()
    replies = await asyncio.wait_for(asyncio.gather(*admitted), 10)
    assert all(
        r.outcomes and all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in r.outcomes) for r in replies
    )
    assert app.admission.in_flight == 0
    again = await asyncio.gather(*(stub.Verify(verify_request(p), timeout=10) for p in PEOPLE[8:16]))
    assert len(again) == 8 and len(platform.trace_rows()) == 16
    assert app.admission.peak == 8


async def test_a_burst_against_a_slow_provider_keeps_admitted_latency_bounded(platform: Platform) -> None:
    # Slow enough that the whole burst arrives while the first calls are still in flight.
    await platform.start_reference_providers(tax=SlowAdapter(reference_adapter("tax"), delay_s=0.6))
    app = await platform.start_broker(max_in_flight=10)
    stub = platform.stub(app)
    results = await asyncio.gather(*(timed(stub.Verify(verify_request(p), timeout=10)) for p in PEOPLE[:60]))
    ok = [t for r, t in results if isinstance(r, broker_pb2.VerifyResponse)]
    refused = [t for r, t in results if isinstance(r, grpc.aio.AioRpcError)]
    for r, _ in results:
        if isinstance(r, grpc.aio.AioRpcError):
            assert_overloaded(r, 200)
    assert 1 <= len(ok) <= 10 and len(ok) + len(refused) == 60
    assert max(ok) < 2.5  # admitted calls take about the provider's 0.6 s, not a queue's worth
    assert max(refused) < REFUSAL_BOUND_S
    assert len(platform.trace_rows()) == len(ok)
    # Recovery: as soon as the burst is over, calls go through.
    assert isinstance(await stub.Verify(verify_request(), timeout=10), broker_pb2.VerifyResponse)


async def test_bulk_subjects_count_against_capacity(platform: Platform) -> None:
    # One organisation may fill the broker here (share 1.0): the point is the count, not fairness.
    gated, app = await gated_broker(platform, max_in_flight=4, bulk_org_share=1.0)
    assert app.admission is not None
    stub = broker_pb2_grpc.BrokerStub(platform.channel(app.target))
    requests = bulk_requests(verify_request(), 10, "bulk-cap")

    async def run_bulk() -> list[broker_pb2.BulkVerifyResult]:
        return [r async for r in stub.VerifyBulk(requests(), timeout=30)]

    bulk = asyncio.create_task(run_bulk())
    await until(lambda: app.admission is not None and app.admission.in_flight == 4)
    result, _ = await timed(stub.Verify(verify_request(), timeout=10))
    assert isinstance(result, grpc.aio.AioRpcError)
    assert_overloaded(result, 150)
    # A second stream is refused outright while there is no room. (Its subjects are held back
    # until the refusal arrived: a grpc.aio client still writing when a server ends the call
    # reports INTERNAL instead of the server's status, grpc/grpc#36066.)
    hold = asyncio.Event()
    held = bulk_requests(verify_request(), 3, "bulk-refused", hold)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.VerifyBulk(held(), timeout=10):
                pass
    finally:
        hold.set()
    assert_overloaded(caught.value, 150)

    gated.gate.set()
    results = await asyncio.wait_for(bulk, 15)
    assert sorted(r.request_id for r in results) == sorted(f"bulk-cap-{i}" for i in range(10))
    assert all(r.HasField("response") for r in results)
    await until(lambda: app.admission is not None and app.admission.in_flight == 0)
    assert app.admission.peak == 4


async def test_a_bulk_stream_waiting_too_long_for_capacity_ends_and_frees_everything(
    platform: Platform,
) -> None:
    gated, app = await gated_broker(platform, max_in_flight=4, bulk_admission_wait_ms=300)
    assert app.admission is not None
    stub = broker_pb2_grpc.BrokerStub(platform.channel(app.target))
    requests = bulk_requests(verify_request(), 10, "bulk-wait")

    started = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.VerifyBulk(requests(), timeout=30):
            pass
    assert time.perf_counter() - started < 5
    assert_overloaded(caught.value, 150)
    await until(lambda: app.admission is not None and app.admission.in_flight == 0)

    gated.gate.set()
    reply = await stub.Verify(verify_request(), timeout=10)
    assert reply.trace_id


OTHER_ORG = "L08019030"  # Barcelona, a consumer of its own
BARCELONA_LAW = "Ley 39/2015 art. 28"


async def test_a_stream_that_never_reads_cannot_lock_others_out(platform: Platform) -> None:
    """The audit's attack: one ``VerifyBulk`` stream sends many subjects and never reads a result.
    Units are held until a result is on the wire, a bulk stream holds at most its organisation's
    share of capacity (default half), and a stream whose client stops reading for
    ``bulk_admission_wait_ms`` ends ``RESOURCE_EXHAUSTED``, freeing all it held. Meanwhile
    another organisation keeps being served."""
    await platform.start_reference_providers()
    app = await platform.start_broker(max_in_flight=8, bulk_admission_wait_ms=1000, overload_retry_ms=150)
    assert app.admission is not None
    # A client whose receive window stays small (no BDP probing): the broker's writes block soon.
    channel = grpc.aio.secure_channel(
        app.target, platform.pki.consumer().channel_credentials(), options=[("grpc.http2.bdp_probe", 0)]
    )
    stalled = broker_pb2_grpc.BrokerStub(channel).VerifyBulk(
        bulk_requests(verify_request(), 400, "never-read")(), timeout=60
    )
    other = platform.stub(app)
    served = refused = 0
    deadline = time.monotonic() + 4.0
    try:
        while time.monotonic() < deadline:
            request = verify_request(organization_id=OTHER_ORG, checks=HOUSING_CHECKS[:1], law=BARCELONA_LAW)
            result, _ = await timed(other.Verify(request, timeout=10))
            if isinstance(result, grpc.aio.AioRpcError):
                assert result.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, rpc_failure(result)
                refused += 1
            else:
                served += 1
            await asyncio.sleep(0.02)
        assert refused == 0 and served > 10, (served, refused)
        assert app.admission.peak <= 8
        # The stalled stream ended and freed everything it held.
        await until(lambda: app.admission is not None and app.admission.in_flight == 0, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in stalled:
                pass
        assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        stalled.cancel()
        await channel.close()
