"""``onceonly verify``, ``verify-bulk``, ``catalog`` and ``jwks``: the Broker service for people.

    onceonly verify --org ORG --unit UNIT --officer ID --procedure CODE --purpose TEXT --case-file ID
                    (--law REFERENCE | --consent REFERENCE | --no-objection NOTICE)
                    --subject DNI:35731890X --check TYPE[:k=v,...] ...
    onceonly verify-bulk FILE.csv (the same request options; one subject per row)
    onceonly catalog
    onceonly jwks

Client commands talk to ``--broker`` (``ONCEONLY_BROKER_TARGET``, default 127.0.0.1:50051) with
explicit credentials: a client certificate (``--cert NAME`` from ``--tls-dir``, or ``--cert`` /
``--key`` paths), a bearer token (``--token`` / ``ONCEONLY_TOKEN``, over TLS checked with
``--ca``), or ``--insecure`` against a broker in local-development mode. They print tables, or
JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from onceonly.consumers._console import (
    EXIT_INVALID,
    EXIT_OK,
    client_command,
    client_credentials,
    connect,
    credential_error,
    error_json,
    exit_code,
    print_error,
    table,
)
from onceonly.consumers.bulk import (
    BulkInputError,
    batch_id_for,
    file_totals,
    iter_summary,
    read_rows,
    run_bulk,
)
from onceonly.consumers.client import (
    BrokerClient,
    BrokerError,
    Check,
    Consumer,
    LegalBasis,
    Purpose,
    Subject,
    Verification,
    VerificationJob,
)
from onceonly.pki import identity_from_pem
from onceonly.wire import LEGAL_BASIS_KIND, short_enum_names

T = TypeVar("T")


def add_commands(sub: Any) -> None:
    """Register ``verify``, ``verify-bulk``, ``submit``, ``job``, ``catalog`` and ``jwks``."""
    verify = client_command(sub, "verify", "verify facts about a resident")
    verify.add_argument("--request-id", help="idempotency key (default: a new random id)")
    add_request_arguments(verify)
    verify.add_argument("--subject", required=True, help="TYPE:NUMBER, e.g. DNI:12345678Z")
    verify.set_defaults(handler=cmd_verify)

    bulk = client_command(sub, "verify-bulk", "verify the same facts for every subject of a CSV file")
    bulk.add_argument("file", type=Path, help="CSV with document_type,document_number[,request_id]")
    add_request_arguments(bulk)
    bulk.add_argument("--out", type=Path, help="results file, JSON lines (default FILE.results.jsonl)")
    bulk.add_argument("--window", type=int, default=64, help="subjects decided at once (default %(default)s)")
    bulk.add_argument("--retries", type=int, default=3, help="reconnections after a broken stream")
    bulk.add_argument(
        "--reference",
        metavar="COLUMN",
        help="a column of yours copied into each result line (default: 'reference', if the file has it)",
    )
    bulk.add_argument(
        "--include-document",
        action="store_true",
        help="write each subject's document number into the results file (off: rows are named by line)",
    )
    bulk.set_defaults(handler=cmd_verify_bulk, timeout=None)

    submit = client_command(
        sub, "submit", "submit subjects to be verified later (asynchronous); prints the job"
    )
    add_request_arguments(submit)
    submit.add_argument(
        "--subject",
        required=True,
        action="append",
        metavar="TYPE:NUMBER",
        help="a resident, e.g. DNI:35731890X (repeat for up to 1,000)",
    )
    submit.add_argument(
        "--submission-id", help="idempotency key of the submission (default: a new random id)"
    )
    submit.set_defaults(handler=cmd_submit)

    job = client_command(sub, "job", "an asynchronous verification's state, and its results once done")
    job.add_argument("job_id", help="the id `onceonly submit` printed")
    job.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="poll until the job is done, at most this long",
    )
    job.set_defaults(handler=cmd_job)

    catalog = client_command(sub, "catalog", "list certificate types, and what your agreements allow")
    catalog.add_argument(
        "--allowed", action="store_true", help="only the types your agreements in force allow you to verify"
    )
    catalog.set_defaults(handler=cmd_catalog)
    client_command(sub, "jwks", "print the broker's public keys (JWKS)").set_defaults(handler=cmd_jwks)


def claims_text(claims: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in claims.items())


def print_verification(v: Verification) -> None:
    print(f"request {v.request_id}  trace {v.trace_id}")
    rows = [
        (
            o.certificate_type_id,
            o.provider_id,
            o.status,
            claims_text(dict(o.claims)) or o.detail,
            o.latency_ms,
        )
        for o in v.outcomes
    ]
    print(table(["certificate type", "provider", "status", "claims / detail", "ms"], rows))


def verification_json(v: Verification) -> dict[str, Any]:
    return {
        "request_id": v.request_id,
        "trace_id": v.trace_id,
        "decided_at": v.decided_at.isoformat(),
        "outcomes": [
            {
                "certificate_type_id": o.certificate_type_id,
                "provider_id": o.provider_id,
                "status": o.status,
                "claims": dict(o.claims),
                "attestation": o.attestation,
                "detail": o.detail,
                "latency_ms": o.latency_ms,
            }
            for o in v.outcomes
        ],
    }


async def cmd_verify(args: argparse.Namespace) -> int:
    try:
        consumer, purpose, basis, checks = request_parts(args)
        subject = Subject.parse(args.subject)
        client = connect(args, args.timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    async with client:
        try:
            result = await client.verify(
                consumer=consumer,
                purpose=purpose,
                legal_basis=basis,
                subject=subject,
                checks=checks,
                request_id=args.request_id,
            )
        except BrokerError as err:
            if args.json:
                print(json.dumps(error_json(err), indent=2))
            else:
                print_error(err)
            return exit_code(err)
    if args.json:
        print(json.dumps(verification_json(result), indent=2))
    else:
        print_verification(result)
    return EXIT_OK


async def cmd_verify_bulk(args: argparse.Namespace) -> int:
    try:
        consumer, purpose, basis, checks = request_parts(args)
        batch = batch_id_for(
            args.file,
            [
                consumer.organization_id,
                purpose.procedure_code,
                purpose.case_file_id,
                basis.kind,
                basis.reference,
                *args.check,
            ],
        )
        rows = read_rows(args.file, batch, args.reference)
        client = connect(args, args.timeout or 10.0)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    out = args.out or args.file.with_name(args.file.name + ".results.jsonl")
    started = time.monotonic()
    counts: Counter[str] = Counter()
    async with client:
        try:
            await run_bulk(
                client,
                rows=rows,
                out_path=out,
                consumer=consumer,
                purpose=purpose,
                legal_basis=basis,
                checks=checks,
                window=args.window,
                retries=args.retries,
                include_document=args.include_document,
                counts=counts,
            )
        except BrokerError as err:
            print_error(err)
            return exit_code(err)
        except BulkInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
        except asyncio.CancelledError:  # Ctrl-C
            answered = sum(file_totals(out, rows).values())
            print(
                f"\ninterrupted: {answered:,} of {len(rows):,} rows answered so far, in {out}; "
                "run the same command again to resume (answered rows are not sent twice)",
                file=sys.stderr,
            )
            raise
    totals = file_totals(out, rows)
    summary = list(iter_summary(counts, totals, time.monotonic() - started, len(rows)))
    if args.json:
        print(json.dumps({"results": str(out), "totals": dict(totals), "this_run": dict(counts)}, indent=2))
    else:
        print("\n".join(summary))
        print(f"results: {out}")
    return EXIT_OK


def job_json(job: VerificationJob) -> dict[str, Any]:
    def when(t: Any) -> str | None:
        return t.isoformat() if t is not None else None

    return {
        "job_id": job.job_id,
        "submission_id": job.submission_id,
        "state": job.state,
        "subjects": job.subjects,
        "decided": job.decided,
        "submitted_at": when(job.submitted_at),
        "estimated_done_at": when(job.estimated_done_at),
        "done_at": when(job.done_at),
        "expires_at": when(job.expires_at),
        "results": [
            {"request_id": item.request_id, **verification_json(item.verification)}
            if item.verification is not None
            else {
                "request_id": item.request_id,
                **(error_json(item.error) if item.error else {"error": None}),
            }
            for item in job.results
        ],
    }


def print_job(job: VerificationJob) -> None:
    print(f"job {job.job_id}  {job.state}  {job.decided}/{job.subjects} decided")
    if job.done_at is not None:
        print(f"done at {job.done_at.isoformat()}; results kept until {job.expires_at.isoformat()}")
    elif job.estimated_done_at is not None and job.state != "EXPIRED":
        print(
            f"expected by {job.estimated_done_at.isoformat()}; "
            f"`onceonly job {job.job_id} --wait 60` waits for it"
        )
    for item in job.results:
        print()
        if item.verification is not None:
            print_verification(item.verification)
        elif item.error is not None:
            print(f"request {item.request_id}")
            print_error(item.error, label="refused", file=sys.stdout)


def show_job(args: argparse.Namespace, job: VerificationJob | int) -> int:
    """Print the job (``--json``: as JSON); an ``int`` is the exit code of a call that failed."""
    if isinstance(job, int):
        return job
    if args.json:
        print(json.dumps(job_json(job), indent=2))
    else:
        print_job(job)
    return EXIT_OK


async def cmd_submit(args: argparse.Namespace) -> int:
    try:
        consumer, purpose, basis, checks = request_parts(args)
        # Request ids follow from the submission id, so the same command run again is the same job.
        submission_id = args.submission_id or uuid.uuid4().hex
        subjects = [(f"{submission_id}-{i + 1}", Subject.parse(text)) for i, text in enumerate(args.subject)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    job = await _fetch(
        args,
        lambda client: client.submit_verification(
            consumer=consumer,
            purpose=purpose,
            legal_basis=basis,
            checks=checks,
            subjects=subjects,
            submission_id=submission_id,
        ),
    )
    return show_job(args, job)


async def cmd_job(args: argparse.Namespace) -> int:
    async def poll(client: BrokerClient) -> VerificationJob:
        deadline = time.monotonic() + max(0.0, args.wait)
        while True:
            job = await client.verification_result(args.job_id)
            if job.state in ("DONE", "EXPIRED") or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    job = await _fetch(args, poll)
    return show_job(args, job)


async def _fetch(args: argparse.Namespace, call: Callable[[BrokerClient], Awaitable[T]]) -> T | int:
    """``call`` on a client of the flags' broker, or the exit code of why it could not be made."""
    try:
        client = connect(args, args.timeout)
    except ValueError as exc:
        return credential_error(exc)
    async with client:
        try:
            return await call(client)
        except BrokerError as err:
            print_error(err)
            return exit_code(err)


