"""Reference adapter: the Population Register (padrón), over the synthetic population."""

from __future__ import annotations

import re
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

RESIDENCE = "registry.residence/v1"
HOUSEHOLD = "registry.household/v1"

_MUNICIPALITY_CODE = re.compile(r"^[0-9]{5}$")

_SUPPORTED = (
    CertificateTypeSupport(
        RESIDENCE,
        parameters=(
            FieldSpec("municipality_code", FieldType.STRING, True, "INE municipality code, 5 digits"),
        ),
        claims=(
            FieldSpec("registered", FieldType.BOOLEAN, True, "Registered as resident in the municipality"),
        ),
    ),
    CertificateTypeSupport(
        HOUSEHOLD,
        parameters=(),
        claims=(
            FieldSpec(
                "household_size", FieldType.INTEGER, True, "People registered at the subject's address"
            ),
        ),
    ),
)


class PopulationRegister(ProviderAdapter):
    """Registered residence and household size, answered from the synthetic population."""

    provider_id = "registry"
    name = "Population Register"

    def __init__(
        self, *, population_size: int = synthetic.DEFAULT_SIZE, seed: int = synthetic.DEFAULT_SEED
    ) -> None:
        self._residents = synthetic.index(lambda r: r.known_to_registry, population_size, seed)

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        """Residence in a municipality and household size."""
        return _SUPPORTED

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        """Answer from the register; residents it does not hold are ``SubjectNotFound``."""
        resident = self._residents.get((query.document_type, query.document_number))
        if resident is None:
            raise SubjectNotFound(query.certificate_type_id)
        if query.certificate_type_id == RESIDENCE:
            code = query.parameters["municipality_code"]
            if not _MUNICIPALITY_CODE.match(code):
                raise InvalidQuery("municipality_code", "must be a 5-digit INE code")
            return {"registered": resident.municipality_code == code}
        return {"household_size": resident.household_size}
