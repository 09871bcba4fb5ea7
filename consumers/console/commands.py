"""The console's command on the ``onceonly`` tool.

    onceonly serve console [--listen HOST:PORT] [--broker HOST:PORT] [--tls-dir DIR] [--cert NAME]

The web stack is imported by the command itself, so that building the ``onceonly`` parser stays
quick for every other command.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from onceonly.consumers.client import DEFAULT_TARGET
from onceonly.consumers.console import DEFAULT_LISTEN
from onceonly.logs import configure_from_args
from onceonly.pki import CONSOLE_NAME
from onceonly.serving import add_server_arguments

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(serve: Any) -> None:
    """Register ``serve console`` on ``serve``'s subcommands."""
    p: argparse.ArgumentParser = serve.add_parser(
        "console",
        help="run the web console",
        description="Run the web console: HTTPS, sign-in with a client certificate or a token.",
    )
    add_server_arguments(p, listen_env="ONCEONLY_CONSOLE_LISTEN")
    p.add_argument("--broker", help=f"the broker's address (ONCEONLY_BROKER; default {DEFAULT_TARGET})")
    p.add_argument(
        "--cert", default=CONSOLE_NAME, help="the console's certificate name in --tls-dir (default console)"
    )
    p.set_defaults(handler=cmd_serve_console)


async def cmd_serve_console(args: argparse.Namespace) -> int:
    from onceonly.consumers.console.app import ConsoleSettings
    from onceonly.consumers.console.server import serve_console

    configure_from_args(args)
    var_dir = args.var_dir or Path(os.environ.get("ONCEONLY_VAR_DIR", "var"))
    tls_dir = args.tls_dir or Path(os.environ.get("ONCEONLY_TLS_DIR", "") or var_dir / "pki")
    if args.insecure:
        print("error: the console is served over HTTPS only", file=sys.stderr)
        return EXIT_FAILED
    secret = os.environ.get("ONCEONLY_CONSOLE_SESSION_SECRET") or secrets.token_urlsafe(32)
    try:
        minutes = ConsoleSettings.parse_minutes(os.environ.get("ONCEONLY_CONSOLE_MINUTES", ""))
        await serve_console(
            listen=args.listen or os.environ.get("ONCEONLY_CONSOLE_LISTEN", DEFAULT_LISTEN),
            broker=args.broker or os.environ.get("ONCEONLY_BROKER", DEFAULT_TARGET),
            tls_dir=tls_dir,
            cert=args.cert,
            settings=ConsoleSettings(session_secret=secret, minutes_per_certificate=minutes),
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
