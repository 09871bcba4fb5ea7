"""Who is calling: mutual TLS, agency bearer tokens, spoofing, and the insecure development mode."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2

from onceonly.broker.app import BrokerApp
from onceonly.broker.auth import JwtIssuer, TokenVerifier, load_jwt_issuers
from onceonly.consumers.client import InsecureIdentity
from onceonly.errors import OnceOnlyError
from onceonly.pki import CertificateAuthority, ClientTls, PkiError
from onceonly.pki import main as pki_main
from onceonly.processes import onceonly_argv
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import start_provider
from onceonly.serving import InsecureBindError, start_server
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2, oversight_pb2
from tests.broker.oversight_workload import oversight_stub
from tests.conftest import (
    HOUSING_CHECKS,
    OFFICER,
    ORG,
    PROVIDER_IDS,
    CountingAdapter,
    Platform,
    RpcFailure,
    health_stub,
    rpc_failure,
    verify_kwargs,
    verify_request,
)

OTHER_ORG = "L08019030"  # Barcelona: a real consumer in the seeded agreements
ISSUER = "https://idp.madrid.example"
OTHER_ISSUER = "https://idp.barcelona.example"
AUDIENCE = "onceonly-broker"


async def failure_of(call: Awaitable[Any]) -> RpcFailure:
    try:
        reply = await call
    except grpc.aio.AioRpcError as exc:
        return rpc_failure(exc)
    raise AssertionError(f"the call succeeded but should have failed: {reply}")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- an agency identity provider --------------------------------------------------------------


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Idp:
    key: ec.EllipticCurvePrivateKey
    other_key: ec.EllipticCurvePrivateKey
    issuers_toml: Path

    def mint(
        self, *, key: Any = None, algorithm: str = "ES256", kid: str | None = "k1", **changes: Any
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": OFFICER,
            "org": ORG,
            "iat": now,
            "exp": now + 300,
        }
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"kid": kid} if kid else None
        return jwt.encode(claims, key if key is not None else self.key, algorithm=algorithm, headers=headers)


@pytest.fixture
def idp(tmp_path: Path) -> Idp:
    """Madrid's IdP (JWKS file, vouches for ORG) and Barcelona's (PEM key, vouches for OTHER_ORG)."""
    directory = tmp_path / "idp"
    directory.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    (directory / "madrid-jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (directory / "barcelona.pem").write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    toml = directory / "issuers.toml"
    toml.write_text(
        f"""
[[issuer]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks = "madrid-jwks.json"
organizations = ["{ORG}"]

[[issuer]]
issuer = "{OTHER_ISSUER}"
audience = "{AUDIENCE}"
public_keys = ["barcelona.pem"]
organizations = ["{OTHER_ORG}"]
algorithms = ["ES256"]
"""
    )
    return Idp(key, other, toml)


@dataclass
class TokenBroker:
    app: BrokerApp
    counted: dict[str, CountingAdapter]


@pytest.fixture
async def token_broker(platform: Platform, idp: Idp) -> TokenBroker:
    counted = {pid: CountingAdapter(reference_adapter(pid)) for pid in PROVIDER_IDS}
    await platform.start_reference_providers(**counted)
    app = await platform.start_broker(jwt_issuers=idp.issuers_toml, token_listen="127.0.0.1:0")
    return TokenBroker(app, counted)


def token_stub(platform: Platform, app: BrokerApp) -> broker_pb2_grpc.BrokerAsyncStub:
    """TLS checking the broker's certificate, no client certificate: the bearer-token listener."""
    assert app.token_target is not None
    return broker_pb2_grpc.BrokerStub(platform.channel(app.token_target, tls=platform.pki.ca_only))


def provider_calls(tb: TokenBroker) -> int:
    return sum(a.calls for a in tb.counted.values())


# --- mutual TLS -------------------------------------------------------------------------------


async def test_a_verification_over_mtls_is_answered_and_traced(platform: Platform, broker: BrokerApp) -> None:
    result = await platform.client(broker).verify(**verify_kwargs(checks=HOUSING_CHECKS[:1]))

    assert result.outcomes[0].status == "VERIFIED"
    (row,) = platform.trace_rows()
    assert row["consumer_organization_id"] == ORG


async def test_spoofed_organisation_is_refused_naming_the_rule_and_not_traced(
    platform: Platform, token_broker: TokenBroker, caplog: pytest.LogCaptureFixture
) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(token_broker.app.target))  # ORG's certificate
    request = verify_request(organization_id=OTHER_ORG)

    with caplog.at_level(logging.WARNING, logger="onceonly.broker.auth"):
        failure = await failure_of(stub.Verify(request, timeout=10))

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "CONSUMER_MISMATCH"
    assert failure.info.metadata["field"] == "consumer.organization_id"
    assert "CONSUMER_MISMATCH" in failure.message and ORG in failure.message
    assert "Traceback" not in failure.message
    assert platform.trace_rows() == []
    assert provider_calls(token_broker) == 0
    (record,) = [r for r in caplog.records if r.getMessage() == "spoofing attempt refused"]
    assert (record.org, record.claimed_org, record.rpc, record.via) == (  # type: ignore[attr-defined]
        ORG,
        OTHER_ORG,
        "Verify",
        "mtls",
    )


