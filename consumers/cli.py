"""The ``onceonly`` command-line tool: where the packages' commands come together.

    onceonly pki init|issue …                   development CA (onceonly.pki)
    onceonly serve broker …                     the broker (onceonly.broker.commands)
    onceonly serve provider NAME …              a reference provider (onceonly.providers.commands)
    onceonly serve console …                    the web console (onceonly.consumers.console.commands)
    onceonly ledger verify|purge, keys rotate   operator commands (onceonly.broker.admin)
    onceonly verify | verify-bulk | catalog | jwks   (onceonly.consumers.verify_cli)
    onceonly oversight traces|usage|resident   (onceonly.consumers.oversight_cli)
    onceonly health --broker HOST:PORT         (onceonly.consumers.health)
    onceonly demo                              (onceonly.consumers.demo)
    onceonly scsp example|send                 SCSP v3 petitions (onceonly.consumers.scsp)

This module is the composition root: each package registers its own commands, and nothing
imports this module back. Exit codes: 0 answered, 2 invalid input, 3 denied by policy,
4 broker unavailable, 5 not authenticated, 1 anything else.
"""

from __future__ import annotations

import os

# gRPC's C-core writes its own lines ("E1207 … add_port.cc …") to standard error, outside the
# structured log; every failure it reports reaches the tool as a status it explains. The variable is
# read when grpc is first imported, hence here, before anything imports it; a GRPC_VERBOSITY the
# user sets wins (GRPC_VERBOSITY=debug shows them again).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from onceonly import pki
from onceonly.broker import commands as broker_commands
from onceonly.consumers import demo, diagnose, governance_cli, health, oversight_cli, scsp, verify_cli
from onceonly.consumers._console import EXIT_UNAUTHENTICATED, EXIT_UNAVAILABLE
from onceonly.consumers.console import commands as console_commands
from onceonly.providers import commands as provider_commands
from onceonly.serving import install_event_loop_policy


async def _cmd_pki(args: argparse.Namespace) -> int:
    return pki.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``onceonly`` command line."""
    parser = argparse.ArgumentParser(prog="onceonly", description="Only-once certificate intermediation.")
    sub = parser.add_subparsers(dest="command", required=True)

    pki_parser = sub.add_parser("pki", help="development CA: certificates for the broker, providers, callers")
    pki.add_arguments(pki_parser)
    pki_parser.set_defaults(handler=_cmd_pki)

    serve = sub.add_parser("serve", help="run the broker, a reference provider or the web console")
    serve_sub = serve.add_subparsers(dest="role", required=True, metavar="{broker,provider,console}")
    broker_commands.add_commands(sub, serve_sub)  # serve broker; ledger; keys
    provider_commands.add_commands(serve_sub)  # serve provider NAME
    console_commands.add_commands(serve_sub)  # serve console

    verify_cli.add_commands(sub)  # verify, verify-bulk, catalog, jwks
    oversight_cli.add_commands(sub)  # oversight traces|usage|resident
    governance_cli.add_commands(sub)  # governance orgs|register|log
    demo.add_commands(sub)
    health.add_commands(sub)  # health --target HOST:PORT: for container health checks
    scsp.add_commands(sub)  # scsp example|send: SCSP v3 petitions to the broker's facade
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.handler
    if args.command == "serve":
        install_event_loop_policy()
    try:
        code = asyncio.run(handler(args))
        if code == EXIT_UNAVAILABLE and args.command != "serve":
            found = diagnose.hint_for(args)  # a wrong credential must not look like "broker down"
            if found is not None:
                print(f"  why: {found.text}", file=sys.stderr)
                if found.credential:
                    return EXIT_UNAUTHENTICATED  # the broker is up: the credential is what failed
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`onceonly … --json | head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
