"""Reference adapter: the Employment and Social Security Service, over the synthetic population."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onceonly.fields import FieldSpec, FieldType
from onceonly.providers import synthetic
from onceonly.providers.sdk import AttestQuery, CertificateTypeSupport, ProviderAdapter, SubjectNotFound

UNEMPLOYMENT_STATUS = "employment.unemployment-status/v1"
SOCIAL_SECURITY_COMPLIANCE = "employment.social-security-compliance/v1"

_SUPPORTED = (
    CertificateTypeSupport(
        UNEMPLOYMENT_STATUS,
        parameters=(),
        claims=(
            FieldSpec("registered_unemployed", FieldType.BOOLEAN, True, "Registered as unemployed today"),
        ),
    ),
    CertificateTypeSupport(
        SOCIAL_SECURITY_COMPLIANCE,
        parameters=(),
        claims=(FieldSpec("compliant", FieldType.BOOLEAN, True, "No overdue contributions"),),
    ),
)


class EmploymentService(ProviderAdapter):
    """Unemployment registration and social-security compliance from the synthetic population."""

    provider_id = "employment"
    name = "Employment and Social Security Service"

    def __init__(
        self, *, population_size: int = synthetic.DEFAULT_SIZE, seed: int = synthetic.DEFAULT_SEED
    ) -> None:
        self._residents = synthetic.index(lambda r: r.known_to_employment, population_size, seed)

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        """Unemployment status and social-security compliance."""
        return _SUPPORTED

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        """Answer from the service's records; unknown people are ``SubjectNotFound``."""
        resident = self._residents.get((query.document_type, query.document_number))
        if resident is None:
            raise SubjectNotFound(query.certificate_type_id)
        if query.certificate_type_id == UNEMPLOYMENT_STATUS:
            return {"registered_unemployed": resident.registered_unemployed}
        return {"compliant": resident.social_security_compliant}
