"""Provider evidence: signed by the provider's certificate, checked by the broker before attesting."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any, cast

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from onceonly.broker.app import BrokerApp
from onceonly.broker.errors import CatalogError
from onceonly.consumers.client import BrokerClient
from onceonly.evidence import EVIDENCE_TYPE, EvidenceSigner, thumbprint
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import SERVICE_NAME as PROVIDER_SERVICE
from onceonly.providers.sdk import ProviderServicer
from onceonly.serving import start_server
from onceonly.v1 import provider_pb2, provider_pb2_grpc
from tests.conftest import HOUSING_CHECKS, ORG, RESIDENCE, TAX_COMPLIANCE, Platform, verify_kwargs

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


class _Tampering(ProviderServicer):
    """The real tax provider, whose answer is changed on the way out by ``tamper``."""

    tamper: Any = None

    async def Attest(self, request: Any, context: grpc.aio.ServicerContext) -> provider_pb2.AttestResponse:
        reply = await super().Attest(request, context)
        self.tamper(reply)
        return reply


async def start_tampering_tax(
    platform: Platform, tamper: Any, signer_name: str = "tax", published: str | None = None
) -> None:
    """Registry and employment as usual; a tax server whose answers go through ``tamper``,
    signed with ``signer_name``'s key, publishing ``published``'s certificate (default: the signer's)."""
    await platform.start_provider(reference_adapter("registry"))
    await platform.start_provider(reference_adapter("employment"))
    servicer = _Tampering(
        reference_adapter("tax"), EvidenceSigner.from_tls(platform.pki.server_tls(signer_name))
    )
    if published is not None:
        published_cert = EvidenceSigner.from_tls(platform.pki.server_tls(published)).certificate_b64
        servicer._description.evidence_certificate = published_cert
    servicer.tamper = tamper
    server = await start_server(
        "127.0.0.1:0",
        [lambda s: provider_pb2_grpc.add_ProviderServicer_to_server(servicer, s)],
        [PROVIDER_SERVICE],
        tls=platform.pki.server_tls("tax"),
    )
    platform.adopt_provider("tax", server)


async def test_verified_checks_are_backed_by_provider_evidence_kept_by_the_broker(
    platform: Platform, broker: BrokerApp, client: BrokerClient
) -> None:
    result = await client.verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))
    tax = result.outcome(TAX_COMPLIANCE)

    # The broker keeps the evidence with its (encrypted) stored reply.
    stored = await broker.ledger.find_reply(ORG, result.request_id)
    assert stored is not None
    kept = {o["certificate_type_id"]: o["evidence"] for o in json.loads(stored.payload)["outcomes"]}
    evidence = kept[TAX_COMPLIANCE]
    header = jwt.get_unverified_header(evidence)
    assert header["alg"] == "ES256" and header["typ"] == EVIDENCE_TYPE
    # Anyone with the platform CA and the tax agency's certificate can check it.
    cert = x509.load_pem_x509_certificate((platform.pki.dir / "tax.pem").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((platform.pki.dir / "ca.pem").read_bytes()))
    assert header["x5t#S256"] == thumbprint(cert.public_bytes(serialization.Encoding.DER))
    claims = jwt.decode(evidence, cast(Any, cert.public_key()), algorithms=["ES256"])
    assert claims["request_id"] == result.request_id and claims["trace_id"] == result.trace_id
    assert claims["claims"] == dict(tax.claims) and claims["result"] == "FOUND"

    # The attestation and the trace are bound to it by its digest.
    digest = hashlib.sha256(evidence.encode()).hexdigest()
    payload = jwt.decode(tax.attestation, options={"verify_signature": False})
    assert payload["provider_evidence_sha256"] == digest
    conn = sqlite3.connect(platform.db_path)
    sql = "SELECT outcomes FROM trace_records WHERE trace_id = ?"
    (outcomes,) = conn.execute(sql, (result.trace_id,)).fetchone()
    conn.close()
    traced = {o["certificate_type_id"]: o.get("evidence_sha256") for o in json.loads(outcomes)}
    assert traced[TAX_COMPLIANCE] == digest


def _flip_claim(reply: provider_pb2.AttestResponse) -> None:
    reply.claims["compliant"] = not reply.claims["compliant"]


def _break_signature(reply: provider_pb2.AttestResponse) -> None:
    head, body, sig = reply.evidence.split(".")
    reply.evidence = f"{head}.{body}.{sig[:-4]}AAAA"


def _drop_evidence(reply: provider_pb2.AttestResponse) -> None:
    reply.evidence = ""


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_flip_claim, "does not match the answer"),
        (_break_signature, "signature does not verify"),
        (_drop_evidence, "no signed evidence"),
    ],
)
async def test_bad_evidence_gives_an_error_outcome_and_no_attestation(
    platform: Platform, tamper: Any, why: str
) -> None:
    await start_tampering_tax(platform, tamper)
    app = await platform.start_broker()
    result = await platform.client(app).verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))

    tax = result.outcome(TAX_COMPLIANCE)
    assert tax.status == "ERROR" and tax.attestation == "" and dict(tax.claims) == {}
    assert "provider evidence rejected" in tax.detail and why in tax.detail
    assert result.outcome(RESIDENCE).status == "VERIFIED"


async def test_evidence_signed_with_another_key_is_refused(platform: Platform) -> None:
    # The tax server publishes its own certificate but signs with the population register's key.
    await start_tampering_tax(platform, lambda reply: None, signer_name="registry", published="tax")
    app = await platform.start_broker()
    result = await platform.client(app).verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))

    tax = result.outcome(TAX_COMPLIANCE)
    assert tax.status == "ERROR" and tax.attestation == ""
    assert "not signed by a certificate provider 'tax' published" in tax.detail


async def test_a_provider_publishing_another_providers_certificate_stops_the_broker(
    platform: Platform,
) -> None:
    await start_tampering_tax(platform, lambda reply: None, signer_name="registry")
    with pytest.raises(CatalogError, match=r"evidence certificate refused.*not provider 'tax'"):
        await platform.start_broker()
