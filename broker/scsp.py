"""The SCSP v3 facade: agencies that speak SCSP use the broker unchanged.

A listener of the broker process (``ONCEONLY_SCSP_LISTEN``), HTTPS with client certificates from
the platform CA. ``POST /scsp`` takes the three SCSP operations (chosen by ``SOAPAction``):

* ``peticionSincrona(Peticion) → Respuesta``: one transmission, decided as ``Verify``;
* ``peticionAsincrona(Peticion) → ConfirmacionPeticion``: 1 to 1,000 transmissions, submitted as
  one asynchronous job (``SubmitVerification``), answered ``0002`` with the hours to wait;
* ``solicitudRespuesta(SolicitudRespuesta) → Respuesta``: ``0002`` until the job is done, then
  ``0003`` with every transmission.

``GET /scsp?wsdl`` serves our WSDL and ``GET /scsp?xsd=NAME`` (or ``/schemas/NAME.xsd``) its XSDs.

Every request must be signed (WS-Security, an X.509 token from the platform CA over the Body); the
signer's organisation is the requester, so ``IdentificadorSolicitante`` must name it (0235). The
Body as signed is validated against our XSDs and mapped to the broker's own request: the same
validation, policy, trace and attestations as a gRPC call, through the same servicer methods.
Answers are signed with the broker's seal (``broker-seal.pem``). Errors are SOAP faults whose
``sf:Atributos/Estado`` carries the SCSP code (:mod:`onceonly.scsp.codes`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import hashlib
import logging
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2, error_details_pb2
from google.rpc.status_pb2 import Status
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from onceonly import identity
from onceonly.broker.admission import AdmissionControl
from onceonly.broker.auth import Principal, acting_as
from onceonly.broker.catalog import Catalog
from onceonly.broker.grpc_api import BrokerServicer
from onceonly.broker.jobs import JobStore
from onceonly.broker.scsp_store import ASYNC, PetitionStore, PetitionTaken
from onceonly.broker.service import VerificationService
from onceonly.errors import OnceOnlyError
from onceonly.pki import RevocationList
from onceonly.scsp import codes, soap, wssecurity
from onceonly.scsp.soap import DATOS_NS, PETICION_NS, RESPUESTA_NS, SoapError
from onceonly.status import status_for
from onceonly.v1 import broker_pb2, common_pb2
from onceonly.vocabulary import DocumentType, OfficerIdentification
from onceonly.wire import DOCUMENT_TYPE

log = logging.getLogger(__name__)

__all__ = ["CertificateMapping", "ScspFacade", "code_for", "load_mapping", "transmission_id"]

SYNC_ACTION = "peticionSincrona"
ASYNC_ACTION = "peticionAsincrona"
RESULT_ACTION = "solicitudRespuesta"
ACTIONS = (SYNC_ACTION, ASYNC_ACTION, RESULT_ACTION)
SUBMISSION_PREFIX = "scsp-"
LARGE_BYTES = 32 * 1024
"""A request at least this large (many transmissions) is parsed, verified and validated in a
thread, so that the gRPC calls the same event loop serves are not held up."""
"""Jobs made from SCSP petitions are submitted as ``scsp-<IdPeticion>``."""

REASON_CODES = {
    "UNKNOWN_CONSUMER": codes.UNKNOWN_CONSUMER,
    "PROCEDURE_NOT_AUTHORISED": codes.NOT_COVERED,
    "CERTIFICATE_TYPE_NOT_COVERED": codes.NOT_COVERED,
    "OFFICER_NOT_AUTHENTICATED": codes.NOT_COVERED,
    "OFFICER_DOCUMENT_REQUIRED": codes.NOT_COVERED,
    "LEGAL_BASIS_NOT_ALLOWED": codes.LEGAL_BASIS,
    "LEGAL_REFERENCE_NOT_IN_AGREEMENT": codes.LEGAL_BASIS,
    "CONSENT_REQUIRED": codes.CONSENT_REQUIRED,
    "PROVIDER_VETO": codes.VETOED,
    "AGREEMENT_NOT_IN_FORCE": codes.NOT_IN_FORCE,
    "SELF_QUERY_FORBIDDEN": codes.SELF_QUERY,
    "CERTIFICATE_TYPE_NOT_FOUND": codes.UNKNOWN_CERTIFICATE,
    "DUPLICATE_REQUEST_ID": codes.DUPLICATE_PETITION,
    "DUPLICATE_SUBMISSION_ID": codes.DUPLICATE_PETITION,
    "CONSUMER_MISMATCH": codes.CERTIFICATE_NOT_REQUESTER,
    "ROLE_NOT_PERMITTED": codes.CERTIFICATE_NOT_REQUESTER,
    "OVERLOADED": codes.OVERLOADED,
    "QUOTA_EXCEEDED": codes.OVERLOADED,
    "LEDGER_UNAVAILABLE": codes.LEDGER_UNAVAILABLE,
}
"""The broker's ``ErrorInfo`` reasons → SCSP codes."""
GRPC_CODES = {
    code_pb2.INVALID_ARGUMENT: codes.SCHEMA_INVALID,
    code_pb2.PERMISSION_DENIED: codes.NOT_COVERED,
    code_pb2.UNAUTHENTICATED: codes.CERTIFICATE_NOT_REQUESTER,
    code_pb2.RESOURCE_EXHAUSTED: codes.OVERLOADED,
    code_pb2.UNAVAILABLE: codes.PROVIDER_UNAVAILABLE,
    code_pb2.ALREADY_EXISTS: codes.DUPLICATE_PETITION,
}
"""What a reason not in :data:`REASON_CODES` maps to, by its gRPC code (else 0502)."""
OUTCOME_CODES = {"TIMEOUT": codes.PROVIDER_TIMEOUT, "UNAVAILABLE": codes.PROVIDER_UNAVAILABLE}
"""A transmission whose agency did not answer: its own code."""


