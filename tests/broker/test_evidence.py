"""Provider evidence: signed by the provider's certificate, checked by the broker before attesting."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from typing import Any

import grpc
import jwt
import pytest
from cryptography import x509

from broker.app import BrokerApp
from consumers.client import BrokerClient
from onceonly.evidence import EVIDENCE_TYPE, EvidenceSigner
from onceonly.serving import start_server
from onceonly.v1 import provider_pb2, provider_pb2_grpc
from providers.reference import reference_adapter
from providers.sdk import SERVICE_NAME as PROVIDER_SERVICE
from providers.sdk import ProviderServicer
from tests.conftest import HOUSING_CHECKS, RESIDENCE, TAX_COMPLIANCE, Platform, verify_kwargs

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


class _Tampering(ProviderServicer):
    """The real tax provider, whose answer is changed on the way out by ``tamper``."""

    tamper: Any = None

    async def Attest(self, request: Any, context: grpc.aio.ServicerContext) -> provider_pb2.AttestResponse:
        reply = await super().Attest(request, context)
        self.tamper(reply)
        return reply


async def start_tampering_tax(platform: Platform, tamper: Any, signer_name: str = "tax") -> None:
    await platform.start_provider(reference_adapter("registry"))
    await platform.start_provider(reference_adapter("employment"))
    servicer = _Tampering(
        reference_adapter("tax"), EvidenceSigner.from_tls(platform.pki.server_tls(signer_name))
    )
    servicer.tamper = tamper
    server = await start_server(
        "127.0.0.1:0",
        [lambda s: provider_pb2_grpc.add_ProviderServicer_to_server(servicer, s)],
        [PROVIDER_SERVICE],
        tls=platform.pki.server_tls("tax"),
    )
    platform.adopt_provider("tax", server)


async def test_verified_checks_carry_provider_evidence_bound_into_attestation_and_trace(
    platform: Platform, broker: BrokerApp, client: BrokerClient
) -> None:
    result = await client.verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))
    tax = result.outcome(TAX_COMPLIANCE)
    header = jwt.get_unverified_header(tax.provider_evidence)
    assert header["alg"] == "ES256" and header["typ"] == EVIDENCE_TYPE
    # Anyone with the platform CA can check it: the certificate in x5c names the tax agency.
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((platform.pki.dir / "ca.pem").read_bytes()))
    evidence = jwt.decode(tax.provider_evidence, cert.public_key(), algorithms=["ES256"])
    assert evidence["request_id"] == result.request_id and evidence["trace_id"] == result.trace_id
    assert evidence["claims"] == dict(tax.claims) and evidence["result"] == "FOUND"
    digest = hashlib.sha256(tax.provider_evidence.encode()).hexdigest()
    payload = jwt.decode(tax.attestation, options={"verify_signature": False})
    assert payload["provider_evidence_sha256"] == digest
    conn = sqlite3.connect(platform.db_path)
    (outcomes,) = conn.execute(
        "SELECT outcomes FROM trace_records WHERE trace_id = ?", (result.trace_id,)
    ).fetchone()
    conn.close()
    assert {o["certificate_type_id"]: o.get("evidence_sha256") for o in json.loads(outcomes)}[
        TAX_COMPLIANCE
    ] == digest


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


async def test_evidence_signed_by_another_provider_is_refused(platform: Platform) -> None:
    # The tax server answers, but signs with the population register's certificate.
    await start_tampering_tax(platform, lambda reply: None, signer_name="registry")
    app = await platform.start_broker()
    result = await platform.client(app).verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))

    tax = result.outcome(TAX_COMPLIANCE)
    assert tax.status == "ERROR" and tax.attestation == ""
    assert "not provider 'tax'" in tax.detail
