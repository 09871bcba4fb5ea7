"""Proofs of requests: a consumer's proof names the request and the attestations it got, and its
verification code checks against the ledger — and stops checking once the record is edited."""

from __future__ import annotations

import hashlib

import grpc
import pytest
import sqlalchemy as sa

from onceonly.broker.app import BrokerApp
from onceonly.broker.chain import record_hash
from onceonly.broker.proofs import hash_prefix, verification_code
from onceonly.v1 import oversight_pb2, oversight_pb2_grpc
from tests.broker.test_auth import failure_of
from tests.broker.test_oversight_scopes import BARCELONA, reader
from tests.conftest import ORG, Platform, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
D = oversight_pb2


def test_a_code_is_the_hash_prefix_in_base32() -> None:
    digest = hashlib.sha256(b"record").hexdigest()
    code = verification_code(digest)
    assert len(code) == 19 and code.count("-") == 3
    assert hash_prefix(code) == digest[:20]
    assert hash_prefix(code.lower().replace("-", " ")) == digest[:20], "case and separators ignored"
    assert hash_prefix(code[:-1]) is None and hash_prefix(code[:-1] + "1") is None


async def test_a_consumer_files_a_proof_that_anyone_can_verify(platform: Platform, broker: BrokerApp) -> None:
    answer = await platform.stub(broker).Verify(verify_request(), timeout=10)
    application = oversight_pb2_grpc.OversightStub(platform.channel(broker.target))  # Madrid's application
    proof = await application.GetProof(D.GetProofRequest(trace_id=answer.trace_id), timeout=5)
    assert proof.trace.trace_id == answer.trace_id and proof.trace.consumer.organization_id == ORG
    assert proof.trace.decision == D.DECISION_GRANTED
    assert {(a.certificate_type_id, a.sha256) for a in proof.attestations} == {
        (o.certificate_type_id, hashlib.sha256(o.attestation.encode()).hexdigest())
        for o in answer.outcomes
        if o.attestation
    }
    assert len(proof.attestations) == sum(1 for o in answer.outcomes if o.attestation) >= 3
    assert proof.verification_code == verification_code(proof.record_hash)

    anyone = reader(platform, broker, "bcn-app", "consumer", BARCELONA)
    checked = await anyone.VerifyProof(
        D.VerifyProofRequest(verification_code=proof.verification_code), timeout=5
    )
    assert checked.matches and checked.intact
    assert checked.consumer_organization_id == ORG and checked.decision == D.DECISION_GRANTED
    assert checked.procedure_code == proof.trace.purpose.procedure_code
    assert sorted(checked.certificate_type_ids) == sorted(proof.trace.certificate_type_ids)
    spelled = proof.verification_code.lower().replace("-", "")
    assert (await anyone.VerifyProof(D.VerifyProofRequest(verification_code=spelled), timeout=5)).matches

    nothing = await anyone.VerifyProof(
        D.VerifyProofRequest(verification_code="AAAA-AAAA-AAAA-AAAA"), timeout=5
    )
    assert not nothing.matches and not nothing.consumer_organization_id
    bad = await failure_of(
        anyone.VerifyProof(D.VerifyProofRequest(verification_code="not a code"), timeout=5)
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.bad_request is not None
    assert [v.field for v in bad.bad_request.field_violations] == ["verification_code"]

    others = await failure_of(anyone.GetProof(D.GetProofRequest(trace_id=answer.trace_id), timeout=5))
    assert others.code == grpc.StatusCode.PERMISSION_DENIED
    assert others.info is not None and others.info.reason == "CONSUMER_OWN_DATA_ONLY"
    provider = reader(platform, broker, "tax-admin", "provider-admin", "tax")
    refused = await failure_of(provider.GetProof(D.GetProofRequest(trace_id=answer.trace_id), timeout=5))
    assert refused.info is not None and refused.info.reason == "PROOF_OF_OWN_REQUESTS"
    missing = await failure_of(application.GetProof(D.GetProofRequest(trace_id="no-such-trace"), timeout=5))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    oversight = reader(platform, broker, "auditor", "oversight", "AEPD")
    assert (
        await oversight.GetProof(D.GetProofRequest(trace_id=answer.trace_id), timeout=5)
    ).verification_code


async def test_an_edited_record_no_longer_verifies(platform: Platform, broker: BrokerApp) -> None:
    """Whoever holds the database edits the purpose of a request: the code says so. Rewriting the
    record's hash to match loses the code altogether, and breaks the link from the next record."""
    stub = platform.stub(broker)
    edited = await stub.Verify(verify_request(), timeout=10)
    await stub.Verify(verify_request(), timeout=10)  # the next record links to the edited one
    application = oversight_pb2_grpc.OversightStub(platform.channel(broker.target))
    proof = await application.GetProof(D.GetProofRequest(trace_id=edited.trace_id), timeout=5)
    code = D.VerifyProofRequest(verification_code=proof.verification_code)
    assert (await application.VerifyProof(code, timeout=5)).intact

    traces = sa.table("trace_records", sa.column("trace_id"), sa.column("purpose_text"))
    with broker.engine.begin() as conn:
        conn.execute(
            sa.update(traces)
            .where(traces.c.trace_id == edited.trace_id)
            .values(purpose_text="Something else")
        )
    after = await application.VerifyProof(code, timeout=5)
    assert after.matches and not after.intact

    with broker.engine.begin() as conn:
        row = conn.execute(sa.text("SELECT * FROM trace_records WHERE trace_id = :t"), {"t": edited.trace_id})
        values = dict(row.one()._mapping)
        conn.execute(
            sa.text("UPDATE trace_records SET record_hash = :h WHERE trace_id = :t"),
            {"h": record_hash(values), "t": edited.trace_id},
        )
    assert not (await application.VerifyProof(code, timeout=5)).matches
    rehashed = await application.GetProof(D.GetProofRequest(trace_id=edited.trace_id), timeout=5)
    relinked = await application.VerifyProof(
        D.VerifyProofRequest(verification_code=rehashed.verification_code), timeout=5
    )
    assert relinked.matches and not relinked.intact, "the next record still links to the old hash"