async def test_spoofed_organisation_in_a_bulk_header_refuses_the_stream(
    platform: Platform, broker: BrokerApp
) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target))
    template = verify_request(organization_id=OTHER_ORG)
    header = broker_pb2.BulkHeader(
        consumer=template.consumer, purpose=template.purpose, legal_basis=template.legal_basis,
        checks=template.checks,
    )  # fmt: skip

    refused = asyncio.Event()

    async def requests() -> Any:
        yield broker_pb2.BulkVerifyRequest(header=header)
        # The subject waits for the refusal: a grpc.aio client still writing when the server ends
        # the call reports INTERNAL instead of the server's status (grpc/grpc#36066).
        await refused.wait()
        yield broker_pb2.BulkVerifyRequest(
            subject=broker_pb2.BulkSubject(request_id="bulk-spoof-1", subject=template.subject)
        )

    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.VerifyBulk(requests(), timeout=10):
                pass
    finally:
        refused.set()

    failure = rpc_failure(caught.value)
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "CONSUMER_MISMATCH"
    assert platform.trace_rows() == []


async def test_a_client_certificate_from_another_ca_fails_the_handshake(
    platform: Platform, tmp_path: Path
) -> None:
    counted = {pid: CountingAdapter(reference_adapter(pid)) for pid in PROVIDER_IDS}
    await platform.start_reference_providers(**counted)
    app = await platform.start_broker()
    rogue = CertificateAuthority.load_or_create(tmp_path / "rogue-ca")
    rogue.issue("impostor", role="consumer", organization_id=ORG)
    # Trusts the real CA for the server, but presents a certificate the broker's CA never issued.
    tls = ClientTls(
        platform.pki.dir / "ca.pem",
        tmp_path / "rogue-ca/impostor.pem",
        tmp_path / "rogue-ca/impostor-key.pem",
    )
    stub = broker_pb2_grpc.BrokerStub(platform.channel(app.target, tls=tls))

    failure = await failure_of(stub.Verify(verify_request(), timeout=5))

    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert platform.trace_rows() == []
    assert sum(a.calls for a in counted.values()) == 0


