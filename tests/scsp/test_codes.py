"""Every SCSP code of the facade's table, each from the request that earns it.

A refusal is a signed SOAP fault whose ``sf:Atributos/Estado/CodigoEstado`` carries the code and
whose faultstring reads ``[code] text``; a refusal before the broker decided leaves no trace.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from lxml import etree

from onceonly.consumers import scsp as client
from onceonly.pki import CertificateAuthority, cert_path, key_path
from onceonly.providers.reference import reference_adapter
from onceonly.scsp import soap, wssecurity
from onceonly.scsp.soap import PETICION_NS
from tests.conftest import SEED, GatedAdapter, Platform, SlowAdapter, session_pki
from tests.scsp.conftest import TAX_CODE, Scsp, datos, documents, seal, start_scsp, transmissions

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

HOUSING = client.Requester()


def rsa_seal(org: str) -> wssecurity.Seal:
    """An RSA consumer seal of ``org`` from the platform CA (issued once per session)."""
    pki = session_pki()
    name = f"seal-{org}"
    if not cert_path(pki.dir, name).exists():
        pki.ca.issue(name, role="consumer", organization_id=org, key_type="rsa")
    return seal(name)


def foreign_seal(tmp: Path) -> wssecurity.Seal:
    """The housing office's seal, as another CA would issue it."""
    ca = CertificateAuthority.load_or_create(tmp / "other-ca")
    ca.issue("impostor", role="consumer", organization_id=HOUSING.organization_id, key_type="rsa")
    return wssecurity.Seal.from_pem(
        cert_path(ca.directory, "impostor").read_bytes(), key_path(ca.directory, "impostor").read_bytes()
    )


def peticion(
    id_peticion: str, subjects: list[tuple[str, str]] | None = None, **kwargs: object
) -> etree._Element:
    code = str(kwargs.pop("code", TAX_CODE))
    return client.peticion(id_peticion, code, subjects or documents(1), **kwargs)  # type: ignore[arg-type]


def set_text(message: etree._Element, path: str, text: str) -> etree._Element:
    found = message.find("/".join(f"{{{PETICION_NS}}}{p}" for p in path.split("/")))
    assert found is not None, path
    found.text = text
    return message


async def expect_fault(answer: client.Answer, code: str, platform: Platform, *, traced: bool = False) -> None:
    assert answer.fault, (answer.code, answer.text)
    assert answer.code == code, answer.text
    assert answer.text.startswith(f"[{code}] "), answer.text
    assert "Traceback" not in answer.text
    if not traced:
        assert platform.trace_rows() == []


@dataclass(frozen=True)
class Case:
    code: str
    message: Callable[[], etree._Element]
    signer: Callable[[], wssecurity.Seal] = seal
    action: str = "peticionSincrona"
    traced: bool = False
    """A policy denial is decided, and so traced."""


def _two_solicitudes_one_declared() -> etree._Element:
    message = peticion("PET-0414", documents(2))
    return set_text(message, "Atributos/NumElementos", "1")


def _duplicate_solicitud() -> etree._Element:
    message = peticion("PET-0419", documents(2))
    ids = message.findall(f".//{{{PETICION_NS}}}IdSolicitud")
    ids[1].text = ids[0].text
    return message


def _wrong_namespace() -> etree._Element:
    message = peticion("PET-NS")
    for node in message.iter():
        if isinstance(node.tag, str) and node.tag.startswith(f"{{{PETICION_NS}}}"):
            node.tag = "{urn:another}" + etree.QName(node).localname
    return message


[(_, SUBJECT)] = documents(1)

