"""Agreements through the platform: proposed by the consumer's administrators, approved or vetoed by
each provider concerned, in force, vetoed, suspended by oversight, renewed and revoked — each change
taking effect on the broker's very next request, logged, and refused (naming the rule, recording
nothing) when the role or the state does not allow it."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from onceonly.broker.app import BrokerApp
from onceonly.v1 import common_pb2, governance_pb2, governance_pb2_grpc
from tests.broker.oversight_workload import failure_of, oversight_stub, report_request
from tests.broker.test_replicas import start_replicas
from tests.conftest import (
    LAW,
    MUNICIPALITY,
    ORG,
    RESIDENCE,
    TAX_COMPLIANCE,
    Platform,
    RpcFailure,
    resident,
    rpc_failure,
    verify_request,
)
from tests.consumers.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

PARKING = "PARKING-PERMIT"
AGREEMENT = "madrid-parking-permit"
A = governance_pb2
APPROVE, VETO, LIFT = A.AGREEMENT_ACTION_APPROVE, A.AGREEMENT_ACTION_VETO, A.AGREEMENT_ACTION_LIFT_VETO
SUSPEND, RESUME, REVOKE = A.AGREEMENT_ACTION_SUSPEND, A.AGREEMENT_ACTION_RESUME, A.AGREEMENT_ACTION_REVOKE
ENDORSE, RELEASE = A.AGREEMENT_ACTION_ENDORSE, A.AGREEMENT_ACTION_RELEASE_DISCLOSURE
PARKING_CHECKS: tuple[tuple[str, dict[str, str]], ...] = (
    (RESIDENCE, {"municipality_code": MUNICIPALITY}),
    (TAX_COMPLIANCE, {}),
)

ROLES = {
    "housing-admin": ("consumer-admin", ORG),
    "barcelona-admin": ("consumer-admin", "L08019030"),
    "registry-admin": ("provider-admin", "registry"),
    "tax-admin": ("provider-admin", "tax"),
    "employment-admin": ("provider-admin", "employment"),
    "oversight": ("oversight", "AEPD"),
    "operator": ("operator", "SGAD"),
}


def stub(platform: Platform, app: BrokerApp, who: str) -> Any:
    if who == "housing-office":
        tls = platform.pki.consumer(ORG)
    else:
        role, org = ROLES[who]
        tls = platform.pki.issue(who, role=role, org=org)
    return governance_pb2_grpc.GovernanceStub(platform.channel(app.target, tls=tls))


def terms(**changes: Any) -> governance_pb2.AgreementTerms:
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    values: dict[str, Any] = {
        "organization_id": ORG,
        "unit": "Mobility — parking permits",
        "accountable": "Head of the Mobility Service",
        "procedure_codes": [PARKING],
        "master_agreement_id": "municipal-benefits",
        "data_protection_officer": "Data Protection Officer, Madrid City Council",
        "certificate_type_ids": [RESIDENCE, TAX_COMPLIANCE],
        "legal_bases": [common_pb2.LEGAL_BASIS_KIND_LAW],
        "laws": [LAW],
        "valid_from": start,
        "description": "Residents' parking permits",
    }
    values.update(changes)
    return governance_pb2.AgreementTerms(**values)


def propose(platform: Platform, app: BrokerApp, who: str = "housing-admin", **changes: Any) -> Any:
    request = governance_pb2.ProposeAgreementRequest(agreement_id=AGREEMENT, terms=terms(**changes))
    return stub(platform, app, who).ProposeAgreement(request, timeout=5)


def act(
    platform: Platform,
    app: BrokerApp,
    who: str,
    action: governance_pb2.AgreementAction,
    reason: str = "",
    version: int = 0,
) -> Any:
    request = governance_pb2.ActOnAgreementRequest(
        agreement_id=AGREEMENT, version=version, action=action, reason=reason
    )
    return stub(platform, app, who).ActOnAgreement(request, timeout=5)


async def agree(platform: Platform, app: BrokerApp) -> Any:
    """Everyone the pending proposal waits for agrees: the providers approve, the governing body
    (the operator) endorses. The version as it stands after."""
    listed = await stub(platform, app, "oversight").ListAgreements(
        governance_pb2.ListAgreementsRequest(agreement_id=AGREEMENT), timeout=5
    )
    pending = [a for a in listed.agreements if a.state == A.AGREEMENT_STATE_PROPOSED][-1]
    done = None
    for party in pending.waiting_for:
        if party == "SGAD":
            done = await act(platform, app, "operator", ENDORSE)
        else:
            done = await act(platform, app, f"{party}-admin", APPROVE)
    assert done is not None
    return done.agreement


async def outcome(platform: Platform, app: BrokerApp, checks: Any = PARKING_CHECKS) -> str | RpcFailure:
    """GRANTED, or the failure of a parking-permit verification."""
    try:
        await platform.stub(app).Verify(verify_request(procedure_code=PARKING, checks=checks), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return rpc_failure(exc)
    return "GRANTED"


def log_size(platform: Platform) -> int:
    with sqlite3.connect(platform.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM governance_events").fetchone()[0])


def reason_of(result: str | RpcFailure) -> str:
    assert not isinstance(result, str), "expected a denial"
    assert result.info is not None
    return result.info.reason


async def test_the_whole_lifecycle_takes_effect_on_the_next_request(
    platform: Platform, broker: BrokerApp
) -> None:
    seeded = log_size(platform)  # the seed file, recorded at the broker's start
    assert reason_of(await outcome(platform, broker)) == "PROCEDURE_NOT_AUTHORISED"

    proposed = await propose(platform, broker)
    v = proposed.agreement
    assert (v.agreement_id, v.version, v.state) == (AGREEMENT, 1, A.AGREEMENT_STATE_PROPOSED)
    # The master agreement (municipal-benefits) names the operator as the governing body that endorses.
    assert (list(v.consulted), list(v.waiting_for), list(v.informed)) == (
        ["registry", "tax"],
        ["registry", "tax", "SGAD"],
        ["AEPD"],
    )
    assert (v.terms.master_agreement_id, v.master_version, v.endorsed_by) == ("municipal-benefits", 1, "SGAD")
    assert v.terms.data_protection_officer == "Data Protection Officer, Madrid City Council"
    assert (v.terms.unit, v.terms.accountable) == (
        "Mobility — parking permits",
        "Head of the Mobility Service",
    )
    assert proposed.event.action == "AGREEMENT_PROPOSED" and proposed.event.subject == f"{AGREEMENT}/1"
    assert reason_of(await outcome(platform, broker)) == "PROCEDURE_NOT_AUTHORISED", (
        "a proposal allows nothing"
    )

    half = await act(platform, broker, "registry-admin", APPROVE)
    assert half.agreement.state == A.AGREEMENT_STATE_PROPOSED
    assert list(half.agreement.waiting_for) == ["tax", "SGAD"]
    approved = await act(platform, broker, "tax-admin", APPROVE)
    assert approved.agreement.state == A.AGREEMENT_STATE_PROPOSED
    assert list(approved.agreement.waiting_for) == ["SGAD"]
    assert reason_of(await outcome(platform, broker)) == "PROCEDURE_NOT_AUTHORISED", "not endorsed yet"
    done = await act(platform, broker, "operator", ENDORSE)
    assert done.agreement.state == A.AGREEMENT_STATE_IN_FORCE and done.event.action == "AGREEMENT_ENDORSED"
    assert [(d.provider_id, d.decision) for d in done.agreement.decisions] == [
        ("SGAD", ENDORSE),
        ("registry", APPROVE),
        ("tax", APPROVE),
    ]
    assert await outcome(platform, broker) == "GRANTED"

    # A provider's veto suspends the agreement for its data, at once, naming version and reason.
    vetoed = await act(platform, broker, "tax-admin", VETO, "audit of the municipality's access pending")
    assert vetoed.agreement.state == A.AGREEMENT_STATE_SUSPENDED
    denial = await outcome(platform, broker)
    assert reason_of(denial) == "PROVIDER_VETO"
    assert isinstance(denial, RpcFailure)
    assert f"'{AGREEMENT}' (version 1)" in denial.message and "audit of the municipality" in denial.message
    assert await outcome(platform, broker, checks=PARKING_CHECKS[:1]) == "GRANTED", (
        "the registry's data still flows"
    )
    await act(platform, broker, "tax-admin", LIFT)
    assert await outcome(platform, broker) == "GRANTED"

    # Oversight suspends all of it, at once; and resumes it.
    await act(platform, broker, "oversight", SUSPEND, "complaint 2026/31 under investigation")
    denial = await outcome(platform, broker)
    assert reason_of(denial) == "AGREEMENT_NOT_IN_FORCE"
    assert isinstance(denial, RpcFailure) and "suspended: by AEPD" in denial.message
    await act(platform, broker, "oversight", RESUME)
    assert await outcome(platform, broker) == "GRANTED"

    # Renewal is a new version; the old one stays in force until the new one is approved.
    renewed = await propose(platform, broker, laws=[LAW, "Ley 12/2023 art. 17"])
    assert renewed.agreement.version == 2
    assert await outcome(platform, broker) == "GRANTED"
    await act(platform, broker, "operator", ENDORSE, version=2)  # in any order
    await act(platform, broker, "registry-admin", APPROVE, version=2)
    await act(platform, broker, "tax-admin", APPROVE, version=2)
    listed = await stub(platform, broker, "housing-office").ListAgreements(
        governance_pb2.ListAgreementsRequest(agreement_id=AGREEMENT), timeout=5
    )
    assert [(a.version, a.state) for a in listed.agreements] == [
        (1, A.AGREEMENT_STATE_SUPERSEDED),
        (2, A.AGREEMENT_STATE_IN_FORCE),
    ]

    revoked = await act(platform, broker, "housing-admin", REVOKE, "the permit scheme ends")
    assert revoked.agreement.state == A.AGREEMENT_STATE_REVOKED
    assert reason_of(await outcome(platform, broker)) == "PROCEDURE_NOT_AUTHORISED"

    code, out, err = await cli("ledger", "verify", "--var-dir", str(platform.var_dir))
    assert code == 0 and f"governance log: {seeded + 13} entries: intact" in out, out + err


async def test_a_veto_of_the_proposal_rejects_it(platform: Platform, broker: BrokerApp) -> None:
    await propose(platform, broker)
    rejected = await act(platform, broker, "tax-admin", VETO, "the tax data is not needed for parking")
    assert rejected.agreement.state == A.AGREEMENT_STATE_REJECTED
    assert "vetoed by tax: the tax data is not needed" in rejected.agreement.note
    late = await failure_of(act(platform, broker, "registry-admin", APPROVE, version=1))
    assert late.code is grpc.StatusCode.FAILED_PRECONDITION and late.info is not None
    assert late.info.reason == "TRANSITION_NOT_ALLOWED" and "is REJECTED" in late.message
    assert reason_of(await outcome(platform, broker)) == "PROCEDURE_NOT_AUTHORISED"


async def test_every_transition_is_authorised_by_role_and_a_refusal_records_nothing(
    platform: Platform, broker: BrokerApp
) -> None:
    refusals: list[tuple[Any, grpc.StatusCode, str]] = [
        (
            propose(platform, broker, "housing-office"),
            grpc.StatusCode.PERMISSION_DENIED,
            "CONSUMER_ADMIN_ONLY",
        ),
        (
            propose(platform, broker, "barcelona-admin"),
            grpc.StatusCode.PERMISSION_DENIED,
            "OWN_ORGANISATION_ONLY",
        ),
        (propose(platform, broker, "tax-admin"), grpc.StatusCode.PERMISSION_DENIED, "CONSUMER_ADMIN_ONLY"),
    ]
    before = log_size(platform)
    for call, code, reason in refusals:
        failure = await failure_of(call)
        assert (failure.code, failure.info and failure.info.reason) == (code, reason), failure.message
    assert log_size(platform) == before

    await propose(platform, broker)
    before = log_size(platform)
    for who, action, code, reason in [
        ("employment-admin", APPROVE, grpc.StatusCode.PERMISSION_DENIED, "NOT_CONSULTED"),
        ("oversight", APPROVE, grpc.StatusCode.PERMISSION_DENIED, "PROVIDER_ADMIN_ONLY"),
        ("housing-admin", APPROVE, grpc.StatusCode.PERMISSION_DENIED, "PROVIDER_ADMIN_ONLY"),
        ("registry-admin", SUSPEND, grpc.StatusCode.PERMISSION_DENIED, "OVERSIGHT_ONLY"),
        ("tax-admin", REVOKE, grpc.StatusCode.PERMISSION_DENIED, "REVOKE_NOT_PERMITTED"),
        ("oversight", SUSPEND, grpc.StatusCode.FAILED_PRECONDITION, "TRANSITION_NOT_ALLOWED"),
        ("tax-admin", LIFT, grpc.StatusCode.FAILED_PRECONDITION, "TRANSITION_NOT_ALLOWED"),
        ("tax-admin", ENDORSE, grpc.StatusCode.PERMISSION_DENIED, "ENDORSER_ONLY"),
        ("oversight", ENDORSE, grpc.StatusCode.PERMISSION_DENIED, "ENDORSER_ONLY"),
        ("registry-admin", RELEASE, grpc.StatusCode.PERMISSION_DENIED, "RELEASE_NOT_PERMITTED"),
        ("housing-admin", RELEASE, grpc.StatusCode.FAILED_PRECONDITION, "TRANSITION_NOT_ALLOWED"),
    ]:
        failure = await failure_of(act(platform, broker, who, action, "because"))
        assert (failure.code, failure.info and failure.info.reason) == (code, reason), (
            who,
            action,
            failure.message,
        )
    pending = await failure_of(propose(platform, broker))
    assert pending.code is grpc.StatusCode.FAILED_PRECONDITION and pending.info is not None
    assert pending.info.reason == "PROPOSAL_PENDING"
    assert log_size(platform) == before

    await act(platform, broker, "registry-admin", APPROVE)
    twice = await failure_of(act(platform, broker, "registry-admin", APPROVE))
    assert twice.info is not None and twice.info.reason == "ALREADY_DECIDED"
    no_reason = await failure_of(act(platform, broker, "tax-admin", VETO))
    assert no_reason.code is grpc.StatusCode.INVALID_ARGUMENT and no_reason.fields == ["reason"]
    missing = await failure_of(
        stub(platform, broker, "tax-admin").ActOnAgreement(
            governance_pb2.ActOnAgreementRequest(agreement_id="no-such-agreement", action=APPROVE), timeout=5
        )
    )
    assert missing.code is grpc.StatusCode.NOT_FOUND


async def test_bad_terms_name_their_fields(platform: Platform, broker: BrokerApp) -> None:
    before = log_size(platform)
    failure = await failure_of(
        propose(
            platform,
            broker,
            organization_id=ORG,
            procedure_codes=["parking permit"],
            certificate_type_ids=["nope/v1"],
            laws=[],
            unit="",
        )
    )
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == [
        "terms.procedure_codes",
        "terms.unit",
        "terms.certificate_type_ids",
        "terms.laws",
    ]
    no_start = await failure_of(
        stub(platform, broker, "housing-admin").ProposeAgreement(
            governance_pb2.ProposeAgreementRequest(
                agreement_id=AGREEMENT, terms=governance_pb2.AgreementTerms()
            ),
            timeout=5,
        )
    )
    assert no_start.code is grpc.StatusCode.INVALID_ARGUMENT and "terms.valid_from" in no_start.fields
    assert log_size(platform) == before


async def test_seeded_agreements_are_recorded_and_oversight_can_suspend_them(
    platform: Platform, broker: BrokerApp
) -> None:
    listed = await stub(platform, broker, "oversight").ListAgreements(
        governance_pb2.ListAgreementsRequest(), timeout=5
    )
    seeded = {a.agreement_id: a for a in listed.agreements}
    madrid = seeded["madrid-housing-rent-subsidy"]
    assert (madrid.version, madrid.state, madrid.proposed_by) == (1, A.AGREEMENT_STATE_IN_FORCE, "onceonly")
    assert (
        seeded["barcelona-housing-rent-subsidy"].state == A.AGREEMENT_STATE_SUSPENDED
    )  # the seeded tax veto
    await platform.stub(broker).Verify(verify_request(), timeout=10)
    request = governance_pb2.ActOnAgreementRequest(
        agreement_id="madrid-housing-rent-subsidy", action=SUSPEND, reason="complaint 2026/40"
    )
    await stub(platform, broker, "oversight").ActOnAgreement(request, timeout=5)
    failure = await failure_of(platform.stub(broker).Verify(verify_request(), timeout=10))
    assert failure.info is not None and failure.info.reason == "AGREEMENT_NOT_IN_FORCE"


async def test_a_veto_recorded_on_one_replica_reaches_the_other_at_once_on_postgresql(
    platform: Platform, postgres_url: str
) -> None:
    """Two replicas share PostgreSQL and re-read their policy only hourly by themselves: the veto
    recorded through replica A reaches replica B through LISTEN/NOTIFY."""
    await platform.start_reference_providers()
    a, b = await start_replicas(platform, postgres_url, policy_refresh_s=3600)
    await propose(platform, a)
    await agree(platform, a)
    assert await _eventually(platform, b, lambda r: r == "GRANTED") == "GRANTED"
    await act(platform, a, "tax-admin", VETO, "audit pending")
    vetoed = await _eventually(platform, b, lambda r: not isinstance(r, str))
    assert reason_of(vetoed) == "PROVIDER_VETO"


async def _eventually(
    platform: Platform, app: BrokerApp, done: Any, within_s: float = 5.0
) -> str | RpcFailure:
    """The outcome of a parking request on ``app`` once ``done(outcome)``, trying for ``within_s``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await outcome(platform, app)
        if done(result) or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_an_agreement_may_allow_no_objection(platform: Platform, broker: BrokerApp) -> None:
    """SCSP's NoOpo through the whole stack: refused under the seeded agreements (LAW, CONSENT),
    granted once an agreement made through the platform allows it."""
    no_objection = common_pb2.LegalBasis(
        kind=common_pb2.LEGAL_BASIS_KIND_NO_OBJECTION, reference="Notice with the permit form, 2026-03-02"
    )

    async def ask(procedure: str) -> str | RpcFailure:
        request = verify_request(procedure_code=procedure, checks=PARKING_CHECKS[:1])
        request.legal_basis.CopyFrom(no_objection)
        try:
            await platform.stub(broker).Verify(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return rpc_failure(exc)
        return "GRANTED"

    assert reason_of(await ask("HOUSING-RENT-SUBSIDY")) == "LEGAL_BASIS_NOT_ALLOWED"
    await propose(
        platform,
        broker,
        certificate_type_ids=[RESIDENCE],
        legal_bases=[common_pb2.LEGAL_BASIS_KIND_NO_OBJECTION],
        laws=[],
    )
    await agree(platform, broker)
    assert await ask(PARKING) == "GRANTED"


async def test_an_agreement_may_defer_or_withhold_disclosure_to_residents(
    platform: Platform, broker: BrokerApp
) -> None:
    """Resident disclosure per agreement: DEFERRED needs its date, WITHHELD its law; oversight's
    resident report flags the accesses made under it (the resident-facing view hides them)."""
    deferred: dict[str, Any] = {"disclosure": governance_pb2.DISCLOSURE_DEFERRED}
    missing = await failure_of(propose(platform, broker, **deferred))
    assert missing.code is grpc.StatusCode.INVALID_ARGUMENT and missing.fields == ["terms.disclosure_until"]
    withheld = await failure_of(propose(platform, broker, disclosure=governance_pb2.DISCLOSURE_WITHHELD))
    assert withheld.fields == ["terms.disclosure_law"]

    proposed = await propose(platform, broker, **deferred, disclosure_until="2027-06-30")
    assert (proposed.agreement.terms.disclosure, proposed.agreement.terms.disclosure_until) == (
        governance_pb2.DISCLOSURE_DEFERRED,
        "2027-06-30",
    )
    await agree(platform, broker)
    person = resident()
    request = verify_request(person, procedure_code=PARKING, checks=PARKING_CHECKS)
    await platform.stub(broker).Verify(request, timeout=10)
    await platform.stub(broker).Verify(verify_request(person), timeout=10)  # under the seeded agreement
    report = await oversight_stub(platform, broker).GetResidentReport(report_request(person), timeout=10)
    flags = {a.procedure_code: a.disclosure for a in report.accesses}
    assert flags == {PARKING: "DEFERRED until 2027-06-30", "HOUSING-RENT-SUBSIDY": ""}