def _ca_leaf(pki_dir: Path, out: Path) -> ClientTls:
    """A certificate the platform CA signed with ``CA:TRUE`` but a consumer's O and OU: the audit
    found the broker accepted such a "leaf" as a client certificate."""
    ca = CertificateAuthority.load_or_create(pki_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "consumer"),
            x509.NameAttribute(NameOID.COMMON_NAME, "sub-ca"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "sub-ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "sub-ca-key.pem").write_bytes(_pem_private(key))
    return ClientTls(pki_dir / "ca.pem", out / "sub-ca.pem", out / "sub-ca-key.pem")


async def test_a_ca_certificate_is_not_a_client_certificate(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    stub = broker_pb2_grpc.BrokerStub(
        platform.channel(broker.target, tls=_ca_leaf(platform.pki.dir, tmp_path))
    )

    failure = await failure_of(stub.Verify(verify_request(), timeout=5))

    # TLS lets it through (it is signed by the platform CA); the broker refuses it.
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "CERTIFICATE_IDENTITY"
    assert "CA certificate" in failure.message
    assert platform.trace_rows() == []


async def test_a_revoked_client_certificate_is_refused_without_a_restart(
    platform: Platform, broker: BrokerApp
) -> None:
    name = "housing-office-lost-laptop"
    tls = platform.pki.issue(name, role="consumer", org=ORG)
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target, tls=tls))
    assert (await stub.Verify(verify_request(), timeout=10)).trace_id

    assert pki_main(["revoke", name, "--dir", str(platform.pki.dir)]) == 0
    await asyncio.sleep(1.2)  # a server looks at the list again at most once a second

    failure = await failure_of(stub.Verify(verify_request(), timeout=5))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "CERTIFICATE_REVOKED"
    assert len(platform.trace_rows()) == 1
    # Other certificates of the same organisation still work.
    assert (await platform.stub(broker).Verify(verify_request(), timeout=10)).trace_id


async def test_plaintext_to_the_tls_port_fails_at_transport(platform: Platform, broker: BrokerApp) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.insecure_channel(broker.target))

    failure = await failure_of(stub.Verify(verify_request(), timeout=5))

    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert platform.trace_rows() == []


async def test_an_oversight_principal_may_read_the_catalog_but_not_verify(
    platform: Platform, broker: BrokerApp
) -> None:
    oversight = ClientTls.from_dir(platform.pki.dir, "oversight")  # from `pki init`: OU=oversight
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target, tls=oversight))
    catalog = await stub.GetCatalog(broker_pb2.GetCatalogRequest(), timeout=5)
    assert catalog.certificate_types

    failure = await failure_of(stub.Verify(verify_request(organization_id="AEPD"), timeout=5))

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "ROLE_NOT_PERMITTED"
    assert platform.trace_rows() == []


async def test_a_provider_or_broker_certificate_may_not_verify(platform: Platform, broker: BrokerApp) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target, tls=platform.pki.broker))

    failure = await failure_of(stub.Verify(verify_request(), timeout=5))

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "ROLE_NOT_PERMITTED"


# --- bearer tokens ----------------------------------------------------------------------------


async def test_a_valid_token_without_client_certificate_verifies_as_its_officer(
    platform: Platform, token_broker: TokenBroker, idp: Idp
) -> None:
    app = token_broker.app
    assert app.token_target is not None
    client = platform.client(app, target=app.token_target, tls=platform.pki.ca_only, token=idp.mint())

    result = await client.verify(**verify_kwargs(checks=HOUSING_CHECKS[:1]))

    assert result.outcomes[0].status == "VERIFIED"
    (row,) = platform.trace_rows()
    assert row["consumer_organization_id"] == ORG


async def test_every_trace_says_how_its_officer_was_identified(
    platform: Platform, token_broker: TokenBroker, idp: Idp
) -> None:
    """A certificate only asserts the officer id the application sends; a token authenticates it.
    The trace (and oversight's view of it) tells the two apart."""
    app = token_broker.app
    assert app.token_target is not None
    by_token = platform.client(app, target=app.token_target, tls=platform.pki.ca_only, token=idp.mint())
    token_result = await by_token.verify(**verify_kwargs(checks=HOUSING_CHECKS[:1]))
    cert_reply = await platform.stub(app).Verify(verify_request(checks=HOUSING_CHECKS[:1]), timeout=10)

    rows = {r["trace_id"]: r["officer_identification"] for r in platform.trace_rows()}
    assert rows == {token_result.trace_id: "TOKEN", cert_reply.trace_id: "CERTIFICATE"}
    listed = await oversight_stub(platform, app).ListTraces(oversight_pb2.ListTracesRequest(), timeout=10)
    seen = {t.trace_id: t.officer_identification for t in listed.traces}
    assert seen == {
        token_result.trace_id: common_pb2.OFFICER_IDENTIFICATION_TOKEN,
        cert_reply.trace_id: common_pb2.OFFICER_IDENTIFICATION_CERTIFICATE,
    }


