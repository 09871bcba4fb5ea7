"""SOAP 1.1 envelopes of SCSP v3: read safely, validate against our XSDs, build answers and faults.

Reading is hostile-input safe: a body larger than the limit is refused before it is parsed, any
DTD (and so any entity, internal or external) is refused, nothing is fetched from the network,
and libxml2's own limits on depth and text size stay on. :class:`SoapError` names the SCSP code.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lxml import etree

from onceonly.scsp import codes

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
V3 = "http://intermediacion.redsara.es/scsp/esquemas/V3"
PETICION_NS = f"{V3}/peticion"
RESPUESTA_NS = f"{V3}/respuesta"
CONFIRMACION_NS = f"{V3}/confirmacionPeticion"
SOLICITUD_RESPUESTA_NS = f"{V3}/solicitudRespuesta"
FAULT_NS = f"{V3}/soapfaultatributos"
DATOS_NS = "http://intermediacion.redsara.es/scsp/esquemas/datosespecificos"
WSDL_NS = "http://intermediacion.redsara.es/scsp/wsdl"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
"""WS-Security's utility namespace: the Body's ``wsu:Id``, which the signature refers to."""

SCHEMAS = {
    "peticion": PETICION_NS,
    "respuesta": RESPUESTA_NS,
    "confirmacionPeticion": CONFIRMACION_NS,
    "solicitudRespuesta": SOLICITUD_RESPUESTA_NS,
    "soapfaultatributos": FAULT_NS,
}
"""Our message schemas (``schemas/<name>.xsd``) and their namespaces."""
SCHEMA_FILES = (*SCHEMAS, "scsp-tipos", "datosespecificos")
ROOTS = {
    f"{{{PETICION_NS}}}Peticion": "peticion",
    f"{{{RESPUESTA_NS}}}Respuesta": "respuesta",
    f"{{{CONFIRMACION_NS}}}ConfirmacionPeticion": "confirmacionPeticion",
    f"{{{SOLICITUD_RESPUESTA_NS}}}SolicitudRespuesta": "solicitudRespuesta",
    f"{{{FAULT_NS}}}Atributos": "soapfaultatributos",
}
"""The root element of each message → the schema it is checked against."""

_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest request read (1,000 transmissions take about 1.5 MiB)."""


class SoapError(Exception):
    """A request that cannot be taken: the SCSP code to answer with, and what is wrong."""

    def __init__(self, code: str, text: str, *, status: int = 500) -> None:
        super().__init__(f"[{code}] {text}")
        self.code = code
        self.text = text
        self.status = status


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        # Nothing is removed: whitespace, comments and processing instructions in the Body are part of
        # what the sender signed (a pretty-printed petition keeps its indentation in the digest).
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
    )