def code_for(status: Status, document_type: str = "") -> str:
    """The SCSP code of a broker status; a bad document number is 0231 (DNI, NIF) or 0240 (NIE)."""
    reason = ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request) and any(
            v.field.endswith("document_number") and not v.field.startswith("consumer.")
            for v in request.field_violations
        ):
            return codes.BAD_NIE if document_type == "NIE" else codes.BAD_DNI
    return REASON_CODES.get(reason) or GRPC_CODES.get(status.code, codes.INTERNAL)


def transmission_id(trace_id: str) -> str:
    """The ``IdTransmision`` of a trace: its 128 bits in base32, 26 characters (SCSP allows 29)."""
    return base64.b32encode(bytes.fromhex(trace_id)).decode().rstrip("=")


# --- the mapping file ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateMapping:
    """An SCSP certificate code, the catalog type it is decided as, and its ``Consulta`` elements →
    the type's parameters."""

    code: str
    certificate_type_id: str
    parameters: Mapping[str, str]


DEFAULT_MAPPING = "scsp.toml"


def load_mapping(path: Path | None, catalog: Catalog) -> dict[str, CertificateMapping]:
    """The mapping file (``broker/data/scsp.toml`` unless ``path``); ``ValueError`` names what in it
    does not fit the catalog."""
    if path is None:
        text = resources.files("onceonly.broker").joinpath("data", DEFAULT_MAPPING).read_text()
        where = DEFAULT_MAPPING
    else:
        text, where = path.read_text(), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: {exc}") from None
    mapping: dict[str, CertificateMapping] = {}
    for code, entry in (data.get("certificates") or {}).items():
        type_id = entry.get("type", "")
        definition = catalog.get(type_id)
        if definition is None:
            raise ValueError(f"{where}: certificates.{code}.type: {type_id!r} is not in the catalog")
        parameters = dict(entry.get("parameters") or {})
        for element, name in parameters.items():
            if definition.parameter(name) is None:
                raise ValueError(
                    f"{where}: certificates.{code}.parameters.{element}: {type_id} has no parameter {name!r}"
                )
        if len(code) > 64:
            raise ValueError(f"{where}: certificate code {code[:70]!r} is longer than 64 characters")
        mapping[code] = CertificateMapping(code, type_id, parameters)
    return mapping


# --- reading a petition ----------------------------------------------------------------------


def _text(element: etree._Element, path: str, ns: str = PETICION_NS) -> str:
    return soap.text_of(element, ns, path)


@dataclass(frozen=True)
class Transmission:
    """One ``SolicitudTransmision`` of a petition."""

    id_solicitud: str
    generic: etree._Element
    """Its ``DatosGenericos``."""
    document_type: DocumentType
    """The broker's type of the ``Titular``'s document (see :func:`_document_type`)."""
    document_number: str
    consulta: dict[str, str]

    @property
    def solicitante(self) -> bytes:
        found = self.generic.find(f"{{{PETICION_NS}}}Solicitante")
        return etree.tostring(found, method="c14n") if found is not None else b""


