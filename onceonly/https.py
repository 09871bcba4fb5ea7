"""HTTPS servers in the caller's event loop: uvicorn with the platform's TLS, handing the verified
client certificate to the application.

uvicorn does not pass the certificate a client presented to the application, so
:class:`ClientCertH11Protocol` adds it to each request's scope in the shape of the ASGI TLS
extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM); the TLS layer has already
checked it against the CA. The console (:mod:`onceonly.consumers.console.server`) and the broker's
SCSP listener (:mod:`onceonly.broker.scsp`) run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from onceonly.pki import TlsConfig

__all__ = ["ClientCertH11Protocol", "HttpsServer", "client_certificate", "start_https"]


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


def client_certificate(scope: Scope) -> str | None:
    """The PEM client certificate the connection of ``scope`` presented (``None`` if none)."""
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    return chain[0] if chain else None


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: whoever runs it decides what a signal means."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HttpsServer:
    """A running HTTPS server: its address and how to stop it."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10)


async def start_https(
    app: ASGIApp, listen: str, tls: TlsConfig, *, require_client_cert: bool, what: str
) -> HttpsServer:
    """Serve ``app`` over HTTPS on ``listen`` (port 0 picks a free one), asking for a client
    certificate from the platform CA (requiring one with ``require_client_cert``); returns once it
    listens, or raises ``OSError`` naming ``what`` could not."""
    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(
        app,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        http=ClientCertH11Protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        ssl_ca_certs=str(tls.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: the server binds within a moment, or failed
        if server.started or task.done():
            break
        await asyncio.sleep(0.025)
    if not server.started:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise OSError(f"{what} could not listen on {listen}: {task.exception()}")
        server.should_exit = True
        raise OSError(f"{what} could not listen on {listen}")
    sock = server.servers[0].sockets[0].getsockname()
    shown = config.host if ":" not in config.host else f"[{config.host}]"
    return HttpsServer(server, task, f"https://{shown}:{sock[1]}")
