"""The Oversight client: trace search, usage statistics and residents' access reports.

    tls = ClientTls.from_dir(Path("var/pki"), "oversight")   # an oversight body's certificate
    async with OversightClient("127.0.0.1:50051", tls=tls) as oversight:
        async for trace in oversight.traces(TraceQuery(procedure_code="HOUSING-RENT-SUBSIDY"), limit=200):
            ...
        usage = await oversight.usage("provider")
        report = await oversight.resident_report(
            Subject.dni("35731890X"), purpose="Complaint 2026/17", legal_basis=LegalBasis.law("RGPD art. 58")
        )

The ``onceonly oversight`` commands are in :mod:`consumers.oversight_cli`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from onceonly.consumers.client import BrokerClient, LegalBasis, Subject, broker_error
from onceonly.v1 import common_pb2, oversight_pb2, oversight_pb2_grpc
from onceonly.wire import (
    CHECK_STATUS,
    DECISION,
    DENIAL_REASON,
    DOCUMENT_TYPE,
    LEGAL_BASIS_KIND,
    OFFICER_IDENTIFICATION,
    USAGE_BUCKET,
    USAGE_DIMENSION,
    USAGE_GROUPING,
)

OFFICER_LABELS = {
    "TOKEN": "authenticated",
    "CERTIFICATE": "asserted",
    "INSECURE": "insecure",
    "AUTOMATED": "none (automated)",
}
"""How the officer was identified, in the words a report shows (``-``: not recorded)."""
GROUPINGS = tuple(name.lower() for name in USAGE_GROUPING.names)
"""The groupings of usage statistics, as the CLI spells them (``provider``, ``consumer``, ``procedure``)."""


# --- client types -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Which traces to list; unset fields match all (``until`` is exclusive)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    consumer_organization_id: str = ""
    officer_id: str = ""
    procedure_code: str = ""
    legal_basis_kind: str = ""  # "LAW" | "CONSENT" | "" (any)
    provider_id: str = ""
    certificate_type_id: str = ""
    outcome: str = ""  # "GRANTED", "DENIED" or a check status ("VERIFIED", "TIMEOUT", …)


@dataclass(frozen=True, slots=True)
class TracedCheck:
    certificate_type_id: str
    provider_id: str
    status: str
    latency_ms: int


@dataclass(frozen=True, slots=True)
class Trace:
    trace_id: str
    request_id: str
    created_at: dt.datetime
    consumer_organization_id: str
    consumer_unit: str
    officer_id: str
    procedure_code: str
    purpose_text: str
    case_file_id: str
    legal_basis_kind: str
    legal_basis_reference: str
    subject_document_type: str
    certificate_type_ids: tuple[str, ...]
    decision: str
    denial_reason: str
    denial_detail: str
    checks: tuple[TracedCheck, ...]
    duration_ms: int
    chain_id: str
    seq: int
    officer_identification: str = ""
    """TOKEN (authenticated), CERTIFICATE (asserted by an application) or INSECURE; empty if not recorded."""
    agreements: tuple[tuple[str, str, int], ...] = ()
    """Granted: (certificate type, agreement, version) that allowed each check."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str
    total: int
    counts: Mapping[str, int]
    latency_p50_ms: int
    latency_p90_ms: int
    latency_p99_ms: int
    requests_by_decision: Mapping[str, int] = field(default_factory=dict)
    """GRANTED / DENIED requests (oversight's CONSUMER and PROCEDURE rows)."""
    checks_by_status: Mapping[str, int] = field(default_factory=dict)
    """Checks by status (a provider: its own checks only)."""


@dataclass(frozen=True, slots=True)
class Usage:
    group_by: str
    rows: tuple[UsageRow, ...]
    traces_scanned: int
    hours_rolled_up: int = 0


@dataclass(frozen=True, slots=True)
class Fact:
    """Usage facts summed in one bucket for one combination of the grouped dimensions."""

    bucket: str
    dimensions: tuple[str, ...]
    checks: int
    requests: int
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class Access:
    trace_id: str
    created_at: dt.datetime
    consumer_organization_id: str
    consumer_organization_name: str
    consumer_unit: str
    procedure_code: str
    purpose_text: str
    legal_basis_kind: str
    legal_basis_reference: str
    certificate_type_ids: tuple[str, ...]
    decision: str
    denial_reason: str
    officer_identification: str = ""
    disclosure: str = ""
    """"DEFERRED until …" or "WITHHELD under …" when hidden from the resident; empty otherwise."""


@dataclass(frozen=True, slots=True)
class ResidentReport:
    accesses: tuple[Access, ...]
    report_trace_id: str


