"""The Oversight gRPC service: protobuf ⇄ :mod:`broker.oversight`, errors through :mod:`onceonly.status`.

Who may call what is decided from :func:`broker.auth.current_principal` (see
:func:`broker.oversight.scope_for`); every refusal and failure leaves through
:func:`onceonly.status.abort`, like the Broker service's.
"""

from __future__ import annotations

import datetime as dt
import logging

from google.protobuf import timestamp_pb2

from onceonly.broker.audit import AuditSample, AuditSampling, AuditTask, TaskState, validated_sample
from onceonly.broker.auth import current_principal
from onceonly.broker.domain import (
    LegalBasis,
    SubjectId,
    TraceRecord,
)
from onceonly.broker.errors import FieldViolation, InvalidRequest
from onceonly.broker.oversight import (
    OversightService,
    ResidentAccess,
    Scope,
    TraceEntry,
    TraceFilter,
    scope_for,
)
from onceonly.broker.proofs import Proofs
from onceonly.broker.usage import UsageRow, split_counts
from onceonly.broker.usage_facts import FactFilter
from onceonly.errors import Unavailable, unauthenticated
from onceonly.grpc_types import Context
from onceonly.status import abort
from onceonly.v1 import common_pb2, oversight_pb2, oversight_pb2_grpc
from onceonly.validation import CONTROL, FieldErrors
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

log = logging.getLogger(__name__)

SERVICE_NAME = oversight_pb2.DESCRIPTOR.services_by_name["Oversight"].full_name

# --- protobuf → domain ----------------------------------------------------------------------


def _time(
    msg: oversight_pb2.TraceFilter
    | oversight_pb2.GetUsageRequest
    | oversight_pb2.GetResidentReportRequest
    | oversight_pb2.QueryUsageRequest
    | oversight_pb2.DrawAuditSampleRequest,
    name: str,
    prefix: str = "",
) -> dt.datetime | None:
    if not msg.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(msg, name)
    try:
        value = stamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):  # seconds outside years 1-9999, or nanos outside [0, 1e9)
        value = None
    # A margin at both ends: ranges are rounded to whole hours and days, which must stay representable.
    if value is None or not _EARLIEST <= value < _LATEST:
        raise InvalidRequest(
            [FieldViolation(f"{prefix}{name}", "is not a valid timestamp (years 0002 to 9998)")]
        ) from None
    return value


