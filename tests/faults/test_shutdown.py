"""Graceful shutdown under load: in-flight calls finish or fail cleanly, none hang.

(The same through SIGTERM on a broker process is in test_process.py.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.providers import synthetic
from onceonly.providers.reference import reference_adapter
from onceonly.v1 import broker_pb2
from tests.conftest import GatedAdapter, Platform, known_everywhere, verify_request

pytestmark = pytest.mark.faults

PEOPLE = [r for r in synthetic.population() if known_everywhere(r)][:10]


async def start(platform: Platform) -> tuple[GatedAdapter, BrokerApp, list[asyncio.Future[Any]]]:
    """A broker with ten calls in flight, all waiting on the tax agency's gate."""
    gated = GatedAdapter(reference_adapter("tax"))
    await platform.start_reference_providers(tax=gated)
    app = await platform.start_broker(provider_timeout_ms=20_000)
    stub = platform.stub(app)
    calls: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(stub.Verify(verify_request(p), timeout=30)) for p in PEOPLE
    ]
    await asyncio.wait_for(gated.entered.wait(), 10)
    await asyncio.sleep(0.2)  # let every call reach the gate
    return gated, app, calls


async def outcomes(calls: list[asyncio.Future[Any]]) -> list[object]:
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)


async def test_in_flight_calls_finish_within_the_grace_period(platform: Platform) -> None:
    gated, app, calls = await start(platform)
    stopping = asyncio.create_task(app.stop(grace=3.0))
    await asyncio.sleep(0.2)
    # No new work is taken once shutdown began...
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await platform.stub(app).Verify(verify_request(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # ...but the calls already in flight complete, answered and traced.
    gated.gate.set()
    results = await outcomes(calls)
    await asyncio.wait_for(stopping, 10)
    assert all(isinstance(r, broker_pb2.VerifyResponse) for r in results), results
    traced = {row["trace_id"] for row in platform.trace_rows()}
    assert {r.trace_id for r in results if isinstance(r, broker_pb2.VerifyResponse)} <= traced


async def test_calls_still_in_flight_after_the_grace_period_fail_cleanly(platform: Platform) -> None:
    _, app, calls = await start(platform)
    started = time.monotonic()
    await asyncio.wait_for(app.stop(grace=0.5), 10)
    results = await outcomes(calls)
    assert time.monotonic() - started < 5  # the grace period and a margin: nothing hangs
    for r in results:
        assert isinstance(r, grpc.aio.AioRpcError), r
        assert r.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), r
