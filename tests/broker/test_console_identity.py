"""The web console relays the person signed in to it: the broker decides from the certificate (or
token) that person presented, checked again here — never from the console's word. Each attack the
relay opens is reproduced: another caller relaying, a certificate from another CA, a revoked one, a
CA certificate, a console certificate relayed, garbage."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from onceonly.broker.app import BrokerApp
from onceonly.pki import CertificateAuthority, cert_path
from onceonly.pki import main as pki_main
from onceonly.v1 import (
    broker_pb2_grpc,
    governance_pb2,
    governance_pb2_grpc,
    oversight_pb2,
    oversight_pb2_grpc,
)
from tests.broker.test_auth import Idp, _ca_leaf, failure_of, idp  # noqa: F401
from tests.conftest import OFFICER, ORG, Platform, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

FORWARDED = "x-onceonly-forwarded-cert"


def der_b64(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def relayed(platform: Platform, name: str) -> tuple[tuple[str, str], ...]:
    return ((FORWARDED, der_b64(cert_path(platform.pki.dir, name))),)


def console(platform: Platform, app: BrokerApp) -> grpc.aio.Channel:
    return platform.channel(app.target, tls=platform.pki.issue("console", role="console", org="SGAD"))


async def test_the_console_acts_as_the_person_whose_certificate_it_relays(
    platform: Platform, broker: BrokerApp
) -> None:
    platform.pki.issue("oversight", role="oversight", org="AEPD")
    platform.pki.issue("tax-admin", role="provider-admin", org="tax")
    channel = console(platform, broker)
    traces = oversight_pb2_grpc.OversightStub(channel)
    await platform.stub(broker).Verify(verify_request(), timeout=10)

    listed = await traces.ListTraces(
        oversight_pb2.ListTracesRequest(), metadata=relayed(platform, "oversight")
    )
    assert len(listed.traces) == 1, "oversight sees every trace"
    alone = await failure_of(traces.ListTraces(oversight_pb2.ListTracesRequest(), timeout=5))
    assert alone.code is grpc.StatusCode.PERMISSION_DENIED, "the console alone sees nothing"
    verify_alone = await failure_of(broker_pb2_grpc.BrokerStub(channel).Verify(verify_request(), timeout=5))
    assert verify_alone.code is grpc.StatusCode.PERMISSION_DENIED

    log = governance_pb2_grpc.GovernanceStub(channel)
    vetoed = await log.ActOnAgreement(
        governance_pb2.ActOnAgreementRequest(
            agreement_id="madrid-housing-rent-subsidy",
            action=governance_pb2.AGREEMENT_ACTION_VETO,
            reason="audit pending",
        ),
        metadata=relayed(platform, "tax-admin"),
        timeout=5,
    )
    actor = vetoed.event.actor
    assert (actor.organization_id, actor.role, actor.via) == ("tax", "provider-admin", "console")


@pytest.mark.parametrize(
    "attack",
    [
        "not-the-console",
        "other-ca",
        "revoked",
        "ca-certificate",
        "console-certificate",
        "garbage",
        "with-token",
    ],
)
async def test_a_relayed_identity_is_checked_again_by_the_broker(
    platform: Platform, broker: BrokerApp, tmp_path: Path, attack: str
) -> None:
    channel = console(platform, broker)
    expected: tuple[grpc.StatusCode, str]
    metadata: Any
    if attack == "not-the-console":  # an application relaying someone else's certificate
        platform.pki.issue("oversight", role="oversight", org="AEPD")
        channel = platform.channel(broker.target)  # the housing office
        metadata = relayed(platform, "oversight")
        expected = (grpc.StatusCode.PERMISSION_DENIED, "FORWARDING_NOT_ALLOWED")
    elif attack == "other-ca":
        other = CertificateAuthority.load_or_create(tmp_path / "other")
        other.issue("fake-oversight", role="oversight", organization_id="AEPD")
        metadata = ((FORWARDED, der_b64(cert_path(tmp_path / "other", "fake-oversight"))),)
        expected = (grpc.StatusCode.UNAUTHENTICATED, "FORWARDED_CERTIFICATE")
    elif attack == "revoked":
        platform.pki.issue("oversight-lost", role="oversight", org="AEPD")
        assert pki_main(["revoke", "oversight-lost", "--dir", str(platform.pki.dir)]) == 0
        await asyncio.sleep(1.2)  # the list is looked at again at most once a second
        metadata = relayed(platform, "oversight-lost")
        expected = (grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_REVOKED")
    elif attack == "ca-certificate":
        leaf = _ca_leaf(platform.pki.dir, tmp_path)
        assert leaf.cert is not None
        metadata = ((FORWARDED, der_b64(leaf.cert)),)
        expected = (grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_IDENTITY")
    elif attack == "console-certificate":
        metadata = relayed(platform, "console")
        expected = (grpc.StatusCode.UNAUTHENTICATED, "FORWARDED_CERTIFICATE")
    elif attack == "garbage":
        metadata = ((FORWARDED, "not base64!"),)
        expected = (grpc.StatusCode.UNAUTHENTICATED, "FORWARDED_CERTIFICATE")
    else:  # a relayed certificate and a token at once
        platform.pki.issue("oversight", role="oversight", org="AEPD")
        metadata = (*relayed(platform, "oversight"), ("authorization", "Bearer x.y.z"))
        expected = (grpc.StatusCode.UNAUTHENTICATED, "IDENTITY_CONFLICT")
    traces = oversight_pb2_grpc.OversightStub(channel)
    failure = await failure_of(
        traces.ListTraces(oversight_pb2.ListTracesRequest(), metadata=metadata, timeout=5)
    )
    assert (failure.code, failure.info and failure.info.reason) == expected, failure.message


async def test_the_console_relays_a_token_as_the_person_it_names(platform: Platform, idp: Idp) -> None:  # noqa: F811
    await platform.start_reference_providers()
    app = await platform.start_broker(jwt_issuers=idp.issuers_toml)
    channel = console(platform, app)
    token = idp.mint()
    reply = await broker_pb2_grpc.BrokerStub(channel).Verify(
        verify_request(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
    )
    assert reply.trace_id
    [row] = platform.trace_rows()
    assert (row["consumer_organization_id"], row["officer_id"], row["officer_identification"]) == (
        ORG,
        OFFICER,
        "TOKEN",
    )
