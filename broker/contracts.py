"""Provider contracts: does each provider serve what the catalog says it does?

Every provider's ``Describe`` is compared with the catalog at start-up (a disagreement stops the
broker) and, for a provider unreachable then, on first use (its checks fail with the reason until
it agrees). A provider's evidence certificate is registered from its description.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from onceonly.broker.catalog import Catalog
from onceonly.broker.errors import CatalogError
from onceonly.broker.ports import EvidenceCheck
from onceonly.broker.providers import ProviderClient, ProviderDescription, ProviderError
from onceonly.evidence import EvidenceError
from onceonly.fields import FieldSpec

__all__ = ["ProviderContracts", "describe_mismatches"]

log = logging.getLogger(__name__)


def describe_mismatches(catalog: Catalog, provider_id: str, description: ProviderDescription) -> list[str]:
    """What differs between the catalog and what a provider says it serves (empty: agree)."""
    problems = []
    if description.provider_id != provider_id:
        problems.append(f"provider says it is {description.provider_id!r}, catalog expects {provider_id!r}")
    offered = {t.certificate_type_id: t for t in description.certificate_types}
    for definition in catalog.served_by(provider_id):
        served = offered.get(definition.id)
        if served is None:
            problems.append(f"{definition.id} is not served by {provider_id}")
            continue
        for kind, ours, theirs in (
            ("parameters", definition.parameters, served.parameters),
            ("claims", definition.claims, served.claims),
        ):
            if sorted(ours, key=lambda s: s.name) != sorted(theirs, key=lambda s: s.name):
                problems.append(
                    f"{definition.id}: {kind} differ (catalog {_names(ours)}, provider {_names(theirs)})"
                )
    return problems


def _names(specs: Sequence[FieldSpec]) -> str:
    return ", ".join(f"{s.name}:{s.type.value}{'' if s.required else '?'}" for s in specs) or "none"


class ProviderContracts:
    """Whether each provider agrees with the catalog: not yet known, agrees, or why not."""

    def __init__(
        self, catalog: Catalog, providers: Mapping[str, ProviderClient], evidence: EvidenceCheck | None
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._evidence = evidence
        # None = not yet compared, "" = agrees, text = the mismatch.
        self._state: dict[str, str | None] = dict.fromkeys(catalog.providers)
        # One lock per provider: an unreachable provider does not hold up the others' first contact.
        self._locks = {pid: asyncio.Lock() for pid in catalog.providers}

    async def check_all(self, timeout: float = 3.0) -> dict[str, str]:
        """Compare every reachable provider's ``Describe`` with the catalog.

        Returns provider id → "ok" or why it could not be reached. A provider that answers
        but disagrees with the catalog raises ``CatalogError``: serving would be wrong.
        """
        states = await asyncio.gather(*(self._compare(pid, timeout) for pid in self._catalog.providers))
        mismatches = [
            f"{pid}: {state}" for pid, state in zip(self._catalog.providers, states, strict=True) if state
        ]
        if mismatches:
            raise CatalogError(
                "providers failed the start-up check against the catalog: " + "; ".join(mismatches)
            )
        return {
            pid: "ok" if self._state[pid] == "" else "unreachable; compared on first use"
            for pid in self._catalog.providers
        }

    async def problem(self, provider_id: str, timeout: float) -> str:
        """Why ``provider_id`` cannot be used ("" when it agrees, or cannot be reached to tell)."""
        if self._state.get(provider_id) is None:
            async with self._locks[provider_id]:
                if self._state.get(provider_id) is None:
                    await self._compare(provider_id, timeout)
        return self._state.get(provider_id) or ""

    def forget(self, provider_id: str) -> None:
        """Describe ``provider_id`` again on its next use (it may have a new certificate)."""
        self._state[provider_id] = None

    async def _compare(self, provider_id: str, timeout: float) -> str:
        client = self._providers.get(provider_id)
        if client is None:
            return ""
        try:
            description = await client.describe(timeout)
        except ProviderError as exc:
            log.warning("provider unreachable", extra={"provider": provider_id, "error": str(exc)})
            return ""
        problems = describe_mismatches(self._catalog, provider_id, description)
        if self._evidence is not None:
            try:
                self._evidence.register(provider_id, description.evidence_certificate)
            except EvidenceError as exc:
                problems.append(f"evidence certificate refused: {exc}")
        self._state[provider_id] = "; ".join(problems)
        return self._state[provider_id] or ""
