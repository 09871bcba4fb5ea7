"""The SCSP v3 facade end to end: signed petitions over real HTTPS to a real broker and providers.

Every answer is read by the SCSP client (``onceonly.consumers.scsp``), which checks the broker's
signature and validates the message against our XSDs before any field is looked at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import sqlite3
from urllib.parse import urlsplit

import pytest
from lxml import etree

from onceonly.consumers import scsp as client
from onceonly.consumers.client import BrokerClient, verify_attestation
from onceonly.providers import synthetic
from onceonly.providers.reference import DeferringAdapter, reference_adapter
from onceonly.scsp import soap
from onceonly.scsp.soap import PETICION_NS, RESPUESTA_NS
from tests.conftest import Platform, session_pki
from tests.scsp.conftest import (
    TAX_CODE,
    Scsp,
    claims,
    datos,
    documents,
    generic,
    seal,
    start_scsp,
    transmissions,
)

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def trace(platform: Platform, request_id: str) -> sqlite3.Row:
    rows = platform.trace_rows(request_id=request_id)
    assert len(rows) == 1, (request_id, len(rows))
    return rows[0]


def resident_of(number: str) -> synthetic.Resident:
    return synthetic.find(lambda r: r.document_number == number)


async def test_a_synchronous_petition_is_answered_with_the_attested_claims(
    platform: Platform, scsp: Scsp
) -> None:
    [(kind, number)] = documents(1)
    request = client.peticion("PET-SYNC-0001", TAX_CODE, [(kind, number)])
    answer = await scsp.send(request)

    assert (answer.code, answer.text, answer.fault) == ("0003", "Tramitada", False)
    assert answer.signer == "broker-seal (onceonly)"
    assert answer.find("Atributos/IdPeticion", RESPUESTA_NS) == "PET-SYNC-0001"
    assert answer.find("Atributos/NumElementos", RESPUESTA_NS) == "1"
    assert answer.find("Atributos/CodigoCertificado", RESPUESTA_NS) == TAX_CODE
    [sent] = transmissions(answer)
    # DatosGenericos echoes the petition's, in the respuesta namespace, with the trace's id and date.
    asked = request.find(f".//{{{PETICION_NS}}}Solicitante")
    echoed = sent.find(f".//{{{RESPUESTA_NS}}}Solicitante")
    assert asked is not None and echoed is not None
    assert [(etree.QName(e).localname, e.text) for e in asked.iter()] == [
        (etree.QName(e).localname, e.text) for e in echoed.iter()
    ]
    assert generic(sent, "Titular/Documentacion") == number
    assert generic(sent, "Transmision/IdSolicitud") == "1"
    id_transmision = generic(sent, "Transmision/IdTransmision")
    assert len(id_transmision) <= 29
    record = trace(platform, "PET-SYNC-0001.1")
    assert base64.b32decode(id_transmision + "======").hex() == record["trace_id"]
    assert dt.datetime.fromisoformat(generic(sent, "Transmision/FechaGeneracion")).tzinfo is not None
    # What the agency attested, and the broker's signed attestation of it.
    assert datos(sent, "Retorno/Resultado") == "VERIFIED"
    assert datos(sent, "Retorno/Proveedor") == "tax"
    assert datos(sent, "Retorno/TipoCertificado") == "tax.compliance/v1"
    compliant = resident_of(number).tax_compliant
    assert claims(sent) == {"compliant": "true" if compliant else "false"}
    jwks = await BrokerClient(scsp.app.target, tls=session_pki().consumer()).jwks()
    attested = verify_attestation(datos(sent, "Retorno/Atestado"), jwks, audience="L01280796")
    assert attested["claims"] == {"compliant": compliant}
    assert attested["trace_id"] == record["trace_id"]
    # The trace: the law the agreement cites (SCSP Consentimiento=Ley names none), the officer's NIF.
    assert record["legal_basis_kind"] == "LAW"
    assert record["legal_basis_reference"] in ("Ley 12/2023 art. 17", "Ley 39/2015 art. 28")
    assert record["officer_id"] == "12345678Z"
    assert record["officer_identification"] == "CERTIFICATE"
    assert record["procedure_code"] == "HOUSING-RENT-SUBSIDY"
    assert record["case_file_id"] == "EXP-2026-0001"


async def test_an_automated_procedure_is_kept_in_the_trace(platform: Platform, scsp: Scsp) -> None:
    requester = client.Requester(automated=True)
    answer = await scsp.verify(documents(1), id_peticion="PET-AUTO-0001", requester=requester)
    assert answer.code == "0003"
    assert trace(platform, "PET-AUTO-0001.1")["officer_identification"] == "AUTOMATED"


async def test_consulta_elements_become_the_checks_parameters(platform: Platform, scsp: Scsp) -> None:
    [(kind, number)] = documents(1)
    answer = await scsp.verify(
        [(kind, number)],
        id_peticion="PET-RES-0001",
        code="ONCEONLY_RESIDENCIA",
        consulta={"CodigoMunicipio": "28079"},
    )
    [sent] = transmissions(answer)
    registered = resident_of(number).municipality_code == "28079"
    assert claims(sent) == {"registered": "true" if registered else "false"}
    unknown = await scsp.verify(
        [(kind, number)], id_peticion="PET-RES-0002", code="ONCEONLY_RESIDENCIA", consulta={"Provincia": "28"}
    )
    assert unknown.fault and unknown.code == "0402" and "Provincia" in unknown.text


async def test_the_same_petition_sent_again_gets_the_same_answer(platform: Platform, scsp: Scsp) -> None:
    subjects = documents(1)
    first = await scsp.verify(subjects, id_peticion="PET-AGAIN-0001")
    again = await scsp.verify(subjects, id_peticion="PET-AGAIN-0001")  # a new TimeStamp, the same petition
    assert first.code == again.code == "0003"
    assert generic(transmissions(first)[0], "Transmision/IdTransmision") == generic(
        transmissions(again)[0], "Transmision/IdTransmision"
    )
    assert len(platform.trace_rows(request_id="PET-AGAIN-0001.1")) == 1


def _get(url: str, path: str) -> tuple[int, bytes]:
    where = urlsplit(url)
    context = client.client_context(session_pki().dir, "housing-office")
    connection = http.client.HTTPSConnection(
        where.hostname or "", where.port or 443, context=context, timeout=10
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_the_wsdl_and_its_schemas_are_served(scsp: Scsp) -> None:
    status, body = await asyncio.to_thread(_get, scsp.url, "/scsp?wsdl")
    assert status == 200
    wsdl = etree.fromstring(body)
    assert wsdl.get("targetNamespace") == "http://intermediacion.redsara.es/scsp/wsdl"
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}
    operations = wsdl.xpath("//wsdl:portType/wsdl:operation/@name", namespaces=ns)
    assert operations == ["peticionSincrona", "peticionAsincrona", "solicitudRespuesta"]
    faults = wsdl.xpath("//wsdl:portType/wsdl:operation/wsdl:fault/@message", namespaces=ns)
    assert faults == ["tns:FaultSCSP"] * 3
    assert wsdl.xpath("//soap:address/@location", namespaces=ns) == [scsp.url]
    locations = wsdl.xpath("//*[local-name()='import']/@schemaLocation")
    assert isinstance(locations, list) and len(locations) == 5
    for location in map(str, locations):
        status, schema = await asyncio.to_thread(_get, scsp.url, f"/{location}")
        assert status == 200 and b"targetNamespace" in schema, location
    status, schema = await asyncio.to_thread(_get, scsp.url, "/scsp?xsd=peticion")
    assert status == 200 and b"/V3/peticion" in schema
    status, shared = await asyncio.to_thread(_get, scsp.url, "/schemas/scsp-tipos.xsd")
    assert status == 200 and b"SolicitudTransmision" not in shared and b"DatosGenericos" in shared
    assert (await asyncio.to_thread(_get, scsp.url, "/scsp?xsd=../../etc/passwd"))[0] == 404


@pytest.mark.parametrize("n", [1, 10])
async def test_an_asynchronous_petition_is_confirmed_then_answered(
    platform: Platform, scsp: Scsp, n: int
) -> None:
    subjects = documents(n)
    id_peticion = f"PET-ASYNC-{n:04d}"
    confirmation = await scsp.submit(subjects, id_peticion=id_peticion)
    assert confirmation.code == "0002" and confirmation.message.tag.endswith("}ConfirmacionPeticion")
    ns = soap.CONFIRMACION_NS
    assert int(confirmation.find("Atributos/Estado/TiempoEstimadoRespuesta", ns)) >= 1
    assert confirmation.find("Atributos/NumElementos", ns) == str(n)

    done = await scsp.wait(id_peticion, n)
    assert done.code == "0003"
    sent = transmissions(done)
    assert [generic(t, "Titular/Documentacion") for t in sent] == [d for _, d in subjects]
    expected_ids = ["1"] if n == 1 else [f"{i:05d}" for i in range(1, n + 1)]
    assert [generic(t, "Transmision/IdSolicitud") for t in sent] == expected_ids
    for t, (_, number) in zip(sent, subjects, strict=True):
        assert datos(t, "Retorno/Resultado") == "VERIFIED"
        assert claims(t) == {"compliant": "true" if resident_of(number).tax_compliant else "false"}
        record = trace(platform, f"{id_peticion}.{generic(t, 'Transmision/IdSolicitud')}")
        assert (
            base64.b32decode(generic(t, "Transmision/IdTransmision") + "======").hex() == record["trace_id"]
        )

    # Submitting it again (a new TimeStamp) confirms the same petition; nothing is decided twice.
    again = await scsp.submit(subjects, id_peticion=id_peticion)
    assert again.code == "0002"
    assert len(platform.trace_rows()) == n


async def test_an_asynchronous_petition_of_a_thousand(platform: Platform, scsp: Scsp) -> None:
    subjects = documents(1000)
    confirmation = await scsp.submit(subjects, id_peticion="PET-ASYNC-1000")
    assert confirmation.code == "0002"
    done = await scsp.wait("PET-ASYNC-1000", 1000, timeout_s=240)
    assert done.code == "0003"
    sent = transmissions(done)
    assert len(sent) == 1000
    assert all(datos(t, "Retorno/Resultado") == "VERIFIED" for t in sent)
    conn = sqlite3.connect(platform.db_path)
    try:
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM trace_records "
            "WHERE request_id LIKE 'PET-ASYNC-1000.%'"
        ).fetchone()
    finally:
        conn.close()
    assert counts == (1000, 1000)


class SimulatedTime:
    """The broker's and an agency's clock, moved forward by the test; sleeping waits for it."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()
        self.moved = asyncio.Event()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        until = self.now() + dt.timedelta(seconds=seconds)
        while self.now() < until:
            self.moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.moved.wait(), min(1.0, max(0.01, (until - self.now()).total_seconds()))
                )

    def advance(self, by: dt.timedelta) -> None:
        self.offset += by
        self.moved.set()


