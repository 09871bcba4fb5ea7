"""The reference adapters by name, for the CLI, demos and tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from onceonly.providers.employment import EmploymentService
from onceonly.providers.registry import PopulationRegister
from onceonly.providers.sdk import AttestQuery, CertificateTypeSupport, Deferred, ProviderAdapter
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


class DeferringAdapter(ProviderAdapter):
    """A testing aid (``onceonly serve provider NAME --defer-s N``): ``inner`` answering every
    check ``defer_s`` later, the way an agency that answers in hours does: ``attest`` says when
    (:class:`Deferred`), ``collect`` gives the answer from then on."""

    def __init__(
        self,
        inner: ProviderAdapter,
        defer_s: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if defer_s <= 0:
            raise ValueError("defer_s must be positive")
        self.inner = inner
        self.defer = dt.timedelta(seconds=defer_s)
        self.provider_id = inner.provider_id
        self.name = inner.name
        self._clock = clock
        self._ready: dict[str, dt.datetime] = {}

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        return self.inner.certificate_types()

    async def health(self) -> str | None:
        return await self.inner.health()

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        ticket = uuid.uuid4().hex
        ready_at = self._clock() + self.defer
        self._ready[ticket] = ready_at
        raise Deferred(ready_at, ticket)

    async def collect(self, query: AttestQuery, ticket: str) -> Mapping[str, Any]:
        ready_at = self._ready.get(ticket)
        if ready_at is None:  # not ours (a restart): start over
            return await self.attest(query)
        if self._clock() < ready_at:
            raise Deferred(ready_at, ticket)
        del self._ready[ticket]
        return await self.inner.attest(query)
