"""The catalog of certificate types and providers, declared in a TOML data file: the platform's shared
definitions. Each type has its titles and descriptions (English, and Spanish as ``title_es``,
``description_es``), the JSON Schemas of its parameters and claims, and its version history: when
it was ``introduced``, and for a deprecated version the ``sunset`` (the last day it is served) and
the version that ``replaced_by`` it. A type past its sunset is refused by policy, naming its
replacement."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    titles: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Language → title ("en" is ``title``; "es" from ``title_es``)."""
    descriptions: Mapping[str, str] = field(default_factory=dict, hash=False)
    introduced: dt.date | None = None
    """When this version was published."""
    sunset: dt.date | None = None
    """The last day it is served; from the day after, requests for it are refused."""
    replaced_by: str = ""
    """The version that replaces it (when deprecated)."""

    def parameter(self, name: str) -> FieldSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    def retired(self, now: dt.datetime) -> bool:
        """Past its sunset date (UTC)."""
        return self.sunset is not None and now.astimezone(dt.UTC).date() > self.sunset

    def parameters_schema(self) -> dict[str, Any]:
        """The JSON Schema (2020-12) of the parameters, as the broker reads them (text values typed
        by the catalog: integers, booleans and dates arrive as their JSON form here)."""
        return json_schema(self.parameters, f"{self.id} parameters")

    def claims_schema(self) -> dict[str, Any]:
        """The JSON Schema (2020-12) of the claims a provider answers."""
        return json_schema(self.claims, f"{self.id} claims")


_JSON_TYPES = {
    FieldType.STRING: {"type": "string"},
    FieldType.INTEGER: {"type": "integer"},
    FieldType.BOOLEAN: {"type": "boolean"},
    FieldType.DATE: {"type": "string", "format": "date"},
}


def json_schema(fields: Iterable[FieldSpec], title: str) -> dict[str, Any]:
    """A JSON Schema (2020-12) of an object with ``fields``: no other property allowed."""
    specs = list(fields)
    properties = {
        f.name: {**_JSON_TYPES[f.type], **({"description": f.description} if f.description else {})}
        for f in specs
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "required": [f.name for f in specs if f.required],
        "additionalProperties": False,
    }


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
            title = _required(entry, "title", where)
            description = entry.get("description", "")
            titles, descriptions = {"en": title}, {"en": description}
            for lang in LANGUAGES:
                if entry.get(f"title_{lang}"):
                    titles[lang] = str(entry[f"title_{lang}"])
                if entry.get(f"description_{lang}"):
                    descriptions[lang] = str(entry[f"description_{lang}"])
            replaced_by = entry.get("replaced_by", "")
            if not isinstance(replaced_by, str):
                raise CatalogError(f"{where}: 'replaced_by' must be a certificate type id")
            types[cid] = CertificateTypeDef(
                id=cid,
                title=title,
                description=description,
                provider_id=provider,
                parameters=_fields(entry.get("parameters", []), where),
                claims=_fields(entry.get("claims", []), where),
                legal_bases=bases,
                attests_value=bool(entry.get("attests_value", False)),
                titles=titles,
                descriptions=descriptions,
                introduced=_date(entry, "introduced", where),
                sunset=_date(entry, "sunset", where),
                replaced_by=replaced_by,
            )
        if not types:
            raise CatalogError(f"{source}: no certificate types")
        for c in types.values():
            if c.replaced_by and c.replaced_by not in types:
                raise CatalogError(
                    f"{source}: certificate type {c.id!r} is replaced by unknown {c.replaced_by!r}"
                )
        return cls(providers, types)


LANGUAGES = ("es",)
"""Languages besides English that titles and descriptions may be given in (``title_es``…)."""


def _date(entry: Mapping[str, Any], key: str, where: str) -> dt.date | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CatalogError(f"{where}: {key!r} must be a date YYYY-MM-DD") from None


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
