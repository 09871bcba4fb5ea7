"""A resident's own access log: two residents see exactly their own entries, a guardian sees the
person they represent, nobody sees anyone else's (refused and traced), deferred entries stay
hidden until released, and the document number never comes back."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from onceonly.broker.app import BrokerApp
from onceonly.providers import synthetic
from onceonly.v1 import (
    broker_pb2_grpc,
    common_pb2,
    governance_pb2,
    oversight_pb2,
    oversight_pb2_grpc,
    resident_pb2,
    resident_pb2_grpc,
)
from tests.broker.test_agreement_lifecycle import (
    PARKING,
    PARKING_CHECKS,
    RELEASE,
    act,
    agree,
    propose,
)
from tests.broker.test_auth import AUDIENCE, failure_of
from tests.conftest import Platform, known_everywhere, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
EID = "https://eid.example"


@dataclass
class Eid:
    """A throwaway eID provider: its tokens name residents by their identity document."""

    key: ec.EllipticCurvePrivateKey
    issuers_toml: Path

    def token(self, person: synthetic.Resident, *represents: synthetic.Resident, **changes: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": EID,
            "aud": AUDIENCE,
            "sub": f"eid-{person.document_number[-4:]}",
            "document": f"{person.document_type}:{person.document_number}",
            "represents": [f"{r.document_type}:{r.document_number}" for r in represents],
            "iat": now,
            "exp": now + 300,
            **changes,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "eid-1"})


@pytest.fixture
def eid(tmp_path: Path) -> Eid:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "eid-1"
    (tmp_path / "eid-jwks.json").write_text(json.dumps({"keys": [jwk]}))
    toml = tmp_path / "issuers.toml"
    toml.write_text(
        f'[[issuer]]\nissuer = "{EID}"\naudience = "{AUDIENCE}"\njwks = "eid-jwks.json"\nresidents = true\n'
    )
    return Eid(key, toml)


@pytest.fixture
async def resident_broker(platform: Platform, eid: Eid) -> BrokerApp:
    await platform.start_reference_providers()
    return await platform.start_broker(jwt_issuers=eid.issuers_toml, token_listen="127.0.0.1:0")


def people(count: int) -> list[synthetic.Resident]:
    found: list[synthetic.Resident] = []
    for r in synthetic.population():
        if known_everywhere(r) and r.document_type == "DNI":
            found.append(r)
        if len(found) == count:
            return found
    raise LookupError("not enough residents")


async def my_log(platform: Platform, app: BrokerApp, token: str, **request: Any) -> Any:
    assert app.token_target is not None
    stub = resident_pb2_grpc.ResidentAccessStub(platform.channel(app.token_target, tls=platform.pki.ca_only))
    return await stub.ListMyAccesses(
        resident_pb2.ListMyAccessesRequest(**request),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=10,
    )


def subject_of(r: synthetic.Resident) -> common_pb2.Subject:
    return common_pb2.Subject(document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number=r.document_number)


async def test_each_resident_sees_their_own_entries_and_nobody_elses(
    platform: Platform, resident_broker: BrokerApp, eid: Eid, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ana, bruno = people(2)
    stub = platform.stub(resident_broker)
    for _ in range(2):
        await stub.Verify(verify_request(ana), timeout=10)
    await stub.Verify(verify_request(bruno), timeout=10)

    mine = await my_log(platform, resident_broker, eid.token(ana), language="es")
    assert len(mine.accesses) == 2 and mine.person == 0 and mine.retention_days == 1825
    first = mine.accesses[0]
    assert (
        first.organization_name == "Madrid — Housing Office"
        and first.procedure_code == "HOUSING-RENT-SUBSIDY"
    )
    assert first.purpose_text == "Rent subsidy application" and first.decision == 1  # GRANTED
    assert first.procedure_name == "Eligibility checks for the municipal rent subsidy.", (
        "the agreement's words"
    )
    assert first.officer_identification == common_pb2.OFFICER_IDENTIFICATION_CERTIFICATE
    assert {"Tax Agency", "Municipal Register"} <= set(first.provider_names) or len(first.provider_names) == 3
    assert all(c.title for c in first.certificates) and len(first.certificates) == 4
    assert [p.label for p in mine.people] == [f"DNI ····{ana.document_number[-4:]}"]
    assert ana.document_number not in str(mine)

    theirs = await my_log(platform, resident_broker, eid.token(bruno))
    assert len(theirs.accesses) == 1

    snooping = await failure_of(my_log(platform, resident_broker, eid.token(ana), subject=subject_of(bruno)))
    assert snooping.code == grpc.StatusCode.PERMISSION_DENIED
    assert snooping.info is not None and snooping.info.reason == "NOT_REPRESENTED"
    assert bruno.document_number not in snooping.message
    told = await my_log(platform, resident_broker, eid.token(bruno))
    attempt = [a for a in told.accesses if a.procedure_code == "RESIDENT-ACCESS-VIEW"]
    assert len(attempt) == 1 and attempt[0].decision == 2  # DENIED: Bruno sees that someone tried
    assert attempt[0].denial_reason == common_pb2.DENIAL_REASON_NOT_REPRESENTED

    views = [r for r in platform.trace_rows() if r["procedure_code"] == "RESIDENT-ACCESS-VIEW"]
    assert len(views) == 4 and {r["officer_id"] for r in views if r["decision"] == "GRANTED"} == {"self"}
    (tried,) = [r for r in views if r["decision"] == "DENIED"]
    assert tried["officer_id"].startswith("representative:"), "who tried, by pseudonym"
    assert all(ana.document_number not in json.dumps(r, default=str) for r in platform.trace_rows())
    assert "resident access log viewed" in caplog.text
    assert ana.document_number not in caplog.text and bruno.document_number not in caplog.text


async def test_a_guardian_sees_the_person_they_represent_and_the_view_is_recorded(
    platform: Platform, resident_broker: BrokerApp, eid: Eid
) -> None:
    parent, child, stranger = people(3)
    await platform.stub(resident_broker).Verify(verify_request(child), timeout=10)
    token = eid.token(parent, child)
    own = await my_log(platform, resident_broker, token)
    assert [p.person for p in own.people] == [0, 1] and own.accesses == []

    childs = await my_log(platform, resident_broker, token, person=1)
    assert childs.person == 1 and len(childs.accesses) == 1
    by_document = await my_log(platform, resident_broker, token, subject=subject_of(child))
    assert by_document.person == 1
    assert [a.procedure_code for a in by_document.accesses] == [
        "RESIDENT-ACCESS-VIEW",
        "HOUSING-RENT-SUBSIDY",
    ], "the guardian's own earlier look is in the child's log too"
    bad = await failure_of(my_log(platform, resident_broker, token, person=2))
    assert bad.bad_request is not None and [v.field for v in bad.bad_request.field_violations] == ["person"]
    refused = await failure_of(my_log(platform, resident_broker, token, subject=subject_of(stranger)))
    assert refused.info is not None and refused.info.reason == "NOT_REPRESENTED"

    seen_by = await my_log(platform, resident_broker, eid.token(child))
    viewers = [a for a in seen_by.accesses if a.procedure_code == "RESIDENT-ACCESS-VIEW"]
    assert len(viewers) == 2 and all(a.decision == 1 for a in viewers), "the child sees who looked"
    rows = [r for r in platform.trace_rows() if r["procedure_code"] == "RESIDENT-ACCESS-VIEW"]
    representative = {r["officer_id"] for r in rows if r["officer_id"] != "self"}
    assert len(representative) == 1 and next(iter(representative)).startswith("representative:")


async def test_deferred_entries_stay_hidden_until_released(
    platform: Platform, resident_broker: BrokerApp, eid: Eid
) -> None:
    (person,) = people(1)
    await propose(
        platform,
        resident_broker,
        disclosure=governance_pb2.DISCLOSURE_DEFERRED,
        disclosure_until="2099-06-30",
    )
    await agree(platform, resident_broker)
    stub = platform.stub(resident_broker)
    await stub.Verify(verify_request(person, procedure_code=PARKING, checks=PARKING_CHECKS), timeout=10)
    await stub.Verify(verify_request(person), timeout=10)

    shown = await my_log(platform, resident_broker, eid.token(person))
    assert [a.procedure_code for a in shown.accesses] == ["HOUSING-RENT-SUBSIDY"]
    await act(platform, resident_broker, "oversight", RELEASE, reason="Investigation closed")
    released = await my_log(platform, resident_broker, eid.token(person))
    assert [a.procedure_code for a in released.accesses] == ["HOUSING-RENT-SUBSIDY", PARKING]


async def test_only_residents_read_an_access_log_and_bad_tokens_are_refused(
    platform: Platform, resident_broker: BrokerApp, eid: Eid
) -> None:
    (person,) = people(1)
    bad_document = await failure_of(
        my_log(platform, resident_broker, eid.token(person, document="DNI:12345678A"))
    )
    assert bad_document.code == grpc.StatusCode.UNAUTHENTICATED
    assert bad_document.info is not None and bad_document.info.reason == "TOKEN_CLAIMS"
    assert "12345678A" not in bad_document.message
    too_many = await failure_of(
        my_log(platform, resident_broker, eid.token(person, represents=["DNI:x"] * 21))
    )
    assert too_many.info is not None and too_many.info.reason == "TOKEN_CLAIMS"
    paged = await failure_of(my_log(platform, resident_broker, eid.token(person), page_token="page-2"))
    assert paged.bad_request is not None and paged.bad_request.field_violations[0].field == "page_token"

    agency = resident_pb2_grpc.ResidentAccessStub(platform.channel(resident_broker.target))  # Madrid's app
    refused = await failure_of(agency.ListMyAccesses(resident_pb2.ListMyAccessesRequest(), timeout=5))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.info is not None and refused.info.reason == "RESIDENTS_ONLY"


async def test_a_resident_token_opens_nothing_else(
    platform: Platform, resident_broker: BrokerApp, eid: Eid
) -> None:
    (person,) = people(1)
    assert resident_broker.token_target is not None
    channel = platform.channel(resident_broker.token_target, tls=platform.pki.ca_only)
    bearer = (("authorization", f"Bearer {eid.token(person)}"),)
    verify = await failure_of(
        broker_pb2_grpc.BrokerStub(channel).Verify(verify_request(person), metadata=bearer, timeout=5)
    )
    assert verify.code == grpc.StatusCode.PERMISSION_DENIED
    traces = await failure_of(
        oversight_pb2_grpc.OversightStub(channel).ListTraces(
            oversight_pb2.ListTracesRequest(), metadata=bearer, timeout=5
        )
    )
    assert traces.info is not None and traces.info.reason == "OVERSIGHT_ONLY"


async def test_a_resident_opens_the_proof_of_their_own_entries_only(
    platform: Platform, resident_broker: BrokerApp, eid: Eid
) -> None:
    ana, bruno = people(2)
    stub = platform.stub(resident_broker)
    mine = await stub.Verify(verify_request(ana), timeout=10)
    theirs = await stub.Verify(verify_request(bruno), timeout=10)
    assert resident_broker.token_target is not None
    oversight = oversight_pb2_grpc.OversightStub(
        platform.channel(resident_broker.token_target, tls=platform.pki.ca_only)
    )
    bearer = (("authorization", f"Bearer {eid.token(ana)}"),)
    proof = await oversight.GetProof(
        oversight_pb2.GetProofRequest(trace_id=mine.trace_id), metadata=bearer, timeout=5
    )
    assert proof.trace.trace_id == mine.trace_id and len(proof.attestations) >= 3
    assert ana.document_number not in str(proof)
    other = await failure_of(
        oversight.GetProof(
            oversight_pb2.GetProofRequest(trace_id=theirs.trace_id), metadata=bearer, timeout=5
        )
    )
    assert other.code == grpc.StatusCode.NOT_FOUND, "another person's request is not in Ana's log"
