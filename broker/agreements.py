"""The policy store: organisations, data-sharing agreements and provider vetoes.

Agreements live in the database; a TOML seed file (``broker/data/agreements.toml``)
declares the demo set. The policy engine reads an immutable ``PolicySnapshot``.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import (
    Agreement,
    LegalBasisKind,
    MasterAgreement,
    Organisation,
    PolicySnapshot,
    Veto,
)
from onceonly.broker.storage import AgreementRow, OrganisationRow, VetoRow
from onceonly.vocabulary import Disclosure, OrganisationKind

__all__ = [
    "PolicyStore",
    "agreement_from_terms",
    "agreement_terms",
    "agreement_to_values",
    "parse_agreement",
    "parse_masters",
    "parse_seed",
    "recorded_terms",
]


class PolicyStore:
    """Reads and writes organisations, agreements and vetoes."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def load_snapshot(self) -> PolicySnapshot:
        """Everything the policy engine needs, as domain objects (UTC-aware datetimes)."""
        with Session(self._engine) as session:
            orgs = session.exec(select(OrganisationRow).order_by(OrganisationRow.id)).all()
            agreements = session.exec(select(AgreementRow).order_by(AgreementRow.id)).all()
            vetoes = session.exec(select(VetoRow).order_by(VetoRow.agreement_id, VetoRow.provider_id)).all()
            return PolicySnapshot(
                organisations={o.id: _organisation_from_row(o) for o in orgs},
                agreements=tuple(_agreement_from_row(a) for a in agreements),
                vetoes=tuple(Veto(v.agreement_id, v.provider_id, v.reason) for v in vetoes),
            )

    def seed_from_file(self, path: str | Path, catalog: Catalog | None = None) -> int:
        """Upsert the organisations, agreements and vetoes of a TOML seed file.

        The whole file is validated before anything is written, and written in one
        transaction, so a bad file changes nothing. Entries are keyed by id (vetoes by
        agreement and provider), so seeding the same file twice is harmless. With a
        ``catalog``, certificate types and providers are checked against it too.
        Returns the number of entries written. Raises ``ValueError`` naming the file and
        the entry on a bad file.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read seed file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from None
        orgs, agreements, vetoes = parse_seed(data, str(path), catalog)
        with Session(self._engine) as session, session.begin():
            known_orgs = {o.id for o in orgs} | set(session.exec(select(OrganisationRow.id)).all())
            known_agreements = {a.id for a in agreements} | set(session.exec(select(AgreementRow.id)).all())
            for a in agreements:
                if a.organization_id not in known_orgs:
                    raise ValueError(
                        f"{path}: agreement {a.id!r} names unknown organisation {a.organization_id!r}"
                    )
            for v in vetoes:
                if v.agreement_id not in known_agreements:
                    raise ValueError(
                        f"{path}: veto by {v.provider_id!r} names unknown agreement {v.agreement_id!r}"
                    )
            for o in orgs:
                _upsert_organisation(session, o)
            # Flush parents first: the agreement and veto foreign keys are enforced.
            session.flush()
            for a in agreements:
                session.merge(_agreement_to_row(a))
            session.flush()
            for v in vetoes:
                _upsert_veto(session, v)
        return len(orgs) + len(agreements) + len(vetoes)

    def add_organisation(self, organisation: Organisation) -> None:
        """Insert or update an organisation."""
        with Session(self._engine) as session, session.begin():
            _upsert_organisation(session, organisation)

    def add_agreement(self, agreement: Agreement) -> None:
        """Insert or update an agreement; its organisation must exist."""
        with Session(self._engine) as session, session.begin():
            session.merge(_agreement_to_row(agreement))

    def add_veto(self, veto: Veto) -> None:
        """Record (or re-word) a provider's veto over an agreement."""
        with Session(self._engine) as session, session.begin():
            _upsert_veto(session, veto)

    def remove_veto(self, agreement_id: str, provider_id: str) -> bool:
        """Lift a veto; returns whether there was one."""
        with Session(self._engine) as session, session.begin():
            row = session.exec(
                select(VetoRow).where(
                    VetoRow.agreement_id == agreement_id, VetoRow.provider_id == provider_id
                )
            ).first()
            if row is None:
                return False
            session.delete(row)
            return True


