"""An example caseworker application: rent-subsidy eligibility at a housing office.

The office asks the broker four facts instead of four paper certificates, applies its own
eligibility rules to the attested answers, and keeps the attestations in the case file.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onceonly.consumers.client import (
    BrokerClient,
    Check,
    Consumer,
    Denied,
    LegalBasis,
    Purpose,
    Subject,
    Verification,
)

PROCEDURE = "HOUSING-RENT-SUBSIDY"
LAW = "Ley 12/2023 art. 17"
INCOME_THRESHOLD_EUR = 18_000


class Eligibility(enum.StrEnum):
    ELIGIBLE = "ELIGIBLE"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    # A fact could not be verified (provider down, subject unknown): ask for paper instead.
    NEEDS_MANUAL_REVIEW = "NEEDS_MANUAL_REVIEW"
    DENIED = "DENIED"


@dataclass(frozen=True)
class Rule:
    """One eligibility condition over one certificate type's claims."""

    certificate_type_id: str
    description: str
    parameters: Mapping[str, str]
    holds: Any  # Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class HousingOffice:
    """The consumer: a municipal housing office and its rent-subsidy rules."""

    organization_id: str = "L01280796"
    unit: str = "Housing subsidies"
    municipality_code: str = "28079"

    def rules(self) -> list[Rule]:
        return [
            Rule(
                "registry.residence/v1",
                f"registered resident of {self.municipality_code}",
                {"municipality_code": self.municipality_code},
                lambda c: c["registered"] is True,
            ),
            Rule(
                "tax.compliance/v1", "up to date with tax obligations", {}, lambda c: c["compliant"] is True
            ),
            Rule(
                "tax.income-below-threshold/v1",
                f"income below {INCOME_THRESHOLD_EUR:,} EUR",
                {"threshold_eur": str(INCOME_THRESHOLD_EUR)},
                lambda c: c["below_threshold"] is True,
            ),
            Rule(
                "employment.unemployment-status/v1",
                "registered as unemployed",
                {},
                lambda c: c["registered_unemployed"] is True,
            ),
        ]


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    status: str  # the check status from the broker
    satisfied: bool | None  # None when the fact could not be verified
    attestation: str


@dataclass(frozen=True)
class Assessment:
    subject: Subject
    eligibility: Eligibility
    results: tuple[RuleResult, ...]
    verification: Verification | None = None
    denial: Denied | None = None


async def assess(
    client: BrokerClient,
    office: HousingOffice,
    subject: Subject,
    *,
    officer_id: str,
    case_file_id: str,
    procedure: str = PROCEDURE,
) -> Assessment:
    """Ask the broker for every fact the rules need and decide the application."""
    rules = office.rules()
    try:
        verification = await client.verify(
            consumer=Consumer(office.organization_id, office.unit, officer_id),
            purpose=Purpose(procedure, "Eligibility check for a rent subsidy application", case_file_id),
            legal_basis=LegalBasis.law(LAW),
            subject=subject,
            checks=[Check(r.certificate_type_id, dict(r.parameters)) for r in rules],
        )
    except Denied as denied:
        return Assessment(subject, Eligibility.DENIED, (), denial=denied)
    results = []
    for rule in rules:
        outcome = verification.outcome(rule.certificate_type_id)
        satisfied = bool(rule.holds(outcome.claims)) if outcome.verified else None
        results.append(RuleResult(rule, outcome.status, satisfied, outcome.attestation))
    if any(r.satisfied is False for r in results):
        eligibility = Eligibility.NOT_ELIGIBLE
    elif any(r.satisfied is None for r in results):
        eligibility = Eligibility.NEEDS_MANUAL_REVIEW
    else:
        eligibility = Eligibility.ELIGIBLE
    return Assessment(subject, eligibility, tuple(results), verification)
