"""The catalog of certificate types and providers, declared in a TOML data file."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from onceonly.broker.domain import LegalBasisKind
from onceonly.broker.errors import CatalogError
from onceonly.fields import FieldSpec, FieldType


@dataclass(frozen=True, slots=True)
class ProviderDef:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CertificateTypeDef:
    """A shared, versioned definition of a fact that a provider can attest."""

    id: str
    title: str
    description: str
    provider_id: str
    parameters: tuple[FieldSpec, ...]
    claims: tuple[FieldSpec, ...]
    legal_bases: frozenset[LegalBasisKind]
    attests_value: bool

    def parameter(self, name: str) -> FieldSpec | None:
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: Mapping[str, ProviderDef]
    certificate_types: Mapping[str, CertificateTypeDef]

    def get(self, certificate_type_id: str) -> CertificateTypeDef | None:
        return self.certificate_types.get(certificate_type_id)

    def served_by(self, provider_id: str) -> list[CertificateTypeDef]:
        return [c for c in self.certificate_types.values() if c.provider_id == provider_id]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalog:
        """Load a catalog file; without a path, the one shipped with the broker."""
        if path is None:
            text = resources.files("onceonly.broker").joinpath("data/catalog.toml").read_text("utf-8")
            source = "broker/data/catalog.toml"
        else:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as exc:
                raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
            source = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{source}: {exc}") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "catalog") -> Catalog:
        providers: dict[str, ProviderDef] = {}
        for entry in data.get("providers", []):
            pid = _required(entry, "id", source)
            if pid in providers:
                raise CatalogError(f"{source}: provider {pid!r} declared twice")
            providers[pid] = ProviderDef(pid, _required(entry, "name", source))
        types: dict[str, CertificateTypeDef] = {}
        for entry in data.get("certificate_types", []):
            cid = _required(entry, "id", source)
            where = f"{source}: certificate type {cid!r}"
            if cid in types:
                raise CatalogError(f"{where} declared twice")
            provider = _required(entry, "provider", where)
            if provider not in providers:
                raise CatalogError(f"{where} names unknown provider {provider!r}")
            try:
                bases = frozenset(LegalBasisKind(b) for b in entry.get("legal_bases", []))
            except ValueError as exc:
                raise CatalogError(f"{where}: {exc}") from None
            if not bases:
                raise CatalogError(f"{where} allows no legal basis")
            types[cid] = CertificateTypeDef(
                id=cid,
                title=_required(entry, "title", where),
                description=entry.get("description", ""),
                provider_id=provider,
                parameters=_fields(entry.get("parameters", []), where),
                claims=_fields(entry.get("claims", []), where),
                legal_bases=bases,
                attests_value=bool(entry.get("attests_value", False)),
            )
        if not types:
            raise CatalogError(f"{source}: no certificate types")
        return cls(providers, types)


def _required(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}: missing {key!r}")
    return value


def _fields(entries: Iterable[Mapping[str, Any]], where: str) -> tuple[FieldSpec, ...]:
    out = []
    for e in entries:
        name = _required(e, "name", where)
        try:
            ftype = FieldType(e.get("type", ""))
        except ValueError:
            raise CatalogError(f"{where}: field {name!r} has unknown type {e.get('type')!r}") from None
        out.append(FieldSpec(name, ftype, bool(e.get("required", True)), e.get("description", "")))
    return tuple(out)
