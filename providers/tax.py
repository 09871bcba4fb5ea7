"""Reference adapter: the Tax Agency, over the synthetic population.

Data minimisation: the agency answers whether income is below a threshold, never the
income itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onceonly.fields import FieldSpec, FieldType
from onceonly.providers import synthetic
from onceonly.providers.sdk import (
    AttestQuery,
    CertificateTypeSupport,
    InvalidQuery,
    ProviderAdapter,
    SubjectNotFound,
)

COMPLIANCE = "tax.compliance/v1"
INCOME_BELOW_THRESHOLD = "tax.income-below-threshold/v1"

_SUPPORTED = (
    CertificateTypeSupport(
        COMPLIANCE,
        parameters=(),
        claims=(FieldSpec("compliant", FieldType.BOOLEAN, True, "No overdue tax debt or return"),),
    ),
    CertificateTypeSupport(
        INCOME_BELOW_THRESHOLD,
        parameters=(
            FieldSpec("threshold_eur", FieldType.INTEGER, True, "Threshold in whole euros"),
            FieldSpec(
                "fiscal_year", FieldType.INTEGER, False, "Fiscal year; the latest closed one if absent"
            ),
        ),
        claims=(
            FieldSpec(
                "below_threshold", FieldType.BOOLEAN, True, "Declared income strictly below the threshold"
            ),
            FieldSpec("fiscal_year", FieldType.INTEGER, True, "The fiscal year the answer refers to"),
        ),
    ),
)


class TaxAgency(ProviderAdapter):
    """Tax compliance and income-below-threshold, answered from the synthetic population."""

    provider_id = "tax"
    name = "Tax Agency"

    def __init__(
        self, *, population_size: int = synthetic.DEFAULT_SIZE, seed: int = synthetic.DEFAULT_SEED
    ) -> None:
        self._residents = synthetic.index(lambda r: r.known_to_tax, population_size, seed)

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        """Tax compliance and income below a threshold."""
        return _SUPPORTED

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        """Answer from the agency's records; unknown taxpayers are ``SubjectNotFound``."""
        resident = self._residents.get((query.document_type, query.document_number))
        if resident is None:
            raise SubjectNotFound(query.certificate_type_id)
        if query.certificate_type_id == COMPLIANCE:
            return {"compliant": resident.tax_compliant}
        threshold: int = query.parameters["threshold_eur"]
        if threshold < 0:
            raise InvalidQuery("threshold_eur", "must not be negative")
        year: int = query.parameters.get("fiscal_year", synthetic.LATEST_FISCAL_YEAR)
        if year not in synthetic.FISCAL_YEARS:
            held = ", ".join(str(y) for y in synthetic.FISCAL_YEARS)
            raise InvalidQuery("fiscal_year", f"no data for fiscal year {year}; held: {held}")
        return {"below_threshold": resident.income(year) < threshold, "fiscal_year": year}