async def test_a_token_over_mtls_names_the_officer_too(
    platform: Platform, token_broker: TokenBroker, idp: Idp
) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(token_broker.app.target))  # ORG's certificate
    reply = await stub.Verify(
        verify_request(checks=HOUSING_CHECKS[:1]), timeout=10, metadata=bearer(idp.mint())
    )
    assert reply.outcomes

    spoofed = verify_request(checks=HOUSING_CHECKS[:1])
    spoofed.consumer.officer_id = "officer-99"
    failure = await failure_of(stub.Verify(spoofed, timeout=10, metadata=bearer(idp.mint())))
    assert failure.info is not None and failure.info.reason == "OFFICER_MISMATCH"

    conflict = idp.mint(key=idp.other_key, iss=OTHER_ISSUER, org=OTHER_ORG, kid=None)
    failure = await failure_of(stub.Verify(verify_request(), timeout=10, metadata=bearer(conflict)))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "IDENTITY_CONFLICT"


async def test_officer_named_by_the_token_must_be_the_officer_of_the_request(
    platform: Platform, token_broker: TokenBroker, idp: Idp, caplog: pytest.LogCaptureFixture
) -> None:
    stub = token_stub(platform, token_broker.app)
    token = idp.mint(sub="officer-0099")

    with caplog.at_level(logging.WARNING, logger="onceonly.broker.auth"):
        failure = await failure_of(stub.Verify(verify_request(), timeout=10, metadata=bearer(token)))

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "OFFICER_MISMATCH"
    assert "OFFICER_MISMATCH" in failure.message
    assert platform.trace_rows() == []
    assert provider_calls(token_broker) == 0
    assert any(r.getMessage() == "spoofing attempt refused" for r in caplog.records)


async def test_token_for_one_organisation_asking_as_another_is_a_consumer_mismatch(
    platform: Platform, token_broker: TokenBroker, idp: Idp
) -> None:
    stub = token_stub(platform, token_broker.app)

    failure = await failure_of(
        stub.Verify(verify_request(organization_id=OTHER_ORG), timeout=10, metadata=bearer(idp.mint()))
    )

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None and failure.info.reason == "CONSUMER_MISMATCH"
    assert platform.trace_rows() == []


def _bad_tokens(idp: Idp) -> dict[str, str]:
    now = int(time.time())
    stranger = ec.generate_private_key(ec.SECP256R1())
    return {
        "TOKEN_EXPIRED": idp.mint(iat=now - 3600, exp=now - 600),
        "TOKEN_AUDIENCE": idp.mint(aud="some-other-service"),
        "TOKEN_ISSUER": idp.mint(iss="https://idp.unknown.example"),
        "TOKEN_SIGNATURE": idp.mint(key=stranger),
        # Barcelona's IdP may not vouch for Madrid's housing office.
        "TOKEN_ORGANISATION": idp.mint(key=idp.other_key, iss=OTHER_ISSUER, kid=None),
        "TOKEN_ALGORITHM": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": OFFICER, "org": ORG, "exp": now + 300},
            "a-shared-secret-the-broker-never-accepts",
            algorithm="HS256",
        ),
        "TOKEN_CLAIMS": idp.mint(sub=None),
        "TOKEN_INVALID": "not.a.jwt",
        "TOKEN_NOT_YET_VALID": idp.mint(nbf=now + 600),
        "TOKEN_ROLE": idp.mint(role="oversight"),  # Madrid's IdP may assert consumers only
        # A token valid for a year: a leaked one would be good for a year (default limit: 1 h).
        "TOKEN_LIFETIME": idp.mint(exp=now + 365 * 86400),
    }


@pytest.mark.parametrize(
    "reason",
    [
        "TOKEN_EXPIRED",
        "TOKEN_AUDIENCE",
        "TOKEN_ISSUER",
        "TOKEN_SIGNATURE",
        "TOKEN_ORGANISATION",
        "TOKEN_ALGORITHM",
        "TOKEN_CLAIMS",
        "TOKEN_INVALID",
        "TOKEN_NOT_YET_VALID",
        "TOKEN_ROLE",
        "TOKEN_LIFETIME",
    ],
)
async def test_a_bad_token_is_unauthenticated_with_its_reason(
    platform: Platform, token_broker: TokenBroker, idp: Idp, reason: str
) -> None:
    stub = token_stub(platform, token_broker.app)

    failure = await failure_of(
        stub.Verify(verify_request(), timeout=10, metadata=bearer(_bad_tokens(idp)[reason]))
    )

    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == reason
    assert failure.info.domain == "onceonly.v1"
    assert "Traceback" not in failure.message
    assert platform.trace_rows() == []
    assert provider_calls(token_broker) == 0


