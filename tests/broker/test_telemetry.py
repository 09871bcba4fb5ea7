"""OpenTelemetry spans: purpose attributes for operators, never a document number."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from onceonly import telemetry
from onceonly.broker.app import BrokerApp
from onceonly.consumers.client import BrokerClient, Denied, Purpose
from tests.conftest import LAW, ORG, PROCEDURE, resident, verify_kwargs


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        telemetry.disable()
        provider.shutdown()


async def test_a_verification_has_request_policy_provider_and_ledger_spans(
    spans: InMemorySpanExporter, broker: BrokerApp, client: BrokerClient
) -> None:
    r = resident()
    result = await client.verify(**verify_kwargs(r))

    finished = {s.name: s for s in spans.get_finished_spans()}
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("onceonly.provider.attest") == 4
    assert {"onceonly.verify", "onceonly.policy", "onceonly.ledger.append"} <= set(finished)
    root = finished["onceonly.verify"]
    assert root.attributes is not None
    assert root.attributes["onceonly.procedure_code"] == PROCEDURE
    assert root.attributes["onceonly.legal_basis"] == "LAW"
    assert root.attributes["onceonly.legal_reference"] == LAW
    assert root.attributes["onceonly.consumer"] == ORG
    assert root.attributes["onceonly.trace_id"] == result.trace_id
    assert root.attributes["onceonly.decision"] == "GRANTED"
    # Every child hangs off the request span.
    for span in spans.get_finished_spans():
        if span is not root:
            assert span.context.trace_id == root.context.trace_id
    attests = [s for s in spans.get_finished_spans() if s.name == "onceonly.provider.attest"]
    assert {s.attributes["onceonly.provider"] for s in attests if s.attributes} == {
        "registry",
        "tax",
        "employment",
    }
    # Nothing about whom: no document number, no attested value in any attribute.
    text = repr([dict(s.attributes or {}) for s in spans.get_finished_spans()])
    assert r.document_number not in text
    assert "registered_unemployed" not in text and "below_threshold" not in text


async def test_a_denial_is_tagged_with_its_reason(
    spans: InMemorySpanExporter, broker: BrokerApp, client: BrokerClient
) -> None:
    with pytest.raises(Denied):
        await client.verify(**verify_kwargs(purpose=Purpose("PARKING-PERMIT", "Parking permit", "EXP-1")))
    root = next(s for s in spans.get_finished_spans() if s.name == "onceonly.verify")
    assert root.attributes is not None
    assert root.attributes["onceonly.decision"] == "DENIED"
    assert root.attributes["onceonly.denial_reason"] == "PROCEDURE_NOT_AUTHORISED"


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert telemetry.configure_tracing("onceonly-test", env={}) is False
    assert telemetry.enabled() is False
    with pytest.raises(ValueError, match="unknown exporter 'carrier-pigeon'"):
        telemetry.configure_tracing("onceonly-test", env={"OTEL_TRACES_EXPORTER": "carrier-pigeon"})


async def test_trace_context_reaches_the_providers(
    spans: InMemorySpanExporter, broker: BrokerApp, client: BrokerClient
) -> None:
    await client.verify(**verify_kwargs())

    finished = spans.get_finished_spans()
    calls = {s.context.span_id: s for s in finished if s.name == "onceonly.provider.attest"}
    served = [s for s in finished if s.name == "onceonly.provider.serve"]
    assert len(served) == 4
    for span in served:
        # Each provider-side span is a child of the broker's call to that provider, in the same trace.
        assert span.parent is not None and span.parent.span_id in calls
        parent = calls[span.parent.span_id]
        assert span.context.trace_id == parent.context.trace_id
        assert span.attributes is not None and parent.attributes is not None
        assert span.attributes["onceonly.provider"] == parent.attributes["onceonly.provider"]
        assert span.attributes["onceonly.procedure_code"] == PROCEDURE
