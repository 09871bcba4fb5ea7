"""Serving the console: uvicorn over HTTPS, asking browsers for a client certificate
(``onceonly serve console``: :mod:`onceonly.consumers.console.commands`).

The HTTPS port asks for a client certificate from the platform CA but does not require one (a person
may sign in with a token instead). uvicorn does not pass the certificate a browser presented to the
application, so :class:`ClientCertH11Protocol` adds it to each request's scope in the shape of the
ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM); the TLS layer has
already checked it against the CA, and the broker checks it again when the console relays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from onceonly.consumers.client import DEFAULT_TARGET
from onceonly.consumers.console import DEFAULT_LISTEN
from onceonly.consumers.console.app import ConsoleClient, ConsoleSettings, create_app
from onceonly.pki import CONSOLE_NAME, ClientTls, TlsConfig, cert_path

__all__ = ["DEFAULT_LISTEN", "ClientCertH11Protocol", "ConsoleServer", "serve_console", "start_console"]

log = logging.getLogger(__name__)


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, passing the verified client certificate of the connection to the
    application (ASGI TLS extension shape; the leaf only: Python 3.11's ``ssl`` gives no chain)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        tls = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "tls_version": None,
            "cipher_suite": None,
            "client_cert_name": None,
            "client_cert_error": None,
            "server_cert": None,
        }
        inner = self.app

        async def with_tls(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})["tls"] = tls
            await inner(scope, receive, send)

        self.app = with_tls


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: whoever runs the console decides what a
    signal means (:func:`serve_console`: stop cleanly; tests: nothing)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ConsoleServer:
    """A running console: its address and how to stop it."""

    server: uvicorn.Server
    client: ConsoleClient
    task: asyncio.Task[None]
    url: str

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10)
        await self.client.close()


def _ssl_context_kwargs(tls: TlsConfig) -> dict[str, Any]:
    return {
        "ssl_certfile": str(tls.cert),
        "ssl_keyfile": str(tls.key),
        "ssl_ca_certs": str(tls.ca),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
    }


async def start_console(
    *,
    listen: str = DEFAULT_LISTEN,
    broker: str = DEFAULT_TARGET,
    tls_dir: Path,
    cert: str = CONSOLE_NAME,
    settings: ConsoleSettings | None = None,
) -> ConsoleServer:
    """Start the console in this event loop (port 0 picks a free one); returns once it listens."""
    for needed in (cert_path(tls_dir, cert), tls_dir / "ca.pem"):
        if not needed.exists():
            raise FileNotFoundError(
                f"{needed} does not exist: run `onceonly pki init --dir {tls_dir}` (it issues console.pem)"
            )
    client = ConsoleClient(broker, tls=ClientTls.from_dir(tls_dir, cert))
    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(
        create_app(client, settings),
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        http=ClientCertH11Protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        **_ssl_context_kwargs(TlsConfig.from_dir(tls_dir, cert)),
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: the server binds within a moment, or failed
        if server.started or task.done():
            break
        await asyncio.sleep(0.025)
    if not server.started:
        await client.close()
        if task.done() and task.exception() is not None:
            raise OSError(f"the console could not listen on {listen}: {task.exception()}")
        raise OSError(f"the console could not listen on {listen}")
    sock = server.servers[0].sockets[0].getsockname()
    url = (
        f"https://{config.host}:{sock[1]}" if ":" not in config.host else f"https://[{config.host}]:{sock[1]}"
    )
    log.info("console listening", extra={"url": url, "broker": broker})
    return ConsoleServer(server, client, task, url)


async def serve_console(**kwargs: Any) -> None:
    """Run the console until SIGINT or SIGTERM, then stop cleanly (in-flight requests finish)."""
    running = await start_console(**kwargs)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, setattr, running.server, "should_exit", True)
    print(f"console: {running.url}", flush=True)
    try:
        await running.task
    finally:
        await running.client.close()