def parse_seed(
    data: Mapping[str, Any], source: str = "seed", catalog: Catalog | None = None
) -> tuple[list[Organisation], list[Agreement], list[Veto]]:
    """Validate a parsed seed document into domain objects; ``ValueError`` names the entry.

    Dates are whole days in UTC: ``valid_from`` starts at its midnight and ``valid_until``
    is inclusive (the agreement ends at the midnight after it), as people read them.
    """
    unknown = set(data) - {"organisations", "master_agreements", "agreements", "vetoes"}
    if unknown:
        raise ValueError(f"{source}: unknown sections {sorted(unknown)}")
    orgs: dict[str, Organisation] = {}
    for i, entry in enumerate(_tables(data, "organisations", source)):
        where = f"{source}: organisations[{i}]"
        oid = _text(entry, "id", where)
        where = f"{source}: organisation {oid!r}"
        if oid in orgs:
            raise ValueError(f"{where} declared twice")
        kind_text = entry.get("kind", OrganisationKind.CONSUMER.value)
        try:
            kind = OrganisationKind(kind_text)
        except ValueError:
            raise ValueError(
                f"{where}: 'kind' must be one of {[k.value for k in OrganisationKind]}"
            ) from None
        contact = entry.get("contact", "")
        if not isinstance(contact, str):
            raise ValueError(f"{where}: 'contact' must be a string")
        orgs[oid] = Organisation(oid, _text(entry, "name", where), kind, contact)

    agreements: dict[str, Agreement] = {}
    for i, entry in enumerate(_tables(data, "agreements", source)):
        aid = _text(entry, "id", f"{source}: agreements[{i}]")
        where = f"{source}: agreement {aid!r}"
        if aid in agreements:
            raise ValueError(f"{where} declared twice")
        agreements[aid] = parse_agreement(aid, entry, where, catalog)

    vetoes: dict[tuple[str, str], Veto] = {}
    for i, entry in enumerate(_tables(data, "vetoes", source)):
        where = f"{source}: vetoes[{i}]"
        veto = Veto(
            _text(entry, "agreement", where), _text(entry, "provider", where), entry.get("reason", "")
        )
        if not isinstance(veto.reason, str):
            raise ValueError(f"{where}: 'reason' must be a string")
        if catalog is not None and veto.provider_id not in catalog.providers:
            raise ValueError(f"{where} names unknown provider {veto.provider_id!r}")
        key = (veto.agreement_id, veto.provider_id)
        if key in vetoes:
            raise ValueError(f"{where} repeats the veto of {key[1]!r} over {key[0]!r}")
        vetoes[key] = veto
    return list(orgs.values()), list(agreements.values()), list(vetoes.values())


