"""The broker's commands on the ``onceonly`` tool: ``serve broker``, and the operator's ``ledger`` and
``keys`` (:mod:`onceonly.broker.admin`).

    onceonly serve broker [--listen HOST:PORT] [--provider ID=HOST:PORT ...] [--seed-agreements FILE]
                          [--tls-dir DIR] [--jwt-issuers FILE] [--token-listen HOST:PORT] [--insecure]
                          [--scsp-listen HOST:PORT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from onceonly.broker.admin import add_admin_commands
from onceonly.broker.config import BrokerConfig, parse_targets
from onceonly.broker.errors import CatalogError
from onceonly.logs import configure_from_args
from onceonly.serving import add_server_arguments

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(sub: Any, serve: Any) -> None:
    """Register ``serve broker`` on ``serve``'s subcommands, and ``ledger`` and ``keys`` on ``sub``."""
    p: argparse.ArgumentParser = serve.add_parser(
        "broker", help="run the broker", description="Run the broker (configuration: ONCEONLY_* or flags)."
    )
    add_server_arguments(p, listen_env="ONCEONLY_BROKER_LISTEN")
    p.add_argument("--database-url", help="SQLAlchemy database URL (ONCEONLY_DATABASE_URL)")
    p.add_argument("--catalog", type=Path, help="catalog TOML (ONCEONLY_CATALOG; default the shipped one)")
    p.add_argument(
        "--seed-agreements",
        type=Path,
        metavar="FILE",
        help="governance TOML whose missing entries are recorded at start; `demo` names the one shipped "
        "in the package (ONCEONLY_AGREEMENTS_SEED)",
    )
    p.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="ID=HOST:PORT",
        help="provider address, repeatable (ONCEONLY_PROVIDERS)",
    )
    p.add_argument(
        "--provider-timeout-ms", type=int, help="provider call deadline (ONCEONLY_PROVIDER_TIMEOUT_MS)"
    )
    p.add_argument("--jwt-issuers", type=Path, help="bearer-token issuers TOML (ONCEONLY_JWT_ISSUERS)")
    p.add_argument(
        "--token-listen",
        help="second broker address, TLS without client certificates, bearer tokens only "
        "(ONCEONLY_BROKER_TOKEN_LISTEN)",
    )
    p.add_argument(
        "--scsp-listen",
        help="address of the SCSP v3 facade: HTTPS, client certificates, WS-Security signed SOAP "
        "(ONCEONLY_SCSP_LISTEN)",
    )
    p.set_defaults(handler=cmd_serve_broker)
    add_admin_commands(sub)


async def cmd_serve_broker(args: argparse.Namespace) -> int:
    from onceonly.broker.app import serve_broker  # the server stack, only for the command that serves

    configure_from_args(args)
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
            scsp_listen=args.scsp_listen,
        )
        await serve_broker(config)
    except (CatalogError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
