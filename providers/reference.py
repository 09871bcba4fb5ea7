"""The reference adapters by name, for the CLI, demos and tests."""

from __future__ import annotations

from collections.abc import Callable

from providers.employment import EmploymentService
from providers.registry import PopulationRegister
from providers.sdk import ProviderAdapter
from providers.tax import TaxAgency

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
