"""The example caseworker application deciding rent-subsidy applications through the broker."""

from __future__ import annotations

from onceonly.broker.app import BrokerApp
from onceonly.consumers.caseworker import INCOME_THRESHOLD_EUR, Eligibility, HousingOffice, assess
from onceonly.consumers.client import BrokerClient, Subject
from onceonly.providers import synthetic
from tests.conftest import Platform, resident

OFFICE = HousingOffice()


def _qualifies(r: synthetic.Resident) -> bool:
    return r.municipality_code == OFFICE.municipality_code and r.tax_compliant and r.registered_unemployed


def _eligible() -> synthetic.Resident:
    return resident(lambda r: _qualifies(r) and r.income(synthetic.LATEST_FISCAL_YEAR) < INCOME_THRESHOLD_EUR)


def _subject(r: synthetic.Resident) -> Subject:
    return Subject(r.document_type, r.document_number)


async def test_eligible_applicant(client: BrokerClient) -> None:
    a = await assess(client, OFFICE, _subject(_eligible()), officer_id="officer-1", case_file_id="EXP-1")

    assert a.eligibility is Eligibility.ELIGIBLE
    assert [r.satisfied for r in a.results] == [True] * 4
    assert all(r.status == "VERIFIED" and r.attestation for r in a.results)
    assert a.verification is not None and a.denial is None


async def test_income_above_the_threshold_is_not_eligible(client: BrokerClient) -> None:
    r = resident(lambda r: _qualifies(r) and r.income(synthetic.LATEST_FISCAL_YEAR) >= INCOME_THRESHOLD_EUR)

    a = await assess(client, OFFICE, _subject(r), officer_id="officer-1", case_file_id="EXP-2")

    assert a.eligibility is Eligibility.NOT_ELIGIBLE
    failed = [res.rule.certificate_type_id for res in a.results if res.satisfied is False]
    assert failed == ["tax.income-below-threshold/v1"]


async def test_a_stopped_provider_means_manual_review(platform: Platform, broker: BrokerApp) -> None:
    await platform.providers["employment"].stop(0)

    a = await assess(
        platform.client(broker), OFFICE, _subject(_eligible()), officer_id="o-1", case_file_id="EXP-3"
    )

    assert a.eligibility is Eligibility.NEEDS_MANUAL_REVIEW
    unknown = {res.rule.certificate_type_id: res.status for res in a.results if res.satisfied is None}
    assert unknown == {"employment.unemployment-status/v1": "UNAVAILABLE"}


async def test_a_procedure_without_agreement_is_denied(platform: Platform, client: BrokerClient) -> None:
    a = await assess(
        client,
        OFFICE,
        _subject(_eligible()),
        officer_id="officer-1",
        case_file_id="EXP-4",
        procedure="PARKING-PERMIT",
    )

    assert a.eligibility is Eligibility.DENIED
    assert a.results == ()
    assert a.denial is not None
    assert a.denial.reason == "PROCEDURE_NOT_AUTHORISED"
    (row,) = platform.trace_rows(decision="DENIED")
    assert a.denial.trace_id == row["trace_id"]
