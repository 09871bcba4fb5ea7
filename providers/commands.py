"""The providers' command on the ``onceonly`` tool: ``serve provider NAME`` runs a reference adapter.

onceonly serve provider NAME [--listen HOST:PORT] [--tls-dir DIR] [--insecure] [--delay-ms N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from onceonly.logs import configure_from_args
from onceonly.pki import TlsConfig
from onceonly.providers.reference import (
    REFERENCE_ADAPTERS,
    DeferringAdapter,
    DelayedAdapter,
    reference_adapter,
)
from onceonly.providers.sdk import ProviderAdapter, serve_provider
from onceonly.serving import add_server_arguments
from onceonly.settings import REFERENCE_PROVIDER_TARGETS, parse_bool

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(serve: Any) -> None:
    """Register ``serve provider`` on ``serve``'s subcommands."""
    p: argparse.ArgumentParser = serve.add_parser(
        "provider", help="run a reference provider", description="Run a reference provider adapter."
    )
    p.add_argument("name", choices=sorted(REFERENCE_ADAPTERS), help="which reference provider")
    add_server_arguments(p, listen_env="ONCEONLY_PROVIDER_LISTEN")
    p.add_argument(
        "--delay-ms",
        type=int,
        default=0,
        help="testing aid: answer every check this much later (default 0)",
    )
    p.add_argument(
        "--defer-s",
        type=float,
        default=0,
        help="testing aid: answer every check later, through Collect, as an agency that answers in "
        "hours does (Attest says when; default 0: answer at once)",
    )
    p.set_defaults(handler=cmd_serve_provider)


async def cmd_serve_provider(args: argparse.Namespace) -> int:
    configure_from_args(args)
    adapter: ProviderAdapter = reference_adapter(args.name)
    if args.delay_ms:
        adapter = DelayedAdapter(adapter, args.delay_ms / 1000)
    if args.defer_s:
        adapter = DeferringAdapter(adapter, args.defer_s)
    listen = (
        args.listen
        or os.environ.get("ONCEONLY_PROVIDER_LISTEN")
        or REFERENCE_PROVIDER_TARGETS.get(args.name, "127.0.0.1:0")
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
