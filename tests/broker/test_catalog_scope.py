"""``GetCatalog`` with the caller's scope: what its agreements in force allow it to verify, under
which agreement, procedure and legal bases — as X-Road's ``allowedMethods`` — and nothing for
callers that are not consumers."""

from __future__ import annotations

from typing import Any

import pytest

from onceonly.broker.app import BrokerApp
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2, governance_pb2, governance_pb2_grpc
from tests.conftest import ORG, Platform
from tests.consumers.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


async def scoped(
    platform: Platform, app: BrokerApp, org: str = ORG, **request: Any
) -> dict[str, list[tuple[str, ...]]]:
    tls = (
        platform.pki.consumer(org)
        if org != "AEPD"
        else platform.pki.issue("oversight", role="oversight", org="AEPD")
    )
    stub = broker_pb2_grpc.BrokerStub(platform.channel(app.target, tls=tls))
    catalog = await stub.GetCatalog(broker_pb2.GetCatalogRequest(**request), timeout=5)
    return {
        c.id: [
            (u.procedure_code, u.agreement_id, str(u.agreement_version), *[str(b) for b in u.legal_bases])
            for u in c.allowed
        ]
        for c in catalog.certificate_types
    }


LAW, CONSENT = (
    str(common_pb2.LEGAL_BASIS_KIND_LAW),
    str(common_pb2.LEGAL_BASIS_KIND_CONSENT),
)


async def test_a_consumer_sees_what_its_agreements_allow(platform: Platform, broker: BrokerApp) -> None:
    madrid = await scoped(platform, broker)
    assert madrid["registry.residence/v1"] == [
        ("HOUSING-RENT-SUBSIDY", "madrid-housing-rent-subsidy", "1", LAW, CONSENT),
        ("SOCIAL-EMERGENCY-AID", "madrid-social-emergency-aid", "1", CONSENT),  # consent required
    ]
    assert madrid["employment.social-security-compliance/v1"] == [], "only SEPE's agreement covers it"
    allowed = await scoped(platform, broker, allowed_only=True)
    assert "employment.social-security-compliance/v1" not in allowed and len(allowed) == 5

    # Barcelona's agreement is vetoed by the tax agency: its tax types allow nothing.
    barcelona = await scoped(platform, broker, "L08019030", allowed_only=True)
    assert sorted(barcelona) == ["registry.residence/v1"]

    # Oversight is no consumer: the whole catalog, nothing allowed.
    oversight = await scoped(platform, broker, "AEPD")
    assert len(oversight) == 6 and not any(oversight.values())


async def test_the_scope_follows_governance(platform: Platform, broker: BrokerApp) -> None:
    """Oversight suspends Madrid's housing agreement: that use disappears from its catalog at once."""
    stub = governance_pb2_grpc.GovernanceStub(
        platform.channel(broker.target, tls=platform.pki.issue("oversight", role="oversight", org="AEPD"))
    )
    await stub.ActOnAgreement(
        governance_pb2.ActOnAgreementRequest(
            agreement_id="madrid-housing-rent-subsidy",
            action=governance_pb2.AGREEMENT_ACTION_SUSPEND,
            reason="complaint 2026/41",
        ),
        timeout=5,
    )
    madrid = await scoped(platform, broker, allowed_only=True)
    assert sorted(madrid) == ["registry.residence/v1", "tax.income-below-threshold/v1"]  # the emergency aid
    assert all(use[0] == "SOCIAL-EMERGENCY-AID" for uses in madrid.values() for use in uses)


async def test_the_catalog_command_shows_what_you_may_use(platform: Platform, broker: BrokerApp) -> None:
    code, out, err = await cli("catalog", "--broker", broker.target, "--allowed")
    assert code == 0, err
    assert (
        "you may use it for" in out
        and "HOUSING-RENT-SUBSIDY (LAW/CONSENT; madrid-housing-rent-subsidy v1)" in out
    )
    assert "employment.social-security-compliance/v1" not in out
