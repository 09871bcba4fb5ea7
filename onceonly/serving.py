"""Serving a grpc.aio server the same way everywhere: TLS, health, reflection, graceful stop.

Every onceonly server (the broker and each provider adapter) is started with
:func:`start_server` and run with :func:`run_until_signal`. A server speaks TLS with the
certificate given in a :class:`~onceonly.pki.TlsConfig` (by default requiring a client
certificate from the same CA). Plaintext exists for local development only and is refused
for any address beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .guard import DecodeGuard
from .logs import add_logging_arguments
from .pki import TlsConfig
from .reflection import enable_server_reflection

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Explicit message-size limit for servers and channels (the gRPC default, stated)."""

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    # A peer that opens a connection and never finishes the TLS handshake is dropped after 10 s
    # (gRPC's default is 120 s).
    ("grpc.server_handshake_timeout_ms", 10_000),
)

REUSE_PORT_OPTIONS: tuple[tuple[str, int], ...] = (
    *(o for o in SERVER_OPTIONS if o[0] != "grpc.so_reuseport"),
    ("grpc.so_reuseport", 1),
)
"""``SERVER_OPTIONS`` with ``SO_REUSEPORT`` on: several processes share one listen address."""

Registrar = Callable[[grpc.aio.Server], None]


@dataclass
class RunningServer:
    """A started server, the port it is bound to, and its health servicer."""

    server: grpc.aio.Server
    port: int
    host: str
    service_names: tuple[str, ...]
    health: health.aio.HealthServicer
    extra_ports: tuple[int, ...] = ()
    """Ports of the listeners added with ``also`` (same order)."""
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _stopped: bool = False

    @property
    def target(self) -> str:
        return self.target_of(self.port)

    def target_of(self, port: int) -> str:
        """``host:port`` of one of this server's ports."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish within ``grace``."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for hook in self.on_stop:
            await hook()


def split_bind(bind: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:0`` for IPv6) into its parts; raise ``ValueError`` if malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class InsecureBindError(ValueError):
    """Plaintext was asked for on an address beyond loopback."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal or ``localhost``) only reaches this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(bind: str, what: str = "a plaintext (insecure) server") -> None:
    """Raise :class:`InsecureBindError` unless ``bind`` is a loopback address."""
    host, _ = split_bind(bind)
    if not is_loopback(host):
        raise InsecureBindError(
            f"refusing to run {what} on {bind}: insecure mode is for local development and only "
            "binds to loopback (127.0.0.1, ::1, localhost); use TLS (`onceonly pki init`) for any "
            "other address"
        )


@dataclass(frozen=True)
class Listener:
    """One more address for the same server, with its own TLS settings (``None``: plaintext)."""

    bind: str
    tls: TlsConfig | None


def _add_port(server: grpc.aio.Server, bind: str, tls: TlsConfig | None) -> int:
    host, port = split_bind(bind)
    host_part = f"[{host}]" if ":" in host else host
    try:
        if tls is None:
            require_loopback(bind)
            bound = server.add_insecure_port(f"{host_part}:{port}")
        else:
            bound = server.add_secure_port(f"{host_part}:{port}", tls.server_credentials())
    except RuntimeError:  # grpc: "Failed to bind to address …"
        bound = 0
    if bound == 0:
        raise AddressTaken(
            f"cannot listen on {bind}: the address is taken (another process listens there) or is not "
            "one of this machine's; choose another with --listen"
        )
    return bound


class AddressTaken(OSError):
    """The address a server was told to listen on cannot be bound."""


async def start_server(
    bind: str,
    registrars: Sequence[Registrar],
    service_names: Sequence[str],
    *,
    tls: TlsConfig | None = None,
    also: Sequence[Listener] = (),
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    options: Sequence[tuple[str, int]] = SERVER_OPTIONS,
) -> RunningServer:
    """Start a grpc.aio server on ``bind`` (port 0 picks a free one) with health and reflection.

    With ``tls`` the server speaks TLS (mutual by default); without it, plaintext, which is
    refused (:class:`InsecureBindError`) unless ``bind`` is a loopback address. ``also`` adds
    listeners to the same server (e.g. a TLS port that does not ask for client certificates).
    """
    host, _ = split_bind(bind)
    for listener in (Listener(bind, tls), *also):
        if listener.tls is None:
            require_loopback(listener.bind)
        else:
            listener.tls.check()
    # DecodeGuard first: a request whose bytes do not parse ends INVALID_ARGUMENT, not UNKNOWN.
    server = grpc.aio.server(interceptors=[DecodeGuard(), *interceptors], options=list(options))
    for register in registrars:
        register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_server_reflection((*service_names, health.SERVICE_NAME), server)
    bound = _add_port(server, bind, tls)
    extra_ports = tuple(_add_port(server, extra.bind, extra.tls) for extra in also)
    await server.start()
    for name in (*service_names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, host, tuple(service_names), health_servicer, extra_ports)


async def run_until_signal(running: RunningServer, grace: float = 5.0) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.ensure_future(running.server.wait_for_termination())
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping", extra={"target": running.target, "grace_s": grace})
    await running.stop(grace)
    waiting.cancel()
    serving.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("stopped", extra={"target": running.target})


def install_event_loop_policy() -> None:
    """Use uvloop where it is installed: it is the cheapest throughput lever we have."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def add_server_arguments(parser: argparse.ArgumentParser, *, listen_env: str) -> None:
    """The options every ``onceonly serve …`` command shares: where to listen, state, TLS, logs."""
    parser.add_argument("--listen", help=f"address to listen on ({listen_env})")
    parser.add_argument(
        "--var-dir", type=Path, help="run-time state directory (ONCEONLY_VAR_DIR; default var)"
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        help="certificates from `onceonly pki init` (ONCEONLY_TLS_DIR; default VAR_DIR/pki)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext for local development, loopback only (ONCEONLY_INSECURE=1)",
    )
    add_logging_arguments(parser)
