"""Master agreements: standard clauses, as data, that every agreement is bound to.

A master agreement is registered by the platform operator (through the Governance service or a
governance import) and versioned: registering different clauses under the same id records a new
version, registering the same clauses changes nothing. An agreement records the master version it
was proposed under; :func:`limit_violations` checks its terms against that version's clauses, and
:func:`unknown_laws` against every law the platform's master agreements list (a law none lists is
unknown to the platform).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Agreement, LegalBasisKind, MasterAgreement
from onceonly.broker.policy import normalise_reference
from onceonly.broker.storage import MasterAgreementRow, OrganisationRow
from onceonly.errors import RuleViolation
from onceonly.validation import CODE_PATTERN, ID_PATTERN, FieldErrors
from onceonly.vocabulary import Disclosure, OrganisationKind

__all__ = [
    "RecordedMaster",
    "limit_violations",
    "load_masters",
    "master_body",
    "master_from_body",
    "record_master",
    "unknown_laws",
    "validate_master",
]

_MASTERS: sa.Table = MasterAgreementRow.__table__  # type: ignore[attr-defined]
_ORGS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]

MAX_QUOTA = 10_000_000
MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class RecordedMaster:
    """A version of a master agreement as recorded: its clauses, who registered it and when."""

    master: MasterAgreement
    registered_by: str
    registered_at: dt.datetime


def master_body(m: MasterAgreement) -> dict[str, Any]:
    """A master agreement's clauses as JSON-ready data (as recorded and logged)."""
    return {
        "title": m.title,
        "procedure_codes": sorted(m.procedure_codes),
        "purposes": list(m.purposes),
        "certificate_type_ids": sorted(m.certificate_type_ids),
        "legal_bases": sorted(k.value for k in m.legal_bases),
        "laws": sorted(m.laws),
        "disclosures": sorted(d.value for d in m.disclosures),
        "retention_days": m.retention_days,
        "quota_per_minute": m.quota_per_minute,
        "quota_per_day": m.quota_per_day,
        "endorsed_by": m.endorsed_by,
    }


def master_from_body(master_id: str, version: int, body: Mapping[str, Any]) -> MasterAgreement:
    return MasterAgreement(
        id=master_id,
        version=version,
        title=body["title"],
        procedure_codes=frozenset(body["procedure_codes"]),
        purposes=tuple(body["purposes"]),
        certificate_type_ids=frozenset(body["certificate_type_ids"]),
        legal_bases=frozenset(LegalBasisKind(k) for k in body["legal_bases"]),
        laws=frozenset(body["laws"]),
        disclosures=frozenset(Disclosure(d) for d in body["disclosures"]),
        retention_days=int(body["retention_days"]),
        quota_per_minute=int(body["quota_per_minute"]),
        quota_per_day=int(body["quota_per_day"]),
        endorsed_by=body["endorsed_by"],
    )


def validate_master(
    conn: sa.Connection,
    m: MasterAgreement,
    catalog: Catalog,
    prefix: str = "",
    organisations: Mapping[str, str] | None = None,
) -> None:
    """``InvalidArgument`` naming every bad clause of a master agreement (``organisations``: kind by
    code, when not only the registered ones count)."""
    errors = FieldErrors()
    errors.text(f"{prefix}id", m.id, max_len=128, pattern=ID_PATTERN)
    errors.text(f"{prefix}title", m.title, max_len=200)
    for code in sorted(m.procedure_codes):
        errors.text(f"{prefix}procedure_codes", code, max_len=128, pattern=CODE_PATTERN)
    for purpose in m.purposes:
        errors.text(f"{prefix}purposes", purpose, max_len=250)
    if not m.certificate_type_ids:
        errors.add(f"{prefix}certificate_type_ids", "is required")
    for cid in sorted(m.certificate_type_ids):
        if catalog.get(cid) is None:
            errors.add(f"{prefix}certificate_type_ids", f"names {cid!r}, which is not in the catalog")
    if not m.legal_bases:
        errors.add(f"{prefix}legal_bases", "is required")
    if LegalBasisKind.LAW in m.legal_bases and not m.laws:
        errors.add(f"{prefix}laws", "must list at least one law when LAW is allowed")
    for law in sorted(m.laws):
        errors.text(f"{prefix}laws", law, max_len=200)
    if not m.disclosures:
        errors.add(f"{prefix}disclosures", "must allow at least one disclosure")
    if Disclosure.WITHHELD in m.disclosures and not m.laws:
        errors.add(f"{prefix}laws", "must list the law that allows withholding when WITHHELD is allowed")
    for name, value, top in (
        ("retention_days", m.retention_days, MAX_RETENTION_DAYS),
        ("quota_per_minute", m.quota_per_minute, MAX_QUOTA),
        ("quota_per_day", m.quota_per_day, MAX_QUOTA),
    ):
        if not 0 <= value <= top:
            errors.add(f"{prefix}{name}", f"must be between 0 and {top}")
    if m.quota_per_minute and m.quota_per_day and m.quota_per_minute > m.quota_per_day:
        errors.add(f"{prefix}quota_per_minute", "must not exceed quota_per_day")
    if m.endorsed_by:
        kind = (
            organisations.get(m.endorsed_by)
            if organisations is not None
            else conn.execute(sa.select(_ORGS.c.kind).where(_ORGS.c.id == m.endorsed_by)).scalar()
        )
        if kind not in (OrganisationKind.OPERATOR.value, OrganisationKind.OVERSIGHT.value):
            errors.add(
                f"{prefix}endorsed_by",
                f"names {m.endorsed_by!r}, which is not a registered operator or oversight organisation",
            )
    errors.raise_if_any()


