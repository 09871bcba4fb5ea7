"""The policy engine: every rule, allowed and denied, with its stable reason code.

The demo agreements are also checked after a round trip through the policy store, on SQLite and
on PostgreSQL (``database_url``, tests/broker/conftest.py).
"""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import pytest

from onceonly.broker.agreements import PolicyStore, parse_seed
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import (
    Agreement,
    CheckRequest,
    ConsumerRef,
    DenialReason,
    DocumentType,
    LegalBasis,
    LegalBasisKind,
    OfficerIdentification,
    Organisation,
    OrganisationKind,
    PolicyDecision,
    PolicySnapshot,
    PurposeRef,
    SubjectId,
    VerificationRequest,
    Veto,
)
from onceonly.broker.policy import Policy, normalise_reference
from onceonly.broker.storage import create_engine, init_schema

LAW, CONSENT = LegalBasisKind.LAW, LegalBasisKind.CONSENT
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ORG = "L01280796"
PROCEDURE = "HOUSING-RENT-SUBSIDY"
RESIDENCE = "registry.residence/v1"
TAX = "tax.compliance/v1"
INCOME = "tax.income-below-threshold/v1"
SOCIAL_SECURITY = "employment.social-security-compliance/v1"  # LAW only in the catalog
LAW_REF = "Ley 39/2015 art. 28"
SUBJECT = SubjectId(DocumentType.DNI, "12345678Z")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def agreement(**changes: object) -> Agreement:
    base = Agreement(
        id="agr-1",
        organization_id=ORG,
        procedure_codes=frozenset({PROCEDURE}),
        certificate_type_ids=frozenset({RESIDENCE, TAX, SOCIAL_SECURITY}),
        legal_bases=frozenset({LAW, CONSENT}),
        legal_references=frozenset({LAW_REF}),
        consent_required=False,
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        valid_until=datetime(2030, 1, 1, tzinfo=UTC),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def policy(catalog: Catalog, *agreements: Agreement, vetoes: tuple[Veto, ...] = ()) -> Policy:
    snapshot = PolicySnapshot(
        organisations={ORG: Organisation(ORG, "Madrid — Housing Office")},
        agreements=agreements or (agreement(),),
        vetoes=vetoes,
    )
    return Policy(snapshot, catalog)


def request(
    *cert_types: str,
    kind: LegalBasisKind = LAW,
    reference: str = LAW_REF,
    org: str = ORG,
    procedure: str = PROCEDURE,
    officer_document: SubjectId | None = None,
) -> VerificationRequest:
    return VerificationRequest(
        request_id="req-1",
        consumer=ConsumerRef(org, "Rent subsidies", "officer-7", officer_document),
        purpose=PurposeRef(procedure, "Rent subsidy application", "EXP-2026-001"),
        legal_basis=LegalBasis(kind, reference),
        subject=SUBJECT,
        checks=tuple(CheckRequest(c) for c in (cert_types or (RESIDENCE,))),
        digest="d" * 64,
    )


def denied(p: Policy, req: VerificationRequest, now: datetime = NOW) -> PolicyDecision:
    decision = p.evaluate(req, now)
    assert not decision.allowed
    return decision


# --- allowed ---------------------------------------------------------------------------


def test_law_with_cited_reference_is_allowed(catalog: Catalog) -> None:
    assert policy(catalog).evaluate(request(RESIDENCE, TAX, SOCIAL_SECURITY), NOW).allowed


def test_reference_is_compared_normalised(catalog: Catalog) -> None:
    assert policy(catalog).evaluate(request(reference="  ley 39/2015\tART.   28 "), NOW).allowed
    assert normalise_reference(" Ley  39/2015\nart. 28") == "ley 39/2015 art. 28"


def test_consent_needs_no_cited_law(catalog: Catalog) -> None:
    assert policy(catalog).evaluate(request(TAX, kind=CONSENT, reference="consent form CF-991"), NOW).allowed


def test_now_in_another_timezone_is_the_same_instant(catalog: Catalog) -> None:
    p = policy(catalog, agreement(valid_until=datetime(2026, 6, 1, 12, 0, tzinfo=UTC)))
    one_minute_before = datetime(2026, 6, 1, 13, 59, tzinfo=timezone(timedelta(hours=2)))
    assert p.evaluate(request(), one_minute_before).allowed


def test_officer_may_query_someone_else(catalog: Catalog) -> None:
    officer = SubjectId(DocumentType.DNI, "87654321X")
    assert policy(catalog).evaluate(request(officer_document=officer), NOW).allowed


def test_open_ended_agreement_is_in_force_forever(catalog: Catalog) -> None:
    forever = policy(catalog, agreement(valid_until=None))
    assert forever.evaluate(request(), datetime(2099, 1, 1, tzinfo=UTC)).allowed


# --- early stops -----------------------------------------------------------------------


def test_unknown_consumer(catalog: Catalog) -> None:
    err = denied(policy(catalog), request(org="X99999999"))
    assert err.reason is DenialReason.UNKNOWN_CONSUMER
    assert [v.subject for v in err.violations] == ["consumer.organization_id"]
    assert "X99999999" in err.violations[0].description


def test_a_member_that_is_not_a_consumer_agency_verifies_nothing(catalog: Catalog) -> None:
    """An oversight body (or a provider) is a member, but not a consumer: even an agreement naming
    it allows nothing."""
    snapshot = PolicySnapshot(
        organisations={"AEPD": Organisation("AEPD", "Data Protection Agency", OrganisationKind.OVERSIGHT)},
        agreements=(agreement(organization_id="AEPD"),),
        vetoes=(),
    )
    err = denied(Policy(snapshot, catalog), request(org="AEPD"))
    assert err.reason is DenialReason.UNKNOWN_CONSUMER


def test_self_query_is_forbidden(catalog: Catalog) -> None:
    officer = SubjectId(DocumentType.DNI, "12345678z")  # same document, other case
    err = denied(policy(catalog), request(officer_document=officer))
    assert err.reason is DenialReason.SELF_QUERY_FORBIDDEN
    assert len(err.violations) == 1


def test_same_number_other_document_type_is_not_self(catalog: Catalog) -> None:
    officer = SubjectId(DocumentType.PASSPORT, SUBJECT.document_number)
    assert policy(catalog).evaluate(request(officer_document=officer), NOW).allowed


def test_procedure_not_authorised(catalog: Catalog) -> None:
    err = denied(policy(catalog), request(procedure="SOMETHING-ELSE"))
    assert err.reason is DenialReason.PROCEDURE_NOT_AUTHORISED
    assert err.violations[0].subject == "purpose.procedure_code"
    assert "SOMETHING-ELSE" in err.violations[0].description


# --- per-check rules -------------------------------------------------------------------


def test_certificate_type_not_covered(catalog: Catalog) -> None:
    err = denied(policy(catalog), request(RESIDENCE, INCOME))
    assert err.reason is DenialReason.CERTIFICATE_TYPE_NOT_COVERED
    assert [v.subject for v in err.violations] == [INCOME]  # the covered check is fine


def test_certificate_type_missing_from_catalog_is_not_covered(catalog: Catalog) -> None:
    p = policy(catalog, agreement(certificate_type_ids=frozenset({"made.up/v1"})))
    err = denied(p, request("made.up/v1"))
    assert err.reason is DenialReason.CERTIFICATE_TYPE_NOT_COVERED
    assert "catalog" in err.violations[0].description


@pytest.mark.parametrize(
    "now",
    [
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),  # before valid_from
        datetime(2030, 1, 1, tzinfo=UTC),  # valid_until is exclusive
    ],
)
def test_agreement_not_in_force(catalog: Catalog, now: datetime) -> None:
    err = denied(policy(catalog), request(), now)
    assert err.reason is DenialReason.AGREEMENT_NOT_IN_FORCE
    assert "agr-1" in err.violations[0].description


