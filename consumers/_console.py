"""What every command of the ``onceonly`` tool shares: exit codes, tables, errors, credentials.

Exit codes: 0 answered, 2 invalid input, 3 denied by policy (a quota used up included),
4 broker unavailable, 5 not authenticated, 1 anything else.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from onceonly.consumers.client import (
    DEFAULT_TARGET,
    BrokerClient,
    BrokerError,
    Denied,
    Exhausted,
    InsecureIdentity,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)

C = TypeVar("C", bound=BrokerClient)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_DENIED, EXIT_UNAVAILABLE, EXIT_UNAUTHENTICATED = 0, 1, 2, 3, 4, 5
DEFAULT_TLS_DIR = Path("var/pki")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_error(err: BrokerError, *, label: str = "error", file: TextIO | None = None) -> None:
    """The refusal as a caseworker reads it (on standard error unless ``file``)."""
    out = sys.stderr if file is None else file
    kind = err.code if err.reason in ("", err.code) else f"{err.code}, {err.reason}"
    print(f"{label}: {err.message} [{kind}]", file=out)
    for fld, description in err.field_violations:
        print(f"  field {fld}: {description}", file=out)
    for rule, subject, description in err.rule_violations:
        print(f"  rule {rule} ({subject}): {description}", file=out)
    for subject, description in err.quota_violations:
        print(f"  quota ({subject}): {description}", file=out)
    if err.retry_after_s is not None:
        print(f"  retry after {err.retry_after_s:.0f} s", file=out)
    if err.trace_id:
        print(f"  trace {err.trace_id}", file=out)


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
            "quota_violations": [{"subject": s, "description": d} for s, d in err.quota_violations],
            "retry_after_s": err.retry_after_s,
        }
    }


def exit_code(err: BrokerError) -> int:
    if isinstance(err, (InvalidArgument, NotFound)):
        return EXIT_INVALID
    if isinstance(err, Denied) or (isinstance(err, Exhausted) and err.reason == "QUOTA_EXCEEDED"):
        return EXIT_DENIED
    if isinstance(err, Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(err, Unauthenticated):
        return EXIT_UNAUTHENTICATED
    return EXIT_FAILED


def certificate_files(tls_dir: Path, cert: str, key: str | Path | None = None) -> tuple[Path, Path]:
    """``--cert`` (a NAME in ``tls_dir``, or a file) and ``--key`` as the two files they name."""
    from onceonly.pki import cert_path, key_path

    if "/" in cert or cert.endswith(".pem"):
        path = Path(cert)
        return path, Path(key) if key else path.with_name(path.stem + "-key.pem")
    return cert_path(tls_dir, cert), Path(key) if key else key_path(tls_dir, cert)


def client_credentials(args: argparse.Namespace) -> dict[str, Any]:
    """``BrokerClient`` keyword arguments from the credential flags; ``ValueError`` if there are none."""
    from onceonly.pki import ClientTls

    if args.insecure:
        if args.cert or args.token:
            raise ValueError("--insecure does not go with --cert or --token")
        org = getattr(args, "org", None) or "local-dev"
        return {"insecure_identity": InsecureIdentity(org, getattr(args, "officer", None))}
    tls_dir: Path = args.tls_dir
    ca = args.ca or tls_dir / "ca.pem"
    cert = key = None
    if args.cert:
        cert, key = certificate_files(tls_dir, args.cert, args.key)
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


def credential_error(exc: ValueError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_INVALID


def client_command(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand with the options every client command shares: --broker, --timeout, --json, credentials."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
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


def connect_as(args: argparse.Namespace, client_type: type[C], default_cert: str, role: str) -> C:
    """A ``client_type`` with the flags' credentials: the certificate ``default_cert`` when none is
    given, and ``role`` as the caller's role in insecure mode."""
    if not (args.cert or args.token or args.insecure):
        args.cert = default_cert
    credentials = client_credentials(args)
    if "insecure_identity" in credentials:
        identity = credentials["insecure_identity"]
        credentials["insecure_identity"] = type(identity)(identity.organization_id, None, role)
    return client_type(args.broker, timeout=args.timeout, **credentials)


def inherit_options(child: argparse.ArgumentParser, parent: argparse.ArgumentParser) -> None:
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


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def dump_json(value: object) -> str:
    """Indented JSON for people and scripts (times in ISO 8601)."""
    return json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)


def utc_time(value: dt.datetime) -> str:
    """A time as the tables print it (UTC, to the second)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


async def run_client(
    args: argparse.Namespace, connect: Callable[[argparse.Namespace], C], body: Callable[[C], Awaitable[Any]]
) -> int:
    """Connect with the flags' credentials, run ``body``, and turn its failure into a message and
    an exit code (the error as JSON with ``--json``)."""
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
                print(dump_json(error_json(err)))
            else:
                print_error(err)
            return exit_code(err)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    return EXIT_OK