def load_masters(conn: sa.Connection, master_id: str | None = None) -> list[RecordedMaster]:
    """Every version (of one master agreement, or of all), by id and version."""
    where = [] if master_id is None else [_MASTERS.c.id == master_id]
    rows = conn.execute(sa.select(_MASTERS).where(*where).order_by(_MASTERS.c.id, _MASTERS.c.version))
    return [
        RecordedMaster(
            master_from_body(r.id, r.version, json.loads(r.terms)), r.registered_by, r.registered_at
        )
        for r in rows
    ]


def latest_masters(conn: sa.Connection) -> dict[str, MasterAgreement]:
    """Each master agreement's latest version, by id."""
    return {r.master.id: r.master for r in load_masters(conn)}


def record_master(
    conn: sa.Connection, m: MasterAgreement, registered_by: str, now: dt.datetime
) -> MasterAgreement | None:
    """Record ``m`` as the next version of its id; ``None`` when its latest version has the same
    clauses (nothing to record)."""
    existing = load_masters(conn, m.id)
    body = master_body(m)
    if existing and master_body(existing[-1].master) == body:
        return None
    version = (existing[-1].master.version if existing else 0) + 1
    conn.execute(
        sa.insert(_MASTERS),
        {
            "id": m.id,
            "version": version,
            "terms": json.dumps(body, sort_keys=True),
            "registered_by": registered_by,
            "registered_at": now,
        },
    )
    return master_from_body(m.id, version, body)


def _known(laws: Iterable[str]) -> set[str]:
    return {normalise_reference(law) for law in laws}


def cited_laws(terms: Agreement) -> list[tuple[str, str]]:
    """(field, law) for every law an agreement cites."""
    cited = [("laws", law) for law in sorted(terms.legal_references)]
    if terms.disclosure_law:
        cited.append(("disclosure_law", terms.disclosure_law))
    return cited


def unknown_laws(laws: Iterable[str], terms: Agreement) -> list[tuple[str, str]]:
    """(field, law) for every law ``terms`` cite that is not among ``laws`` (those the platform's
    master agreements list)."""
    known = _known(laws)
    return [(f, law) for f, law in cited_laws(terms) if normalise_reference(law) not in known]


def limit_violations(m: MasterAgreement, terms: Agreement) -> list[RuleViolation]:
    """Every clause of ``m`` that ``terms`` go beyond (rule ``MASTER_AGREEMENT_LIMIT``)."""
    rule = "MASTER_AGREEMENT_LIMIT"
    where = f"master agreement {m.id!r} (version {m.version})"
    out: list[RuleViolation] = []

    def beyond(field: str, extra: Iterable[str], allows: Iterable[str], what: str) -> None:
        extra = sorted(extra)
        if extra:
            shown = ", ".join(sorted(allows)) or "none"
            out.append(
                RuleViolation(
                    rule, f"terms.{field}", f"{', '.join(extra)}: {where} allows only these {what}: {shown}"
                )
            )

    if m.procedure_codes:
        beyond("procedure_codes", terms.procedure_codes - m.procedure_codes, m.procedure_codes, "procedures")
    beyond(
        "certificate_type_ids",
        terms.certificate_type_ids - m.certificate_type_ids,
        m.certificate_type_ids,
        "certificate types",
    )
    beyond(
        "legal_bases",
        {k.value for k in terms.legal_bases - m.legal_bases},
        {k.value for k in m.legal_bases},
        "legal bases",
    )
    known = _known(m.laws)
    for field, law in cited_laws(terms):
        if normalise_reference(law) not in known:
            beyond(field, [law], m.laws, "laws")
    if terms.disclosure not in m.disclosures:
        beyond("disclosure", [terms.disclosure.value], {d.value for d in m.disclosures}, "disclosures")
    return out
