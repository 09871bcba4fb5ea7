"""Attestations checked as an outsider would: joserfc against the JWKS from GetJwks.

Nothing from the broker's own JOSE code (nor pyjwt) is used to verify.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, cast

import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, OKPKey

from onceonly.broker.app import BrokerApp
from onceonly.consumers.client import BrokerClient
from tests.conftest import (
    HOUSING_CHECKS,
    INCOME,
    LAW,
    ORG,
    PROCEDURE,
    THRESHOLD_EUR,
    Platform,
    expected_housing_claims,
    resident,
    verify_kwargs,
)

ALGORITHMS = ["EdDSA", "Ed25519"]

# joserfc warns that "EdDSA" is deprecated by RFC 9864 (in favour of "Ed25519"); the broker
# still signs with "EdDSA", which every JOSE library accepts today.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


async def _jwks(client: BrokerClient) -> dict[str, Any]:
    jwks = await client.jwks()
    assert isinstance(jwks.get("keys"), list) and jwks["keys"]
    return jwks


def _verify(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify with joserfc; return (header, payload)."""
    signature = jws.deserialize_compact(token, KeySet.import_key_set(cast(Any, jwks)), algorithms=ALGORITHMS)
    return dict(signature.protected), json.loads(signature.payload)


async def test_attestations_verify_against_the_published_jwks(client: BrokerClient) -> None:
    r = resident()
    before = int(time.time())
    result = await client.verify(**verify_kwargs(r), request_id="req-jose-1")
    jwks = await _jwks(client)
    kids = {k["kid"] for k in jwks["keys"]}
    expected = expected_housing_claims(r)

    assert len(result.outcomes) == len(HOUSING_CHECKS)
    for outcome in result.outcomes:
        header, payload = _verify(outcome.attestation, jwks)
        assert header["alg"] in ALGORITHMS
        assert header["kid"] in kids
        assert payload["request_id"] == "req-jose-1"
        assert payload["trace_id"] == result.trace_id
        assert payload["sub"] == f"{r.document_type}:{r.document_number}"
        assert payload["aud"] == ORG
        assert payload["purpose"]["procedure_code"] == PROCEDURE
        assert payload["purpose"]["case_file_id"] == "EXP-2026-0001"
        assert payload["legal_basis"] == {"kind": "LAW", "reference": LAW}
        assert payload["certificate_type"] == outcome.certificate_type_id
        assert payload["provider"] == outcome.provider_id
        assert payload["claims"] == expected[outcome.certificate_type_id]
        assert payload["claims"] == dict(outcome.claims)
        assert before - 5 <= payload["iat"] <= int(time.time()) + 5
        assert payload["exp"] - payload["iat"] == 86400
        assert payload["iss"] == "onceonly-broker"
    income = _verify(result.outcome(INCOME).attestation, jwks)[1]
    assert income["parameters"] == {"threshold_eur": str(THRESHOLD_EUR)}


async def test_kid_is_the_rfc7638_thumbprint(client: BrokerClient) -> None:
    jwks = await _jwks(client)
    for jwk in jwks["keys"]:
        assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
        assert "d" not in jwk  # public keys only
        bare = OKPKey.import_key({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"]})
        assert jwk["kid"] == bare.thumbprint()


async def test_a_tampered_attestation_fails_verification(client: BrokerClient) -> None:
    r = resident(lambda r: r.tax_compliant)
    result = await client.verify(**verify_kwargs(r, checks=HOUSING_CHECKS[1:2]))
    jwks = await _jwks(client)
    token = result.outcomes[0].attestation
    _verify(token, jwks)  # genuine: passes

    header, payload, signature = token.split(".")
    claims = json.loads(_b64decode(payload))
    assert claims["claims"] == {"compliant": True}
    claims["claims"]["compliant"] = False
    forged = ".".join([header, _b64encode(json.dumps(claims).encode()), signature])

    with pytest.raises(BadSignatureError):
        _verify(forged, jwks)
    flipped = signature[:10] + ("B" if signature[10] != "B" else "C") + signature[11:]
    with pytest.raises(BadSignatureError):
        _verify(".".join([header, payload, flipped]), jwks)


async def test_signing_key_is_created_once_and_reused_after_restart(platform: Platform) -> None:
    await platform.start_reference_providers()
    keys_dir = platform.var_dir / "keys"
    assert not keys_dir.exists()

    app: BrokerApp = await platform.start_broker()
    pems = sorted(p.name for p in keys_dir.rglob("*.pem"))
    assert len(pems) == 1
    first_jwks = await _jwks(platform.client(app))
    result = await platform.client(app).verify(**verify_kwargs(checks=HOUSING_CHECKS[:1]))
    await app.stop(0)

    again = await platform.start_broker()
    client = platform.client(again)
    second_jwks = await _jwks(client)

    assert sorted(p.name for p in keys_dir.rglob("*.pem")) == pems
    assert [k["kid"] for k in second_jwks["keys"]] == [k["kid"] for k in first_jwks["keys"]]
    # An attestation issued before the restart still verifies against the new JWKS.
    header, _ = _verify(result.outcomes[0].attestation, second_jwks)
    assert header["kid"] == second_jwks["keys"][0]["kid"]
    fresh = await client.verify(**verify_kwargs(checks=HOUSING_CHECKS[:1]))
    assert _verify(fresh.outcomes[0].attestation, second_jwks)[0]["kid"] == header["kid"]
