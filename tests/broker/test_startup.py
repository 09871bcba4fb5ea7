"""Broker start and stop: catalog cross-check, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from onceonly.broker.app import BrokerApp, start_broker
from onceonly.broker.config import BrokerConfig
from onceonly.broker.errors import CatalogError
from onceonly.fields import FieldSpec, FieldType
from onceonly.providers.reference import reference_adapter
from onceonly.v1 import broker_pb2, broker_pb2_grpc
from tests.conftest import (
    HOUSING_CHECKS,
    TAX_COMPLIANCE,
    GatedAdapter,
    Platform,
    WrappedAdapter,
    health_stub,
    reflection_stub,
    verify_request,
)

BROKER_SERVICE = "onceonly.v1.Broker"


class _DriftedTaxAgency(WrappedAdapter):
    """Says tax compliance attests a debt figure as well: not what the catalog declares."""

    def certificate_types(self):
        out = []
        for support in self.inner.certificate_types():
            if support.certificate_type_id == TAX_COMPLIANCE:
                support = dataclasses.replace(
                    support, claims=(*support.claims, FieldSpec("debt_eur", FieldType.INTEGER))
                )
            out.append(support)
        return tuple(out)


async def test_a_provider_disagreeing_with_the_catalog_stops_the_start(platform: Platform) -> None:
    await platform.start_reference_providers(tax=_DriftedTaxAgency(reference_adapter("tax")))

    with pytest.raises(CatalogError) as caught:
        await platform.start_broker()

    message = str(caught.value)
    assert TAX_COMPLIANCE in message
    assert "debt_eur" in message
    assert "registry" not in message  # the providers that agree are not blamed


async def test_health_is_serving_and_reflection_lists_the_broker(
    platform: Platform, broker: BrokerApp
) -> None:
    channel = platform.channel(broker.target)
    health = health_stub(channel)
    for service in ("", BROKER_SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_stub(channel)
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    response = await call.read()
    call.cancel()
    services = {s.name for s in response.list_services_response.service}
    assert BROKER_SERVICE in services
    assert "grpc.health.v1.Health" in services


async def test_graceful_stop_reports_not_serving_and_finishes_in_flight_calls(platform: Platform) -> None:
    gated = GatedAdapter(reference_adapter("tax"))
    await platform.start_reference_providers(tax=gated)
    app = await platform.start_broker(provider_timeout_ms=5000)
    channel = platform.channel(app.target)
    stub = broker_pb2_grpc.BrokerStub(channel)
    request = verify_request(request_id="req-in-flight", checks=HOUSING_CHECKS[:2])

    in_flight = asyncio.ensure_future(stub.Verify(request, timeout=10))
    await asyncio.wait_for(gated.entered.wait(), timeout=5)
    watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=BROKER_SERVICE))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

    stopping = asyncio.ensure_future(app.stop(grace=5))
    update = await asyncio.wait_for(watch.read(), timeout=5)
    watch.cancel()

    assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert not in_flight.done()
    gated.gate.set()
    reply = await asyncio.wait_for(in_flight, timeout=5)
    await asyncio.wait_for(stopping, timeout=5)

    assert [o.status for o in reply.outcomes] == [broker_pb2.CHECK_STATUS_VERIFIED] * 2
    (row,) = platform.trace_rows(request_id="req-in-flight")
    assert row["trace_id"] == reply.trace_id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Verify(verify_request(), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_commit_window_out_of_range_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    config = BrokerConfig(
        var_dir=tmp_path / "var", insecure=True, listen="127.0.0.1:0", ledger_commit_window_ms=500
    )
    with pytest.raises(
        ValueError, match="ONCEONLY_LEDGER_COMMIT_WINDOW_MS must be between 0 and 100, got 500"
    ):
        await start_broker(config)
    assert not (tmp_path / "var").exists()
