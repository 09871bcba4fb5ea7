"""``onceonly oversight traces|usage|resident|witness``: the Oversight service for people.

Credentials as for the other client commands; without ``--cert``, ``--token`` or ``--insecure``
the certificate ``oversight`` in ``--tls-dir`` is used::

    onceonly oversight traces [--since ISO] [--until ISO] [--consumer ORG] [--officer ID]
                              [--procedure CODE] [--legal-basis LAW|CONSENT|NO_OBJECTION] [--provider ID]
                              [--certificate-type ID] [--outcome OUTCOME] [--limit N] [--json]
    onceonly oversight usage --by provider|consumer|procedure [--since ISO] [--until ISO] [--json]
    onceonly oversight resident DNI:35731890X --purpose TEXT (--law REF | --consent REF)
                                [--case-file ID] [--since ISO] [--until ISO] [--json]
    onceonly oversight witness [--out FILE]      keep a copy of the ledger's signed chain heads

Times are ISO 8601, UTC unless they carry an offset. Options may come before or after the
subcommand. Exit codes as for the other client commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from onceonly.consumers._console import (
    client_command,
    connect_as,
    dump_json,
    inherit_options,
    run_client,
    table,
    utc_time,
)
from onceonly.consumers.client import LegalBasis, Subject
from onceonly.consumers.oversight import GROUPINGS, OFFICER_LABELS, OversightClient, TraceQuery

DEFAULT_CERT = "oversight"


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 date or date-time; without an offset it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def connect(args: argparse.Namespace) -> OversightClient:
    """An Oversight client with the flags' credentials; the ``oversight`` certificate by default."""
    return connect_as(args, OversightClient, DEFAULT_CERT, "oversight")


async def _run(args: argparse.Namespace, body: Callable[[OversightClient], Awaitable[None]]) -> int:
    return await run_client(args, connect, body)


async def cmd_traces(args: argparse.Namespace) -> int:
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
            print(dump_json([asdict(t) for t in found]))
            return
        rows = [
            (
                utc_time(t.created_at),
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
    async def body(client: OversightClient) -> None:
        usage = await client.usage(args.by, since=args.since, until=args.until)
        if args.json:
            print(dump_json(asdict(usage)))
            return

        def counted(counts: Mapping[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in counts.items()) or "-"

        rows = [
            (
                r.key,
                r.total,
                counted(r.requests_by_decision),
                counted(r.checks_by_status),
                r.latency_p50_ms,
                r.latency_p90_ms,
                r.latency_p99_ms,
            )
            for r in usage.rows
        ]
        headers = [args.by, "total", "requests", "checks", "p50 ms", "p90 ms", "p99 ms"]
        print(table(headers, rows))
        rolled = (
            f", {usage.hours_rolled_up} whole hour(s) from hourly roll-ups" if usage.hours_rolled_up else ""
        )
        print(f"{usage.traces_scanned} trace(s) scanned{rolled}")

    return await _run(args, body)


async def cmd_resident(args: argparse.Namespace) -> int:
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
            print(dump_json(asdict(report)))
            return
        rows = [
            (
                utc_time(a.created_at),
                a.consumer_organization_name or a.consumer_organization_id,
                a.consumer_unit,
                a.procedure_code,
                a.purpose_text,
                f"{a.legal_basis_kind} {a.legal_basis_reference}",
                ", ".join(a.certificate_type_ids) or "-",
                OFFICER_LABELS.get(a.officer_identification, "-"),
                a.decision + (f" ({a.denial_reason})" if a.denial_reason else ""),
                a.disclosure or "-",
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
            "officer",
            "decision",
            "hidden from the resident",
        ]
        print(table(headers, rows))
        print(f"{len(report.accesses)} access(es); this lookup is recorded as trace {report.report_trace_id}")

    return await _run(args, body)


async def cmd_witness(args: argparse.Namespace) -> int:
    async def body(client: OversightClient) -> None:
        heads = await client.witnessed_heads()
        if args.out is None:
            for head in heads:
                print(json.dumps(head))
            return
        kept: list[dict[str, Any]] = []
        if args.out.exists():
            kept = [json.loads(line) for line in args.out.read_text("utf-8").splitlines() if line.strip()]
        seen = {(h["chain_id"], h["seq"], h["signature"]) for h in kept}
        new = [h for h in heads if (h["chain_id"], h["seq"], h["signature"]) not in seen]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as f:
            for head in new:
                f.write(json.dumps(head) + "\n")
        print(f"{len(new)} new signed head(s) added to {args.out} ({len(kept) + len(new)} in all)")

    return await _run(args, body)


def add_commands(sub: Any) -> argparse.ArgumentParser:
    """Register ``onceonly oversight traces|usage|resident``."""
    parent = client_command(
        sub, "oversight", "review traces, usage and residents' access reports (oversight bodies)"
    )
    commands = parent.add_subparsers(
        dest="oversight_command", required=True, metavar="{traces,usage,resident,witness}"
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, description=help_text)
        inherit_options(p, parent)
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
        "--legal-basis",
        choices=["LAW", "CONSENT", "NO_OBJECTION"],
        type=str.upper,
        help="kind of legal basis",
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

    witness = command("witness", "copy the ledger's signed chain heads, to check the ledger against later")
    witness.add_argument(
        "--out",
        type=Path,
        help="keep them in this file (heads already in it are kept; new ones are added); "
        "`onceonly ledger verify --witness FILE` checks a database against it",
    )
    witness.set_defaults(handler=cmd_witness)
    return parent