_EARLIEST = dt.datetime(2, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def trace_filter(msg: oversight_pb2.TraceFilter) -> TraceFilter:
    kind = None
    if msg.legal_basis_kind != common_pb2.LEGAL_BASIS_KIND_UNSPECIFIED:
        kind = LEGAL_BASIS_KIND.from_proto(msg.legal_basis_kind)
        if kind is None:
            raise InvalidRequest(
                [FieldViolation("filter.legal_basis_kind", f"must be {LEGAL_BASIS_KIND.choices()}")]
            )
    return TraceFilter(
        since=_time(msg, "since", "filter."),
        until=_time(msg, "until", "filter."),
        consumer_organization_id=msg.consumer_organization_id.strip(),
        officer_id=msg.officer_id.strip(),
        procedure_code=msg.procedure_code.strip(),
        legal_basis_kind=kind,
        provider_id=msg.provider_id.strip(),
        certificate_type_id=msg.certificate_type_id.strip(),
        outcome=msg.outcome.strip().upper(),
    )


def report_arguments(
    msg: oversight_pb2.GetResidentReportRequest,
) -> tuple[SubjectId, str, LegalBasis, str]:
    """Subject, purpose, legal basis and case file; ``InvalidRequest`` names each bad field."""
    bad = FieldErrors()
    subject = None
    if not msg.HasField("subject"):
        bad.add("subject", "is required")
    else:
        subject = bad.subject("subject", msg.subject)
    purpose = bad.no_identifiers("purpose", bad.text("purpose", msg.purpose, max_len=500), passports=True)
    basis_kind = LEGAL_BASIS_KIND.from_proto(msg.legal_basis.kind)
    if basis_kind is None:
        bad.add("legal_basis.kind", f"must be {LEGAL_BASIS_KIND.choices()}")
    reference = bad.no_identifiers(
        "legal_basis.reference",
        bad.text("legal_basis.reference", msg.legal_basis.reference, max_len=200),
        passports=True,
    )
    case_file = msg.case_file_id.strip()
    if len(case_file) > 64 or CONTROL.search(case_file):
        bad.add("case_file_id", "must be at most 64 printable characters")
    bad.no_identifiers("case_file_id", case_file)
    since, until = _time(msg, "since"), _time(msg, "until")
    if since is not None and until is not None and since >= until:
        bad.add("until", "must be later than since")
    bad.raise_if_any()
    assert subject is not None and basis_kind is not None
    return subject, purpose, LegalBasis(basis_kind, reference), case_file


# --- domain → protobuf ----------------------------------------------------------------------


def stamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _denial(record: TraceRecord) -> common_pb2.DenialReason:
    if record.denial_reason is None:
        return common_pb2.DENIAL_REASON_UNSPECIFIED
    return DENIAL_REASON.to_proto(record.denial_reason)


def _identified(record: TraceRecord) -> common_pb2.OfficerIdentification:
    if record.officer_identification is None:
        return common_pb2.OFFICER_IDENTIFICATION_UNSPECIFIED
    return OFFICER_IDENTIFICATION.to_proto(record.officer_identification)


def trace_message(entry: TraceEntry) -> oversight_pb2.TraceEntry:
    r = entry.record
    return oversight_pb2.TraceEntry(
        trace_id=r.trace_id,
        request_id=r.request_id,
        created_at=stamp(r.created_at),
        consumer=common_pb2.Consumer(
            organization_id=r.consumer_organization_id, unit=r.consumer_unit, officer_id=r.officer_id
        ),
        purpose=common_pb2.Purpose(
            procedure_code=r.procedure_code, purpose_text=r.purpose_text, case_file_id=r.case_file_id
        ),
        legal_basis=common_pb2.LegalBasis(
            kind=LEGAL_BASIS_KIND.to_proto(r.legal_basis_kind), reference=r.legal_basis_reference
        ),
        subject_document_type=DOCUMENT_TYPE.to_proto(r.subject_document_type),
        certificate_type_ids=list(r.certificate_type_ids),
        decision=DECISION.to_proto(r.decision),
        denial_reason=_denial(r),
        denial_detail=r.denial_detail,
        checks=[
            oversight_pb2.TracedCheck(
                certificate_type_id=o.certificate_type_id,
                provider_id=o.provider_id,
                status=CHECK_STATUS.to_proto(o.status),
                latency_ms=o.latency_ms,
            )
            for o in r.outcomes
        ],
        duration_ms=r.duration_ms,
        chain_id=entry.chain_id,
        seq=entry.seq,
        officer_identification=_identified(r),
        agreements=[
            oversight_pb2.TracedAgreement(
                certificate_type_id=g.certificate_type_id, agreement_id=g.agreement_id, version=g.version
            )
            for g in r.agreements
        ],
    )


def usage_row_message(row: UsageRow) -> oversight_pb2.UsageRow:
    decisions, checks = split_counts(row.counts)
    return oversight_pb2.UsageRow(
        key=row.key,
        total=row.total,
        counts=dict(row.counts),
        latency_p50_ms=row.latency_p50_ms,
        latency_p90_ms=row.latency_p90_ms,
        latency_p99_ms=row.latency_p99_ms,
        requests_by_decision=decisions,
        checks_by_status=checks,
    )


def access_message(access: ResidentAccess) -> oversight_pb2.ReportedAccess:
    r = access.record
    return oversight_pb2.ReportedAccess(
        trace_id=r.trace_id,
        created_at=stamp(r.created_at),
        consumer_organization_id=r.consumer_organization_id,
        consumer_organization_name=access.organisation_name,
        consumer_unit=r.consumer_unit,
        procedure_code=r.procedure_code,
        purpose_text=r.purpose_text,
        legal_basis=common_pb2.LegalBasis(
            kind=LEGAL_BASIS_KIND.to_proto(r.legal_basis_kind), reference=r.legal_basis_reference
        ),
        certificate_type_ids=list(r.certificate_type_ids),
        decision=DECISION.to_proto(r.decision),
        denial_reason=_denial(r),
        officer_identification=_identified(r),
        disclosure=access.disclosure,
    )


_TASK_STATES = {
    TaskState.OPEN: oversight_pb2.AUDIT_TASK_STATE_OPEN,
    TaskState.JUSTIFIED: oversight_pb2.AUDIT_TASK_STATE_JUSTIFIED,
    TaskState.OVERDUE: oversight_pb2.AUDIT_TASK_STATE_OVERDUE,
}
_TASK_STATE_NAMES = {number: name for name, number in _TASK_STATES.items()}


def task_message(task: AuditTask) -> oversight_pb2.AuditTask:
    msg = oversight_pb2.AuditTask(
        task_id=task.task_id,
        sample_id=task.sample_id,
        consumer_organization_id=task.consumer_organization_id,
        state=_TASK_STATES[task.state],
        deadline=stamp(task.deadline),
        justification=task.justification,
        answered_by=task.answered_by,
        late=task.late,
    )
    if task.trace is not None:
        msg.trace.CopyFrom(trace_message(task.trace))
    if task.answered_at is not None:
        msg.answered_at.CopyFrom(stamp(task.answered_at))
    return msg


def sample_message(sample: AuditSample) -> oversight_pb2.AuditSample:
    return oversight_pb2.AuditSample(
        sample_id=sample.sample_id,
        seed=sample.seed,
        population=sample.population,
        tasks=[task_message(t) for t in sample.tasks],
        drawn_at=stamp(sample.drawn_at),
        consumer_organization_id=sample.consumer_organization_id,
        since=stamp(sample.since),
        until=stamp(sample.until),
        drawn_by=sample.drawn_by,
    )


# --- the servicer ---------------------------------------------------------------------------


class OversightServicer(oversight_pb2_grpc.OversightServicer):
    """gRPC face of :class:`OversightService`, audit sampling and proofs."""

    def __init__(
        self, service: OversightService, audit: AuditSampling | None = None, proofs: Proofs | None = None
    ):
        self._service = service
        self._audit = audit
        self._proofs = proofs

    def _require_audit(self) -> AuditSampling:
        if self._audit is None:
            raise Unavailable("audit sampling is not configured on this broker")
        return self._audit

    def _require_proofs(self) -> Proofs:
        if self._proofs is None:
            raise Unavailable("proofs are not configured on this broker")
        return self._proofs

    async def DrawAuditSample(
        self, request: oversight_pb2.DrawAuditSampleRequest, context: Context
    ) -> oversight_pb2.AuditSample:
        try:
            principal = current_principal()
            scope_for(principal, "DrawAuditSample", provider_allowed=False)
            assert principal is not None
            wanted = validated_sample(
                request.consumer_organization_id,
                _time(request, "since"),
                _time(request, "until"),
                request.size,
                request.seed,
                request.days_to_answer,
            )
            sample = await self._require_audit().draw(principal, wanted)
            log.info(
                "audit sample drawn",
                extra={
                    "event": "audit",
                    "org": principal.organization_id,
                    "sample_id": sample.sample_id,
                    "tasks": len(sample.tasks),
                },
            )
            return sample_message(sample)
        except Exception as exc:
            await abort(context, exc)

    async def ListAuditTasks(
        self, request: oversight_pb2.ListAuditTasksRequest, context: Context
    ) -> oversight_pb2.AuditTasks:
        try:
            scope = scope_for(
                current_principal(), "ListAuditTasks", provider_allowed=False, consumer_allowed=True
            )
            state = ""
            if request.state:
                if request.state not in _TASK_STATE_NAMES:
                    raise InvalidRequest(
                        [FieldViolation("state", "must be AUDIT_TASK_STATE_OPEN, _JUSTIFIED or _OVERDUE")]
                    )
                state = _TASK_STATE_NAMES[request.state]
            tasks = await self._require_audit().tasks(
                scope,
                sample_id=request.sample_id.strip(),
                consumer_organization_id=request.consumer_organization_id.strip(),
                state=state,
                page_size=request.page_size,
            )
            return oversight_pb2.AuditTasks(tasks=[task_message(t) for t in tasks])
        except Exception as exc:
            await abort(context, exc)

    async def JustifyAuditTask(
        self, request: oversight_pb2.JustifyAuditTaskRequest, context: Context
    ) -> oversight_pb2.AuditTask:
        try:
            principal = current_principal()
            if principal is None:
                raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
            task = await self._require_audit().justify(principal, request.task_id, request.justification)
            log.info(
                "audit task justified",
                extra={"event": "audit", "org": principal.organization_id, "task_id": task.task_id},
            )
            return task_message(task)
        except Exception as exc:
            await abort(context, exc)

    async def GetProof(self, request: oversight_pb2.GetProofRequest, context: Context) -> oversight_pb2.Proof:
        try:
            principal = current_principal()
            if principal is None:
                raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
            proof = await self._require_proofs().proof(principal, request.trace_id)
            return oversight_pb2.Proof(
                trace=trace_message(proof.entry),
                consumer_organization_name=proof.organisation_name,
                verification_code=proof.verification_code,
                record_hash=proof.record_hash,
                attestations=[
                    oversight_pb2.AttestationDigest(
                        certificate_type_id=a.certificate_type_id, provider_id=a.provider_id, sha256=a.sha256
                    )
                    for a in proof.attestations
                ],
                sealed=proof.sealed,
            )
        except Exception as exc:
            await abort(context, exc)

    async def VerifyProof(
        self, request: oversight_pb2.VerifyProofRequest, context: Context
    ) -> oversight_pb2.ProofVerification:
        try:
            if current_principal() is None:
                raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
            found = await self._require_proofs().verify(request.verification_code)
            if not found.matches:
                return oversight_pb2.ProofVerification(matches=False)
            assert found.created_at is not None
            return oversight_pb2.ProofVerification(
                matches=True,
                created_at=stamp(found.created_at),
                consumer_organization_id=found.consumer_organization_id,
                consumer_organization_name=found.consumer_organization_name,
                procedure_code=found.procedure_code,
                decision=DECISION.number(found.decision),
                certificate_type_ids=list(found.certificate_type_ids),
                intact=found.intact,
                sealed=found.sealed,
                chain_id=found.chain_id,
                seq=found.seq,
            )
        except Exception as exc:
            await abort(context, exc)

    async def ListTraces(
        self, request: oversight_pb2.ListTracesRequest, context: Context
    ) -> oversight_pb2.ListTracesResponse:
        try:
            scope = scope_for(current_principal(), "ListTraces", provider_allowed=True, consumer_allowed=True)
            page = await self._service.list_traces(
                trace_filter(request.filter),
                scope,
                page_size=request.page_size,
                page_token=request.page_token,
            )
            return oversight_pb2.ListTracesResponse(
                traces=[trace_message(e) for e in page.entries], next_page_token=page.next_page_token
            )
        except Exception as exc:  # every failure leaves through the one table
            await abort(context, exc)

    async def GetUsage(self, request: oversight_pb2.GetUsageRequest, context: Context) -> oversight_pb2.Usage:
        try:
            scope = scope_for(current_principal(), "GetUsage", provider_allowed=True)
            grouping = USAGE_GROUPING.from_proto(request.group_by)
            if grouping is None:
                raise InvalidRequest([FieldViolation("group_by", f"must be {USAGE_GROUPING.choices()}")])
            table = await self._service.usage(
                grouping, scope, since=_time(request, "since"), until=_time(request, "until")
            )
            return oversight_pb2.Usage(
                group_by=USAGE_GROUPING.to_proto(table.grouping),
                rows=[usage_row_message(row) for row in table.rows],
                traces_scanned=table.traces_scanned,
                hours_rolled_up=table.hours_rolled_up,
            )
        except Exception as exc:
            await abort(context, exc)

    async def QueryUsage(
        self, request: oversight_pb2.QueryUsageRequest, context: Context
    ) -> oversight_pb2.UsageFacts:
        try:
            principal = current_principal()
            if request.open_data:
                if principal is None:
                    raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
                scope = Scope()
            else:
                scope = scope_for(principal, "QueryUsage", provider_allowed=True, consumer_allowed=True)
            errors: list[FieldViolation] = []
            group_by = []
            for i, number in enumerate(request.group_by):
                dimension = USAGE_DIMENSION.from_proto(number)
                if dimension is None:
                    errors.append(FieldViolation(f"group_by[{i}]", f"must be {USAGE_DIMENSION.choices()}"))
                elif dimension.value in group_by:
                    errors.append(FieldViolation(f"group_by[{i}]", "repeats a dimension"))
                else:
                    group_by.append(dimension.value)
            bucket = USAGE_BUCKET.from_proto(request.bucket) if request.bucket else None
            if request.bucket and bucket is None:
                errors.append(FieldViolation("bucket", f"must be {USAGE_BUCKET.choices()}"))
            fields = FieldErrors()
            equal = {}
            for name in (
                "consumer_organization_id",
                "procedure_code",
                "certificate_type_id",
                "provider_id",
                "outcome",
                "denial_reason",
            ):
                value = fields.text(name, getattr(request, name), max_len=128, required=False)
                if value:
                    equal[name] = value
            errors += fields.violations
            if request.legal_basis_kind:
                kind = LEGAL_BASIS_KIND.from_proto(request.legal_basis_kind)
                if kind is None:
                    errors.append(FieldViolation("legal_basis_kind", f"must be {LEGAL_BASIS_KIND.choices()}"))
                else:
                    equal["legal_basis_kind"] = kind.value
            if errors:
                raise InvalidRequest(errors)
            table = await self._service.facts(
                scope,
                FactFilter(since=_time(request, "since"), until=_time(request, "until"), equal=equal),
                group_by,
                bucket.value if bucket is not None else "all",
                open_data=request.open_data,
            )
            return oversight_pb2.UsageFacts(
                facts=[
                    oversight_pb2.UsageFact(
                        bucket=r.bucket,
                        dimensions=list(r.dimensions),
                        checks=r.checks,
                        requests=r.requests,
                        suppressed=r.suppressed,
                    )
                    for r in table.rows
                ],
                hours_rolled_up=table.hours_rolled_up,
                traces_scanned=table.traces_scanned,
            )
        except Exception as exc:
            await abort(context, exc)

    async def GetWitnessedHeads(
        self, request: oversight_pb2.GetWitnessedHeadsRequest, context: Context
    ) -> oversight_pb2.WitnessedHeads:
        try:
            scope_for(current_principal(), "GetWitnessedHeads", provider_allowed=False)
            heads = await self._service.witnessed_heads()
            return oversight_pb2.WitnessedHeads(
                heads=[
                    oversight_pb2.WitnessedHead(
                        chain_id=h.chain_id, seq=h.seq, head_hash=h.head_hash, signature=h.signature
                    )
                    for h in heads
                ]
            )
        except Exception as exc:
            await abort(context, exc)

    async def GetResidentReport(
        self, request: oversight_pb2.GetResidentReportRequest, context: Context
    ) -> oversight_pb2.ResidentReport:
        try:
            principal = current_principal()
            scope_for(principal, "GetResidentReport", provider_allowed=False)
            assert principal is not None
            subject, purpose, basis, case_file = report_arguments(request)
            report = await self._service.resident_report(
                principal,
                subject,
                purpose,
                basis,
                case_file_id=case_file,
                since=_time(request, "since"),
                until=_time(request, "until"),
            )
            log.info(
                "resident report consulted",
                extra={
                    "event": "oversight",
                    "org": principal.organization_id,
                    "trace_id": report.report_trace_id,
                    "accesses": len(report.accesses),
                },
            )
            return oversight_pb2.ResidentReport(
                accesses=[access_message(a) for a in report.accesses], report_trace_id=report.report_trace_id
            )
        except Exception as exc:
            await abort(context, exc)
