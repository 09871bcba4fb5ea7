"""The Oversight service: the resident's access report, and who may use the service."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from onceonly.v1 import common_pb2, oversight_pb2
from tests.broker.oversight_workload import (
    BARCELONA,
    MADRID,
    REPORT_LAW,
    SEPE,
    failure_of,
    list_names,
    oversight_stub,
    report_request,
    run_workload,
)
from tests.conftest import (
    LAW,
    SOCIAL_SECURITY,
    TAX_COMPLIANCE,
    UNEMPLOYMENT,
    Platform,
    reflection_stub,
    resident,
)

# --- the resident's access report -------------------------------------------------------------------


async def test_resident_report_lists_exactly_the_residents_accesses_and_is_traced(platform: Platform) -> None:
    app, w = await run_workload(platform)
    stub = oversight_stub(platform, app)

    first = await stub.GetResidentReport(report_request(w.a), timeout=10)

    assert w.names([a.trace_id for a in first.accesses]) == ["a-denied", "a-emergency", "a-jobs", "a-housing"]
    got = {
        name: a for name, a in zip(w.names([a.trace_id for a in first.accesses]), first.accesses, strict=True)
    }
    expected = {
        "a-housing": (MADRID, "Madrid — Housing Office", "HOUSING-RENT-SUBSIDY", "LAW", LAW, "GRANTED"),
        "a-jobs": (
            SEPE,
            "Public Employment Service",
            "JOB-SEEKER-SUPPORT",
            "LAW",
            "Ley 3/2023 art. 3",
            "GRANTED",
        ),
        "a-emergency": (
            MADRID,
            "Madrid — Housing Office",
            "SOCIAL-EMERGENCY-AID",
            "CONSENT",
            "CONSENT-2026-77",
            "GRANTED",
        ),
        "a-denied": (BARCELONA, "Barcelona — Social Services", "HOUSING-RENT-SUBSIDY", "LAW", LAW, "DENIED"),
    }
    for name, (org, org_name, procedure, kind, reference, decision) in expected.items():
        access = got[name]
        assert access.consumer_organization_id == org, name
        assert access.consumer_organization_name == org_name, name
        assert access.procedure_code == procedure, name
        assert access.purpose_text == f"purpose of {name}", name
        assert common_pb2.LegalBasisKind.Name(access.legal_basis.kind) == f"LEGAL_BASIS_KIND_{kind}", name
        assert access.legal_basis.reference == reference, name
        assert oversight_pb2.Decision.Name(access.decision) == f"DECISION_{decision}", name
    assert got["a-denied"].denial_reason == common_pb2.DENIAL_REASON_PROVIDER_VETO
    assert got["a-denied"].certificate_type_ids == [TAX_COMPLIANCE]
    assert got["a-jobs"].certificate_type_ids == [UNEMPLOYMENT, SOCIAL_SECURITY]
    assert got["a-housing"].consumer_unit == "Housing subsidies"
    times = [a.created_at.ToDatetime() for a in first.accesses]
    assert times == sorted(times, reverse=True)

    # The lookup itself is a trace about the same resident (one more row with A's pseudonym).
    (lookup,) = platform.trace_rows(trace_id=first.report_trace_id)
    (housing,) = platform.trace_rows(trace_id=w.traces["a-housing"])
    assert lookup["subject_ref"] == housing["subject_ref"]
    assert len(platform.trace_rows(subject_ref=housing["subject_ref"])) == 5
    assert lookup["procedure_code"] == "OVERSIGHT-RESIDENT-REPORT"
    assert lookup["consumer_organization_id"] == "AEPD"
    assert lookup["officer_id"] == "-"
    assert lookup["purpose_text"] == "Complaint 2026/17"
    assert (lookup["legal_basis_kind"], lookup["legal_basis_reference"]) == ("LAW", REPORT_LAW)
    assert lookup["case_file_id"] == "AEPD-2026-17"
    assert (
        lookup["decision"],
        json.loads(lookup["certificate_type_ids"]),
        json.loads(lookup["outcomes"]),
    ) == (
        "GRANTED",
        [],
        [],
    )
    assert w.a.document_number not in json.dumps(dict(lookup))

    second = await stub.GetResidentReport(report_request(w.a, "Follow-up of complaint 2026/17"), timeout=10)

    assert second.report_trace_id != first.report_trace_id
    assert [a.trace_id for a in second.accesses] == [
        first.report_trace_id,
        *[a.trace_id for a in first.accesses],
    ]
    shown = second.accesses[0]
    assert (shown.consumer_organization_id, shown.procedure_code, shown.purpose_text) == (
        "AEPD",
        "OVERSIGHT-RESIDENT-REPORT",
        "Complaint 2026/17",
    )
    assert shown.legal_basis.reference == REPORT_LAW and shown.decision == oversight_pb2.DECISION_GRANTED

    other = await stub.GetResidentReport(report_request(w.b), timeout=10)
    assert w.names([a.trace_id for a in other.accesses]) == ["b-down", "b-housing"]


async def test_resident_report_time_range_and_document_normalisation(platform: Platform) -> None:
    app, w = await run_workload(platform)
    stub = oversight_stub(platform, app)
    everything = await stub.GetResidentReport(report_request(w.a), timeout=10)
    jobs, emergency = everything.accesses[2], everything.accesses[1]

    request = report_request(w.a)
    request.subject.document_number = " " + w.a.document_number.lower()
    request.since.CopyFrom(jobs.created_at)
    request.until.CopyFrom(emergency.created_at)
    ranged = await stub.GetResidentReport(request, timeout=10)

    assert w.names([a.trace_id for a in ranged.accesses]) == ["a-jobs"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "subject": common_pb2.Subject(
                    document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number="12345678A"
                )
            },
            "subject.document_number",
        ),
        ({"subject": common_pb2.Subject(document_number="12345678Z")}, "subject.document_type"),
        ({"purpose": ""}, "purpose"),
        ({"legal_basis": common_pb2.LegalBasis(reference=REPORT_LAW)}, "legal_basis.kind"),
        (
            {"legal_basis": common_pb2.LegalBasis(kind=common_pb2.LEGAL_BASIS_KIND_LAW)},
            "legal_basis.reference",
        ),
    ],
)
async def test_invalid_report_request_is_refused_naming_the_field_and_not_traced(
    platform: Platform, change: dict[str, Any], field: str
) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    request = report_request(resident())
    for name, value in change.items():
        if isinstance(value, str):
            setattr(request, name, value)
        else:
            getattr(request, name).CopyFrom(value)

    failure = await failure_of(oversight_stub(platform, app).GetResidentReport(request, timeout=10))

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.info is not None and failure.info.metadata["field"] == field
    assert field in failure.fields
    assert platform.trace_rows() == []


async def test_resident_report_fails_closed_when_the_ledger_cannot_write(platform: Platform) -> None:
    app, w = await run_workload(platform, db_busy_timeout_ms=100)
    stub = oversight_stub(platform, app)
    before = len(platform.trace_rows())

    blocker = sqlite3.connect(platform.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        failure = await failure_of(stub.GetResidentReport(report_request(w.a), timeout=10))
    finally:
        blocker.rollback()
        blocker.close()

    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert failure.info is not None and failure.info.reason == "LEDGER_UNAVAILABLE"
    assert b"purpose of a-housing" not in failure.raw_details
    assert len(platform.trace_rows()) == before
    recovered = await stub.GetResidentReport(report_request(w.a), timeout=10)
    assert len(recovered.accesses) == 4


# --- who may ask --------------------------------------------------------------------------------------


async def test_non_oversight_principals_are_refused(platform: Platform) -> None:
    app, w = await run_workload(platform)
    before = len(platform.trace_rows())
    platform.pki.consumer(MADRID)
    calls = {
        "ListTraces": lambda s: s.ListTraces(oversight_pb2.ListTracesRequest(), timeout=10),
        "GetUsage": lambda s: s.GetUsage(
            oversight_pb2.GetUsageRequest(group_by=oversight_pb2.USAGE_GROUPING_PROVIDER), timeout=10
        ),
        "GetResidentReport": lambda s: s.GetResidentReport(report_request(w.a), timeout=10),
    }
    for cert in (f"consumer-{MADRID}", "broker"):
        stub = oversight_stub(platform, app, cert)
        for rpc, call in calls.items():
            failure = await failure_of(call(stub))
            assert failure.code == grpc.StatusCode.PERMISSION_DENIED, (cert, rpc)
            assert failure.info is not None and failure.info.reason == "OVERSIGHT_ONLY", (cert, rpc)
            assert rpc in failure.message
            assert b"purpose of" not in failure.raw_details
    # A provider may not read residents' reports; its usage by consumer counts its own checks only.
    tax = oversight_stub(platform, app, "tax")
    failure = await failure_of(tax.GetResidentReport(report_request(w.a), timeout=10))
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "OVERSIGHT_ONLY"
    own = await tax.GetUsage(
        oversight_pb2.GetUsageRequest(group_by=oversight_pb2.USAGE_GROUPING_CONSUMER), timeout=10
    )
    assert own.rows, "the tax agency served checks"
    for row in own.rows:
        assert not row.requests_by_decision and row.total == sum(row.checks_by_status.values())
    assert len(platform.trace_rows()) == before  # refused lookups are not reports


async def test_provider_lists_only_traces_that_reached_its_data(platform: Platform) -> None:
    app, w = await run_workload(platform)
    tax = oversight_stub(platform, app, "tax")

    reply = await tax.ListTraces(oversight_pb2.ListTracesRequest(), timeout=10)

    assert w.names([t.trace_id for t in reply.traces]) == ["b-down", "b-housing", "a-emergency", "a-housing"]
    for entry in reply.traces:  # only its own checks are shown
        assert {c.provider_id for c in entry.checks} == {"tax"}
        assert all(c.startswith("tax.") for c in entry.certificate_type_ids)
    assert await list_names(tax, w, provider_id="tax", outcome="VERIFIED") == [
        "b-down",
        "b-housing",
        "a-emergency",
        "a-housing",
    ]
    assert await list_names(tax, w, consumer_organization_id=SEPE) == []

    failure = await failure_of(
        tax.ListTraces(
            oversight_pb2.ListTracesRequest(filter=oversight_pb2.TraceFilter(provider_id="employment")),
            timeout=10,
        )
    )
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "PROVIDER_OWN_DATA_ONLY"

    usage = await tax.GetUsage(
        oversight_pb2.GetUsageRequest(group_by=oversight_pb2.USAGE_GROUPING_PROVIDER), timeout=10
    )
    assert [(r.key, r.total) for r in usage.rows] == [("tax", 7)]

    employment = oversight_stub(platform, app, "employment")
    reply = await employment.ListTraces(oversight_pb2.ListTracesRequest(), timeout=10)
    assert w.names([t.trace_id for t in reply.traces]) == ["b-down", "b-housing", "a-jobs", "a-housing"]


async def test_reflection_lists_the_oversight_service(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    stub = reflection_stub(platform.channel(app.target))
    call = stub.ServerReflectionInfo(timeout=5)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    call.cancel()
    names = {s.name for s in reply.list_services_response.service}
    assert {"onceonly.v1.Broker", "onceonly.v1.Oversight"} <= names