def parse_masters(data: Mapping[str, Any], source: str = "seed") -> list[MasterAgreement]:
    """The ``[[master_agreements]]`` of a parsed governance file; ``ValueError`` names the entry.
    (Clauses are checked against the catalog and the organisations when recorded.)"""
    masters: dict[str, MasterAgreement] = {}
    for i, entry in enumerate(_tables(data, "master_agreements", source)):
        mid = _text(entry, "id", f"{source}: master_agreements[{i}]")
        where = f"{source}: master agreement {mid!r}"
        if mid in masters:
            raise ValueError(f"{where} declared twice")
        try:
            bases = frozenset(LegalBasisKind(b) for b in _text_list(entry, "legal_bases", where))
        except ValueError:
            raise ValueError(
                f"{where}: legal_bases must be among {[k.value for k in LegalBasisKind]}"
            ) from None
        try:
            disclosures = frozenset(
                Disclosure(d) for d in _text_list(entry, "disclosures", where) or [Disclosure.IMMEDIATE.value]
            )
        except ValueError:
            raise ValueError(f"{where}: disclosures must be among {[d.value for d in Disclosure]}") from None
        numbers = {}
        for key in ("retention_days", "quota_per_minute", "quota_per_day"):
            value = entry.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}: {key!r} must be a whole number, 0 or more")
            numbers[key] = value
        endorsed_by = entry.get("endorsed_by", "")
        if not isinstance(endorsed_by, str):
            raise ValueError(f"{where}: 'endorsed_by' must be an organisation code")
        masters[mid] = MasterAgreement(
            id=mid,
            title=_text(entry, "title", where),
            procedure_codes=frozenset(_text_list(entry, "procedures", where)),
            purposes=tuple(_text_list(entry, "purposes", where)),
            certificate_type_ids=frozenset(_text_list(entry, "certificate_types", where)),
            legal_bases=bases,
            laws=frozenset(_text_list(entry, "laws", where)),
            disclosures=disclosures,
            endorsed_by=endorsed_by.strip(),
            **numbers,
        )
    return list(masters.values())


def parse_agreement(aid: str, entry: Mapping[str, Any], where: str, catalog: Catalog | None) -> Agreement:
    cert_types = _text_list(entry, "certificate_types", where)
    if not cert_types:
        raise ValueError(f"{where} covers no certificate type")
    if catalog is not None:
        for cid in cert_types:
            if catalog.get(cid) is None:
                raise ValueError(f"{where} names unknown certificate type {cid!r}")
    try:
        bases = frozenset(LegalBasisKind(b) for b in _text_list(entry, "legal_bases", where))
    except ValueError:
        raise ValueError(f"{where}: legal_bases must be among {[k.value for k in LegalBasisKind]}") from None
    if not bases:
        raise ValueError(f"{where} allows no legal basis")
    laws = _text_list(entry, "laws", where)
    if LegalBasisKind.LAW in bases and not laws:
        raise ValueError(f"{where} allows LAW but cites no law in 'laws'")
    flags = {}
    for flag in ("consent_required", "officer_token_required", "officer_document_required"):
        flags[flag] = entry.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise ValueError(f"{where}: '{flag}' must be true or false")
    valid_from = _day(entry.get("valid_from"), "valid_from", where)
    if valid_from is None:
        raise ValueError(f"{where}: missing 'valid_from'")
    until_day = _day(entry.get("valid_until"), "valid_until", where)
    valid_until = None if until_day is None else until_day + dt.timedelta(days=1)
    if valid_until is not None and valid_until <= valid_from:
        raise ValueError(f"{where}: valid_until is before valid_from")
    texts = {}
    for key in ("description", "master", "data_protection_officer"):
        texts[key] = entry.get(key, "")
        if not isinstance(texts[key], str):
            raise ValueError(f"{where}: {key!r} must be a string")
    procedures = _text_list(entry, "procedures", where)
    if "procedure" in entry:
        procedures = [_text(entry, "procedure", where), *procedures]
    if not procedures:
        raise ValueError(f"{where}: missing 'procedures' (or 'procedure')")
    try:
        disclosure = Disclosure(entry.get("disclosure", Disclosure.IMMEDIATE.value))
    except ValueError:
        raise ValueError(f"{where}: 'disclosure' must be one of {[d.value for d in Disclosure]}") from None
    disclosure_until = _day(entry.get("disclosure_until"), "disclosure_until", where)
    disclosure_law = entry.get("disclosure_law", "")
    if not isinstance(disclosure_law, str):
        raise ValueError(f"{where}: 'disclosure_law' must be a string")
    problem = disclosure_problem(disclosure, disclosure_until, disclosure_law)
    if problem:
        raise ValueError(f"{where}: {problem[1]}")
    return Agreement(
        id=aid,
        organization_id=_text(entry, "organization", where),
        procedure_codes=frozenset(procedures),
        certificate_type_ids=frozenset(cert_types),
        legal_bases=bases,
        legal_references=frozenset(laws),
        consent_required=flags["consent_required"],
        valid_from=valid_from,
        valid_until=valid_until,
        description=texts["description"],
        officer_token_required=flags["officer_token_required"],
        officer_document_required=flags["officer_document_required"],
        master_agreement_id=texts["master"].strip(),
        data_protection_officer=texts["data_protection_officer"].strip(),
        disclosure=disclosure,
        disclosure_until=disclosure_until.date() if disclosure_until is not None else None,
        disclosure_law=disclosure_law.strip(),
    )


