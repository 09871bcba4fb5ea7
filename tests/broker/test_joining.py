"""``onceonly governance status ORG``: a new member's joining checklist, checked against what the
platform records."""

from __future__ import annotations

import json

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from tests.broker.oversight_workload import failure_of
from tests.conftest import ORG, Platform, verify_request
from tests.consumers.test_oversight_cli import command

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


async def status(platform: Platform, app: BrokerApp, org: str, *cert: str) -> tuple[int, dict[str, object]]:
    code, out, err = await command(platform, app, "governance", "status", org, "--json", *cert)
    assert "Traceback" not in err
    return code, json.loads(out) if out.strip().startswith("{") else {"error": out + err}


def todo(report: dict[str, object]) -> list[str]:
    return [i["name"] for i in report["items"] if not i["done"]]  # type: ignore[attr-defined]


async def test_a_new_consumer_is_walked_through_to_ready(platform: Platform, broker: BrokerApp) -> None:
    code, out, err = await command(
        platform,
        broker,
        "governance",
        "register",
        "E00003301",
        "--name",
        "Labour Inspectorate",
        "--kind",
        "CONSUMER",
    )
    assert code == 0, err
    code, report = await status(platform, broker, "E00003301")
    assert code == 1 and report["complete"] is False
    assert todo(report) == ["certificate in use", "test verification passed", "agreement in force"]

    # The seeded housing office, before and after its first verification.
    code, report = await status(platform, broker, ORG)
    assert code == 1 and todo(report) == ["certificate in use", "test verification passed"]
    await platform.stub(broker).Verify(verify_request(), timeout=10)
    code, report = await status(platform, broker, ORG)
    assert code == 0 and report["complete"] is True, report
    code, out, _ = await command(platform, broker, "governance", "status", ORG)
    assert code == 0 and "ready: every item is done" in out and "madrid-housing-rent-subsidy v1" in out


async def test_a_provider_and_an_oversight_body(platform: Platform, broker: BrokerApp) -> None:
    code, report = await status(platform, broker, "tax")
    assert code == 1 and todo(report) == ["answered a check"]
    await platform.stub(broker).Verify(verify_request(), timeout=10)
    code, report = await status(platform, broker, "tax")
    assert code == 0, report
    code, report = await status(platform, broker, "AEPD")
    assert code == 1 and todo(report) == ["oversight service used"]


async def test_a_member_sees_its_own_checklist_only(platform: Platform, broker: BrokerApp) -> None:
    stub = governance_pb2_grpc.GovernanceStub(platform.channel(broker.target))  # the housing office
    refused = await failure_of(
        stub.GetJoiningStatus(governance_pb2.GetJoiningStatusRequest(organization_id="tax"), timeout=5)
    )
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED and refused.info is not None
    assert refused.info.reason == "OWN_STATUS_ONLY"
    own = await stub.GetJoiningStatus(governance_pb2.GetJoiningStatusRequest(organization_id=ORG), timeout=5)
    assert own.organisation.id == ORG
    code, out, err = await command(platform, broker, "governance", "status", "NOWHERE")
    assert code == 2 and "is not registered" in out + err and "Traceback" not in err
