"""``onceonly health``: ask a server's ``grpc.health.v1.Health`` whether it is serving.

    onceonly health --broker 127.0.0.1:50051 --cert broker        # a broker (mutual TLS)
    onceonly health --broker 127.0.0.1:50062 --cert tax           # a provider, with its own certificate
    onceonly health --broker 127.0.0.1:50051 --insecure           # a server in insecure mode

Exit 0 when the server (or ``--service``) reports ``SERVING``, 1 when it answers anything else
(``NOT_SERVING`` while it drains on SIGTERM), 4 when it cannot be reached in time, 5 when it refuses
the credential given (the tool says why). Meant for
container health checks and load balancers: it needs no credentials beyond a TLS handshake
with any certificate of the platform's CA (the health service itself is not authenticated).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_SERVING, EXIT_NOT_SERVING, EXIT_UNREACHABLE = 0, 1, 4


def add_commands(sub: Any) -> None:
    """Register ``health`` on the ``onceonly`` parser's subcommands."""
    p = sub.add_parser("health", help="exit 0 if a broker or provider reports SERVING")
    p.add_argument(
        "--broker",
        "--target",
        dest="target",
        default=os.environ.get("ONCEONLY_BROKER_TARGET") or "127.0.0.1:50051",
        help="HOST:PORT of the broker or provider, as for every command (--target: the same; "
        "ONCEONLY_BROKER_TARGET; default %(default)s)",
    )
    p.add_argument("--service", default="", help="service name to ask about (default: the whole server)")
    p.add_argument(
        "--tls-dir",
        type=Path,
        default=Path(os.environ.get("ONCEONLY_TLS_DIR") or "var/pki"),
        help="certificate directory with ca.pem (ONCEONLY_TLS_DIR; default %(default)s)",
    )
    p.add_argument(
        "--cert",
        default=os.environ.get("ONCEONLY_TLS_CERT") or None,
        help="client certificate NAME in --tls-dir (any the CA issued); none: TLS without one",
    )
    p.add_argument("--insecure", action="store_true", help="plaintext, to a server in insecure mode")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default %(default)s)")
    p.set_defaults(handler=cmd_health)


async def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from onceonly.pki import ClientTls, PkiError

    if args.insecure:
        channel = grpc.aio.insecure_channel(args.target)
    else:
        try:
            credentials = ClientTls.from_dir(args.tls_dir, args.cert).channel_credentials()
        except (PkiError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        channel = grpc.aio.secure_channel(args.target, credentials)
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs do not declare its methods
    async with channel:
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.aio.AioRpcError as exc:
            print(f"{args.target}: {exc.code().name} {exc.details() or ''}".rstrip(), file=sys.stderr)
            return EXIT_UNREACHABLE
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.target}: {status}")
    return EXIT_SERVING if reply.status == health_pb2.HealthCheckResponse.SERVING else EXIT_NOT_SERVING