def _tables(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise ValueError(f"{source}: {key!r} must be an array of tables ([[{key}]])")
    return value


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: missing {key!r}")
    return value


def _text_list(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of non-empty strings")
    return value


def _day(value: Any, key: str, where: str) -> dt.datetime | None:
    """A TOML date (quoted ``"YYYY-MM-DD"`` or bare) as midnight UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}: {key!r} must be a date YYYY-MM-DD, not {value!r}") from None
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise ValueError(f"{where}: {key!r} must be a date YYYY-MM-DD")
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def _upsert_organisation(session: Session, organisation: Organisation) -> None:
    session.merge(
        OrganisationRow(
            id=organisation.id,
            name=organisation.name,
            kind=organisation.kind.value,
            contact=organisation.contact,
        )
    )


def _organisation_from_row(row: OrganisationRow) -> Organisation:
    return Organisation(row.id, row.name, OrganisationKind(row.kind), row.contact)


def _upsert_veto(session: Session, veto: Veto) -> None:
    row = session.exec(
        select(VetoRow).where(
            VetoRow.agreement_id == veto.agreement_id, VetoRow.provider_id == veto.provider_id
        )
    ).first()
    if row is None:
        session.add(VetoRow(agreement_id=veto.agreement_id, provider_id=veto.provider_id, reason=veto.reason))
    else:
        row.reason = veto.reason


def disclosure_problem(
    disclosure: Disclosure, until: dt.date | dt.datetime | None, law: str
) -> tuple[str, str] | None:
    """(field, what is wrong) with an agreement's disclosure terms, or ``None``."""
    if disclosure is Disclosure.DEFERRED and until is None:
        return "disclosure_until", "a DEFERRED disclosure needs the date from which residents may see"
    if disclosure is Disclosure.WITHHELD and not law.strip():
        return "disclosure_law", "a WITHHELD disclosure needs the law that allows it"
    return None


TERM_DEFAULTS: dict[str, Any] = {
    "disclosure": "IMMEDIATE",
    "disclosure_until": None,
    "disclosure_law": "",
    "master_agreement_id": "",
    "master_version": 0,
    "data_protection_officer": "",
}
"""Terms recorded before they existed read as these."""


def recorded_terms(body: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded terms in today's shape (older versions named one ``procedure_code``)."""
    out = {**TERM_DEFAULTS, **body}
    if "procedure_code" in out:
        out["procedure_codes"] = [out.pop("procedure_code")]
    return out


def agreement_terms(a: Agreement, unit: str, accountable: str) -> dict[str, Any]:
    """An agreement's terms as JSON-ready data (as recorded in ``agreement_versions`` and logged)."""
    return {
        "organization_id": a.organization_id,
        "unit": unit,
        "accountable": accountable,
        "procedure_codes": sorted(a.procedure_codes),
        "certificate_type_ids": sorted(a.certificate_type_ids),
        "legal_bases": sorted(k.value for k in a.legal_bases),
        "laws": sorted(a.legal_references),
        "consent_required": a.consent_required,
        "officer_token_required": a.officer_token_required,
        "officer_document_required": a.officer_document_required,
        "valid_from": a.valid_from.astimezone(dt.UTC).isoformat(),
        "valid_until": None if a.valid_until is None else a.valid_until.astimezone(dt.UTC).isoformat(),
        "description": a.description,
        "disclosure": a.disclosure.value,
        "disclosure_until": a.disclosure_until.isoformat() if a.disclosure_until else None,
        "disclosure_law": a.disclosure_law,
        "master_agreement_id": a.master_agreement_id,
        "master_version": a.master_version,
        "data_protection_officer": a.data_protection_officer,
    }


def agreement_from_terms(agreement_id: str, version: int, body: Mapping[str, Any]) -> Agreement:
    """The :class:`Agreement` of recorded terms (see :func:`agreement_terms`)."""
    body = recorded_terms(body)
    until = body.get("valid_until")
    return Agreement(
        id=agreement_id,
        organization_id=body["organization_id"],
        procedure_codes=frozenset(body["procedure_codes"]),
        certificate_type_ids=frozenset(body["certificate_type_ids"]),
        legal_bases=frozenset(LegalBasisKind(k) for k in body["legal_bases"]),
        legal_references=frozenset(body["laws"]),
        consent_required=bool(body["consent_required"]),
        valid_from=dt.datetime.fromisoformat(body["valid_from"]),
        valid_until=None if until is None else dt.datetime.fromisoformat(until),
        description=body.get("description", ""),
        officer_token_required=bool(body.get("officer_token_required", False)),
        officer_document_required=bool(body.get("officer_document_required", False)),
        version=version,
        disclosure=Disclosure(body.get("disclosure") or "IMMEDIATE"),
        disclosure_until=dt.date.fromisoformat(body["disclosure_until"])
        if body.get("disclosure_until")
        else None,
        disclosure_law=body.get("disclosure_law", ""),
        master_agreement_id=body["master_agreement_id"],
        master_version=int(body["master_version"]),
        data_protection_officer=body["data_protection_officer"],
    )


def agreement_to_values(a: Agreement) -> dict[str, Any]:
    """The ``agreements`` row (what policy enforces) of an agreement in force."""
    row = _agreement_to_row(a)
    return {c.name: getattr(row, c.name) for c in AgreementRow.__table__.columns}  # type: ignore[attr-defined]


def _agreement_to_row(a: Agreement) -> AgreementRow:
    return AgreementRow(
        id=a.id,
        organization_id=a.organization_id,
        procedure_code=min(a.procedure_codes),
        procedure_codes=json.dumps(sorted(a.procedure_codes)),
        certificate_type_ids=json.dumps(sorted(a.certificate_type_ids)),
        legal_bases=json.dumps(sorted(k.value for k in a.legal_bases)),
        legal_references=json.dumps(sorted(a.legal_references)),
        consent_required=a.consent_required,
        valid_from=a.valid_from,
        valid_until=a.valid_until,
        description=a.description,
        officer_token_required=a.officer_token_required,
        officer_document_required=a.officer_document_required,
        version=a.version,
        suspended=a.suspended,
        master_agreement_id=a.master_agreement_id,
        master_version=a.master_version,
        quota_per_minute=a.quota_per_minute,
        quota_per_day=a.quota_per_day,
    )


def _agreement_from_row(row: AgreementRow) -> Agreement:
    return Agreement(
        id=row.id,
        organization_id=row.organization_id,
        procedure_codes=frozenset(json.loads(row.procedure_codes)) or frozenset({row.procedure_code}),
        certificate_type_ids=frozenset(json.loads(row.certificate_type_ids)),
        legal_bases=frozenset(LegalBasisKind(k) for k in json.loads(row.legal_bases)),
        legal_references=frozenset(json.loads(row.legal_references)),
        consent_required=row.consent_required,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        description=row.description,
        officer_token_required=row.officer_token_required,
        officer_document_required=row.officer_document_required,
        version=row.version,
        suspended=row.suspended,
        master_agreement_id=row.master_agreement_id,
        master_version=row.master_version,
        quota_per_minute=row.quota_per_minute,
        quota_per_day=row.quota_per_day,
    )