def test_agreement_in_force_from_its_first_instant(catalog: Catalog) -> None:
    assert policy(catalog).evaluate(request(), datetime(2025, 1, 1, tzinfo=UTC)).allowed


def test_provider_veto_refuses_only_that_providers_types(catalog: Catalog) -> None:
    p = policy(catalog, vetoes=(Veto("agr-1", "tax", "impact assessment pending"),))
    assert p.evaluate(request(RESIDENCE), NOW).allowed
    err = denied(p, request(RESIDENCE, TAX))
    assert err.reason is DenialReason.PROVIDER_VETO
    assert [v.subject for v in err.violations] == [TAX]
    assert "impact assessment pending" in err.violations[0].description


def test_veto_over_one_agreement_leaves_another(catalog: Catalog) -> None:
    other = agreement(id="agr-2")
    p = policy(catalog, agreement(), other, vetoes=(Veto("agr-1", "tax", ""),))
    assert p.evaluate(request(TAX), NOW).allowed


def test_legal_basis_not_allowed_by_agreement(catalog: Catalog) -> None:
    p = policy(catalog, agreement(legal_bases=frozenset({LAW})))
    err = denied(p, request(kind=CONSENT, reference="consent CF-1"))
    assert err.reason is DenialReason.LEGAL_BASIS_NOT_ALLOWED
    assert "agr-1" in err.violations[0].description


def test_legal_basis_not_allowed_by_catalog(catalog: Catalog) -> None:
    err = denied(policy(catalog), request(RESIDENCE, SOCIAL_SECURITY, kind=CONSENT, reference="CF-1"))
    assert err.reason is DenialReason.LEGAL_BASIS_NOT_ALLOWED
    assert [v.subject for v in err.violations] == [SOCIAL_SECURITY]
    assert "catalog" in err.violations[0].description