@dataclass(frozen=True, slots=True)
class AuditTask:
    """A sampled request its consumer must justify: ``state`` OPEN, JUSTIFIED or OVERDUE."""

    task_id: str
    sample_id: str
    consumer_organization_id: str
    trace: Trace | None
    state: str
    deadline: dt.datetime
    justification: str = ""
    answered_by: str = ""
    answered_at: dt.datetime | None = None
    late: bool = False


@dataclass(frozen=True, slots=True)
class AuditSample:
    sample_id: str
    seed: str
    population: int
    tasks: tuple[AuditTask, ...]
    drawn_at: dt.datetime
    drawn_by: str
    consumer_organization_id: str
    since: dt.datetime
    until: dt.datetime


@dataclass(frozen=True, slots=True)
class Proof:
    """What a consumer files for a request: the trace, the attestations' digests
    (certificate type, provider, SHA-256) and the code anyone can verify."""

    trace: Trace
    consumer_organization_name: str
    verification_code: str
    record_hash: str
    attestations: tuple[tuple[str, str, str], ...]
    sealed: bool


@dataclass(frozen=True, slots=True)
class ProofCheck:
    """What a verification code names; only ``matches`` is set when it names nothing."""

    matches: bool
    created_at: dt.datetime | None = None
    consumer_organization_id: str = ""
    consumer_organization_name: str = ""
    procedure_code: str = ""
    decision: str = ""
    certificate_type_ids: tuple[str, ...] = ()
    intact: bool = False
    sealed: bool = False
    chain_id: str = ""
    seq: int = 0


TASK_STATES = ("OPEN", "JUSTIFIED", "OVERDUE")


def _stamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError("give timezone-aware times")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _time(stamp: timestamp_pb2.Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)


def _trace(m: oversight_pb2.TraceEntry) -> Trace:
    return Trace(
        trace_id=m.trace_id,
        request_id=m.request_id,
        created_at=_time(m.created_at),
        consumer_organization_id=m.consumer.organization_id,
        consumer_unit=m.consumer.unit,
        officer_id=m.consumer.officer_id,
        procedure_code=m.purpose.procedure_code,
        purpose_text=m.purpose.purpose_text,
        case_file_id=m.purpose.case_file_id,
        legal_basis_kind=LEGAL_BASIS_KIND.name(m.legal_basis.kind),
        legal_basis_reference=m.legal_basis.reference,
        subject_document_type=DOCUMENT_TYPE.name(m.subject_document_type),
        certificate_type_ids=tuple(m.certificate_type_ids),
        decision=DECISION.name(m.decision),
        denial_reason=DENIAL_REASON.name(m.denial_reason),
        denial_detail=m.denial_detail,
        checks=tuple(
            TracedCheck(
                c.certificate_type_id,
                c.provider_id,
                CHECK_STATUS.name(c.status),
                c.latency_ms,
            )
            for c in m.checks
        ),
        duration_ms=m.duration_ms,
        chain_id=m.chain_id,
        seq=m.seq,
        officer_identification=OFFICER_IDENTIFICATION.name(m.officer_identification),
        agreements=tuple((a.certificate_type_id, a.agreement_id, a.version) for a in m.agreements),
    )


def _access(m: oversight_pb2.ReportedAccess) -> Access:
    return Access(
        trace_id=m.trace_id,
        created_at=_time(m.created_at),
        consumer_organization_id=m.consumer_organization_id,
        consumer_organization_name=m.consumer_organization_name,
        consumer_unit=m.consumer_unit,
        procedure_code=m.procedure_code,
        purpose_text=m.purpose_text,
        legal_basis_kind=LEGAL_BASIS_KIND.name(m.legal_basis.kind),
        legal_basis_reference=m.legal_basis.reference,
        certificate_type_ids=tuple(m.certificate_type_ids),
        decision=DECISION.name(m.decision),
        denial_reason=DENIAL_REASON.name(m.denial_reason),
        officer_identification=OFFICER_IDENTIFICATION.name(m.officer_identification),
        disclosure=m.disclosure,
    )


def _task(m: oversight_pb2.AuditTask) -> AuditTask:
    return AuditTask(
        task_id=m.task_id,
        sample_id=m.sample_id,
        consumer_organization_id=m.consumer_organization_id,
        trace=_trace(m.trace) if m.HasField("trace") else None,
        state=oversight_pb2.AuditTaskState.Name(m.state).removeprefix("AUDIT_TASK_STATE_"),
        deadline=_time(m.deadline),
        justification=m.justification,
        answered_by=m.answered_by,
        answered_at=_time(m.answered_at) if m.HasField("answered_at") else None,
        late=m.late,
    )


# --- the client ---------------------------------------------------------------------------------


