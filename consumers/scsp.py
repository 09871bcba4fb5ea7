"""An SCSP v3 client, for agencies trying their own XML and for tests: ``onceonly scsp``.

    onceonly scsp example [--subjects N] [--code CODE] [--result IDPETICION --elements N] > peticion.xml
    onceonly scsp send FILE --url https://HOST:PORT/scsp [--action peticionSincrona|peticionAsincrona|
                       solicitudRespuesta] [--tls-dir DIR] [--cert NAME] [--seal NAME] [--sha1]

``send`` takes a bare message (a ``Peticion`` or a ``SolicitudRespuesta``), puts it in a SOAP
envelope, signs its Body with the seal (WS-Security, RSA-SHA256: ``--seal``, default the demo
housing office's ``housing-office-seal``) and posts it over HTTPS with a client certificate
(``--cert``). A file that is already a SOAP envelope is sent exactly as it is (an agency's own
signed XML). The answer is printed; its signature is checked against the platform CA, and a line
on stderr tells its state: ``0003 Tramitada``, or the fault's code and text. Exit codes: 0 answered
(0002 or 0003), 1 a fault, 2 bad input, 4 no answer from the address.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import ssl
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from lxml import etree

from onceonly.consumers._console import EXIT_INVALID, EXIT_UNAVAILABLE
from onceonly.pki import DEFAULT_PKI_DIR, DEMO_CONSUMER, RevocationList, cert_path, key_path
from onceonly.scsp import codes, soap, wssecurity
from onceonly.scsp.soap import DATOS_NS, PETICION_NS, SOLICITUD_RESPUESTA_NS, SoapError

__all__ = [
    "Answer",
    "Requester",
    "add_commands",
    "peticion",
    "post",
    "read_answer",
    "signed_envelope",
    "solicitud_respuesta",
]

EXIT_FAULT = 1
DEFAULT_SEAL = f"{DEMO_CONSUMER[1]}-seal"
DEFAULT_CERT = DEMO_CONSUMER[1]


@dataclass(frozen=True)
class Requester:
    """Who asks, and why: the ``Solicitante`` (and ``Emisor``) of every transmission."""

    organization_id: str = DEMO_CONSUMER[0]
    name: str = "Ayuntamiento de Madrid"
    unit: str = "Housing subsidies"
    procedure: str = "HOUSING-RENT-SUBSIDY"
    procedure_name: str = "Ayudas al alquiler de vivienda"
    automated: bool = False
    purpose: str = "Yearly re-check of the rent subsidy"
    consent: str = "Ley"
    officer_name: str = "Funcionaria de ejemplo"
    officer_nif: str = "12345678Z"
    case_file: str = "EXP-2026-0001"
    issuer_nif: str = "S2800000A"
    issuer_name: str = "Plataforma de intermediación onceonly"
    extra: Mapping[str, str] = field(default_factory=dict)


def _add(parent: etree._Element, name: str, text: object = None, ns: str = PETICION_NS) -> etree._Element:
    return soap.child(parent, ns, name, text)


def peticion(
    id_peticion: str,
    code: str,
    subjects: Iterable[tuple[str, str]],
    *,
    requester: Requester | None = None,
    consulta: Mapping[str, str] | None = None,
    at: dt.datetime | None = None,
) -> etree._Element:
    """A ``Peticion``: one ``SolicitudTransmision`` per (``TipoDocumentacion``, ``Documentacion``)."""
    who = requester or Requester()
    items = list(subjects)
    root = etree.Element(f"{{{PETICION_NS}}}Peticion", nsmap={"pet": PETICION_NS, "des": DATOS_NS})
    attributes = _add(root, "Atributos")
    _add(attributes, "IdPeticion", id_peticion)
    _add(attributes, "NumElementos", len(items))
    _add(attributes, "TimeStamp", soap.timestamp(at or dt.datetime.now(dt.UTC)))
    _add(attributes, "CodigoCertificado", code)
    solicitudes = _add(root, "Solicitudes")
    for n, (document_type, number) in enumerate(items, start=1):
        item = _add(solicitudes, "SolicitudTransmision")
        generic = _add(item, "DatosGenericos")
        emisor = _add(generic, "Emisor")
        _add(emisor, "NifEmisor", who.issuer_nif)
        _add(emisor, "NombreEmisor", who.issuer_name)
        solicitante = _add(generic, "Solicitante")
        _add(solicitante, "IdentificadorSolicitante", who.organization_id)
        _add(solicitante, "NombreSolicitante", who.name)
        _add(solicitante, "UnidadTramitadora", who.unit)
        procedure = _add(solicitante, "Procedimiento")
        _add(procedure, "CodProcedimiento", who.procedure)
        _add(procedure, "NombreProcedimiento", who.procedure_name)
        _add(procedure, "Automatizado", "S" if who.automated else "N")
        _add(solicitante, "Finalidad", who.purpose)
        _add(solicitante, "Consentimiento", who.consent)
        officer = _add(solicitante, "Funcionario")
        _add(officer, "NombreCompletoFuncionario", who.officer_name)
        _add(officer, "NifFuncionario", who.officer_nif)
        if who.case_file:
            _add(solicitante, "IdExpediente", who.case_file)
        titular = _add(generic, "Titular")
        _add(titular, "TipoDocumentacion", document_type)
        _add(titular, "Documentacion", number)
        transmision = _add(generic, "Transmision")
        _add(transmision, "CodigoCertificado", code)
        _add(transmision, "IdSolicitud", f"{n:05d}" if len(items) > 1 else "1")
        if consulta:
            specific = soap.child(item, DATOS_NS, "DatosEspecificos")
            query = soap.child(specific, DATOS_NS, "Consulta")
            for name, value in consulta.items():
                soap.child(query, DATOS_NS, name, value)
    return root


def solicitud_respuesta(
    id_peticion: str, elements: int, code: str, *, at: dt.datetime | None = None
) -> etree._Element:
    """A ``SolicitudRespuesta`` asking for the answer to an asynchronous petition."""
    ns = SOLICITUD_RESPUESTA_NS
    root = etree.Element(f"{{{ns}}}SolicitudRespuesta", nsmap={"sr": ns})
    attributes = soap.child(root, ns, "Atributos")
    soap.child(attributes, ns, "IdPeticion", id_peticion)
    soap.child(attributes, ns, "NumElementos", elements)
    soap.child(attributes, ns, "TimeStamp", soap.timestamp(at or dt.datetime.now(dt.UTC)))
    soap.child(attributes, ns, "CodigoCertificado", code)
    return root


def signed_envelope(message: etree._Element, seal: wssecurity.Seal | None, *, sha1: bool = False) -> bytes:
    """``message`` in a SOAP envelope, its Body signed with ``seal`` (unsigned if ``None``)."""
    root = soap.envelope(message)
    if seal is not None:
        wssecurity.sign(root, seal, sha1=sha1)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def client_context(tls_dir: Path, cert: str | None) -> ssl.SSLContext:
    """TLS towards the facade: the platform CA, and the client certificate ``cert`` (if any)."""
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    if cert:
        context.load_cert_chain(cert_path(tls_dir, cert), key_path(tls_dir, cert))
    return context


def post(
    url: str, body: bytes, action: str, context: ssl.SSLContext, *, timeout: float = 30.0
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` with ``SOAPAction: action``: (HTTP status, body)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--url must be https://HOST:PORT/scsp, not {url!r}")
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=context, timeout=timeout
    )
    try:
        connection.request(
            "POST",
            parts.path or "/scsp",
            body=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass(frozen=True)
class Answer:
    """What the facade answered: its state (or fault) code, the text, the message, who signed it."""

    code: str
    text: str
    message: etree._Element
    signer: str
    fault: bool

    def find(self, path: str, ns: str) -> str:
        return soap.text_of(self.message, ns, path)


def read_answer(data: bytes, tls_dir: Path) -> Answer:
    """Parse an answer and check its signature against the platform CA (``SoapError`` if it does
    not hold: an answer must come signed by the broker's seal)."""
    root = soap.parse(data, max_bytes=len(data) + 1)
    trusted = x509.load_pem_x509_certificates((tls_dir / "ca.pem").read_bytes())
    verified = wssecurity.verify(
        root, trusted, RevocationList.beside(tls_dir / "ca.pem"), dt.datetime.now(dt.UTC)
    )
    if verified.identity.role != "broker":
        raise SoapError(
            codes.BAD_SIGNATURE, f"the answer is signed by a {verified.identity.role}, not the broker"
        )
    message = soap.message_of(verified.body)
    signer = f"{verified.identity.name} ({verified.identity.organization_id})"
    if message.tag == f"{{{soap.SOAP_NS}}}Fault":
        attributes = message.find(f"detail/{{{soap.FAULT_NS}}}Atributos")
        if attributes is None:
            raise SoapError(codes.MALFORMED, "a fault without sf:Atributos")
        soap.validate(attributes, ("soapfaultatributos",))
        return Answer(
            soap.text_of(attributes, soap.FAULT_NS, "Estado/CodigoEstado"),
            (message.findtext("faultstring") or "").strip(),
            message,
            signer,
            True,
        )
    soap.validate(message, ("respuesta", "confirmacionPeticion"))
    ns = etree.QName(message).namespace or ""
    return Answer(
        soap.text_of(message, ns, "Atributos/Estado/CodigoEstado"),
        soap.text_of(message, ns, "Atributos/Estado/LiteralError"),
        message,
        signer,
        False,
    )


# --- the commands ----------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scsp = sub.add_parser("scsp", help="SCSP v3: example petitions, and send one to the broker's facade")
    scsp_sub = scsp.add_subparsers(dest="scsp_command", required=True)
    example = scsp_sub.add_parser("example", help="print an example Peticion (or SolicitudRespuesta)")
    example.add_argument("--id", default="", help="IdPeticion (default: a new one)")
    example.add_argument("--code", default="ONCEONLY_CORRIENTE_AEAT", help="CodigoCertificado")
    example.add_argument("--subjects", type=int, default=1, help="transmissions (1 for peticionSincrona)")
    example.add_argument("--document", action="append", default=[], help="a DNI/NIE to ask about, repeatable")
    example.add_argument(
        "--result", metavar="IDPETICION", help="a SolicitudRespuesta for this petition instead"
    )
    example.add_argument("--elements", type=int, default=1, help="NumElementos of the SolicitudRespuesta")
    example.set_defaults(handler=_cmd_example)

    send = scsp_sub.add_parser("send", help="sign a Peticion/SolicitudRespuesta, send it, print the answer")
    send.add_argument("file", type=Path, help="the message (or a whole SOAP envelope, sent as it is)")
    send.add_argument("--url", required=True, help="the facade: https://HOST:PORT/scsp")
    send.add_argument(
        "--action",
        choices=("peticionSincrona", "peticionAsincrona", "solicitudRespuesta"),
        help="SOAPAction (default: solicitudRespuesta for a SolicitudRespuesta, else peticionSincrona)",
    )
    send.add_argument(
        "--tls-dir", type=Path, default=DEFAULT_PKI_DIR, help="the platform PKI (default %(default)s)"
    )
    send.add_argument(
        "--cert", default=DEFAULT_CERT, help="TLS client certificate NAME (default %(default)s)"
    )
    send.add_argument("--seal", default=DEFAULT_SEAL, help="signing certificate NAME (default %(default)s)")
    send.add_argument("--sha1", action="store_true", help="sign with RSA-SHA1 (only if the broker allows it)")
    send.set_defaults(handler=_cmd_send)


async def _cmd_example(args: argparse.Namespace) -> int:
    import secrets

    identifier = args.id or f"ONCE{secrets.token_hex(8).upper()}"
    if args.result:
        message = solicitud_respuesta(args.result, args.elements, args.code)
    else:
        documents = args.document or ["00000000T"] * max(1, args.subjects)
        message = peticion(identifier, args.code, [("DNI", d) for d in documents])
    sys.stdout.write(etree.tostring(message, pretty_print=True, encoding="unicode"))
    return 0


async def _cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    try:
        data = args.file.read_bytes()
        message = soap.parse(data)
        if message.tag == f"{{{soap.SOAP_NS}}}Envelope":
            body = data
            inner = soap.message_of(soap.Envelope.of(message).body)
        else:
            seal = wssecurity.Seal.from_pem(
                cert_path(args.tls_dir, args.seal).read_bytes(),
                key_path(args.tls_dir, args.seal).read_bytes(),
            )
            body = signed_envelope(message, seal, sha1=args.sha1)
            inner = message
        action = args.action or (
            "solicitudRespuesta" if inner.tag.endswith("}SolicitudRespuesta") else "peticionSincrona"
        )
        context = client_context(args.tls_dir, args.cert)
    except (OSError, ValueError, SoapError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        status, answer = await asyncio.to_thread(post, args.url, body, action, context)
    except (OSError, http.client.HTTPException) as exc:
        print(f"{args.url}: no answer: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        read = read_answer(answer, args.tls_dir)
    except SoapError as exc:
        print(f"{args.url}: HTTP {status}, an answer that does not hold: {exc}", file=sys.stderr)
        sys.stdout.write(answer.decode("utf-8", "replace"))
        return EXIT_FAULT
    pretty = etree.tostring(read.message, pretty_print=True, encoding="unicode")
    sys.stdout.write(pretty)
    if read.fault:
        print(f"fault {read.text} (signed by {read.signer})", file=sys.stderr)
        return EXIT_FAULT
    print(f"{read.code} {read.text} (signed by {read.signer})", file=sys.stderr)
    return 0
