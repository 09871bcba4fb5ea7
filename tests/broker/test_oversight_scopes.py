"""What agency staff may read of the trace ledger: a provider's administrators the traces of their
own data, a consumer's administrators their own organisation's requests — never anyone else's."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.v1 import oversight_pb2, oversight_pb2_grpc
from tests.broker.test_auth import failure_of
from tests.conftest import ORG, Platform, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
BARCELONA = "L08019030"


def reader(platform: Platform, app: BrokerApp, name: str, role: str, org: str) -> Any:
    return oversight_pb2_grpc.OversightStub(
        platform.channel(app.target, tls=platform.pki.issue(name, role=role, org=org))
    )


async def test_each_administrator_reads_only_its_own_traces(platform: Platform, broker: BrokerApp) -> None:
    await platform.stub(broker).Verify(verify_request(), timeout=10)  # Madrid: registry, tax, employment
    barcelona = platform.stub(broker)
    with pytest.raises(grpc.aio.AioRpcError):  # denied (the tax agency's veto), and traced
        await barcelona.Verify(
            verify_request(organization_id=BARCELONA, checks=(("tax.compliance/v1", {}),)), timeout=10
        )

    madrid = reader(platform, broker, "housing-admin", "consumer-admin", ORG)
    own = await madrid.ListTraces(oversight_pb2.ListTracesRequest(), timeout=5)
    assert [t.consumer.organization_id for t in own.traces] == [ORG]
    other = await failure_of(
        madrid.ListTraces(
            oversight_pb2.ListTracesRequest(
                filter=oversight_pb2.TraceFilter(consumer_organization_id=BARCELONA)
            ),
            timeout=5,
        )
    )
    assert other.info is not None and other.info.reason == "CONSUMER_OWN_DATA_ONLY"
    usage = await failure_of(madrid.GetUsage(oversight_pb2.GetUsageRequest(), timeout=5))
    assert usage.info is not None and usage.info.reason == "OVERSIGHT_ONLY"

    registry = reader(platform, broker, "registry-admin", "provider-admin", "registry")
    seen = await registry.ListTraces(oversight_pb2.ListTracesRequest(), timeout=5)
    assert [t.consumer.organization_id for t in seen.traces] == [ORG], (
        "Barcelona's request reached no registry"
    )
    assert {c.provider_id for t in seen.traces for c in t.checks} == {"registry"}, "only its own checks"
    report = await failure_of(registry.GetWitnessedHeads(oversight_pb2.GetWitnessedHeadsRequest(), timeout=5))
    assert report.info is not None and report.info.reason == "OVERSIGHT_ONLY"