async def cmd_catalog(args: argparse.Namespace) -> int:
    catalog = await _fetch(args, lambda client: client.catalog(allowed_only=args.allowed))
    if isinstance(catalog, int):
        return catalog
    if args.json:
        print(json.dumps(short_enum_names(catalog), indent=2))
        return EXIT_OK
    rows = [
        (
            c.id,
            c.provider_id,
            ", ".join(f"{p.name}{'' if p.required else '?'}" for p in c.parameters) or "-",
            ", ".join(p.name for p in c.claims),
            "/".join(sorted(LEGAL_BASIS_KIND.name(b) for b in c.allowed_legal_bases)),
            "; ".join(
                f"{u.procedure_code} ({'/'.join(LEGAL_BASIS_KIND.name(b) for b in u.legal_bases)}; "
                f"{u.agreement_id} v{u.agreement_version})"
                for u in c.allowed
            )
            or "-",
        )
        for c in catalog.certificate_types
    ]
    headers = ["certificate type", "provider", "parameters", "claims", "legal bases", "you may use it for"]
    print(table(headers, rows))
    return EXIT_OK


async def cmd_jwks(args: argparse.Namespace) -> int:
    jwks = await _fetch(args, lambda client: client.jwks())
    if isinstance(jwks, int):
        return jwks
    if args.json:
        print(json.dumps(jwks, indent=2))
        return EXIT_OK
    rows = [
        (k.get("kid", ""), k.get("kty", ""), k.get("crv", ""), k.get("use", "")) for k in jwks.get("keys", [])
    ]
    print(table(["kid", "type", "curve", "use"], rows))
    print("the broker signs attestations and checkpoints with these keys; --json prints the JWKS itself")
    return EXIT_OK


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """Who asks, why, under which basis, and which checks: shared by verify and verify-bulk."""
    p.add_argument(
        "--org", help="consumer organisation id (default: the organisation your certificate names)"
    )
    p.add_argument("--unit", required=True, help="unit handling the case")
    p.add_argument("--officer", required=True, help="officer staff id")
    p.add_argument("--officer-document", help="the officer's own document, TYPE:NUMBER")
    p.add_argument("--procedure", required=True, help="procedure code")
    p.add_argument("--purpose", required=True, help="purpose of the query")
    p.add_argument("--case-file", required=True, help="case file id")
    basis = p.add_mutually_exclusive_group(required=True)
    basis.add_argument("--law", help="legal basis: the law cited")
    basis.add_argument("--consent", help="legal basis: the subject's consent reference")
    basis.add_argument(
        "--no-objection",
        metavar="NOTICE",
        help="legal basis: the resident was told (NOTICE identifies how) and did not object",
    )
    p.add_argument(
        "--check",
        action="append",
        required=True,
        metavar="TYPE[:k=v,...]",
        help="certificate type to verify, repeatable",
    )


def organisation_of_certificate(args: argparse.Namespace) -> str:
    """The organisation the client certificate names (``O=``): what ``--org`` would repeat."""
    tls = client_credentials(args).get("tls")
    if tls is None or tls.cert is None:
        raise ValueError("--org is required without a client certificate (with --token or --insecure)")
    try:
        return identity_from_pem(Path(tls.cert).read_bytes()).organization_id
    except OSError as exc:
        raise ValueError(f"cannot read the certificate {tls.cert}: {exc.strerror}") from None


def request_parts(args: argparse.Namespace) -> tuple[Consumer, Purpose, LegalBasis, list[Check]]:
    """The shared request arguments as client types; ``ValueError`` names a malformed one."""
    if args.law is not None:
        basis = LegalBasis.law(args.law)
    elif args.consent is not None:
        basis = LegalBasis.consent(args.consent)
    else:
        basis = LegalBasis.no_objection(args.no_objection)
    officer_doc = Subject.parse(args.officer_document) if args.officer_document else None
    return (
        Consumer(args.org or organisation_of_certificate(args), args.unit, args.officer, officer_doc),
        Purpose(args.procedure, args.purpose, args.case_file),
        basis,
        [Check.parse(c) for c in args.check],
    )
