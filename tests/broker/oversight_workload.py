"""A mixed workload for the Oversight tests, and helpers to call the Oversight service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from onceonly.broker.app import BrokerApp
from onceonly.pki import ClientTls
from onceonly.providers import synthetic
from onceonly.v1 import broker_pb2, common_pb2, oversight_pb2, oversight_pb2_grpc
from tests.conftest import (
    HOUSING_CHECKS,
    INCOME,
    LAW,
    MUNICIPALITY,
    OFFICER,
    RESIDENCE,
    SOCIAL_SECURITY,
    TAX_COMPLIANCE,
    THRESHOLD_EUR,
    UNEMPLOYMENT,
    Platform,
    RpcFailure,
    resident,
    rpc_failure,
    verify_request,
)

MADRID, SEPE, BARCELONA = "L01280796", "E04990101", "L08019030"
SEPE_OFFICER = "sepe-officer-3"
REPORT_LAW = "Reglamento (UE) 2016/679 art. 58"
_DOC = {"DNI": common_pb2.DOCUMENT_TYPE_DNI, "NIE": common_pb2.DOCUMENT_TYPE_NIE}


@dataclass
class Workload:
    """The mixed workload: request name → trace id, in the order sent (oldest first)."""

    a: synthetic.Resident
    b: synthetic.Resident
    traces: dict[str, str] = field(default_factory=dict)

    def names(self, trace_ids: list[str]) -> list[str]:
        by_id = {v: k for k, v in self.traces.items()}
        return [by_id.get(t, t) for t in trace_ids]


def _request(
    r: synthetic.Resident,
    name: str,
    *,
    org: str = MADRID,
    officer: str = OFFICER,
    procedure: str = "HOUSING-RENT-SUBSIDY",
    basis: int = common_pb2.LEGAL_BASIS_KIND_LAW,
    reference: str = LAW,
    checks: Any = HOUSING_CHECKS,
) -> broker_pb2.VerifyRequest:
    request = verify_request(r, request_id=f"req-{name}", checks=checks, organization_id=org)
    request.consumer.officer_id = officer
    request.purpose.procedure_code = procedure
    request.purpose.purpose_text = f"purpose of {name}"
    request.legal_basis.kind = basis  # type: ignore[assignment]
    request.legal_basis.reference = reference
    return request


async def run_workload(platform: Platform, **broker_changes: Any) -> tuple[BrokerApp, Workload]:
    """Granted for A by two consumers (and a consent-based one), denied for A, granted for B,
    then a provider failure for B."""
    await platform.start_reference_providers()
    app = await platform.start_broker(**broker_changes)
    stub = platform.stub(app)
    a = resident(lambda r: r.document_type == "DNI")
    b = resident(lambda r: r.document_type == "DNI" and r != a)
    w = Workload(a, b)
    granted = [
        _request(a, "a-housing"),
        _request(
            a,
            "a-jobs",
            org=SEPE,
            officer=SEPE_OFFICER,
            procedure="JOB-SEEKER-SUPPORT",
            reference="Ley 3/2023 art. 3",
            checks=((UNEMPLOYMENT, {}), (SOCIAL_SECURITY, {})),
        ),
        _request(
            a,
            "a-emergency",
            procedure="SOCIAL-EMERGENCY-AID",
            basis=common_pb2.LEGAL_BASIS_KIND_CONSENT,
            reference="CONSENT-2026-77",
            checks=(
                (RESIDENCE, {"municipality_code": MUNICIPALITY}),
                (INCOME, {"threshold_eur": str(THRESHOLD_EUR)}),
            ),
        ),
    ]
    for request in granted:
        w.traces[request.request_id[4:]] = (await stub.Verify(request, timeout=10)).trace_id
    try:
        await stub.Verify(_request(a, "a-denied", org=BARCELONA, checks=((TAX_COMPLIANCE, {}),)), timeout=10)
        raise AssertionError("Barcelona's tax check should be vetoed")
    except grpc.aio.AioRpcError as exc:
        failure = rpc_failure(exc)
        assert failure.info is not None and failure.info.reason == "PROVIDER_VETO"
        w.traces["a-denied"] = failure.info.metadata["trace_id"]
    w.traces["b-housing"] = (await stub.Verify(_request(b, "b-housing"), timeout=10)).trace_id
    await platform.providers["employment"].stop(0)
    reply = await stub.Verify(_request(b, "b-down"), timeout=10)
    assert {o.provider_id: o.status for o in reply.outcomes}[
        "employment"
    ] == broker_pb2.CHECK_STATUS_UNAVAILABLE
    w.traces["b-down"] = reply.trace_id
    return app, w


def oversight_stub(
    platform: Platform, app: BrokerApp, cert: str = "oversight"
) -> oversight_pb2_grpc.OversightAsyncStub:
    return oversight_pb2_grpc.OversightStub(
        platform.channel(app.target, tls=ClientTls.from_dir(platform.pki.dir, cert))
    )


def subject(r: synthetic.Resident, number: str | None = None) -> common_pb2.Subject:
    return common_pb2.Subject(
        document_type=_DOC[r.document_type], document_number=number or r.document_number
    )


def report_request(
    r: synthetic.Resident, purpose: str = "Complaint 2026/17"
) -> oversight_pb2.GetResidentReportRequest:
    return oversight_pb2.GetResidentReportRequest(
        subject=subject(r),
        purpose=purpose,
        legal_basis=common_pb2.LegalBasis(kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference=REPORT_LAW),
        case_file_id="AEPD-2026-17",
    )


async def failure_of(call: Any) -> RpcFailure:
    try:
        reply = await call
    except grpc.aio.AioRpcError as exc:
        return rpc_failure(exc)
    raise AssertionError(f"the call succeeded but should have failed: {reply}")


async def list_names(stub: oversight_pb2_grpc.OversightAsyncStub, w: Workload, **filter_: Any) -> list[str]:
    reply = await stub.ListTraces(
        oversight_pb2.ListTracesRequest(filter=oversight_pb2.TraceFilter(**filter_), page_size=500),
        timeout=10,
    )
    assert reply.next_page_token == ""
    return w.names([t.trace_id for t in reply.traces])
