"""The ``onceonly`` command-line tool.

    onceonly pki init [--dir var/pki]
    onceonly pki issue --role consumer --org L01280796 --name housing-app [--dir var/pki]
    onceonly serve broker [--listen HOST:PORT] [--provider ID=HOST:PORT ...] [--seed-agreements FILE]
                          [--tls-dir DIR] [--jwt-issuers FILE] [--token-listen HOST:PORT] [--insecure]
    onceonly serve provider NAME [--listen HOST:PORT] [--tls-dir DIR] [--insecure]
    onceonly verify --org ORG --unit UNIT --officer ID --procedure CODE --purpose TEXT --case-file ID
                    (--law REFERENCE | --consent REFERENCE) --subject DNI:12345678Z --check TYPE[:k=v,...] ...
    onceonly catalog
    onceonly jwks
    onceonly demo
    onceonly health --target HOST:PORT [--cert NAME] [--tls-dir DIR]

Client commands talk to ``--broker`` (``ONCEONLY_BROKER_TARGET``, default 127.0.0.1:50051) with
explicit credentials: a client certificate (``--cert NAME`` from ``--tls-dir``, or ``--cert`` /
``--key`` paths), a bearer token (``--token`` / ``ONCEONLY_TOKEN``, over TLS checked with
``--ca``), or ``--insecure`` against a broker in local-development mode. They print tables, or
JSON with ``--json``. Exit codes: 0 answered, 2 invalid input, 3 denied by policy, 4 broker
unavailable, 5 not authenticated, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from onceonly.consumers.client import (
    DEFAULT_TARGET,
    BrokerClient,
    BrokerError,
    Check,
    Consumer,
    Denied,
    InsecureIdentity,
    InvalidArgument,
    LegalBasis,
    NotFound,
    Purpose,
    Subject,
    Unauthenticated,
    Unavailable,
    Verification,
)
from onceonly.wire import LEGAL_BASIS_KIND, short_enum_names

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_DENIED, EXIT_UNAVAILABLE, EXIT_UNAUTHENTICATED = 0, 1, 2, 3, 4, 5
DEFAULT_TLS_DIR = Path("var/pki")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _claims_text(claims: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in claims.items())


def print_verification(v: Verification) -> None:
    print(f"request {v.request_id}  trace {v.trace_id}")
    rows = [
        (
            o.certificate_type_id,
            o.provider_id,
            o.status,
            _claims_text(dict(o.claims)) or o.detail,
            o.latency_ms,
        )
        for o in v.outcomes
    ]
    print(table(["certificate type", "provider", "status", "claims / detail", "ms"], rows))


def print_error(err: BrokerError) -> None:
    print(f"error: {err.code} {err.reason}: {err.message}", file=sys.stderr)
    for fld, description in err.field_violations:
        print(f"  field {fld}: {description}", file=sys.stderr)
    for rule, subject, description in err.rule_violations:
        print(f"  rule {rule} ({subject}): {description}", file=sys.stderr)
    if err.trace_id:
        print(f"  trace {err.trace_id}", file=sys.stderr)


def error_json(err: BrokerError) -> dict[str, Any]:
    return {
        "error": {
            "code": err.code,
            "reason": err.reason,
            "message": err.message,
            "metadata": err.metadata,
            "field_violations": [{"field": f, "description": d} for f, d in err.field_violations],
            "rule_violations": [
                {"rule": r, "subject": s, "description": d} for r, s, d in err.rule_violations
            ],
        }
    }


def exit_code(err: BrokerError) -> int:
    if isinstance(err, (InvalidArgument, NotFound)):
        return EXIT_INVALID
    if isinstance(err, Denied):
        return EXIT_DENIED
    if isinstance(err, Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(err, Unauthenticated):
        return EXIT_UNAUTHENTICATED
    return EXIT_FAILED


def client_credentials(args: argparse.Namespace) -> dict[str, Any]:
    """``BrokerClient`` keyword arguments from the credential flags; ``ValueError`` if there are none."""
    from onceonly.pki import ClientTls, cert_path, key_path

    if args.insecure:
        if args.cert or args.token:
            raise ValueError("--insecure does not go with --cert or --token")
        org = getattr(args, "org", None) or "local-dev"
        return {"insecure_identity": InsecureIdentity(org, getattr(args, "officer", None))}
    tls_dir: Path = args.tls_dir
    ca = args.ca or tls_dir / "ca.pem"
    cert = key = None
    if args.cert:
        if "/" in args.cert or args.cert.endswith(".pem"):
            cert = Path(args.cert)
            key = args.key or cert.with_name(cert.stem + "-key.pem")
        else:
            cert, key = cert_path(tls_dir, args.cert), args.key or key_path(tls_dir, args.cert)
    elif args.key:
        raise ValueError("--key needs --cert")
    if cert is None and not args.token:
        raise ValueError(
            "no credentials: give --cert NAME (a client certificate in --tls-dir, ONCEONLY_TLS_CERT), "
            "--token (ONCEONLY_TOKEN), or --insecure for a broker in local-development mode"
        )
    return {"tls": ClientTls(Path(ca), cert, Path(key) if key else None), "token": args.token or None}


def connect(args: argparse.Namespace, timeout: float) -> BrokerClient:
    """A client of ``--broker`` with the credentials the flags name; ``ValueError`` if unusable."""
    return BrokerClient(args.broker, timeout=timeout, **client_credentials(args))


def _credential_error(exc: ValueError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_INVALID


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
        print(
            json.dumps(
                {
                    "request_id": result.request_id,
                    "trace_id": result.trace_id,
                    "decided_at": result.decided_at.isoformat(),
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
                        for o in result.outcomes
                    ],
                },
                indent=2,
            )
        )
    else:
        print_verification(result)
    return EXIT_OK


async def cmd_verify_bulk(args: argparse.Namespace) -> int:
    import time

    from onceonly.consumers.bulk import BulkInputError, batch_id_for, iter_summary, read_rows, run_bulk

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
        rows = read_rows(args.file, batch)
        client = connect(args, args.timeout or 10.0)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    out = args.out or args.file.with_name(args.file.name + ".results.jsonl")
    started = time.monotonic()
    async with client:
        try:
            counts = await run_bulk(
                client,
                rows=rows,
                out_path=out,
                consumer=consumer,
                purpose=purpose,
                legal_basis=basis,
                checks=checks,
                window=args.window,
                retries=args.retries,
            )
        except BrokerError as err:
            print_error(err)
            return exit_code(err)
        except BulkInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    summary = list(iter_summary(counts, time.monotonic() - started, len(rows)))
    if args.json:
        print(json.dumps({"results": str(out), "counts": dict(counts)}, indent=2))
    else:
        print("\n".join(summary))
        print(f"results: {out}")
    return EXIT_OK


async def cmd_catalog(args: argparse.Namespace) -> int:
    try:
        client = connect(args, args.timeout)
    except ValueError as exc:
        return _credential_error(exc)
    async with client:
        try:
            catalog = await client.catalog()
        except BrokerError as err:
            print_error(err)
            return exit_code(err)
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
        )
        for c in catalog.certificate_types
    ]
    print(table(["certificate type", "provider", "parameters", "claims", "legal bases"], rows))
    return EXIT_OK


async def cmd_jwks(args: argparse.Namespace) -> int:
    try:
        client = connect(args, args.timeout)
    except ValueError as exc:
        return _credential_error(exc)
    async with client:
        try:
            jwks = await client.jwks()
        except BrokerError as err:
            print_error(err)
            return exit_code(err)
    print(json.dumps(jwks, indent=2))
    return EXIT_OK


async def cmd_serve(args: argparse.Namespace) -> int:
    from onceonly.logs import configure_logging

    configure_logging(
        args.log_level or os.environ.get("ONCEONLY_LOG_LEVEL", "info"),
        args.log_format or os.environ.get("ONCEONLY_LOG_FORMAT", "json"),
    )
    if args.role == "broker":
        from onceonly.broker.app import serve_broker
        from onceonly.broker.config import BrokerConfig, parse_targets
        from onceonly.broker.errors import CatalogError

        try:
            config = BrokerConfig.from_env(
                listen=args.listen,
                var_dir=args.var_dir,
                database_url=args.database_url,
                catalog_path=args.catalog,
                agreements_seed=args.seed_agreements,
                providers=parse_targets(",".join(args.provider)) if args.provider else None,
                provider_timeout_ms=args.provider_timeout_ms,
                tls_dir=args.tls_dir,
                insecure=True if args.insecure else None,
                jwt_issuers=args.jwt_issuers,
                token_listen=args.token_listen,
            )
            await serve_broker(config)
        except (CatalogError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    from onceonly.broker.config import DEFAULT_PROVIDER_TARGETS, parse_bool
    from onceonly.pki import TlsConfig
    from onceonly.providers.reference import reference_adapter
    from onceonly.providers.sdk import serve_provider

    if not args.name:
        print("error: serve provider needs a NAME (registry, tax or employment)", file=sys.stderr)
        return EXIT_INVALID
    try:
        adapter = reference_adapter(args.name)
        if args.delay_ms:
            from onceonly.providers.reference import DelayedAdapter

            adapter = DelayedAdapter(adapter, args.delay_ms / 1000)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_INVALID
    listen = (
        args.listen
        or os.environ.get("ONCEONLY_PROVIDER_LISTEN")
        or DEFAULT_PROVIDER_TARGETS.get(args.name, "127.0.0.1:0")
    )
    try:
        insecure = args.insecure or parse_bool(os.environ.get("ONCEONLY_INSECURE") or "0")
        tls = None
        if not insecure:
            var_dir = args.var_dir or Path(os.environ.get("ONCEONLY_VAR_DIR") or "var")
            tls_dir = args.tls_dir or Path(os.environ.get("ONCEONLY_TLS_DIR") or var_dir / "pki")
            tls = TlsConfig.from_dir(tls_dir, args.name)
        await serve_provider(adapter, listen, tls=tls, insecure=insecure)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def cmd_pki(args: argparse.Namespace) -> int:
    from onceonly import pki

    return pki.run(args)


async def cmd_demo(args: argparse.Namespace) -> int:
    from onceonly.consumers.demo import run_demo

    return await run_demo()


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """Who asks, why, under which basis, and which checks: shared by verify and verify-bulk."""
    p.add_argument("--org", required=True, help="consumer organisation id")
    p.add_argument("--unit", required=True, help="unit handling the case")
    p.add_argument("--officer", required=True, help="officer staff id")
    p.add_argument("--officer-document", help="the officer's own document, TYPE:NUMBER")
    p.add_argument("--procedure", required=True, help="procedure code")
    p.add_argument("--purpose", required=True, help="purpose of the query")
    p.add_argument("--case-file", required=True, help="case file id")
    basis = p.add_mutually_exclusive_group(required=True)
    basis.add_argument("--law", help="legal basis: the law cited")
    basis.add_argument("--consent", help="legal basis: the subject's consent reference")
    p.add_argument(
        "--check",
        action="append",
        required=True,
        metavar="TYPE[:k=v,...]",
        help="certificate type to verify, repeatable",
    )


def request_parts(args: argparse.Namespace) -> tuple[Consumer, Purpose, LegalBasis, list[Check]]:
    """The shared request arguments as client types; ``ValueError`` names a malformed one."""
    basis = LegalBasis.law(args.law) if args.law is not None else LegalBasis.consent(args.consent)
    officer_doc = Subject.parse(args.officer_document) if args.officer_document else None
    return (
        Consumer(args.org, args.unit, args.officer, officer_doc),
        Purpose(args.procedure, args.purpose, args.case_file),
        basis,
        [Check.parse(c) for c in args.check],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onceonly", description="Only-once certificate intermediation.")
    sub = parser.add_subparsers(dest="command", required=True)

    def client_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--broker",
            default=os.environ.get("ONCEONLY_BROKER_TARGET", DEFAULT_TARGET),
            help="broker address (ONCEONLY_BROKER_TARGET; default %(default)s)",
        )
        p.add_argument("--timeout", type=float, default=10.0, help="call deadline in seconds")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        creds = p.add_argument_group("credentials")
        creds.add_argument(
            "--tls-dir",
            type=Path,
            default=Path(os.environ.get("ONCEONLY_TLS_DIR") or DEFAULT_TLS_DIR),
            help="certificate directory (ONCEONLY_TLS_DIR; default %(default)s)",
        )
        creds.add_argument(
            "--cert",
            default=os.environ.get("ONCEONLY_TLS_CERT") or None,
            help="client certificate: a NAME in --tls-dir or a .pem path (ONCEONLY_TLS_CERT)",
        )
        creds.add_argument(
            "--key", default=os.environ.get("ONCEONLY_TLS_KEY") or None, help="its key (ONCEONLY_TLS_KEY)"
        )
        creds.add_argument(
            "--ca",
            default=os.environ.get("ONCEONLY_TLS_CA") or None,
            help="CA certificate checking the broker (ONCEONLY_TLS_CA; default TLS_DIR/ca.pem)",
        )
        creds.add_argument(
            "--token",
            default=os.environ.get("ONCEONLY_TOKEN") or None,
            help="bearer JWT from your agency's identity provider (prefer ONCEONLY_TOKEN)",
        )
        creds.add_argument(
            "--insecure",
            action="store_true",
            help="plaintext, to a broker in insecure local-development mode",
        )
        return p

    pki_parser = sub.add_parser("pki", help="development CA: certificates for the broker, providers, callers")
    from onceonly.pki import add_arguments as add_pki_arguments

    add_pki_arguments(pki_parser)
    pki_parser.set_defaults(handler=cmd_pki)

    serve = sub.add_parser("serve", help="run the broker or a reference provider")
    serve.add_argument("role", choices=["broker", "provider"])
    serve.add_argument("name", nargs="?", help="provider name: registry, tax or employment")
    serve.add_argument(
        "--listen", help="address to listen on (ONCEONLY_BROKER_LISTEN / ONCEONLY_PROVIDER_LISTEN)"
    )
    serve.add_argument(
        "--var-dir", type=Path, help="run-time state directory (ONCEONLY_VAR_DIR; default var)"
    )
    serve.add_argument("--database-url", help="SQLAlchemy database URL (ONCEONLY_DATABASE_URL)")
    serve.add_argument(
        "--catalog", type=Path, help="catalog TOML (ONCEONLY_CATALOG; default the shipped one)"
    )
    serve.add_argument(
        "--seed-agreements", type=Path, help="agreements TOML to load (ONCEONLY_AGREEMENTS_SEED)"
    )
    serve.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="ID=HOST:PORT",
        help="provider address, repeatable (ONCEONLY_PROVIDERS)",
    )
    serve.add_argument(
        "--provider-timeout-ms", type=int, help="provider call deadline (ONCEONLY_PROVIDER_TIMEOUT_MS)"
    )
    serve.add_argument(
        "--tls-dir",
        type=Path,
        help="certificates from `onceonly pki init` (ONCEONLY_TLS_DIR; default VAR_DIR/pki)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext for local development, loopback only (ONCEONLY_INSECURE=1)",
    )
    serve.add_argument("--jwt-issuers", type=Path, help="bearer-token issuers TOML (ONCEONLY_JWT_ISSUERS)")
    serve.add_argument(
        "--token-listen",
        help="second broker address, TLS without client certificates, bearer tokens only "
        "(ONCEONLY_BROKER_TOKEN_LISTEN)",
    )
    serve.add_argument(
        "--delay-ms",
        type=int,
        default=0,
        help="testing aid: a provider answers every check this much later (default 0)",
    )
    serve.add_argument("--log-level", help="debug, info, warning (ONCEONLY_LOG_LEVEL; default info)")
    serve.add_argument("--log-format", choices=["json", "text"], help="ONCEONLY_LOG_FORMAT; default json")
    serve.set_defaults(handler=cmd_serve)

    verify = client_parser("verify", "verify facts about a resident")
    verify.add_argument("--request-id", help="idempotency key (default: a new random id)")
    add_request_arguments(verify)
    verify.add_argument("--subject", required=True, help="TYPE:NUMBER, e.g. DNI:12345678Z")
    verify.set_defaults(handler=cmd_verify)

    bulk = client_parser("verify-bulk", "verify the same facts for every subject of a CSV file")
    bulk.add_argument("file", type=Path, help="CSV with document_type,document_number[,request_id]")
    add_request_arguments(bulk)
    bulk.add_argument("--out", type=Path, help="results file, JSON lines (default FILE.results.jsonl)")
    bulk.add_argument("--window", type=int, default=64, help="subjects decided at once (default %(default)s)")
    bulk.add_argument("--retries", type=int, default=3, help="reconnections after a broken stream")
    bulk.set_defaults(handler=cmd_verify_bulk, timeout=None)

    client_parser("catalog", "list certificate types").set_defaults(handler=cmd_catalog)
    client_parser("jwks", "print the broker's public keys (JWKS)").set_defaults(handler=cmd_jwks)
    from onceonly.consumers.oversight_cli import add_oversight_commands

    add_oversight_commands(sub, client_parser)  # onceonly oversight traces|usage|resident
    sub.add_parser("demo", help="run the whole platform and a caseworker scenario").set_defaults(
        handler=cmd_demo
    )
    from onceonly.broker.admin import add_admin_commands

    add_admin_commands(sub)
    from onceonly.consumers.health import add_health_command

    add_health_command(sub)  # onceonly health --target HOST:PORT: for container health checks
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.handler
    if args.command == "serve":
        from onceonly.serving import install_event_loop_policy

        install_event_loop_policy()
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