def parse(data: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> etree._Element:
    """The root of ``data``, or ``SoapError`` 0401: too large, not XML, or carrying a DTD."""
    if len(data) > max_bytes:
        raise SoapError(codes.MALFORMED, f"the message is larger than {max_bytes} bytes", status=413)
    if _DOCTYPE.search(data):
        raise SoapError(codes.MALFORMED, "document type declarations (DTDs) are not accepted")
    try:
        tree = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapError(codes.MALFORMED, f"not well-formed XML: {short(str(exc))}") from None
    doctype = tree.getroottree().docinfo
    if doctype.internalDTD is not None or doctype.externalDTD is not None or doctype.doctype:
        raise SoapError(codes.MALFORMED, "document type declarations (DTDs) are not accepted")
    return tree


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Envelope:
    """A SOAP 1.1 envelope: its root, its Header (or ``None``) and its Body."""

    root: etree._Element
    header: etree._Element | None
    body: etree._Element

    @classmethod
    def of(cls, root: etree._Element) -> Envelope:
        if root.tag != f"{{{SOAP_NS}}}Envelope":
            raise SoapError(codes.MALFORMED, "the message is not a SOAP 1.1 Envelope")
        children = [c for c in root if isinstance(c.tag, str)]
        header = None
        if children and children[0].tag == f"{{{SOAP_NS}}}Header":
            header = children.pop(0)
        if len(children) != 1 or children[0].tag != f"{{{SOAP_NS}}}Body":
            raise SoapError(codes.MALFORMED, "a SOAP Envelope holds an optional Header and one Body")
        return cls(root, header, children[0])


def message_of(body: etree._Element) -> etree._Element:
    """The one message in a SOAP Body."""
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise SoapError(codes.MALFORMED, "the SOAP Body must hold exactly one message")
    return children[0]


@functools.cache
def schema_text(name: str) -> bytes:
    """The text of ``schemas/<name>.xsd`` (``KeyError`` if there is no such schema)."""
    if name not in SCHEMA_FILES:
        raise KeyError(name)
    return resources.files("onceonly.scsp").joinpath("schemas", f"{name}.xsd").read_bytes()


_per_thread = threading.local()


def _schema(name: str) -> etree.XMLSchema:
    """The compiled schema ``name``, one per thread: a validator keeps its error log, so it is not
    shared between the event loop and the threads that validate large requests."""
    schemas: dict[str, etree.XMLSchema] = _per_thread.__dict__.setdefault("schemas", {})
    if name not in schemas:
        path = resources.files("onceonly.scsp").joinpath("schemas", f"{name}.xsd")
        with resources.as_file(path) as file:
            schemas[name] = etree.XMLSchema(etree.parse(str(file)))
    return schemas[name]


def validate(message: etree._Element, expected: tuple[str, ...] | None = None) -> str:
    """The schema name ``message`` is an instance of, or ``SoapError``: 0401 for a message we do
    not take here (wrong namespace or element), 0402 for one that breaks its schema."""
    name = ROOTS.get(message.tag)
    if name is None or (expected is not None and name not in expected):
        wanted = " or ".join(expected or tuple(ROOTS.values()))
        raise SoapError(codes.MALFORMED, f"the message {short(str(message.tag), 120)} is not a {wanted}")
    schema = _schema(name)
    if not schema.validate(message):
        log: Any = schema.error_log  # iterable at run time; lxml-stubs say otherwise
        error = next(iter(log), None)
        where = f"line {error.line}: " if error is not None and error.line else ""
        text = error.message if error is not None else "invalid"
        raise SoapError(codes.SCHEMA_INVALID, f"{where}{short(text)}")
    return name


@functools.cache
def wsdl_text() -> bytes:
    return resources.files("onceonly.scsp").joinpath("scsp.wsdl").read_bytes()


def wsdl(location: str) -> bytes:
    """Our WSDL with ``location`` as the service's address."""
    root = etree.fromstring(wsdl_text(), parser=_parser())
    for address in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
        address.set("location", location)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def envelope(message: etree._Element, *, body_id: str | None = None) -> etree._Element:
    """A SOAP envelope with an empty Header and ``message`` in its Body (given a ``wsu:Id``)."""
    root = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soapenv": SOAP_NS})
    etree.SubElement(root, f"{{{SOAP_NS}}}Header")
    body = etree.SubElement(root, f"{{{SOAP_NS}}}Body", nsmap={"wsu": WSU_NS})
    if body_id is not None:
        body.set(f"{{{WSU_NS}}}Id", body_id)
    body.append(message)
    return root


def timestamp(at: dt.datetime) -> str:
    """SCSP's TimeStamp form: ``2026-12-08T10:15:30.123+00:00``."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def child(parent: etree._Element, ns: str, name: str, text: Any = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = str(text)
    return element


def estado(parent: etree._Element, ns: str, code: str, literal: str, hours: int | None = None) -> None:
    """An ``Estado`` element: code, literal and, for a petition in process, the hours to wait."""
    state = child(parent, ns, "Estado")
    child(state, ns, "CodigoEstado", code)
    child(state, ns, "LiteralError", short(literal, 255))
    if hours is not None:
        child(state, ns, "TiempoEstimadoRespuesta", hours)


def fault(code: str, text: str, *, attributes: dict[str, str] | None = None) -> etree._Element:
    """A SOAP 1.1 Fault whose detail is ``sf:Atributos`` with the SCSP ``code``."""
    element = etree.Element(f"{{{SOAP_NS}}}Fault")
    etree.SubElement(element, "faultcode").text = (
        "soapenv:Server" if code.startswith("05") else "soapenv:Client"
    )
    etree.SubElement(element, "faultstring").text = short(f"[{code}] {text}", 1000)
    detail = etree.SubElement(element, "detail")
    attrs = etree.SubElement(detail, f"{{{FAULT_NS}}}Atributos", nsmap={"sf": FAULT_NS})
    given = attributes or {}
    for name in ("IdPeticion", "NumElementos", "TimeStamp"):
        if given.get(name):
            child(attrs, FAULT_NS, name, given[name])
    estado(attrs, FAULT_NS, code, codes.LITERALS.get(code, text))
    if given.get("CodigoCertificado"):
        child(attrs, FAULT_NS, "CodigoCertificado", given["CodigoCertificado"])
    return element


def text_of(element: etree._Element, ns: str, path: str) -> str:
    """The stripped text at ``path`` (names separated by ``/``, all in ``ns``), "" if absent."""
    found = element.find("/".join(f"{{{ns}}}{part}" for part in path.split("/")))
    return (found.text or "").strip() if found is not None else ""