CASES = {
    "unknown consumer": Case(
        "0301",
        lambda: peticion("PET-0301", requester=replace(HOUSING, organization_id="X9999999")),
        lambda: rsa_seal("X9999999"),
        traced=True,
    ),
    "procedure not covered": Case(
        "0314",
        lambda: peticion("PET-0314", requester=replace(HOUSING, procedure="PARKING-PERMIT")),
        traced=True,
    ),
    "type not covered": Case(
        "0314", lambda: peticion("PET-0314B", code="ONCEONLY_CORRIENTE_SS"), traced=True
    ),
    "legal basis": Case(
        "0236", lambda: peticion("PET-0236", requester=replace(HOUSING, consent="NoOpo")), traced=True
    ),
    "consent required": Case(
        "0318",
        lambda: peticion(
            "PET-0318",
            code="ONCEONLY_RESIDENCIA",
            consulta={"CodigoMunicipio": "28079"},
            requester=replace(HOUSING, procedure="SOCIAL-EMERGENCY-AID"),
        ),
        traced=True,
    ),
    "vetoed": Case(
        "0319",
        lambda: peticion("PET-0319", requester=replace(HOUSING, organization_id="L08019030")),
        lambda: rsa_seal("L08019030"),
        traced=True,
    ),
    "self-query": Case(
        "0256",
        lambda: peticion("PET-0256", [("DNI", SUBJECT)], requester=replace(HOUSING, officer_nif=SUBJECT)),
        traced=True,
    ),
    "unknown certificate": Case("0234", lambda: peticion("PET-0234", code="NO_SUCH_CODE")),
    "bad DNI": Case("0231", lambda: peticion("PET-0231", [("DNI", "12345678A")])),
    "bad NIF": Case("0231", lambda: peticion("PET-0231B", [("NIF", "1234")])),
    "bad NIE": Case("0240", lambda: peticion("PET-0240", [("NIE", "X1234567A")])),
    "wrong namespace": Case("0401", _wrong_namespace),
    "not a petition": Case("0401", lambda: client.solicitud_respuesta("PET-0401", 1, TAX_CODE)),
    "schema: purpose too long": Case(
        "0402", lambda: peticion("PET-0402", requester=replace(HOUSING, purpose="x" * 251))
    ),
    "schema: consent": Case(
        "0402", lambda: peticion("PET-0402B", requester=replace(HOUSING, consent="Maybe"))
    ),
    "schema: too many": Case(
        "0402", lambda: set_text(peticion("PET-0402C"), "Atributos/NumElementos", "1001")
    ),
    "broker field rule": Case(
        "0402", lambda: peticion("PET-0402D", requester=replace(HOUSING, unit="u" * 200))
    ),
    "sync with two": Case("0415", lambda: peticion("PET-0415", documents(2))),
    "count mismatch": Case("0414", _two_solicitudes_one_declared),
    "duplicate IdSolicitud": Case("0419", _duplicate_solicitud, action="peticionAsincrona"),
    "certificate is not the requester": Case(
        "0235", lambda: peticion("PET-0235", requester=replace(HOUSING, organization_id="E04990101"))
    ),
    "signed by a provider": Case("0235", lambda: peticion("PET-0235B"), lambda: seal("broker-seal")),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_refusal_carries_its_code(platform: Platform, scsp: Scsp, case: Case) -> None:
    answer = await scsp.send(case.message(), case.action, signer=case.signer())
    await expect_fault(answer, case.code, platform, traced=case.traced)
    if case.traced:
        assert len(platform.trace_rows()) == 1
        assert platform.trace_rows()[0]["decision"] == "DENIED"


async def test_signatures_that_do_not_hold(platform: Platform, scsp: Scsp, tmp_path: Path) -> None:
    unsigned = await scsp.send(peticion("PET-0307"), unsigned=True)
    await expect_fault(unsigned, "0307", platform)

    foreign = await scsp.send(peticion("PET-0305A"), signer=foreign_seal(tmp_path))
    await expect_fault(foreign, "0305", platform)
    assert "platform CA" in foreign.text

    # Changed after signing: the subject swapped for another resident.
    body = client.signed_envelope(peticion("PET-0305B"), seal())
    [(_, other)] = [d for d in documents(2) if d[1] != SUBJECT]
    tampered = body.replace(SUBJECT.encode(), other.encode())
    assert tampered != body
    status, data = await scsp.raw(tampered, "peticionSincrona")
    answer = client.read_answer(data, session_pki().dir)
    assert status == 500
    await expect_fault(answer, "0305", platform)

    # A signature over something else than the Body (a wrapping attack: the signed Body is moved
    # into the header and another Body, unsigned, put in its place).
    root = soap.parse(client.signed_envelope(peticion("PET-0305C"), seal()))
    envelope = soap.Envelope.of(root)
    assert envelope.header is not None
    signed_body = envelope.body
    wrapper = etree.SubElement(envelope.header, "{urn:wrap}Wrapper")
    root.remove(signed_body)
    wrapper.append(signed_body)
    evil = etree.SubElement(root, f"{{{soap.SOAP_NS}}}Body")
    evil.append(peticion("PET-0305C", [(_, other)]))
    status, data = await scsp.raw(etree.tostring(root), "peticionSincrona")
    await expect_fault(client.read_answer(data, session_pki().dir), "0305", platform)

    # A ds:Signature that breaks the XML-DSig schema (its SignatureMethod gone): found by fuzzing,
    # it once ended as 0502.
    broken = soap.parse(client.signed_envelope(peticion("PET-0305E"), seal()))
    method = broken.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureMethod")
    parent = method.getparent() if method is not None else None
    assert method is not None and parent is not None
    parent.remove(method)
    status, data = await scsp.raw(etree.tostring(broken), "peticionSincrona")
    await expect_fault(client.read_answer(data, session_pki().dir), "0305", platform)

    # An expired seal.
    pki = session_pki()
    pki.ca.issue(
        "seal-expired",
        role="consumer",
        organization_id=HOUSING.organization_id,
        key_type="rsa",
        validity=dt.timedelta(minutes=-1),
        reuse=False,
    )
    expired = await scsp.send(peticion("PET-0305D"), signer=seal("seal-expired"))
    await expect_fault(expired, "0305", platform)
    assert "not valid now" in expired.text


async def test_a_revoked_seal_is_refused(platform: Platform, scsp: Scsp, tmp_path: Path) -> None:
    pki = session_pki()
    name = "seal-revoked-L01280796"
    pki.ca.issue(name, role="consumer", organization_id=HOUSING.organization_id, key_type="rsa", reuse=False)
    revoked = seal(name)
    crl = pki.dir / "crl.pem"
    before = crl.read_bytes() if crl.exists() else None
    try:
        pki.ca.revoke(name)
        await asyncio.sleep(1.1)  # the revocation list is looked at again at most once a second
        answer = await scsp.send(peticion("PET-REVOKED"), signer=revoked)
        await expect_fault(answer, "0305", platform)
        assert "revoked" in answer.text
    finally:
        if before is None:
            crl.unlink(missing_ok=True)
        else:
            crl.write_bytes(before)


async def test_duplicate_petition_ids(platform: Platform, scsp: Scsp) -> None:
    subjects = documents(2)
    assert (await scsp.verify(subjects[:1], id_peticion="PET-0229")).code == "0003"
    other_body = await scsp.verify(subjects[1:], id_peticion="PET-0229")
    await expect_fault(other_body, "0229", platform, traced=True)
    as_async = await scsp.submit(subjects, id_peticion="PET-0229")
    await expect_fault(as_async, "0229", platform, traced=True)

    assert (await scsp.submit(subjects, id_peticion="PET-0229B")).code == "0002"
    other_async = await scsp.submit(subjects[:1], id_peticion="PET-0229B")
    await expect_fault(other_async, "0229", platform, traced=True)
    as_sync = await scsp.verify(subjects[:1], id_peticion="PET-0229B")
    await expect_fault(as_sync, "0229", platform, traced=True)


async def test_asking_for_answers_that_cannot_be_given(platform: Platform, scsp: Scsp) -> None:
    unknown = await scsp.result("PET-NEVER", 1)
    await expect_fault(unknown, "0244", platform)

    assert (await scsp.verify(documents(1), id_peticion="PET-0245")).code == "0003"
    await expect_fault(await scsp.result("PET-0245", 1), "0245", platform, traced=True)

    assert (await scsp.submit(documents(2), id_peticion="PET-0237")).code == "0002"
    await expect_fault(await scsp.result("PET-0237", 3), "0237", platform, traced=True)

    other = client.solicitud_respuesta("PET-0237", 2, TAX_CODE)
    answer = await scsp.send(other, "solicitudRespuesta", signer=rsa_seal("E04990101"))
    await expect_fault(answer, "0317", platform, traced=True)

    assert (await scsp.wait("PET-0237", 2)).code == "0003"
    conn = sqlite3.connect(platform.db_path)
    try:
        conn.execute("UPDATE scsp_petitions SET expires_at = '2020-01-01 00:00:00.000000'")
        conn.commit()
    finally:
        conn.close()
    await expect_fault(await scsp.result("PET-0237", 2), "0241", platform, traced=True)


async def test_an_agreement_not_in_force(platform: Platform, tmp_path: Path) -> None:
    seed = tmp_path / "agreements.toml"
    seed.write_text(
        SEED.read_text()
        + """
[[agreements]]
id = "madrid-parking-permit-2025"
master = "municipal-benefits"
data_protection_officer = "Data Protection Officer, Madrid City Council"
organization = "L01280796"
procedure = "PARKING-PERMIT"
certificate_types = ["tax.compliance/v1"]
legal_bases = ["LAW"]
laws = ["Ley 39/2015 art. 28"]
valid_from = "2025-01-01"
valid_until = "2025-06-30"
"""
    )
    scsp = await start_scsp(platform, agreements_seed=seed)
    answer = await scsp.verify(
        documents(1), id_peticion="PET-0320", requester=replace(HOUSING, procedure="PARKING-PERMIT")
    )
    await expect_fault(answer, "0320", platform, traced=True)


async def test_an_agency_that_does_not_answer(platform: Platform) -> None:
    await platform.start_reference_providers(tax=SlowAdapter(reference_adapter("tax"), 5.0))
    scsp = await start_scsp(platform, provider_timeout_ms=200)
    answer = await scsp.verify(documents(1), id_peticion="PET-0227")
    await expect_fault(answer, "0227", platform, traced=True)


async def test_an_agency_that_is_down(platform: Platform) -> None:
    scsp = await start_scsp(platform)
    await platform.providers["tax"].stop(0)
    answer = await scsp.verify(documents(1), id_peticion="PET-0242")
    await expect_fault(answer, "0242", platform, traced=True)

    # In an asynchronous petition each transmission carries its own state.
    assert (await scsp.submit(documents(2), id_peticion="PET-0242B")).code == "0002"
    done = await scsp.wait("PET-0242B", 2)
    assert done.code == "0003"
    assert [datos(t, "Estado/CodigoEstado") for t in transmissions(done)] == ["0242", "0242"]


async def test_a_bad_document_in_an_asynchronous_petition_is_that_transmissions_own(
    platform: Platform, scsp: Scsp
) -> None:
    subjects = [*documents(1), ("DNI", "12345678A"), ("NIE", "X1234567A")]
    assert (await scsp.submit(subjects, id_peticion="PET-ASYNC-BAD")).code == "0002"
    done = await scsp.wait("PET-ASYNC-BAD", 3)
    states = [(datos(t, "Estado/CodigoEstado"), datos(t, "Retorno/Resultado")) for t in transmissions(done)]
    assert states == [("", "VERIFIED"), ("0231", ""), ("0240", "")]
    assert len(platform.trace_rows()) == 1


async def test_an_overloaded_broker(platform: Platform) -> None:
    gated = GatedAdapter(reference_adapter("tax"))
    await platform.start_reference_providers(tax=gated)
    scsp = await start_scsp(platform, max_in_flight=1)
    first = asyncio.create_task(scsp.verify(documents(1), id_peticion="PET-0901A"))
    await asyncio.wait_for(gated.entered.wait(), 10)
    answer = await scsp.verify(documents(2)[1:], id_peticion="PET-0901B")
    gated.gate.set()
    assert (await first).code == "0003"
    await expect_fault(answer, "0901", platform, traced=True)
    assert platform.trace_rows(request_id="PET-0901B.1") == []


async def test_a_ledger_that_cannot_write(platform: Platform) -> None:
    scsp = await start_scsp(platform, db_busy_timeout_ms=100)
    blocker = sqlite3.connect(platform.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        answer = await scsp.verify(documents(1), id_peticion="PET-0512")
    finally:
        blocker.rollback()
        blocker.close()
    await expect_fault(answer, "0512", platform)
    assert b"eyJ" not in etree.tostring(answer.message)
