"""Master agreements: standard clauses as data that bind every agreement (procedures, certificate
types, legal bases, laws, disclosures), quotas on each consumer's requests, and agreements serving
several procedures — through the Governance and Broker services of a running broker."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.v1 import common_pb2, governance_pb2
from tests.broker.oversight_workload import failure_of
from tests.broker.test_agreement_lifecycle import (
    AGREEMENT,
    APPROVE,
    PARKING,
    PARKING_CHECKS,
    agree,
    propose,
    stub,
)
from tests.conftest import LAW, MUNICIPALITY, ORG, RESIDENCE, Platform, resident, rpc_failure, verify_request
from tests.consumers.test_cli import cli
from tests.consumers.test_oversight_cli import command

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

A = governance_pb2
QUOTA_MASTER = "parking-capped"


def log_size(platform: Platform) -> int:
    with sqlite3.connect(platform.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM governance_events").fetchone()[0])


def master(**changes: Any) -> governance_pb2.MasterAgreement:
    values: dict[str, Any] = {
        "id": QUOTA_MASTER,
        "title": "Parking permits, capped",
        "procedure_codes": [PARKING],
        "purposes": ["Residents' parking permits"],
        "certificate_type_ids": [RESIDENCE],
        "legal_bases": [common_pb2.LEGAL_BASIS_KIND_LAW],
        "laws": [LAW],
        "retention_days": 365,
        "quota_per_day": 2,
    }
    values.update(changes)
    return governance_pb2.MasterAgreement(**values)


def register(platform: Platform, app: BrokerApp, who: str = "operator", **changes: Any) -> Any:
    request = governance_pb2.RegisterMasterAgreementRequest(master_agreement=master(**changes))
    return stub(platform, app, who).RegisterMasterAgreement(request, timeout=5)


async def test_the_operator_registers_master_agreements_as_versions(
    platform: Platform, broker: BrokerApp
) -> None:
    before = log_size(platform)
    refused = await failure_of(register(platform, broker, "housing-admin"))
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED and refused.info is not None
    assert refused.info.reason == "OPERATOR_ONLY"
    bad = await failure_of(
        register(
            platform,
            broker,
            title="",
            certificate_type_ids=["nope/v1"],
            procedure_codes=["not a code"],
            quota_per_minute=5,
            quota_per_day=2,
            endorsed_by="tax",
        )
    )
    assert bad.code is grpc.StatusCode.INVALID_ARGUMENT
    assert bad.fields == [
        "master_agreement.title",
        "master_agreement.procedure_codes",
        "master_agreement.certificate_type_ids",
        "master_agreement.quota_per_minute",
        "master_agreement.endorsed_by",
    ]
    assert log_size(platform) == before, "a refusal records nothing"

    first = await register(platform, broker)
    assert (first.master_agreement.version, first.event.action) == (1, "MASTER_AGREEMENT_REGISTERED")
    assert first.master_agreement.registered_by == "SGAD"
    same = await register(platform, broker)
    assert same.master_agreement.version == 1 and not same.HasField("event"), "same clauses: nothing new"
    changed = await register(platform, broker, quota_per_day=3)
    assert (changed.master_agreement.version, changed.event.subject) == (2, f"{QUOTA_MASTER}/2")
    listed = await stub(platform, broker, "housing-admin").ListMasterAgreements(
        governance_pb2.ListMasterAgreementsRequest(master_agreement_id=QUOTA_MASTER), timeout=5
    )
    assert [(m.version, m.quota_per_day) for m in listed.master_agreements] == [(1, 2), (2, 3)]
    assert log_size(platform) == before + 2


async def test_a_proposal_beyond_its_master_agreement_is_refused_naming_each_clause(
    platform: Platform, broker: BrokerApp
) -> None:
    before = log_size(platform)
    beyond = await failure_of(
        propose(
            platform,
            broker,
            master_agreement_id="employment-services",
            legal_bases=[common_pb2.LEGAL_BASIS_KIND_LAW, common_pb2.LEGAL_BASIS_KIND_CONSENT],
            disclosure=A.DISCLOSURE_DEFERRED,
            disclosure_until="2027-01-01",
        )
    )
    assert beyond.code is grpc.StatusCode.FAILED_PRECONDITION and beyond.info is not None
    assert beyond.info.reason == "MASTER_AGREEMENT_LIMIT"
    assert beyond.precondition is not None
    clauses = {v.subject: v.description for v in beyond.precondition.violations}
    assert set(clauses) == {
        "terms.procedure_codes",
        "terms.certificate_type_ids",
        "terms.legal_bases",
        "terms.laws",
        "terms.disclosure",
    }
    assert clauses["terms.procedure_codes"].startswith(
        "PARKING-PERMIT: master agreement 'employment-services'"
    )
    assert "allows only these legal bases: LAW" in clauses["terms.legal_bases"]

    unknown_master = await failure_of(propose(platform, broker, master_agreement_id="no-such-master"))
    assert unknown_master.fields == ["terms.master_agreement_id"]
    unknown_law = await failure_of(propose(platform, broker, laws=["Ley 99/2099 art. 1"]))
    assert unknown_law.code is grpc.StatusCode.INVALID_ARGUMENT and unknown_law.fields == ["terms.laws"]
    assert "unknown to the platform" in unknown_law.message
    no_dpo = await failure_of(propose(platform, broker, data_protection_officer=""))
    assert no_dpo.fields == ["terms.data_protection_officer"]
    assert log_size(platform) == before


async def test_one_agreement_serves_several_procedures(platform: Platform, broker: BrokerApp) -> None:
    checks = PARKING_CHECKS[:1]
    procedures = [PARKING, "SOCIAL-EMERGENCY-AID"]
    proposed = await propose(platform, broker, procedure_codes=procedures, certificate_type_ids=[RESIDENCE])
    assert sorted(proposed.agreement.terms.procedure_codes) == sorted(procedures)
    await agree(platform, broker)
    for procedure in procedures:
        request = verify_request(procedure_code=procedure, checks=checks)
        await platform.stub(broker).Verify(request, timeout=10)
        [row] = platform.trace_rows(request_id=request.request_id)
        assert json.loads(row["agreements"]) == [[RESIDENCE, AGREEMENT, 1]], procedure


async def test_a_quota_refuses_beyond_its_cap_and_the_refusal_is_traced(
    platform: Platform, broker: BrokerApp
) -> None:
    await register(platform, broker)  # 2 requests a day for each consumer
    await propose(platform, broker, master_agreement_id=QUOTA_MASTER, certificate_type_ids=[RESIDENCE])
    await stub(platform, broker, "registry-admin").ActOnAgreement(
        governance_pb2.ActOnAgreementRequest(agreement_id=AGREEMENT, action=APPROVE), timeout=5
    )
    listed = await stub(platform, broker, "housing-admin").ListAgreements(
        governance_pb2.ListAgreementsRequest(agreement_id=AGREEMENT), timeout=5
    )
    [version] = listed.agreements
    assert (version.state, version.quota_per_day, version.master_version) == (
        A.AGREEMENT_STATE_IN_FORCE,
        2,
        1,
    )

    day = dt.datetime.now(dt.UTC).date()
    requests = [verify_request(procedure_code=PARKING, checks=PARKING_CHECKS[:1]) for _ in range(3)]
    for request in requests[:2]:
        await platform.stub(broker).Verify(request, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.stub(broker).Verify(requests[2], timeout=10)
    if dt.datetime.now(dt.UTC).date() != day:
        pytest.skip("the day (and the quota's window) changed during the test")
    failure = rpc_failure(raised.value)
    assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.info is not None and failure.info.reason == "QUOTA_EXCEEDED"
    assert failure.quota is not None
    [violation] = failure.quota.violations
    assert violation.subject == f"agreement {AGREEMENT}"
    assert "2 requests per day allowed by master agreement 'parking-capped'" in violation.description
    assert failure.retry is not None and 0 < failure.retry.retry_delay.seconds <= 86_400
    [row] = platform.trace_rows(request_id=requests[2].request_id)
    assert (row["decision"], row["denial_reason"]) == ("DENIED", "QUOTA_EXCEEDED")

    # The same request id again is answered as it was (and traced once), not counted again.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await platform.stub(broker).Verify(requests[2], timeout=10)
    assert again.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(platform.trace_rows(request_id=requests[2].request_id)) == 1
    # Agreements under other master agreements are not capped.
    await platform.stub(broker).Verify(verify_request(resident()), timeout=10)

    # The command line says which quota, until when, and exits as a denial.
    person = resident()
    code, out, err = await command(
        platform, broker, "verify", "--org", ORG, "--unit", "Mobility", "--officer", "officer-1",
        "--procedure", PARKING, "--purpose", "Parking permit", "--case-file", "EXP-1", "--law", LAW,
        "--subject", f"{person.document_type}:{person.document_number}",
        "--check", f"{RESIDENCE}:municipality_code={MUNICIPALITY}", consumer=True,
    )  # fmt: skip
    assert code == 3, out + err
    assert "[RESOURCE_EXHAUSTED, QUOTA_EXCEEDED]" in err and f"quota (agreement {AGREEMENT})" in err
    assert "retry after" in err and "Traceback" not in err


async def test_a_deferred_disclosure_is_released_early_by_an_audited_action(
    platform: Platform, broker: BrokerApp
) -> None:
    from tests.broker.oversight_workload import oversight_stub, report_request

    await propose(
        platform,
        broker,
        disclosure=A.DISCLOSURE_DEFERRED,
        disclosure_until="2099-01-01",
        certificate_type_ids=[RESIDENCE],
    )
    await agree(platform, broker)
    person = resident()
    await platform.stub(broker).Verify(
        verify_request(person, procedure_code=PARKING, checks=PARKING_CHECKS[:1]), timeout=10
    )

    async def flags() -> dict[str, str]:
        report = await oversight_stub(platform, broker).GetResidentReport(report_request(person), timeout=10)
        return {a.procedure_code: a.disclosure for a in report.accesses if a.procedure_code == PARKING}

    assert await flags() == {PARKING: "DEFERRED until 2099-01-01"}
    request = governance_pb2.ActOnAgreementRequest(
        agreement_id=AGREEMENT, action=A.AGREEMENT_ACTION_RELEASE_DISCLOSURE, reason="investigation closed"
    )
    refused = await failure_of(stub(platform, broker, "tax-admin").ActOnAgreement(request, timeout=5))
    assert refused.info is not None and refused.info.reason == "RELEASE_NOT_PERMITTED"
    released = await stub(platform, broker, "oversight").ActOnAgreement(request, timeout=5)
    assert released.event.action == "AGREEMENT_DISCLOSURE_RELEASED"
    assert released.agreement.disclosure_released.startswith("by AEPD on ")
    assert released.agreement.disclosure_released.endswith(": investigation closed")
    assert await flags() == {PARKING: ""}, "no longer hidden from the resident"
    twice = await failure_of(stub(platform, broker, "housing-admin").ActOnAgreement(request, timeout=5))
    assert twice.info is not None and twice.info.reason == "TRANSITION_NOT_ALLOWED"
    code, out, err = await cli("ledger", "verify", "--var-dir", str(platform.var_dir))
    assert code == 0 and "governance log" in out and "intact" in out, out + err
