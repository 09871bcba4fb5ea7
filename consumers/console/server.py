"""Serving the console: uvicorn over HTTPS, asking browsers for a client certificate
(``onceonly serve console``: :mod:`onceonly.consumers.console.commands`).

The HTTPS port asks for a client certificate from the platform CA but does not require one (a person
may sign in with a token instead). :mod:`onceonly.https` hands the certificate to the application;
the TLS layer has already checked it against the CA, and the broker checks it again when the
console relays it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onceonly.consumers.client import DEFAULT_TARGET
from onceonly.consumers.console import DEFAULT_LISTEN
from onceonly.consumers.console.app import ConsoleClient, ConsoleSettings, create_app
from onceonly.https import ClientCertH11Protocol, HttpsServer, start_https
from onceonly.pki import CONSOLE_NAME, ClientTls, TlsConfig, cert_path

__all__ = ["DEFAULT_LISTEN", "ClientCertH11Protocol", "ConsoleServer", "serve_console", "start_console"]

log = logging.getLogger(__name__)


@dataclass
class ConsoleServer:
    """A running console: its HTTPS server, its client of the broker, and how to stop both."""

    https: HttpsServer
    client: ConsoleClient

    @property
    def url(self) -> str:
        return self.https.url

    async def stop(self) -> None:
        await self.https.stop()
        await self.client.close()


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
    try:
        https = await start_https(
            create_app(client, settings),
            listen,
            TlsConfig.from_dir(tls_dir, cert),
            require_client_cert=False,
            what="the console",
        )
    except BaseException:
        await client.close()
        raise
    log.info("console listening", extra={"url": https.url, "broker": broker})
    return ConsoleServer(https, client)


async def serve_console(**kwargs: Any) -> None:
    """Run the console until SIGINT or SIGTERM, then stop cleanly (in-flight requests finish)."""
    running = await start_console(**kwargs)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, setattr, running.https.server, "should_exit", True)
    print(f"console: {running.url}", flush=True)
    try:
        await running.https.task
    finally:
        await running.client.close()
