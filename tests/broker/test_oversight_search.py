"""The Oversight service: trace search (filters, paging) and usage statistics."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import math
import sqlite3
from collections import Counter, defaultdict
from dataclasses import replace as dc_replace
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from onceonly.broker.auth import Principal
from onceonly.broker.domain import (
    CheckStatus,
    Decision,
    DocumentType,
    LegalBasis,
    LegalBasisKind,
    SubjectId,
    TracedOutcome,
    TraceRecord,
)
from onceonly.broker.errors import QueryTooLong
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger, SubjectPseudonymiser
from onceonly.broker.oversight import OversightService, Scope, TraceFilter
from onceonly.broker.trace_queries import SqlTraceQueries
from onceonly.broker.usage import Grouping, percentile, sample_of, tally
from onceonly.v1 import broker_pb2, common_pb2, oversight_pb2
from tests.broker.oversight_workload import (
    BARCELONA,
    MADRID,
    SEPE,
    SEPE_OFFICER,
    failure_of,
    list_names,
    oversight_stub,
    report_request,
    run_workload,
)
from tests.conftest import (
    LAW,
    OFFICER,
    SOCIAL_SECURITY,
    TAX_COMPLIANCE,
    Platform,
    rpc_failure,
    verify_request,
)

# --- trace search ---------------------------------------------------------------------------------


async def test_list_traces_filters(platform: Platform) -> None:
    app, w = await run_workload(platform)
    stub = oversight_stub(platform, app)
    all_names = ["b-down", "b-housing", "a-denied", "a-emergency", "a-jobs", "a-housing"]

    assert await list_names(stub, w) == all_names
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"consumer_organization_id": MADRID}, ["b-down", "b-housing", "a-emergency", "a-housing"]),
        ({"consumer_organization_id": SEPE}, ["a-jobs"]),
        ({"officer_id": SEPE_OFFICER}, ["a-jobs"]),
        ({"procedure_code": "HOUSING-RENT-SUBSIDY"}, ["b-down", "b-housing", "a-denied", "a-housing"]),
        ({"legal_basis_kind": common_pb2.LEGAL_BASIS_KIND_CONSENT}, ["a-emergency"]),
        ({"legal_basis_kind": common_pb2.LEGAL_BASIS_KIND_LAW}, [n for n in all_names if n != "a-emergency"]),
        ({"provider_id": "employment"}, ["b-down", "b-housing", "a-jobs", "a-housing"]),
        # The denied request asked for a tax certificate but never reached the tax agency.
        ({"provider_id": "tax"}, ["b-down", "b-housing", "a-emergency", "a-housing"]),
        ({"certificate_type_id": TAX_COMPLIANCE}, ["b-down", "b-housing", "a-denied", "a-housing"]),
        ({"certificate_type_id": SOCIAL_SECURITY}, ["a-jobs"]),
        ({"outcome": "DENIED"}, ["a-denied"]),
        ({"outcome": "GRANTED"}, [n for n in all_names if n != "a-denied"]),
        ({"outcome": "UNAVAILABLE"}, ["b-down"]),
        ({"outcome": "verified"}, [n for n in all_names if n != "a-denied"]),
        # Provider, certificate type and check status must hold for the same check.
        ({"provider_id": "employment", "outcome": "UNAVAILABLE"}, ["b-down"]),
        ({"provider_id": "tax", "outcome": "UNAVAILABLE"}, []),
        ({"certificate_type_id": TAX_COMPLIANCE, "outcome": "UNAVAILABLE"}, []),
        ({"consumer_organization_id": MADRID, "procedure_code": "SOCIAL-EMERGENCY-AID"}, ["a-emergency"]),
        # User input is matched literally, never as a LIKE pattern.
        ({"provider_id": "%"}, []),
        ({"provider_id": "ta_"}, []),
        ({"certificate_type_id": "tax.%"}, []),
        ({"consumer_organization_id": "%"}, []),
        ({"provider_id": "nobody"}, []),
    ]
    for filter_, expected in cases:
        assert await list_names(stub, w, **filter_) == expected, filter_

    reply = await stub.ListTraces(oversight_pb2.ListTracesRequest(page_size=500), timeout=10)
    by_name = dict(zip(w.names([t.trace_id for t in reply.traces]), reply.traces, strict=True))
    since, until = by_name["a-jobs"].created_at, by_name["b-housing"].created_at
    assert await list_names(stub, w, since=since, until=until) == ["a-denied", "a-emergency", "a-jobs"]
    assert await list_names(stub, w, since=since) == [
        "b-down",
        "b-housing",
        "a-denied",
        "a-emergency",
        "a-jobs",
    ]
    assert await list_names(stub, w, until=since) == ["a-housing"]

    entry = by_name["b-down"]
    assert entry.consumer.organization_id == MADRID and entry.consumer.officer_id == OFFICER
    assert entry.purpose.purpose_text == "purpose of b-down" and entry.purpose.case_file_id == "EXP-2026-0001"
    assert entry.legal_basis.reference == LAW and entry.subject_document_type == common_pb2.DOCUMENT_TYPE_DNI
    assert {c.provider_id: c.status for c in entry.checks}[
        "employment"
    ] == broker_pb2.CHECK_STATUS_UNAVAILABLE
    assert entry.decision == oversight_pb2.DECISION_GRANTED and entry.chain_id and entry.seq == 6
    assert by_name["a-denied"].denial_reason == common_pb2.DENIAL_REASON_PROVIDER_VETO
    assert by_name["a-denied"].denial_detail
    assert w.a.document_number.encode() not in reply.SerializeToString()


async def test_paging_walks_every_trace_once_newest_first(platform: Platform) -> None:
    app, w = await run_workload(platform)
    stub = oversight_stub(platform, app)
    for i in range(3):  # a few lookups to page through as well
        await stub.GetResidentReport(report_request(w.b, f"lookup {i}"), timeout=10)
    rows = sorted(platform.trace_rows(), key=lambda r: (r["created_at"], r["id"]), reverse=True)

    seen: list[str] = []
    token, pages = "", 0
    while True:
        reply = await stub.ListTraces(
            oversight_pb2.ListTracesRequest(page_size=2, page_token=token), timeout=10
        )
        assert len(reply.traces) <= 2
        seen += [t.trace_id for t in reply.traces]
        pages += 1
        token = reply.next_page_token
        if not token:
            break

    assert seen == [r["trace_id"] for r in rows]
    assert len(seen) == 9 and pages == 5

    # A filter applied after the SQL (JSON columns) pages the same way.
    token, tax = "", []
    while True:
        reply = await stub.ListTraces(
            oversight_pb2.ListTracesRequest(
                filter=oversight_pb2.TraceFilter(provider_id="tax"), page_size=3, page_token=token
            ),
            timeout=10,
        )
        tax += w.names([t.trace_id for t in reply.traces])
        if not (token := reply.next_page_token):
            break
    assert tax == ["b-down", "b-housing", "a-emergency", "a-housing"]


async def test_bad_page_tokens_and_filters_are_invalid_arguments(platform: Platform) -> None:
    app, _ = await run_workload(platform)
    stub = oversight_stub(platform, app)
    first = await stub.ListTraces(oversight_pb2.ListTracesRequest(page_size=1), timeout=10)
    assert first.next_page_token

    cases = [
        (oversight_pb2.ListTracesRequest(page_token="not-a-token"), "page_token"),
        (
            oversight_pb2.ListTracesRequest(
                page_token=first.next_page_token,
                filter=oversight_pb2.TraceFilter(consumer_organization_id=MADRID),
            ),
            "page_token",
        ),
        (
            oversight_pb2.ListTracesRequest(filter=oversight_pb2.TraceFilter(outcome="MAYBE")),
            "filter.outcome",
        ),
        (
            oversight_pb2.ListTracesRequest(filter=oversight_pb2.TraceFilter(officer_id="x" * 200)),
            "filter.officer_id",
        ),
    ]
    late = oversight_pb2.ListTracesRequest()
    late.filter.since.FromDatetime(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    late.filter.until.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    cases.append((late, "filter.until"))
    for request, field_name in cases:
        failure = await failure_of(stub.ListTraces(request, timeout=10))
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, field_name
        assert failure.fields == [field_name]
    failure = await failure_of(stub.GetUsage(oversight_pb2.GetUsageRequest(), timeout=10))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and failure.fields == ["group_by"]


@pytest.mark.parametrize(
    "row_id", [True, 10**30, -1, 2**63], ids=["boolean", "huge", "negative", "past-int64"]
)
async def test_a_forged_page_token_with_a_bad_row_id_is_an_invalid_argument(
    platform: Platform, row_id: object
) -> None:
    """A token that decodes, names this filter, but carries a row id no row can have (the audit
    got INTERNAL from a boolean or an out-of-range id)."""
    app, _ = await run_workload(platform)
    stub = oversight_stub(platform, app)
    body = json.dumps(["2026-01-01T00:00:00+00:00", row_id, TraceFilter().fingerprint()])
    forged = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    failure = await failure_of(
        stub.ListTraces(oversight_pb2.ListTracesRequest(page_token=forged), timeout=10)
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["page_token"]


# --- usage ------------------------------------------------------------------------------------------


def _record(
    n: int, org: str, procedure: str, decision: Decision, duration: int, *checks: tuple[str, str, int]
) -> TraceRecord:
    return TraceRecord(
        trace_id=f"t{n}",
        request_id=f"r{n}",
        request_digest="",
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        consumer_organization_id=org,
        consumer_unit="u",
        officer_id="o",
        procedure_code=procedure,
        purpose_text="p",
        case_file_id="c",
        legal_basis_kind=LegalBasisKind.LAW,
        legal_basis_reference="l",
        subject_document_type=DocumentType.DNI,
        subject_ref="s",
        certificate_type_ids=tuple(f"{p}.x/v1" for p, _, _ in checks),
        decision=decision,
        denial_reason=None,
        denial_detail="",
        outcomes=tuple(TracedOutcome(f"{p}.x/v1", p, CheckStatus(s), ms) for p, s, ms in checks),
        duration_ms=duration,
    )


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 99)] == [50, 90, 99]
    assert [percentile([7], q) for q in (50, 90, 99)] == [7, 7, 7]
    assert [percentile([10, 20, 30, 40], q) for q in (50, 90, 99)] == [20, 40, 40]
    assert percentile([], 50) == 0


def test_usage_tally_of_a_known_workload() -> None:
    traces = [
        _record(1, "A", "P1", Decision.GRANTED, 10, ("tax", "VERIFIED", 4), ("reg", "VERIFIED", 2)),
        _record(2, "A", "P1", Decision.GRANTED, 30, ("tax", "TIMEOUT", 25), ("reg", "VERIFIED", 3)),
        _record(3, "B", "P2", Decision.DENIED, 1),
        _record(4, "B", "P1", Decision.GRANTED, 20, ("tax", "VERIFIED", 6)),
        _record(5, "A", "P2", Decision.GRANTED, 40, ("reg", "UNAVAILABLE", 1)),
    ]
    records = [sample_of(r) for r in traces]

    providers = tally(records, Grouping.PROVIDER)
    assert providers.traces_scanned == 5
    assert [(r.key, r.total, dict(r.counts)) for r in providers.rows] == [
        ("reg", 3, {"UNAVAILABLE": 1, "VERIFIED": 2}),
        ("tax", 3, {"TIMEOUT": 1, "VERIFIED": 2}),
    ]
    assert [(r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms) for r in providers.rows] == [
        (2, 3, 3),
        (6, 25, 25),
    ]
    consumers = tally(records, Grouping.CONSUMER)
    assert [(r.key, r.total, dict(r.counts)) for r in consumers.rows] == [
        ("A", 3, {"GRANTED": 3, "TIMEOUT": 1, "UNAVAILABLE": 1, "VERIFIED": 3}),
        ("B", 2, {"DENIED": 1, "GRANTED": 1, "VERIFIED": 1}),
    ]
    assert [(r.latency_p50_ms, r.latency_p99_ms) for r in consumers.rows] == [(30, 40), (1, 20)]
    procedures = tally(records, Grouping.PROCEDURE)
    assert [(r.key, r.total, r.counts.get("GRANTED", 0)) for r in procedures.rows] == [
        ("P1", 3, 3),
        ("P2", 2, 1),
    ]
    only_tax = tally(records, Grouping.PROVIDER, provider_id="tax")
    assert [r.key for r in only_tax.rows] == ["tax"]


def _expected_usage(
    rows: list[sqlite3.Row], grouping: str
) -> dict[str, tuple[int, dict[str, int], tuple[int, ...]]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    latencies: dict[str, list[int]] = defaultdict(list)
    totals: Counter[str] = Counter()
    for row in rows:
        outcomes = json.loads(row["outcomes"])
        if grouping == "provider":
            for o in outcomes:
                totals[o["provider_id"]] += 1
                counts[o["provider_id"]][o["status"]] += 1
                latencies[o["provider_id"]].append(o["latency_ms"])
            continue
        key = row["consumer_organization_id" if grouping == "consumer" else "procedure_code"]
        totals[key] += 1
        counts[key][row["decision"]] += 1
        counts[key].update(o["status"] for o in outcomes)
        latencies[key].append(row["duration_ms"])

    def nearest(values: list[int], q: int) -> int:
        values = sorted(values)
        return values[max(1, math.ceil(q / 100 * len(values))) - 1]

    return {
        k: (totals[k], dict(counts[k]), tuple(nearest(latencies[k], q) for q in (50, 90, 99))) for k in totals
    }


async def test_usage_per_provider_consumer_and_procedure(platform: Platform) -> None:
    app, _ = await run_workload(platform)
    stub = oversight_stub(platform, app)
    rows = platform.trace_rows()
    groupings = {
        "provider": oversight_pb2.USAGE_GROUPING_PROVIDER,
        "consumer": oversight_pb2.USAGE_GROUPING_CONSUMER,
        "procedure": oversight_pb2.USAGE_GROUPING_PROCEDURE,
    }
    for name, grouping in groupings.items():
        usage = await stub.GetUsage(oversight_pb2.GetUsageRequest(group_by=grouping), timeout=10)
        got = {
            r.key: (r.total, dict(r.counts), (r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms))
            for r in usage.rows
        }
        assert got == _expected_usage(rows, name), name
        assert [r.key for r in usage.rows] == sorted(got)
        assert usage.traces_scanned == 6
    usage = await stub.GetUsage(oversight_pb2.GetUsageRequest(group_by=groupings["provider"]), timeout=10)
    employment = next(r for r in usage.rows if r.key == "employment")
    assert (employment.total, dict(employment.counts)) == (5, {"VERIFIED": 4, "UNAVAILABLE": 1})
    usage = await stub.GetUsage(oversight_pb2.GetUsageRequest(group_by=groupings["consumer"]), timeout=10)
    assert {r.key: dict(r.counts).get("DENIED", 0) for r in usage.rows} == {MADRID: 0, SEPE: 0, BARCELONA: 1}
    assert {r.key: r.total for r in usage.rows} == {MADRID: 4, SEPE: 1, BARCELONA: 1}

    listed = await stub.ListTraces(oversight_pb2.ListTracesRequest(), timeout=10)
    request = oversight_pb2.GetUsageRequest(group_by=groupings["procedure"])
    request.since.CopyFrom(listed.traces[1].created_at)  # b-housing and b-down
    ranged = await stub.GetUsage(request, timeout=10)
    assert [(r.key, r.total) for r in ranged.rows] == [("HOUSING-RENT-SUBSIDY", 2)]
    assert ranged.traces_scanned == 2


async def test_queries_on_each_database_backend(engine: sa.Engine) -> None:
    """The SQL of the queries (escaped LIKE, keyset paging, time range) on SQLite and PostgreSQL."""
    pseudonyms = SubjectPseudonymiser(b"k" * 32)
    ledger = SqlTraceLedger(engine, ReplyCipher(b"r" * 32))
    service = OversightService(SqlTraceQueries(engine), ledger, pseudonyms)
    resident_ref = pseudonyms.pseudonym("DNI:12345678Z")
    traces = [
        _record(1, "A", "P1", Decision.GRANTED, 10, ("tax", "VERIFIED", 4)),
        _record(2, "A", "P_1", Decision.GRANTED, 30, ("ta%", "TIMEOUT", 25)),
        _record(3, "B", "P2", Decision.DENIED, 1),
        _record(4, "B", "P1", Decision.GRANTED, 20, ("tax", "VERIFIED", 6), ("reg", "ERROR", 9)),
    ]
    later = dt.timedelta(seconds=1)
    for i, r in enumerate(traces):  # traces 3 and 4 share a timestamp: the row id breaks the tie
        when = r.created_at + later * min(i, 2)
        await ledger.append(dc_replace(r, created_at=when, subject_ref=resident_ref if i % 2 else "x"))
    everything = Scope()

    async def ids(**filter_: Any) -> list[str]:
        page = await service.list_traces(TraceFilter(**filter_), everything, page_size=500)
        return [e.record.trace_id for e in page.entries]

    try:
        assert await ids() == ["t4", "t3", "t2", "t1"]
        assert await ids(provider_id="tax") == ["t4", "t1"]
        assert await ids(provider_id="ta%") == ["t2"]
        assert await ids(provider_id="ta_") == []
        assert await ids(procedure_code="P_1") == ["t2"]
        assert await ids(certificate_type_id="ta%.x/v1", outcome="TIMEOUT") == ["t2"]
        assert await ids(outcome="ERROR") == ["t4"]
        assert await ids(outcome="DENIED", consumer_organization_id="B") == ["t3"]
        start = traces[0].created_at
        assert await ids(since=start + later, until=start + 2 * later) == ["t2"]
        walked, token = [], ""
        while True:
            page = await service.list_traces(TraceFilter(), everything, page_size=1, page_token=token)
            walked += [e.record.trace_id for e in page.entries]
            if not (token := page.next_page_token):
                break
        assert walked == ["t4", "t3", "t2", "t1"]
        usage = await service.usage(Grouping.PROVIDER, everything, since=start + later)
        assert [(r.key, r.total) for r in usage.rows] == [("reg", 1), ("ta%", 1), ("tax", 1)]

        oversight = Principal("oversight", "AEPD", None, "mtls")
        subject = SubjectId(DocumentType.DNI, "12345678Z")
        first = await service.resident_report(
            oversight, subject, "why", LegalBasis(LegalBasisKind.LAW, "law")
        )
        assert [a.record.trace_id for a in first.accesses] == ["t4", "t2"]
        second = await service.resident_report(
            oversight, subject, "again", LegalBasis(LegalBasisKind.LAW, "law")
        )
        assert [a.record.trace_id for a in second.accesses] == [first.report_trace_id, "t4", "t2"]
    finally:
        await ledger.close()


async def test_a_query_past_its_budget_is_stopped_on_each_database_backend(engine: sa.Engine) -> None:
    """A broad scan must not hold the database: past the budget the statement itself is stopped
    (SQLite: a progress handler; PostgreSQL: statement_timeout) and the read ends QUERY_TOO_LONG."""
    queries = SqlTraceQueries(engine, budget_s=0.05)
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
        "SELECT count(*) FROM c"
        if engine.dialect.name == "sqlite"
        else "SELECT pg_sleep(5)"
    )
    started = dt.datetime.now(dt.UTC)
    with pytest.raises(QueryTooLong) as stopped, queries.budgeted_connection() as conn:
        conn.exec_driver_sql(slow).all()
    assert (dt.datetime.now(dt.UTC) - started).total_seconds() < 3
    assert stopped.value.reason == "QUERY_TOO_LONG" and "narrow the time range" in stopped.value.message
    # The connection goes back to the pool usable: the next read (within budget) works.
    assert queries.usage(TraceFilter(), Grouping.PROVIDER, None).traces_scanned == 0
    with pytest.raises(ValueError):
        SqlTraceQueries(engine, budget_s=0)


async def test_oversight_reads_have_a_budget_of_their_own(platform: Platform) -> None:
    """Oversight scans run beside verifications, under a separate, small admission budget."""
    app, _ = await run_workload(platform, oversight_max_in_flight=1)
    stub = oversight_stub(platform, app)
    request = oversight_pb2.GetUsageRequest(group_by=oversight_pb2.USAGE_GROUPING_PROVIDER)
    results = await asyncio.gather(
        *(stub.GetUsage(request, timeout=10) for _ in range(20)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert refused and len(refused) < 20
    for failure in map(rpc_failure, refused):
        assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failure.info is not None and failure.info.reason == "OVERLOADED"
        assert "oversight reads" in failure.message
    # Verifications have their own capacity.
    assert (await platform.stub(app).Verify(verify_request(), timeout=10)).trace_id