async def test_a_token_must_name_its_organisation_even_for_a_single_organisation_issuer(
    platform: Platform, token_broker: TokenBroker, idp: Idp
) -> None:
    """Madrid's IdP vouches for one organisation only; a token without ``org`` is still refused
    (the audit found it accepted, the organisation filled in by the broker)."""
    stub = token_stub(platform, token_broker.app)
    failure = await failure_of(stub.Verify(verify_request(), timeout=10, metadata=bearer(idp.mint(org=None))))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "TOKEN_CLAIMS"
    assert "'org'" in failure.message
    assert platform.trace_rows() == []


def test_the_token_lifetime_limit_is_set_per_issuer(tmp_path: Path, idp: Idp) -> None:
    text = idp.issuers_toml.read_text().replace(
        'algorithms = ["ES256"]', 'algorithms = ["ES256"]\nmax_token_lifetime_s = 600'
    )
    toml = idp.issuers_toml.with_name("short.toml")
    toml.write_text(text)
    verifier = TokenVerifier(load_jwt_issuers(toml))
    now = int(time.time())
    barcelona: dict[str, Any] = {"key": idp.other_key, "iss": OTHER_ISSUER, "kid": None, "org": OTHER_ORG}
    assert verifier.verify(idp.mint(**barcelona, exp=now + 500)).organization_id == OTHER_ORG
    with pytest.raises(OnceOnlyError) as refused:
        verifier.verify(idp.mint(**barcelona, exp=now + 900))
    assert refused.value.reason == "TOKEN_LIFETIME"
    # Madrid keeps the default hour.
    assert verifier.verify(idp.mint(exp=now + 3000)).organization_id == ORG
    toml.write_text(text.replace("max_token_lifetime_s = 600", "max_token_lifetime_s = 0"))
    with pytest.raises(ValueError, match="max_token_lifetime_s"):
        load_jwt_issuers(toml)


async def test_no_credentials_at_all_is_unauthenticated_but_health_stays_open(
    platform: Platform, token_broker: TokenBroker
) -> None:
    app = token_broker.app
    stub = token_stub(platform, app)

    failure = await failure_of(stub.Verify(verify_request(), timeout=5))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "UNAUTHENTICATED"

    failure = await failure_of(stub.GetCatalog(broker_pb2.GetCatalogRequest(), timeout=5))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED

    basic = (("authorization", "Basic dXNlcjpwYXNz"),)
    failure = await failure_of(stub.Verify(verify_request(), timeout=5, metadata=basic))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED

    assert app.token_target is not None
    health = health_stub(platform.channel(app.token_target, tls=platform.pki.ca_only))
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert platform.trace_rows() == []


async def test_catalog_and_jwks_with_a_token(platform: Platform, token_broker: TokenBroker, idp: Idp) -> None:
    stub = token_stub(platform, token_broker.app)
    catalog = await stub.GetCatalog(broker_pb2.GetCatalogRequest(), timeout=5, metadata=bearer(idp.mint()))
    jwks = await stub.GetJwks(broker_pb2.GetJwksRequest(), timeout=5, metadata=bearer(idp.mint()))
    assert catalog.certificate_types and json.loads(jwks.json)["keys"]


async def test_a_broker_without_issuers_accepts_no_token(
    platform: Platform, broker: BrokerApp, idp: Idp
) -> None:
    stub = broker_pb2_grpc.BrokerStub(platform.channel(broker.target))

    failure = await failure_of(stub.Verify(verify_request(), timeout=5, metadata=bearer(idp.mint())))

    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "TOKEN_ISSUER"