async def test_an_asynchronous_petition_survives_a_restart_and_an_agency_answering_two_hours_later(
    platform: Platform,
) -> None:
    """The tax agency answers every question two (simulated) hours after it is asked. The broker
    that took the petition stops while it waits; the next one takes the job up, asks again, and the
    petition is answered once two more hours have passed, each transmission traced once."""
    time = SimulatedTime()
    agency = DeferringAdapter(reference_adapter("tax"), 7200, clock=time.now)
    await platform.start_reference_providers(tax=agency)
    first = await start_scsp(platform, clock=time.now, sleep=time.sleep)
    subjects = documents(3)
    assert (await first.submit(subjects, id_peticion="PET-LATER-0003")).code == "0002"
    for _ in range(200):  # bounded: the agency is asked within a moment
        if agency._ready:
            break
        await asyncio.sleep(0.05)
    assert agency._ready, "the agency was never asked"
    assert (await first.result("PET-LATER-0003", 3)).code == "0002"
    await first.app.stop(0)

    second = await start_scsp(platform, clock=time.now, sleep=time.sleep)
    pending = await second.result("PET-LATER-0003", 3)
    assert pending.code == "0002"
    assert int(pending.find("Atributos/Estado/TiempoEstimadoRespuesta", RESPUESTA_NS)) >= 1
    await asyncio.sleep(0.5)
    time.advance(dt.timedelta(hours=2, minutes=1))
    done = await second.wait("PET-LATER-0003", 3)
    assert done.code == "0003"
    assert [datos(t, "Retorno/Resultado") for t in transmissions(done)] == ["VERIFIED"] * 3
    for i in range(1, 4):
        trace(platform, f"PET-LATER-0003.{i:05d}")


