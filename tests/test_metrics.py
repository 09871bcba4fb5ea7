"""OpenTelemetry metrics: requests by decision and reason, checks by provider and status, ledger
commits, and a Prometheus endpoint — recorded by a real broker, read back through the SDK."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from onceonly import metrics
from onceonly.broker.app import BrokerApp
from tests.conftest import Platform, free_port, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    found = InMemoryMetricReader()
    metrics.use_meter_provider(MeterProvider(metric_readers=[found]))
    try:
        yield found
    finally:
        metrics.disable()
        metrics.observe_breakers(None)


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


async def test_a_broker_counts_what_it_decides(
    platform: Platform, broker: BrokerApp, reader: InMemoryMetricReader
) -> None:
    stub = platform.stub(broker)
    for _ in range(2):
        await stub.Verify(verify_request(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Verify(verify_request(law="Ley 99/2099 art. 1"), timeout=10)
    metrics.observe_breakers(lambda: {"tax": False, "registry": True})

    seen = points(reader)
    requests = {
        (p.attributes["decision"], p.attributes["reason"]): p.value for p in seen["onceonly.requests"]
    }
    assert requests == {("GRANTED", "-"): 2, ("DENIED", "LEGAL_REFERENCE_NOT_IN_AGREEMENT"): 1}
    checks = {(p.attributes["provider"], p.attributes["status"]): p.value for p in seen["onceonly.checks"]}
    assert checks[("tax", "VERIFIED")] == 4 and checks[("registry", "VERIFIED")] == 2
    assert sum(p.count for p in seen["onceonly.ledger.batch_size"]) >= 1
    assert sum(p.sum for p in seen["onceonly.ledger.batch_size"]) >= 3, "every trace went through a commit"
    assert sum(p.count for p in seen["onceonly.request.duration"]) == 3
    assert {p.attributes["provider"]: p.value for p in seen["onceonly.breaker.open"]} == {
        "tax": 0,
        "registry": 1,
    }
    assert not any(
        "document" in str(p.attributes) or "subject" in str(p.attributes) for ps in seen.values() for p in ps
    )


def test_an_unknown_exporter_is_named() -> None:
    with pytest.raises(ValueError, match="unknown exporter 'carrier-pigeon'"):
        metrics.configure_metrics("onceonly-test", {"OTEL_METRICS_EXPORTER": "carrier-pigeon"})
    assert not metrics.configure_metrics("onceonly-test", {})
    assert not metrics.enabled()


def test_a_prometheus_endpoint_serves_the_metrics() -> None:
    port = free_port()
    env = {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    try:
        assert metrics.configure_metrics("onceonly-test", env)
        metrics.request("GRANTED", "", 12.0)
        metrics.check("tax", "VERIFIED", 3.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.disable()
    assert re.search(r'^onceonly_requests_total\{decision="GRANTED",[^}]*reason="-"\} 1\.0$', text, re.M)
    assert re.search(r'^onceonly_checks_total\{[^}]*provider="tax",status="VERIFIED"\} 1\.0$', text, re.M)