def test_issuer_files_are_checked(tmp_path: Path, idp: Idp) -> None:
    issuers = load_jwt_issuers(idp.issuers_toml)
    assert [i.issuer for i in issuers] == [ISSUER, OTHER_ISSUER]
    assert issuers[0].keys[0][0] == "k1"

    for body, needle in [
        (
            f'[[issuer]]\nissuer = "{ISSUER}"\naudience = "a"\npublic_keys = ["barcelona.pem"]\n',
            "organizations",
        ),
        (
            f'[[issuer]]\nissuer = "{ISSUER}"\naudience = "a"\npublic_keys = ["barcelona.pem"]\n'
            'organizations = ["X"]\nalgorithms = ["HS256"]\n',
            "asymmetric",
        ),
        (f'[[issuer]]\nissuer = "{ISSUER}"\naudence = "typo"\n', "audence"),
        (f'[[issuer]]\nissuer = "{ISSUER}"\naudience = "a"\norganizations = ["X"]\n', "no keys"),
    ]:
        bad = idp.issuers_toml.with_name("bad.toml")
        bad.write_text(body)
        with pytest.raises(ValueError, match=needle):
            load_jwt_issuers(bad)
    with pytest.raises(ValueError):
        JwtIssuer(ISSUER, AUDIENCE, keys=(), organizations=(ORG,))


# --- configuration ----------------------------------------------------------------------------


async def test_missing_certificates_stop_the_start_naming_pki_init(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.start_reference_providers()

    with pytest.raises(PkiError, match="onceonly pki init"):
        await platform.start_broker(tls_dir=tmp_path / "no-pki")


async def test_insecure_mode_refuses_a_non_loopback_bind(platform: Platform) -> None:
    with pytest.raises(InsecureBindError, match="loopback"):
        await platform.start_broker(insecure=True, listen="0.0.0.0:0")
    with pytest.raises(InsecureBindError):
        await start_server("0.0.0.0:0", [], [])
    with pytest.raises(InsecureBindError):
        await start_provider(reference_adapter("tax"), "0.0.0.0:0", insecure=True)


async def test_insecure_mode_on_loopback_names_the_caller_in_metadata(platform: Platform) -> None:
    for pid in PROVIDER_IDS:
        platform.adopt_provider(pid, await start_provider(reference_adapter(pid), insecure=True))
    app = await platform.start_broker(insecure=True)

    client = platform.client(app, insecure_identity=InsecureIdentity(ORG, OFFICER))
    result = await client.verify(**verify_kwargs(checks=HOUSING_CHECKS[:2]))
    assert [o.status for o in result.outcomes] == ["VERIFIED", "VERIFIED"]

    stub = broker_pb2_grpc.BrokerStub(platform.insecure_channel(app.target))
    failure = await failure_of(stub.Verify(verify_request(), timeout=5))
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    spoof = (("x-onceonly-org", ORG), ("x-onceonly-officer", "officer-99"))
    failure = await failure_of(stub.Verify(verify_request(), timeout=5, metadata=spoof))
    assert failure.info is not None and failure.info.reason == "OFFICER_MISMATCH"


# --- the command line -------------------------------------------------------------------------


async def _cli(*args: str, **env: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**base, **env},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_needs_credentials_and_accepts_a_token(
    platform: Platform, token_broker: TokenBroker, idp: Idp
) -> None:
    app = token_broker.app
    assert app.token_target is not None
    ca = str(platform.pki.dir / "ca.pem")
    now = int(time.time())

    (none, _, none_err), (ok, out, ok_err), (expired, _, expired_err) = await asyncio.gather(
        _cli("catalog", "--broker", app.target),
        _cli("catalog", "--broker", app.token_target, "--ca", ca, ONCEONLY_TOKEN=idp.mint()),
        _cli("catalog", "--broker", app.token_target, "--ca", ca, "--token", idp.mint(exp=now - 600)),
    )

    assert none == 2 and "no credentials" in none_err
    assert ok == 0, ok_err
    assert "tax.compliance/v1" in out
    assert expired == 5 and "TOKEN_EXPIRED" in expired_err
    assert "Traceback" not in none_err + ok_err + expired_err
