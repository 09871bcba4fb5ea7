"""Why a broker could not be reached, in words: a wrong credential must not look like "broker down".

gRPC reports every failed handshake as ``UNAVAILABLE … Socket closed``, exactly like a stopped
server. When a command ends that way, :func:`diagnose` opens a connection of its own to the same
address and tells the cases apart: nothing listens there; the server speaks TLS to a plaintext
client, or plaintext to a TLS one; its certificate is not from the CA the client trusts; it wants a
client certificate and none was given (or a token was sent to the certificate port); it refuses
the certificate given (another CA's, or revoked). Each answer says what to do.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Diagnosis", "diagnose", "hint_for"]

_TIMEOUT_S = 3.0
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""The HTTP/2 client preface and an empty SETTINGS frame: enough for the server to judge the client."""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    text: str
    credential: bool = True
    """The server is up and the credential (or its kind of connection) is what failed; ``False``
    when the server cannot be reached at all."""


def diagnose(
    target: str,
    *,
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    insecure: bool = False,
    token: bool = False,
) -> Diagnosis | None:
    """What is wrong with reaching ``target`` with these credentials, or ``None`` if nothing shows."""
    host, _, port_text = target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        return Diagnosis(f"{target} is not HOST:PORT", credential=False)
    try:
        raw = socket.create_connection((host, port), timeout=_TIMEOUT_S)
    except ConnectionRefusedError:
        return Diagnosis(
            f"nothing listens on {target}: is the broker running, and is this its address (--broker)?",
            credential=False,
        )
    except TimeoutError:
        return Diagnosis(
            f"{target} does not answer (the wrong address, or a firewall in between)", credential=False
        )
    except OSError as exc:
        return Diagnosis(f"cannot connect to {target}: {exc.strerror or exc}", credential=False)
    with raw:
        if insecure:
            text = _plaintext_to(raw, host, target)
        else:
            text = _tls_to(raw, host, target, ca=ca, cert=cert, key=key, token=token)
    return Diagnosis(text) if text is not None else None


def _plaintext_to(raw: socket.socket, host: str, target: str) -> str | None:
    """A plaintext client (``--insecure``): does the server speak TLS instead?"""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(raw, server_hostname=host):
            pass
    except (ssl.SSLError, OSError):
        return None  # it does not speak TLS either: the plaintext failure stands as it was
    return (
        f"{target} speaks TLS: drop --insecure and give your certificate (--cert) or a token (--token) "
        "with the CA (--ca)"
    )


def _tls_to(
    raw: socket.socket,
    host: str,
    target: str,
    *,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: bool,
) -> str | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # what the CA vouches for is the question; names are gRPC's concern
    context.set_alpn_protocols(["h2"])
    try:
        context.load_verify_locations(cafile=str(ca)) if ca is not None else context.load_default_certs()
        if cert is not None and key is not None:
            context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        return f"cannot use the certificates given: {exc}"
    try:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(_TIMEOUT_S)
            # TLS 1.3: the server judges the client's certificate after the handshake; its verdict
            # arrives on the first read.
            tls.sendall(_H2_PREFACE)
            answered = tls.recv(1)
    except ssl.SSLCertVerificationError:
        return (
            f"the server's certificate is not from the CA you gave ({ca}): point --ca (or --tls-dir) at "
            "the platform's CA certificate"
        )
    except ssl.SSLError as exc:
        text = f"{exc.reason or ''} {exc}".lower()
        if "certificate required" in text or "certificate_required" in text:
            return _no_certificate(target, token)
        if "unknown ca" in text or "bad certificate" in text or "certificate unknown" in text:
            return _refused(target, cert)
        if "wrong version" in text or "record layer" in text or "http request" in text:
            return (
                f"{target} does not speak TLS (a server in insecure mode?): use --insecure for local "
                "development"
            )
        return None
    except (TimeoutError, OSError):
        return None
    if answered:
        return None  # the server took the connection: what failed was not the credential
    # The server closed the connection right after the handshake: it judged the client's credential.
    if cert is None:
        return _no_certificate(target, token)
    return _refused(target, cert)


def _no_certificate(target: str, token: bool) -> str:
    if token:
        return (
            f"{target} takes client certificates, not tokens: send tokens to the broker's token address "
            "(ONCEONLY_BROKER_TOKEN_LISTEN), or give --cert"
        )
    return "the broker requires a client certificate: give --cert NAME (in --tls-dir) or --cert FILE"


def _refused(target: str, cert: Path | None) -> str:
    return (
        f"{target} does not accept your certificate ({cert}): it is not from the platform's CA, "
        "or it was revoked"
    )


def hint_for(args: Any) -> Diagnosis | None:
    """:func:`diagnose` for the flags of a command that ended "broker unavailable" (client
    commands and ``health``); ``None`` when nothing shows or the flags name no broker."""
    from onceonly.consumers._console import certificate_files

    target = getattr(args, "broker", None) or getattr(args, "target", None)
    if not isinstance(target, str):
        return None
    tls_dir = Path(getattr(args, "tls_dir", None) or "var/pki")
    cert = key = None
    if getattr(args, "cert", None):
        cert, key = certificate_files(tls_dir, args.cert, getattr(args, "key", None))
    return diagnose(
        target,
        ca=Path(getattr(args, "ca", None) or tls_dir / "ca.pem"),
        cert=cert,
        key=key,
        insecure=bool(getattr(args, "insecure", False)),
        token=bool(getattr(args, "token", None)),
    )
