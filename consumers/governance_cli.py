"""``onceonly governance orgs|register|log``: the Governance service for people.

Credentials as for the other client commands; without ``--cert``, ``--token`` or ``--insecure``
the certificate ``operator`` in ``--tls-dir`` is used (any member may read)::

    onceonly governance orgs [--json]
    onceonly governance register CODE --name NAME --kind CONSUMER|PROVIDER|OVERSIGHT|OPERATOR
                                 [--contact TEXT] [--json]       (the platform operator only)
    onceonly governance log [--after SEQ] [--json]

Exit codes as for the other client commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from onceonly.consumers._console import (
    client_command,
    client_credentials,
    dump_json,
    inherit_options,
    run_client,
    table,
    utc_time,
)
from onceonly.consumers.governance import KINDS, GovernanceClient, Organisation

DEFAULT_CERT = "operator"


def connect(args: argparse.Namespace) -> GovernanceClient:
    """A Governance client with the flags' credentials; the ``operator`` certificate by default."""
    if not (args.cert or args.token or args.insecure):
        args.cert = DEFAULT_CERT
    credentials = client_credentials(args)
    if "insecure_identity" in credentials:
        identity = credentials["insecure_identity"]
        credentials["insecure_identity"] = type(identity)(identity.organization_id, None, "operator")
    return GovernanceClient(args.broker, timeout=args.timeout, **credentials)


async def _run(args: argparse.Namespace, body: Callable[[GovernanceClient], Awaitable[None]]) -> int:
    return await run_client(args, connect, body)


def _print_organisations(orgs: list[Organisation]) -> None:
    print(
        table(["code", "name", "kind", "contact"], [(o.id, o.name, o.kind, o.contact or "-") for o in orgs])
    )


async def cmd_orgs(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        orgs = await client.organisations()
        if args.json:
            print(dump_json([asdict(o) for o in orgs]))
        else:
            _print_organisations(orgs)

    return await _run(args, body)


async def cmd_register(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        org, entry = await client.register_organisation(
            Organisation(args.code, args.name, args.kind, args.contact or "")
        )
        if args.json:
            print(dump_json({"organisation": asdict(org), "entry": asdict(entry)}))
            return
        _print_organisations([org])
        print(f"registered; governance log entry {entry.seq} ({entry.hash[:16]}…)")

    return await _run(args, body)


async def cmd_log(args: argparse.Namespace) -> int:
    async def body(client: GovernanceClient) -> None:
        entries = [e async for e in client.log(after_seq=args.after)]
        if args.json:
            print(dump_json([asdict(e) for e in entries]))
            return
        rows = [
            (
                e.seq,
                utc_time(e.at),
                f"{e.actor_organization_id} ({e.actor_role}, {e.actor_via})",
                e.action,
                e.subject,
                ", ".join(f"{k}={v}" for k, v in sorted(e.body.items())),
            )
            for e in entries
        ]
        print(table(["seq", "time (UTC)", "by", "action", "subject", "content"], rows))
        print(
            f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}; "
            "`onceonly ledger verify` checks the chain"
        )

    return await _run(args, body)


def add_commands(sub: Any) -> argparse.ArgumentParser:
    """Register ``onceonly governance orgs|register|log``."""
    parent = client_command(sub, "governance", "member organisations and the governance log")
    commands = parent.add_subparsers(dest="governance_command", required=True, metavar="{orgs,register,log}")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text, description=help_text)
        inherit_options(p, parent)
        return p

    command("orgs", "list the member organisations").set_defaults(handler=cmd_orgs)
    register = command("register", "register a member organisation (the platform operator only)")
    register.add_argument("code", help="the organisation's code (its certificates' O)")
    register.add_argument("--name", required=True, help="its name")
    register.add_argument("--kind", required=True, type=str.upper, choices=KINDS, help="what it is")
    register.add_argument("--contact", help="who answers for it (e-mail, address)")
    register.set_defaults(handler=cmd_register)
    log = command("log", "the governance log: who changed what, oldest first")
    log.add_argument("--after", type=int, default=0, help="entries after this position")
    log.set_defaults(handler=cmd_log)
    return parent