def test_consent_required(catalog: Catalog) -> None:
    p = policy(catalog, agreement(consent_required=True, legal_bases=frozenset({CONSENT})))
    err = denied(p, request(RESIDENCE))
    assert err.reason is DenialReason.CONSENT_REQUIRED
    assert p.evaluate(request(RESIDENCE, kind=CONSENT, reference="consent CF-1"), NOW).allowed


def test_legal_reference_not_in_agreement(catalog: Catalog) -> None:
    err = denied(policy(catalog), request(reference="Ley 40/2015 art. 155"))
    assert err.reason is DenialReason.LEGAL_REFERENCE_NOT_IN_AGREEMENT
    assert LAW_REF in err.violations[0].description


def test_an_agreement_may_require_a_token_authenticated_officer(catalog: Catalog) -> None:
    p = policy(catalog, agreement(officer_token_required=True))
    asserted = dataclasses.replace(
        request(),
        consumer=ConsumerRef(ORG, "Rent subsidies", "officer-7", None, OfficerIdentification.CERTIFICATE),
    )
    err = denied(p, asserted)
    assert err.reason is DenialReason.OFFICER_NOT_AUTHENTICATED
    assert "agr-1" in err.violations[0].description
    authenticated = dataclasses.replace(
        asserted,
        consumer=dataclasses.replace(asserted.consumer, officer_identification=OfficerIdentification.TOKEN),
    )
    assert p.evaluate(authenticated, NOW).allowed


def test_an_agreement_may_require_the_officers_document(catalog: Catalog) -> None:
    """So that the self-query ban cannot be skipped by leaving the document out."""
    p = policy(catalog, agreement(officer_document_required=True))
    err = denied(p, request())
    assert err.reason is DenialReason.OFFICER_DOCUMENT_REQUIRED
    assert p.evaluate(request(officer_document=SubjectId(DocumentType.DNI, "87654321X")), NOW).allowed
    assert denied(p, request(officer_document=SUBJECT)).reason is DenialReason.SELF_QUERY_FORBIDDEN


# --- several agreements, several checks ------------------------------------------------


def test_every_refused_check_is_reported_first_one_decides(catalog: Catalog) -> None:
    p = policy(catalog, vetoes=(Veto("agr-1", "tax", ""),))
    err = denied(p, request(INCOME, TAX, RESIDENCE, INCOME))
    assert [(v.reason, v.subject) for v in err.violations] == [
        (DenialReason.CERTIFICATE_TYPE_NOT_COVERED, INCOME),
        (DenialReason.PROVIDER_VETO, TAX),
    ]
    assert err.reason is DenialReason.CERTIFICATE_TYPE_NOT_COVERED
    assert str(err) == err.violations[0].description


def test_best_candidate_explains_the_denial(catalog: Catalog) -> None:
    expired = agreement(id="agr-old", valid_until=datetime(2025, 6, 1, tzinfo=UTC))
    current = agreement(id="agr-new", legal_references=frozenset({"Ley 12/2023 art. 17"}))
    err = denied(policy(catalog, expired, current), request())
    # The current agreement got furthest: only the cited law is wrong.
    assert err.reason is DenialReason.LEGAL_REFERENCE_NOT_IN_AGREEMENT
    assert "agr-new" in err.violations[0].description


def test_veto_of_every_in_force_agreement(catalog: Catalog) -> None:
    expired = agreement(id="agr-old", valid_until=datetime(2025, 6, 1, tzinfo=UTC))
    err = denied(policy(catalog, expired, agreement(), vetoes=(Veto("agr-1", "tax", ""),)), request(TAX))
    assert err.reason is DenialReason.PROVIDER_VETO


def test_any_satisfying_agreement_allows(catalog: Catalog) -> None:
    law_only = agreement(id="agr-law", legal_bases=frozenset({LAW}))
    consent_only = agreement(id="agr-consent", legal_bases=frozenset({CONSENT}), legal_references=frozenset())
    p = policy(catalog, law_only, consent_only)
    assert p.evaluate(request(kind=CONSENT, reference="CF-1"), NOW).allowed
    assert p.evaluate(request(kind=LAW), NOW).allowed


def test_naive_times_are_refused(catalog: Catalog) -> None:
    with pytest.raises(ValueError):
        assert policy(catalog).evaluate(request(), datetime(2026, 1, 1)).allowed
    with pytest.raises(ValueError, match="agr-1"):
        policy(catalog, agreement(valid_from=datetime(2025, 1, 1)))


# --- the shipped demo agreements -------------------------------------------------------


SEED = resources.files("onceonly.broker").joinpath("data/agreements.toml")