async def test_a_petition_signed_with_rsa_sha1_needs_the_setting(platform: Platform) -> None:
    strict = await start_scsp(platform)
    message = client.peticion("PET-SHA1-0001", TAX_CODE, documents(1))
    refused = await strict.send(message, sha1=True)
    assert refused.fault and refused.code == "0305"
    assert platform.trace_rows() == []

    lenient = await start_scsp(platform, scsp_allow_sha1=True)
    accepted = await lenient.send(message, sha1=True)
    assert accepted.code == "0003"


async def test_a_client_without_a_certificate_is_refused_at_the_handshake(scsp: Scsp) -> None:
    body = client.signed_envelope(client.peticion("PET-NOCERT-1", TAX_CODE, documents(1)), None)
    with pytest.raises((OSError, http.client.HTTPException)):
        await scsp.raw(body, "peticionSincrona", cert=None)


async def test_a_pretty_printed_petition_keeps_its_signature(platform: Platform, scsp: Scsp) -> None:
    """Indentation, a comment and a processing instruction in the Body are part of what was signed:
    the broker reads the Body exactly as received."""
    message = client.peticion("PET-PRETTY-1", TAX_CODE, documents(1))
    message.insert(1, etree.Comment(" prepared by the office's own system "))
    message.insert(1, etree.ProcessingInstruction("office-system", "batch=7"))
    indented = etree.fromstring(etree.tostring(message, pretty_print=True))
    body = client.signed_envelope(indented, seal())
    assert b"\n  <pet:Atributos>" in body
    status, data = await scsp.raw(body, "peticionSincrona")
    answer = client.read_answer(data, session_pki().dir)
    assert (status, answer.code) == (200, "0003"), answer.text