def _transmissions(peticion: etree._Element) -> list[Transmission]:
    """Every transmission, with the checks on the whole petition: count (0414), unique
    ``IdSolicitud`` (0419), and one certificate code throughout (0402)."""
    declared = int(_text(peticion, "Atributos/NumElementos") or 0)
    code = _text(peticion, "Atributos/CodigoCertificado")
    found = peticion.findall(f"{{{PETICION_NS}}}Solicitudes/{{{PETICION_NS}}}SolicitudTransmision")
    if declared != len(found):
        raise SoapError(
            codes.COUNT_MISMATCH,
            f"NumElementos is {declared} but the petition holds {len(found)} solicitudes",
        )
    out: list[Transmission] = []
    seen: set[str] = set()
    for item in found:
        generic = item.find(f"{{{PETICION_NS}}}DatosGenericos")
        assert generic is not None  # the schema requires it
        id_solicitud = _text(generic, "Transmision/IdSolicitud")
        if id_solicitud in seen:
            raise SoapError(codes.DUPLICATE_SOLICITUD, f"IdSolicitud {id_solicitud!r} appears more than once")
        seen.add(id_solicitud)
        if _text(generic, "Transmision/CodigoCertificado") != code:
            raise SoapError(
                codes.SCHEMA_INVALID,
                f"solicitud {id_solicitud!r}: Transmision/CodigoCertificado differs from "
                "Atributos/CodigoCertificado",
            )
        consulta: dict[str, str] = {}
        query = item.find(f"{{{DATOS_NS}}}DatosEspecificos/{{{DATOS_NS}}}Consulta")
        for element in query if query is not None else ():
            if not isinstance(element.tag, str):
                continue
            if len(element):
                raise SoapError(
                    codes.SCHEMA_INVALID, f"Consulta/{etree.QName(element).localname} must be text"
                )
            consulta[etree.QName(element).localname] = (element.text or "").strip()
        out.append(
            Transmission(
                id_solicitud,
                generic,
                _document_type(
                    _text(generic, "Titular/TipoDocumentacion"), _text(generic, "Titular/Documentacion")
                ),
                _text(generic, "Titular/Documentacion").upper(),
                consulta,
            )
        )
    return out


_LEGAL_BASES = {
    "Si": (common_pb2.LEGAL_BASIS_KIND_CONSENT, "Consentimiento del titular (SCSP)"),
    "NoOpo": (common_pb2.LEGAL_BASIS_KIND_NO_OBJECTION, "No oposición del titular (SCSP)"),
}


def _document_type(tipo: str, number: str) -> DocumentType:
    """The broker's document type of an SCSP ``TipoDocumentacion``: a person's NIF is their DNI
    number, or their NIE."""
    if tipo == "Pasaporte":
        return DocumentType.PASSPORT
    if tipo == "NIE" or (tipo == "NIF" and number.upper()[:1] in "XYZ"):
        return DocumentType.NIE
    return DocumentType.DNI


def _subject(kind: DocumentType, number: str, *, where: str = "Titular") -> common_pb2.Subject:
    """The subject of a ``Titular`` (or an officer's NIF); 0231 or 0240 when its number is not valid."""
    if kind is not DocumentType.PASSPORT:
        check = identity.validate_nie if kind is DocumentType.NIE else identity.validate_dni
        try:
            check(number)
        except ValueError as exc:
            raise SoapError(
                codes.BAD_NIE if kind is DocumentType.NIE else codes.BAD_DNI, f"{where}/Documentacion: {exc}"
            ) from None
    return common_pb2.Subject(document_type=DOCUMENT_TYPE.to_proto(kind), document_number=number)


def _digest(peticion: etree._Element) -> str:
    """The petition's fingerprint: everything but its TimeStamp (a resend carries a new one)."""
    h = hashlib.sha256()
    for path in ("Atributos/IdPeticion", "Atributos/NumElementos", "Atributos/CodigoCertificado"):
        h.update(_text(peticion, path).encode() + b"\0")
    solicitudes = peticion.find(f"{{{PETICION_NS}}}Solicitudes")
    if solicitudes is not None:
        h.update(etree.tostring(solicitudes, method="c14n", exclusive=True))
    return h.hexdigest()


