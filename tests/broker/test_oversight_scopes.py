"""What agency staff may read of the trace ledger: a provider's administrators the traces of their
own data, a consumer's administrators their own organisation's requests — never anyone else's."""

from __future__ import annotations

import datetime as dt
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


async def test_usage_facts_by_role_and_as_open_data(platform: Platform, broker: BrokerApp) -> None:
    stub = platform.stub(broker)
    for _ in range(10):
        await stub.Verify(verify_request(), timeout=10)  # Madrid: registry, tax, employment checks
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Verify(
            verify_request(organization_id=BARCELONA, checks=(("tax.compliance/v1", {}),)), timeout=10
        )
    D = oversight_pb2
    by_consumer = D.QueryUsageRequest(group_by=[D.USAGE_DIMENSION_CONSUMER, D.USAGE_DIMENSION_OUTCOME])

    def rows(reply: Any) -> dict[tuple[str, ...], tuple[int, int, bool]]:
        return {tuple(f.dimensions): (f.checks, f.requests, f.suppressed) for f in reply.facts}

    oversight = reader(platform, broker, "oversight", "oversight", "AEPD")
    everything = rows(await oversight.QueryUsage(by_consumer, timeout=10))
    assert everything[(ORG, "VERIFIED")][0] + everything.get((ORG, "NOT_VERIFIED"), (0,))[0] >= 30
    assert everything[(BARCELONA, "DENIED")] == (1, 1, False)

    tax = rows(
        await reader(platform, broker, "tax-admin", "provider-admin", "tax").QueryUsage(
            by_consumer, timeout=10
        )
    )
    assert {k[0] for k in tax} == {ORG} and sum(c for c, _, _ in tax.values()) == 20, (
        "its own 2 checks of each of 10 requests"
    )
    assert all(r == 0 for _, r, _ in tax.values()), "no request counts in a provider's view"
    other = await failure_of(
        reader(platform, broker, "tax-admin", "provider-admin", "tax").QueryUsage(
            D.QueryUsageRequest(provider_id="registry"), timeout=10
        )
    )
    assert other.info is not None and other.info.reason == "PROVIDER_OWN_DATA_ONLY"

    madrid = reader(platform, broker, "housing-admin", "consumer-admin", ORG)
    own = rows(await madrid.QueryUsage(by_consumer, timeout=10))
    assert {k[0] for k in own} == {ORG}
    refused = await failure_of(
        madrid.QueryUsage(D.QueryUsageRequest(consumer_organization_id=BARCELONA), timeout=10)
    )
    assert refused.info is not None and refused.info.reason == "CONSUMER_OWN_DATA_ONLY"

    app = reader(platform, broker, f"consumer-{ORG}", "consumer", ORG)  # an application, not a person
    assert (await failure_of(app.QueryUsage(by_consumer, timeout=10))).info.reason == "OVERSIGHT_ONLY"  # type: ignore[union-attr]
    public = D.QueryUsageRequest(
        group_by=[D.USAGE_DIMENSION_CERTIFICATE_TYPE, D.USAGE_DIMENSION_OUTCOME], open_data=True
    )
    console = reader(platform, broker, "console", "console", "SGAD")
    opened = rows(await console.QueryUsage(public, timeout=10))
    assert opened[("tax.compliance/v1", "DENIED")] == (0, 0, True), "fewer than 10: withheld"
    assert all(
        not s for k, (_, _, s) in opened.items() if k[1] != "DENIED" and k[0] == "registry.residence/v1"
    )
    unknown: Any = 99  # numbers this version does not know
    bad = await failure_of(
        oversight.QueryUsage(D.QueryUsageRequest(group_by=[unknown], bucket=unknown), timeout=10)
    )
    assert bad.fields == ["group_by[0]", "bucket"]


async def test_times_at_the_end_of_the_calendar_are_refused_not_crashed(
    platform: Platform, broker: BrokerApp
) -> None:
    """Found by the wire fuzzer: a ``since`` in the last hour of year 9999 overflowed when rounded up
    to a whole hour, and QueryUsage answered INTERNAL."""
    oversight = reader(platform, broker, "oversight", "oversight", "AEPD")
    late = oversight_pb2.QueryUsageRequest()
    late.since.FromDatetime(dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.UTC))
    refused = await failure_of(oversight.QueryUsage(late, timeout=5))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and refused.bad_request is not None
    assert [v.field for v in refused.bad_request.field_violations] == ["since"]
    early = oversight_pb2.ListTracesRequest()
    early.filter.until.FromDatetime(dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.UTC))
    refused = await failure_of(oversight.ListTraces(early, timeout=5))
    assert refused.bad_request is not None
    assert [v.field for v in refused.bad_request.field_violations] == ["filter.until"]