class OversightClient(BrokerClient):
    """A :class:`BrokerClient` that also calls the Oversight service (same channel, same credentials)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._oversight = oversight_pb2_grpc.OversightStub(self._channel)

    async def list_traces(
        self, query: TraceQuery = TraceQuery(), *, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Trace], str]:
        """One page of traces, newest first, and the token of the next page (empty on the last)."""
        kind = LEGAL_BASIS_KIND.number(query.legal_basis_kind)
        if query.legal_basis_kind.strip() and not kind:
            raise ValueError(
                f"legal basis must be {LEGAL_BASIS_KIND.choices()}, got {query.legal_basis_kind!r}"
            )
        request = oversight_pb2.ListTracesRequest(
            filter=oversight_pb2.TraceFilter(
                consumer_organization_id=query.consumer_organization_id,
                officer_id=query.officer_id,
                procedure_code=query.procedure_code,
                legal_basis_kind=kind,
                provider_id=query.provider_id,
                certificate_type_id=query.certificate_type_id,
                outcome=query.outcome,
            ),
            page_size=page_size,
            page_token=page_token,
        )
        if query.since is not None:
            request.filter.since.CopyFrom(_stamp(query.since))
        if query.until is not None:
            request.filter.until.CopyFrom(_stamp(query.until))
        try:
            reply = await self._oversight.ListTraces(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return [_trace(t) for t in reply.traces], reply.next_page_token

    async def traces(
        self, query: TraceQuery = TraceQuery(), *, limit: int | None = None
    ) -> AsyncIterator[Trace]:
        """Every matching trace (at most ``limit``), newest first, following the pages."""
        token, seen = "", 0
        while True:
            size = 500 if limit is None else max(1, min(500, limit - seen))
            page, token = await self.list_traces(query, page_size=size, page_token=token)
            for trace in page:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield trace
            if not token or (limit is not None and seen >= limit):
                return

    async def usage(
        self, group_by: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> Usage:
        """Usage per ``provider``, ``consumer`` or ``procedure``."""
        grouping = USAGE_GROUPING.number(group_by)
        if not grouping:
            raise ValueError(f"group by provider, consumer or procedure, not {group_by!r}")
        request = oversight_pb2.GetUsageRequest(group_by=grouping)
        if since is not None:
            request.since.CopyFrom(_stamp(since))
        if until is not None:
            request.until.CopyFrom(_stamp(until))
        try:
            reply = await self._oversight.GetUsage(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return Usage(
            USAGE_GROUPING.name(reply.group_by),
            tuple(
                UsageRow(
                    r.key,
                    r.total,
                    dict(sorted(r.counts.items())),
                    r.latency_p50_ms,
                    r.latency_p90_ms,
                    r.latency_p99_ms,
                    dict(sorted(r.requests_by_decision.items())),
                    dict(sorted(r.checks_by_status.items())),
                )
                for r in reply.rows
            ),
            reply.traces_scanned,
            reply.hours_rolled_up,
        )

    async def query_usage(
        self,
        group_by: Sequence[str] = (),
        *,
        bucket: str = "",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        open_data: bool = False,
        **equal: str,
    ) -> tuple[list[Fact], int, int]:
        """Usage facts grouped by ``group_by`` (CONSUMER, PROCEDURE, LEGAL_BASIS_KIND,
        CERTIFICATE_TYPE, PROVIDER, OUTCOME, DENIAL_REASON) and ``bucket`` (HOUR, DAY, MONTH; empty:
        the whole range), filtered by ``equal`` (e.g. ``provider_id="tax"``); with the hours taken
        from aggregates and the traces read."""
        dimensions = [USAGE_DIMENSION.number(d) for d in group_by]
        if not all(dimensions):
            raise ValueError(f"group by {USAGE_DIMENSION.choices()}, not {list(group_by)!r}")
        request = oversight_pb2.QueryUsageRequest(group_by=dimensions, open_data=open_data)
        if bucket:
            request.bucket = USAGE_BUCKET.number(bucket)
            if not request.bucket:
                raise ValueError(f"bucket must be {USAGE_BUCKET.choices()}, not {bucket!r}")
        kind = equal.pop("legal_basis_kind", "")
        if kind:
            request.legal_basis_kind = LEGAL_BASIS_KIND.number(kind)
        for name, value in equal.items():
            setattr(request, name, value)
        if since is not None:
            request.since.CopyFrom(_stamp(since))
        if until is not None:
            request.until.CopyFrom(_stamp(until))
        try:
            reply = await self._oversight.QueryUsage(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        facts = [Fact(f.bucket, tuple(f.dimensions), f.checks, f.requests, f.suppressed) for f in reply.facts]
        return facts, reply.hours_rolled_up, reply.traces_scanned

    async def resident_report(
        self,
        subject: Subject,
        *,
        purpose: str,
        legal_basis: LegalBasis,
        case_file_id: str = "",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> ResidentReport:
        """Who consulted ``subject``'s data. The lookup itself is traced by the broker."""
        request = oversight_pb2.GetResidentReportRequest(
            subject=common_pb2.Subject(
                document_type=DOCUMENT_TYPE.number(subject.document_type),
                document_number=subject.document_number,
            ),
            purpose=purpose,
            legal_basis=self._basis(legal_basis),
            case_file_id=case_file_id,
        )
        if since is not None:
            request.since.CopyFrom(_stamp(since))
        if until is not None:
            request.until.CopyFrom(_stamp(until))
        try:
            reply = await self._oversight.GetResidentReport(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return ResidentReport(tuple(_access(a) for a in reply.accesses), reply.report_trace_id)

    async def witnessed_heads(self) -> list[dict[str, Any]]:
        """The ledger's signed chain heads, one dict per head in the witness file's own format
        (``chain_id``, ``seq``, ``head_hash``, ``signature``)."""
        try:
            reply = await self._oversight.GetWitnessedHeads(
                oversight_pb2.GetWitnessedHeadsRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return [
            {"chain_id": h.chain_id, "seq": h.seq, "head_hash": h.head_hash, "signature": h.signature}
            for h in reply.heads
        ]

    async def _oversight_call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._oversight, method)(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None

    async def draw_audit_sample(
        self,
        *,
        since: dt.datetime,
        until: dt.datetime,
        size: int,
        consumer_organization_id: str = "",
        seed: str = "",
        days_to_answer: int = 0,
    ) -> AuditSample:
        """Draw ``size`` of the requests made in [since, until) (of one consumer, or all); the
        same seed over the same requests draws the same sample. Oversight bodies only."""
        request = oversight_pb2.DrawAuditSampleRequest(
            consumer_organization_id=consumer_organization_id,
            since=_stamp(since),
            until=_stamp(until),
            size=size,
            seed=seed,
            days_to_answer=days_to_answer,
        )
        m = await self._oversight_call("DrawAuditSample", request)
        return AuditSample(
            m.sample_id,
            m.seed,
            m.population,
            tuple(_task(t) for t in m.tasks),
            _time(m.drawn_at),
            m.drawn_by,
            m.consumer_organization_id,
            _time(m.since),
            _time(m.until),
        )

    async def audit_tasks(
        self, *, sample_id: str = "", consumer_organization_id: str = "", state: str = "", page_size: int = 0
    ) -> list[AuditTask]:
        """Audit tasks (a consumer's administrators: their own), newest sample first."""
        number = 0
        if state:
            if state.upper() not in TASK_STATES:
                raise ValueError(f"state must be one of {', '.join(TASK_STATES)}, not {state!r}")
            number = oversight_pb2.AuditTaskState.Value(f"AUDIT_TASK_STATE_{state.upper()}")
        request = oversight_pb2.ListAuditTasksRequest(
            sample_id=sample_id,
            consumer_organization_id=consumer_organization_id,
            state=number,  # type: ignore[arg-type]
            page_size=page_size,
        )
        reply = await self._oversight_call("ListAuditTasks", request)
        return [_task(t) for t in reply.tasks]

    async def justify_audit_task(self, task_id: str, justification: str) -> AuditTask:
        """Answer one of the caller's organisation's audit tasks (its administrators only)."""
        request = oversight_pb2.JustifyAuditTaskRequest(task_id=task_id, justification=justification)
        return _task(await self._oversight_call("JustifyAuditTask", request))

    async def proof(self, trace_id: str) -> Proof:
        """The proof of one of the caller's requests (oversight: of any)."""
        m = await self._oversight_call("GetProof", oversight_pb2.GetProofRequest(trace_id=trace_id))
        return Proof(
            _trace(m.trace),
            m.consumer_organization_name,
            m.verification_code,
            m.record_hash,
            tuple((a.certificate_type_id, a.provider_id, a.sha256) for a in m.attestations),
            m.sealed,
        )

    async def verify_proof(self, verification_code: str) -> ProofCheck:
        """Whether a proof's verification code matches a record of the ledger."""
        m = await self._oversight_call(
            "VerifyProof", oversight_pb2.VerifyProofRequest(verification_code=verification_code)
        )
        if not m.matches:
            return ProofCheck(matches=False)
        return ProofCheck(
            matches=True,
            created_at=_time(m.created_at),
            consumer_organization_id=m.consumer_organization_id,
            consumer_organization_name=m.consumer_organization_name,
            procedure_code=m.procedure_code,
            decision=DECISION.name(m.decision),
            certificate_type_ids=tuple(m.certificate_type_ids),
            intact=m.intact,
            sealed=m.sealed,
            chain_id=m.chain_id,
            seq=m.seq,
        )