def _renamespaced(element: etree._Element, to_ns: str) -> etree._Element:
    """A copy of a petition's element with every element of the peticion namespace moved to ``to_ns``."""
    copy = etree.fromstring(etree.tostring(element))
    for node in copy.iter():
        if isinstance(node.tag, str) and node.tag.startswith(f"{{{PETICION_NS}}}"):
            node.tag = f"{{{to_ns}}}{etree.QName(node).localname}"
    etree.cleanup_namespaces(copy)
    return copy


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- the facade ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScspSettings:
    allow_sha1: bool = False
    """Accept RSA-SHA1 signatures (still seen in live SCSP traffic). ``ONCEONLY_SCSP_ALLOW_SHA1``."""
    max_body_bytes: int = soap.MAX_BODY_BYTES
    """The largest request taken. ``ONCEONLY_SCSP_MAX_BODY_BYTES``."""


class ScspFacade:
    """SCSP v3 in front of the broker's servicer."""

    def __init__(
        self,
        servicer: BrokerServicer,
        service: VerificationService,
        jobs: JobStore,
        petitions: PetitionStore,
        mapping: Mapping[str, CertificateMapping],
        trusted: list[x509.Certificate],
        revocations: RevocationList | None,
        seal: wssecurity.Seal,
        *,
        settings: ScspSettings | None = None,
        admission: AdmissionControl | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._servicer = servicer
        self._service = service
        self._jobs = jobs
        self._petitions = petitions
        self._mapping = dict(mapping)
        self._trusted = trusted
        self._revocations = revocations
        self._seal = seal
        self.settings = settings or ScspSettings()
        self._admission = admission
        self._clock = clock

    # -- HTTP ----------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/scsp", self._endpoint, methods=["GET", "POST"]),
                Route("/schemas/{name}", self._schema, methods=["GET"]),
            ]
        )

    async def _endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            if "wsdl" in request.query_params:
                location = str(request.url.replace(query=""))
                return Response(soap.wsdl(location), media_type="text/xml; charset=utf-8")
            name = request.query_params.get("xsd", "").removesuffix(".xsd")
            if name:
                return self._schema_response(name)
            return Response("ask ?wsdl, or ?xsd=NAME\n", status_code=404, media_type="text/plain")
        data = bytearray()
        too_large = False
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.settings.max_body_bytes:
                too_large = True
                break
        action = request.headers.get("soapaction", "").strip().strip('"')
        if too_large:
            status, body = await self._answer(
                soap.fault(
                    codes.MALFORMED, f"the message is larger than {self.settings.max_body_bytes} bytes"
                ),
                413,
            )
        else:
            status, body = await self.handle(bytes(data), action)
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8")

    async def _schema(self, request: Request) -> Response:
        return self._schema_response(str(request.path_params["name"]).removesuffix(".xsd"))

    @staticmethod
    def _schema_response(name: str) -> Response:
        try:
            return Response(soap.schema_text(name), media_type="text/xml; charset=utf-8")
        except KeyError:
            return Response(f"no schema {name[:40]!r}\n", status_code=404, media_type="text/plain")

    # -- SOAP ----------------------------------------------------------------------------------

    async def handle(self, data: bytes, action: str) -> tuple[int, bytes]:
        """Answer one SOAP request: (HTTP status, the signed envelope)."""
        attributes: dict[str, str] = {}
        try:
            large = len(data) >= LARGE_BYTES  # parsed and checked off the event loop
            parse = functools.partial(soap.parse, data, max_bytes=self.settings.max_body_bytes)
            root = await asyncio.to_thread(parse) if large else parse()
            verified = await self._verify(root, data)
            message = soap.message_of(verified.body)
            attributes = {
                name: soap.text_of(message, etree.QName(message).namespace or "", f"Atributos/{name}")
                for name in ("IdPeticion", "NumElementos", "CodigoCertificado")
            }
            action = action or (RESULT_ACTION if message.tag.endswith("}SolicitudRespuesta") else SYNC_ACTION)
            if action not in ACTIONS:
                raise SoapError(codes.MALFORMED, f"SOAPAction must be one of {', '.join(ACTIONS)}")
            expected = ("solicitudRespuesta",) if action == RESULT_ACTION else ("peticion",)
            if large:
                await asyncio.to_thread(soap.validate, message, expected)
            else:
                soap.validate(message, expected)
            if verified.identity.role != "consumer":
                raise SoapError(
                    codes.CERTIFICATE_NOT_REQUESTER,
                    f"the signing certificate is a {verified.identity.role}'s; only consumers request",
                )
            principal = Principal("consumer", verified.identity.organization_id, None, "scsp")
            with acting_as(principal):
                if action == SYNC_ACTION:
                    answer = await self._sync(message, principal)
                elif action == ASYNC_ACTION:
                    answer = await self._async(message, principal)
                else:
                    answer = await self._result(message, principal)
            return await self._answer(answer, 200)
        except SoapError as exc:
            return await self._answer(soap.fault(exc.code, exc.text, attributes=attributes), exc.status)
        except OnceOnlyError as exc:
            status = status_for(exc)
            return await self._answer(
                soap.fault(code_for(status), status.message, attributes=attributes), 500
            )
        except Exception as exc:  # a bug: logged here, nothing of it told to the caller
            log.error("unexpected error in an SCSP request", exc_info=exc)
            return await self._answer(
                soap.fault(codes.INTERNAL, "internal error", attributes=attributes), 500
            )

    async def _verify(self, root: etree._Element, data: bytes) -> wssecurity.Verified:
        check = functools.partial(
            wssecurity.verify,
            root,
            self._trusted,
            self._revocations,
            self._clock(),
            allow_sha1=self.settings.allow_sha1,
            data=data,
        )
        if len(data) < LARGE_BYTES:  # a single transmission: cheaper here than a hop to a thread
            return check()
        return await asyncio.to_thread(check)

    async def _answer(self, message: etree._Element, status: int) -> tuple[int, bytes]:
        def signed() -> bytes:
            root = soap.envelope(message)
            wssecurity.sign(root, self._seal)
            return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

        if sum(1 for _ in message.iter(f"{{{RESPUESTA_NS}}}TransmisionDatos")) > 1:
            return status, await asyncio.to_thread(signed)  # a large answer: sign it off the loop
        return status, signed()

    # -- mapping to the broker's requests ------------------------------------------------------

    def _header(
        self, peticion: etree._Element, first: Transmission, principal: Principal
    ) -> tuple[broker_pb2.BulkHeader, OfficerIdentification]:
        """What every transmission shares, as a bulk header, and how its officer is known."""
        generic = first.generic
        requester = _text(generic, "Solicitante/IdentificadorSolicitante")
        if requester != principal.organization_id:
            raise SoapError(
                codes.CERTIFICATE_NOT_REQUESTER,
                f"IdentificadorSolicitante {requester[:64]!r} is not the organisation of the signing "
                f"certificate ({principal.organization_id})",
            )
        code = _text(peticion, "Atributos/CodigoCertificado")
        mapped = self._mapping.get(code)
        if mapped is None:
            raise SoapError(codes.UNKNOWN_CERTIFICATE, f"certificate code {code[:64]!r} is not mapped")
        parameters: dict[str, str] = {}
        for element, value in first.consulta.items():
            name = mapped.parameters.get(element)
            if name is None:
                raise SoapError(codes.SCHEMA_INVALID, f"Consulta/{element[:40]} is not a parameter of {code}")
            parameters[name] = value
        procedure = _text(generic, "Solicitante/Procedimiento/CodProcedimiento")
        consent = _text(generic, "Solicitante/Consentimiento")
        if consent == "Ley":
            cited = self._service.legal_references(requester, procedure, mapped.certificate_type_id)
            basis = common_pb2.LegalBasis(
                kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference=cited[0] if cited else "Ley (SCSP)"
            )
        else:
            kind, reference = _LEGAL_BASES[consent]
            basis = common_pb2.LegalBasis(kind=kind, reference=reference)
        officer_nif = _text(generic, "Solicitante/Funcionario/NifFuncionario").upper()
        header = broker_pb2.BulkHeader(
            consumer=common_pb2.Consumer(
                organization_id=requester,
                unit=_text(generic, "Solicitante/UnidadTramitadora"),
                officer_id=officer_nif,
                officer_document=_subject(
                    _document_type("NIF", officer_nif), officer_nif, where="Funcionario/NifFuncionario"
                ),
            ),
            purpose=common_pb2.Purpose(
                procedure_code=procedure,
                purpose_text=_text(generic, "Solicitante/Finalidad"),
                case_file_id=_text(generic, "Solicitante/IdExpediente")
                or f"SCSP-{_text(peticion, 'Atributos/IdPeticion')}",
            ),
            legal_basis=basis,
            checks=[broker_pb2.Check(certificate_type_id=mapped.certificate_type_id, parameters=parameters)],
        )
        automated = _text(generic, "Solicitante/Procedimiento/Automatizado") == "S"
        return header, OfficerIdentification.AUTOMATED if automated else OfficerIdentification.CERTIFICATE

    @staticmethod
    def _request_id(id_peticion: str, transmission: Transmission) -> str:
        return f"{id_peticion}.{transmission.id_solicitud}"

    # -- the operations ------------------------------------------------------------------------

    async def _sync(self, peticion: etree._Element, principal: Principal) -> etree._Element:
        transmissions = _transmissions(peticion)
        if len(transmissions) != 1:
            raise SoapError(codes.SYNC_MANY, "a synchronous petition holds exactly one solicitud")
        id_peticion = _text(peticion, "Atributos/IdPeticion")
        # A synchronous petition is known by its trace alone (its request id starts `IdPeticion.`);
        # the registry holds the asynchronous ones.
        if await asyncio.to_thread(self._petitions.get, id_peticion) is not None:
            raise SoapError(codes.DUPLICATE_PETITION, f"IdPeticion {id_peticion!r} is already taken")
        transmission = transmissions[0]
        header, identified = self._header(peticion, transmission, principal)
        subject = _subject(transmission.document_type, transmission.document_number)
        request = broker_pb2.VerifyRequest(
            request_id=self._request_id(id_peticion, transmission),
            consumer=header.consumer,
            purpose=header.purpose,
            legal_basis=header.legal_basis,
            subject=subject,
            checks=header.checks,
        )
        if self._admission is not None and not self._admission.try_enter():
            raise SoapError(codes.OVERLOADED, "the broker is at capacity: retry shortly")
        try:
            try:
                response = await self._servicer.verify(request, None, identified)
            except OnceOnlyError as exc:
                status = status_for(exc)
                raise SoapError(code_for(status, transmission.document_type), status.message) from None
        finally:
            if self._admission is not None:
                self._admission.leave()
        outcome = response.outcomes[0]
        status_name = broker_pb2.CheckStatus.Name(outcome.status).removeprefix("CHECK_STATUS_")
        if status_name in OUTCOME_CODES:
            raise SoapError(
                OUTCOME_CODES[status_name], outcome.detail or f"the agency's answer: {status_name}"
            )
        respuesta = self._respuesta(peticion, codes.DONE)
        transmissions_element = soap.child(respuesta, RESPUESTA_NS, "Transmisiones")
        self._transmission_data(transmissions_element, transmission, response, None)
        return respuesta

    async def _async(self, peticion: etree._Element, principal: Principal) -> etree._Element:
        transmissions = _transmissions(peticion)
        id_peticion = _text(peticion, "Atributos/IdPeticion")
        first = transmissions[0]
        for t in transmissions[1:]:
            if t.solicitante != first.solicitante or t.consulta != first.consulta:
                raise SoapError(
                    codes.SCHEMA_INVALID,
                    f"solicitud {t.id_solicitud!r}: every solicitud of an asynchronous petition must share "
                    "its Solicitante and its Consulta",
                )
        header, identified = self._header(peticion, first, principal)
        digest = _digest(peticion)
        taken = await asyncio.to_thread(self._petitions.get, id_peticion)
        if taken is not None:  # the same petition again is answered as before; another is refused
            another = (taken.mode, taken.organization_id, taken.digest) != (
                ASYNC,
                principal.organization_id,
                digest,
            )
        else:  # a synchronous petition's id is taken by its trace
            another = await self._service.answered_under(principal.organization_id, f"{id_peticion}.")
        if another:
            raise SoapError(codes.DUPLICATE_PETITION, f"IdPeticion {id_peticion!r} is already taken")
        submission = broker_pb2.SubmitVerificationRequest(
            submission_id=f"{SUBMISSION_PREFIX}{id_peticion}",
            header=header,
            subjects=[
                broker_pb2.BulkSubject(
                    request_id=self._request_id(id_peticion, t),
                    subject=common_pb2.Subject(
                        document_type=DOCUMENT_TYPE.to_proto(t.document_type),
                        document_number=t.document_number,
                    ),
                )
                for t in transmissions
            ],
        )
        try:
            job = await self._servicer.submit(submission, identified)
        except OnceOnlyError as exc:
            status = status_for(exc)
            raise SoapError(code_for(status), status.message) from None
        now = self._clock()
        try:
            await asyncio.to_thread(
                self._petitions.take,
                id_peticion,
                principal.organization_id,
                ASYNC,
                digest,
                len(transmissions),
                now,
                job.expires_at.ToDatetime(dt.UTC),
                etree.tostring(peticion, method="c14n", exclusive=True),
                job.job_id,
            )
        except PetitionTaken:
            raise SoapError(
                codes.DUPLICATE_PETITION, f"IdPeticion {id_peticion!r} is already taken"
            ) from None
        confirmation = etree.Element(
            f"{{{soap.CONFIRMACION_NS}}}ConfirmacionPeticion", nsmap={"cp": soap.CONFIRMACION_NS}
        )
        self._attributes(confirmation, soap.CONFIRMACION_NS, peticion, codes.PENDING, _hours(job, now))
        return confirmation

    async def _result(self, request: etree._Element, principal: Principal) -> etree._Element:
        ns = soap.SOLICITUD_RESPUESTA_NS
        id_peticion = soap.text_of(request, ns, "Atributos/IdPeticion")
        petition = await asyncio.to_thread(self._petitions.get, id_peticion)
        now = self._clock()
        if petition is None:
            if await self._service.answered_under(principal.organization_id, f"{id_peticion}."):
                raise SoapError(
                    codes.ASYNC_WAS_SYNC, f"petition {id_peticion!r} was synchronous: its answer was given"
                )
            raise SoapError(codes.ASYNC_UNKNOWN, f"no asynchronous petition {id_peticion!r}")
        if petition.organization_id != principal.organization_id:
            raise SoapError(
                codes.ASYNC_OTHER_ORGANISATION, f"petition {id_peticion!r} is another organisation's"
            )
        if petition.job_id is None:  # recorded before its job was made: not there yet
            raise SoapError(codes.ASYNC_UNKNOWN, f"no asynchronous petition {id_peticion!r}")
        if petition.expires_at <= now:
            raise SoapError(codes.ASYNC_EXPIRED, f"the answer to {id_peticion!r} is no longer kept")
        declared = soap.text_of(request, ns, "Atributos/NumElementos")
        if declared != str(petition.elements):
            raise SoapError(
                codes.ASYNC_COUNT,
                f"NumElementos is {declared} but petition {id_peticion!r} had {petition.elements}",
            )
        try:
            job = await self._servicer.verification_result(
                broker_pb2.GetVerificationResultRequest(job_id=petition.job_id)
            )
        except OnceOnlyError as exc:
            status = status_for(exc)
            raise SoapError(code_for(status), status.message) from None
        body = await asyncio.to_thread(self._petitions.body, petition)
        peticion = soap.parse(body, max_bytes=len(body) + 1)
        if job.state == broker_pb2.JOB_STATE_EXPIRED:
            raise SoapError(codes.ASYNC_EXPIRED, f"the answer to {id_peticion!r} is no longer kept")
        if job.state != broker_pb2.JOB_STATE_DONE:
            return self._respuesta(peticion, codes.PENDING, _hours(job, now))
        return await asyncio.to_thread(self._done, peticion, job, id_peticion)

    def _done(
        self, peticion: etree._Element, job: broker_pb2.VerificationJob, id_peticion: str
    ) -> etree._Element:
        results = {r.request_id: r for r in job.results}
        respuesta = self._respuesta(peticion, codes.DONE)
        element = soap.child(respuesta, RESPUESTA_NS, "Transmisiones")
        for t in _transmissions(peticion):
            result = results.get(self._request_id(id_peticion, t))
            if result is None or result.HasField("error"):
                error = (
                    result.error
                    if result is not None
                    else Status(code=code_pb2.INTERNAL, message="no result")
                )
                self._transmission_data(element, t, None, (code_for(error, t.document_type), error.message))
                continue
            outcome = result.response.outcomes[0]
            name = broker_pb2.CheckStatus.Name(outcome.status).removeprefix("CHECK_STATUS_")
            failed = (OUTCOME_CODES[name], outcome.detail or name) if name in OUTCOME_CODES else None
            self._transmission_data(element, t, result.response, failed)
        return respuesta

    # -- building answers ----------------------------------------------------------------------

    def _attributes(
        self, parent: etree._Element, ns: str, peticion: etree._Element, code: str, hours: int | None = None
    ) -> None:
        attributes = soap.child(parent, ns, "Atributos")
        soap.child(attributes, ns, "IdPeticion", _text(peticion, "Atributos/IdPeticion"))
        soap.child(attributes, ns, "NumElementos", _text(peticion, "Atributos/NumElementos"))
        soap.child(attributes, ns, "TimeStamp", soap.timestamp(self._clock()))
        soap.estado(attributes, ns, code, codes.LITERALS[code], hours)
        soap.child(attributes, ns, "CodigoCertificado", _text(peticion, "Atributos/CodigoCertificado"))

    def _respuesta(self, peticion: etree._Element, code: str, hours: int | None = None) -> etree._Element:
        respuesta = etree.Element(f"{{{RESPUESTA_NS}}}Respuesta", nsmap={"res": RESPUESTA_NS})
        self._attributes(respuesta, RESPUESTA_NS, peticion, code, hours)
        return respuesta

    def _transmission_data(
        self,
        parent: etree._Element,
        transmission: Transmission,
        response: broker_pb2.VerifyResponse | None,
        failed: tuple[str, str] | None,
    ) -> None:
        data = soap.child(parent, RESPUESTA_NS, "TransmisionDatos")
        generic = _renamespaced(transmission.generic, RESPUESTA_NS)
        envio = generic.find(f"{{{RESPUESTA_NS}}}Transmision")
        assert envio is not None
        for name in ("IdTransmision", "FechaGeneracion"):
            for old in envio.findall(f"{{{RESPUESTA_NS}}}{name}"):
                envio.remove(old)
        if response is not None:
            soap.child(envio, RESPUESTA_NS, "IdTransmision", transmission_id(response.trace_id))
            soap.child(
                envio, RESPUESTA_NS, "FechaGeneracion", soap.timestamp(response.decided_at.ToDatetime(dt.UTC))
            )
        data.append(generic)
        specific = etree.SubElement(data, f"{{{DATOS_NS}}}DatosEspecificos", nsmap={"des": DATOS_NS})
        if failed is not None:
            estado = soap.child(specific, DATOS_NS, "Estado")
            soap.child(estado, DATOS_NS, "CodigoEstado", failed[0])
            soap.child(estado, DATOS_NS, "LiteralError", failed[1][:255])
        if response is None:
            return
        outcome = response.outcomes[0]
        retorno = soap.child(specific, DATOS_NS, "Retorno")
        soap.child(
            retorno,
            DATOS_NS,
            "Resultado",
            broker_pb2.CheckStatus.Name(outcome.status).removeprefix("CHECK_STATUS_"),
        )
        soap.child(retorno, DATOS_NS, "Proveedor", outcome.provider_id)
        soap.child(retorno, DATOS_NS, "TipoCertificado", outcome.certificate_type_id)
        if outcome.HasField("claims"):
            claims = soap.child(retorno, DATOS_NS, "Afirmaciones")
            for name, value in sorted(_claims(outcome).items()):
                claim = soap.child(claims, DATOS_NS, "Afirmacion")
                soap.child(claim, DATOS_NS, "Nombre", name)
                soap.child(claim, DATOS_NS, "Valor", _claim_text(value))
        if outcome.attestation:
            soap.child(retorno, DATOS_NS, "Atestado", outcome.attestation)
        if outcome.detail:
            soap.child(retorno, DATOS_NS, "Detalle", outcome.detail)


def _claims(outcome: broker_pb2.CheckOutcome) -> dict[str, Any]:
    return dict(MessageToDict(outcome.claims))


def _hours(job: broker_pb2.VerificationJob, now: dt.datetime) -> int:
    """``TiempoEstimadoRespuesta``: the whole hours until the job's estimated end (at least 1)."""
    if not job.HasField("estimated_done_at"):
        return 1
    seconds = (job.estimated_done_at.ToDatetime(dt.UTC) - now).total_seconds()
    return max(1, math.ceil(seconds / 3600))
