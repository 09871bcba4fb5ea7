"""The Oversight client and the ``onceonly oversight`` commands.

    tls = ClientTls.from_dir(Path("var/pki"), "oversight")   # an oversight body's certificate
    async with OversightClient("127.0.0.1:50051", tls=tls) as oversight:
        async for trace in oversight.traces(TraceQuery(procedure_code="HOUSING-RENT-SUBSIDY"), limit=200):
            ...
        usage = await oversight.usage("provider")
        report = await oversight.resident_report(
            Subject.dni("12345678Z"), purpose="Complaint 2026/17", legal_basis=LegalBasis.law("RGPD art. 58")
        )

Command line (credentials as for the other client commands; without ``--cert``, ``--token``
or ``--insecure`` the certificate ``oversight`` in ``--tls-dir`` is used)::

    onceonly oversight traces [--since ISO] [--until ISO] [--consumer ORG] [--officer ID]
                              [--procedure CODE] [--legal-basis LAW|CONSENT] [--provider ID]
                              [--certificate-type ID] [--outcome OUTCOME] [--limit N] [--json]
    onceonly oversight usage --by provider|consumer|procedure [--since ISO] [--until ISO] [--json]
    onceonly oversight resident DNI:12345678Z --purpose TEXT (--law REF | --consent REF) [--json]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from onceonly.v1 import broker_pb2, common_pb2, oversight_pb2, oversight_pb2_grpc

from .client import BrokerClient, LegalBasis, Subject, broker_error

DEFAULT_CERT = "oversight"
_DOC_TYPES = {
    "DNI": common_pb2.DOCUMENT_TYPE_DNI,
    "NIE": common_pb2.DOCUMENT_TYPE_NIE,
    "PASSPORT": common_pb2.DOCUMENT_TYPE_PASSPORT,
}
GROUPINGS = {
    "provider": oversight_pb2.USAGE_GROUPING_PROVIDER,
    "consumer": oversight_pb2.USAGE_GROUPING_CONSUMER,
    "procedure": oversight_pb2.USAGE_GROUPING_PROCEDURE,
}


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


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str
    total: int
    counts: Mapping[str, int]
    latency_p50_ms: int
    latency_p90_ms: int
    latency_p99_ms: int


@dataclass(frozen=True, slots=True)
class Usage:
    group_by: str
    rows: tuple[UsageRow, ...]
    traces_scanned: int


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


@dataclass(frozen=True, slots=True)
class ResidentReport:
    accesses: tuple[Access, ...]
    report_trace_id: str


def _stamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError("give timezone-aware times")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _time(stamp: timestamp_pb2.Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)


def _name(enum: Any, value: int, prefix: str) -> str:
    return "" if value == 0 else str(enum.Name(value)).removeprefix(prefix)


def _basis_name(value: int) -> str:
    return _name(common_pb2.LegalBasisKind, value, "LEGAL_BASIS_KIND_")


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
        legal_basis_kind=_basis_name(m.legal_basis.kind),
        legal_basis_reference=m.legal_basis.reference,
        subject_document_type=_name(common_pb2.DocumentType, m.subject_document_type, "DOCUMENT_TYPE_"),
        certificate_type_ids=tuple(m.certificate_type_ids),
        decision=_name(oversight_pb2.Decision, m.decision, "DECISION_"),
        denial_reason=_name(common_pb2.DenialReason, m.denial_reason, "DENIAL_REASON_"),
        denial_detail=m.denial_detail,
        checks=tuple(
            TracedCheck(
                c.certificate_type_id,
                c.provider_id,
                _name(broker_pb2.CheckStatus, c.status, "CHECK_STATUS_"),
                c.latency_ms,
            )
            for c in m.checks
        ),
        duration_ms=m.duration_ms,
        chain_id=m.chain_id,
        seq=m.seq,
    )


def _access(m: oversight_pb2.ResidentAccess) -> Access:
    return Access(
        trace_id=m.trace_id,
        created_at=_time(m.created_at),
        consumer_organization_id=m.consumer_organization_id,
        consumer_organization_name=m.consumer_organization_name,
        consumer_unit=m.consumer_unit,
        procedure_code=m.procedure_code,
        purpose_text=m.purpose_text,
        legal_basis_kind=_basis_name(m.legal_basis.kind),
        legal_basis_reference=m.legal_basis.reference,
        certificate_type_ids=tuple(m.certificate_type_ids),
        decision=_name(oversight_pb2.Decision, m.decision, "DECISION_"),
        denial_reason=_name(common_pb2.DenialReason, m.denial_reason, "DENIAL_REASON_"),
    )


# --- the client ---------------------------------------------------------------------------------


class OversightClient(BrokerClient):
    """A :class:`BrokerClient` that also calls the Oversight service (same channel, same credentials)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._oversight = oversight_pb2_grpc.OversightStub(self._channel)

    async def __aenter__(self) -> OversightClient:
        return self

    async def list_traces(
        self, query: TraceQuery = TraceQuery(), *, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Trace], str]:
        """One page of traces, newest first, and the token of the next page (empty on the last)."""
        basis = {"LAW": common_pb2.LEGAL_BASIS_KIND_LAW, "CONSENT": common_pb2.LEGAL_BASIS_KIND_CONSENT}
        kind = query.legal_basis_kind.upper()
        if kind and kind not in basis:
            raise ValueError(f"legal basis must be LAW or CONSENT, got {query.legal_basis_kind!r}")
        request = oversight_pb2.ListTracesRequest(
            filter=oversight_pb2.TraceFilter(
                consumer_organization_id=query.consumer_organization_id,
                officer_id=query.officer_id,
                procedure_code=query.procedure_code,
                legal_basis_kind=basis.get(kind, common_pb2.LEGAL_BASIS_KIND_UNSPECIFIED),
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
        grouping = GROUPINGS.get(group_by.lower())
        if grouping is None:
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
            _name(oversight_pb2.UsageGrouping, reply.group_by, "USAGE_GROUPING_"),
            tuple(
                UsageRow(
                    r.key,
                    r.total,
                    dict(sorted(r.counts.items())),
                    r.latency_p50_ms,
                    r.latency_p90_ms,
                    r.latency_p99_ms,
                )
                for r in reply.rows
            ),
            reply.traces_scanned,
        )

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
                document_type=_DOC_TYPES.get(
                    subject.document_type.upper(), common_pb2.DOCUMENT_TYPE_UNSPECIFIED
                ),
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


# --- command line -------------------------------------------------------------------------------


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 date or date-time; without an offset it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def connect(args: argparse.Namespace) -> OversightClient:
    """An Oversight client with the flags' credentials; the ``oversight`` certificate by default."""
    from .cli import client_credentials

    if not (args.cert or args.token or args.insecure):
        args.cert = DEFAULT_CERT
    credentials = client_credentials(args)
    if "insecure_identity" in credentials:
        identity = credentials["insecure_identity"]
        credentials["insecure_identity"] = type(identity)(identity.organization_id, None, "oversight")
    return OversightClient(args.broker, timeout=args.timeout, **credentials)


async def _run(args: argparse.Namespace, body: Callable[[OversightClient], Any]) -> int:
    from .cli import EXIT_INVALID, EXIT_OK, error_json, exit_code, print_error
    from .client import BrokerError

    try:
        client = connect(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    async with client:
        try:
            await body(client)
        except BrokerError as err:
            if args.json:
                print(_dump(error_json(err)))
            else:
                print_error(err)
            return exit_code(err)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    return EXIT_OK


async def cmd_traces(args: argparse.Namespace) -> int:
    from .cli import table

    query = TraceQuery(
        since=args.since,
        until=args.until,
        consumer_organization_id=args.consumer or "",
        officer_id=args.officer or "",
        procedure_code=args.procedure or "",
        legal_basis_kind=args.legal_basis or "",
        provider_id=args.provider or "",
        certificate_type_id=args.certificate_type or "",
        outcome=(args.outcome or "").upper(),
    )

    async def body(client: OversightClient) -> None:
        found = [t async for t in client.traces(query, limit=args.limit)]
        if args.json:
            print(_dump([asdict(t) for t in found]))
            return
        rows = [
            (
                _when(t.created_at),
                t.consumer_organization_id,
                t.officer_id,
                t.procedure_code,
                f"{t.legal_basis_kind} {t.legal_basis_reference}",
                t.decision + (f" ({t.denial_reason})" if t.denial_reason else ""),
                ", ".join(f"{c.certificate_type_id}={c.status}" for c in t.checks) or "-",
                t.trace_id,
            )
            for t in found
        ]
        print(
            table(
                [
                    "time (UTC)",
                    "consumer",
                    "officer",
                    "procedure",
                    "legal basis",
                    "decision",
                    "checks",
                    "trace",
                ],
                rows,
            )
        )
        print(f"{len(found)} trace(s)")

    return await _run(args, body)


async def cmd_usage(args: argparse.Namespace) -> int:
    from .cli import table

    async def body(client: OversightClient) -> None:
        usage = await client.usage(args.by, since=args.since, until=args.until)
        if args.json:
            print(_dump(asdict(usage)))
            return
        rows = [
            (
                r.key,
                r.total,
                ", ".join(f"{k}={v}" for k, v in r.counts.items()),
                r.latency_p50_ms,
                r.latency_p90_ms,
                r.latency_p99_ms,
            )
            for r in usage.rows
        ]
        print(table([args.by, "total", "counts", "p50 ms", "p90 ms", "p99 ms"], rows))
        print(f"{usage.traces_scanned} trace(s) scanned")

    return await _run(args, body)


async def cmd_resident(args: argparse.Namespace) -> int:
    from .cli import table

    basis = LegalBasis.law(args.law) if args.law is not None else LegalBasis.consent(args.consent)

    async def body(client: OversightClient) -> None:
        report = await client.resident_report(
            Subject.parse(args.subject),
            purpose=args.purpose,
            legal_basis=basis,
            case_file_id=args.case_file or "",
            since=args.since,
            until=args.until,
        )
        if args.json:
            print(_dump(asdict(report)))
            return
        rows = [
            (
                _when(a.created_at),
                a.consumer_organization_name or a.consumer_organization_id,
                a.consumer_unit,
                a.procedure_code,
                a.purpose_text,
                f"{a.legal_basis_kind} {a.legal_basis_reference}",
                ", ".join(a.certificate_type_ids) or "-",
                a.decision + (f" ({a.denial_reason})" if a.denial_reason else ""),
            )
            for a in report.accesses
        ]
        headers = [
            "time (UTC)",
            "who",
            "unit",
            "procedure",
            "purpose",
            "legal basis",
            "certificates",
            "decision",
        ]
        print(table(headers, rows))
        print(f"{len(report.accesses)} access(es); this lookup is recorded as trace {report.report_trace_id}")

    return await _run(args, body)


def _inherit(child: argparse.ArgumentParser, parent: argparse.ArgumentParser) -> None:
    """Give ``child`` the options of ``parent`` (broker, credentials, --json…) without overriding
    values given before the subcommand: the copies set nothing unless used."""
    for action in parent._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        clone = copy.copy(action)
        clone.default = argparse.SUPPRESS
        if clone.help:  # the parent's default still applies: say which
            clone.help = clone.help.replace("%(default)s", str(action.default))
        child._add_action(clone)


def add_oversight_commands(
    sub: Any, client_parser: Callable[[str, str], argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """Add ``onceonly oversight traces|usage|resident`` (``client_parser`` gives the shared options)."""
    parent = client_parser(
        "oversight", "review traces, usage and residents' access reports (oversight bodies)"
    )
    commands = parent.add_subparsers(
        dest="oversight_command", required=True, metavar="{traces,usage,resident}"
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, description=help_text)
        _inherit(p, parent)
        return p

    def time_range(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--since", type=parse_time, help="from this time (ISO 8601; UTC unless an offset is given)"
        )
        p.add_argument("--until", type=parse_time, help="before this time (ISO 8601)")

    traces = command("traces", "list traces, newest first")
    time_range(traces)
    traces.add_argument("--consumer", help="consumer organisation id")
    traces.add_argument("--officer", help="officer id")
    traces.add_argument("--procedure", help="procedure code")
    traces.add_argument(
        "--legal-basis", choices=["LAW", "CONSENT"], type=str.upper, help="kind of legal basis"
    )
    traces.add_argument("--provider", help="provider id (traces with a check it served)")
    traces.add_argument("--certificate-type", help="certificate type id")
    traces.add_argument("--outcome", help="GRANTED, DENIED or a check status (VERIFIED, TIMEOUT, …)")
    traces.add_argument(
        "--limit", type=int, default=50, help="at most this many traces (default %(default)s)"
    )
    traces.set_defaults(handler=cmd_traces)

    usage = command("usage", "usage statistics: counts by outcome and latency percentiles")
    usage.add_argument("--by", required=True, choices=sorted(GROUPINGS), type=str.lower, help="grouping")
    time_range(usage)
    usage.set_defaults(handler=cmd_usage)

    resident = command("resident", "who consulted a resident's data (this lookup is traced)")
    resident.add_argument("subject", help="TYPE:NUMBER, e.g. DNI:12345678Z")
    resident.add_argument("--purpose", required=True, help="why the report is consulted")
    basis = resident.add_mutually_exclusive_group(required=True)
    basis.add_argument("--law", help="legal basis: the law cited")
    basis.add_argument("--consent", help="legal basis: the resident's consent reference")
    resident.add_argument("--case-file", help="the oversight case file")
    time_range(resident)
    resident.set_defaults(handler=cmd_resident)
    return parent