def parsed_demo_snapshot(catalog: Catalog) -> PolicySnapshot:
    orgs, agreements, vetoes = parse_seed(tomllib.loads(SEED.read_text("utf-8")), "agreements.toml", catalog)
    return PolicySnapshot({o.id: o for o in orgs}, tuple(agreements), tuple(vetoes))


def test_demo_agreements(catalog: Catalog) -> None:
    assert_demo_decisions(Policy(parsed_demo_snapshot(catalog), catalog))


def test_demo_agreements_through_the_database(catalog: Catalog, database_url: str) -> None:
    """The same decisions when the agreements went through the policy store and back."""
    engine = create_engine(database_url)
    try:
        init_schema(engine)
        store = PolicyStore(engine)
        store.seed_from_file(Path(str(SEED)), catalog)
        stored = store.load_snapshot()
    finally:
        engine.dispose()
    parsed = parsed_demo_snapshot(catalog)
    assert stored.organisations == parsed.organisations
    # What policy enforces; the consulted data-protection officer lives in the recorded terms.
    enforced = [dataclasses.replace(a, data_protection_officer="") for a in parsed.agreements]
    assert sorted(stored.agreements, key=lambda a: a.id) == sorted(enforced, key=lambda a: a.id)
    assert set(stored.vetoes) == set(parsed.vetoes)
    assert all(a.valid_from.tzinfo == UTC for a in stored.agreements)
    assert_demo_decisions(Policy(stored, catalog))


def assert_demo_decisions(p: Policy) -> None:
    # Madrid, rent subsidy: both laws of the agreement may be cited.
    assert p.evaluate(request(RESIDENCE, TAX, INCOME, reference="Ley 12/2023 art. 17"), NOW).allowed
    # valid_until = 2030-12-31 is inclusive: the agreement ends at the following midnight.
    assert p.evaluate(request(), datetime(2030, 12, 31, 23, 59, tzinfo=UTC)).allowed
    late = denied(p, request(), datetime(2031, 1, 1, tzinfo=UTC))
    assert late.reason is DenialReason.AGREEMENT_NOT_IN_FORCE
    # Barcelona: the tax agency vetoed the agreement, the register did not.
    assert p.evaluate(request(RESIDENCE, org="L08019030"), NOW).allowed
    assert denied(p, request(TAX, org="L08019030")).reason is DenialReason.PROVIDER_VETO
    # Emergency aid needs the resident's consent.
    emergency = "SOCIAL-EMERGENCY-AID"
    assert denied(p, request(procedure=emergency)).reason is DenialReason.CONSENT_REQUIRED
    assert p.evaluate(request(INCOME, procedure=emergency, kind=CONSENT, reference="CF-7"), NOW).allowed
    # The employment service, by law only, for its own types.
    unemployed = "employment.unemployment-status/v1"
    jobs = request(SOCIAL_SECURITY, unemployed, org="E04990101", procedure="JOB-SEEKER-SUPPORT")
    assert denied(p, jobs).reason is DenialReason.LEGAL_REFERENCE_NOT_IN_AGREEMENT
    jobs = dataclasses.replace(jobs, legal_basis=LegalBasis(LAW, "Ley 3/2023 art. 3"))
    assert p.evaluate(jobs, NOW).allowed
    jobs = dataclasses.replace(jobs, checks=(CheckRequest(RESIDENCE),))
    assert denied(p, jobs).reason is DenialReason.CERTIFICATE_TYPE_NOT_COVERED


def test_no_objection_is_allowed_only_where_the_agreement_and_the_catalog_say_so(catalog: Catalog) -> None:
    """SCSP's NoOpo: the resident was told and did not object. An agreement must list it, and so
    must the certificate type; consent-only agreements are not satisfied by it."""
    notice = "Notice sent with the application form, 2026-03-02"
    req = request(RESIDENCE, kind=LegalBasisKind.NO_OBJECTION, reference=notice)
    err = denied(policy(catalog), req)  # the default agreement allows LAW and CONSENT
    assert (
        err.reason is DenialReason.LEGAL_BASIS_NOT_ALLOWED and "NO_OBJECTION" in err.violations[0].description
    )
    allowing = agreement(legal_bases=frozenset({LAW, LegalBasisKind.NO_OBJECTION}))
    assert policy(catalog, allowing).evaluate(req, NOW).allowed
    consent_only = agreement(
        legal_bases=frozenset({LegalBasisKind.NO_OBJECTION, CONSENT}), consent_required=True
    )
    assert denied(policy(catalog, consent_only), req).reason is DenialReason.CONSENT_REQUIRED
    law_only_type = request(SOCIAL_SECURITY, kind=LegalBasisKind.NO_OBJECTION, reference=notice)
    assert denied(policy(catalog, allowing), law_only_type).reason is DenialReason.LEGAL_BASIS_NOT_ALLOWED
