"""The reference adapters by name, for the CLI, demos and tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from onceonly.providers.employment import EmploymentService
from onceonly.providers.registry import PopulationRegister
from onceonly.providers.sdk import AttestQuery, CertificateTypeSupport, ProviderAdapter
from onceonly.providers.tax import TaxAgency

REFERENCE_ADAPTERS: dict[str, Callable[[], ProviderAdapter]] = {
    "registry": PopulationRegister,
    "tax": TaxAgency,
    "employment": EmploymentService,
}
"""Provider id → constructor of the reference adapter over the default synthetic population."""


def reference_adapter(name: str) -> ProviderAdapter:
    """A new reference adapter for provider id ``name``; ``KeyError`` naming the known ids."""
    try:
        factory = REFERENCE_ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(REFERENCE_ADAPTERS))
        raise KeyError(f"no reference adapter {name!r}; known: {known}") from None
    return factory()


class DelayedAdapter(ProviderAdapter):
    """A testing aid (``onceonly serve provider NAME --delay-ms N``): ``inner`` answering every
    check ``delay_s`` late, to rehearse a slow agency (deadlines, circuit breaker, soak)."""

    def __init__(self, inner: ProviderAdapter, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.provider_id = inner.provider_id
        self.name = inner.name

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        return self.inner.certificate_types()

    async def health(self) -> str | None:
        return await self.inner.health()

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        await asyncio.sleep(self.delay_s)
        return await self.inner.attest(query)
