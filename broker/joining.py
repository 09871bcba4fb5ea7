"""The joining checklist: what a new member organisation still needs before it takes part, checked
against what the platform records — not a form someone ticks.

* a consumer: registered; its certificate (or token) in use (the broker has traced a request of
  it); a test verification passed (a GRANTED trace); an agreement in force;
* a provider: registered; in the catalog; it has answered a check (a trace with its answer); an
  agreement in force covers its data;
* an oversight body: registered; it has used the Oversight service (a traced resident report);
* the operator: registered.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import sqlalchemy as sa

from onceonly.broker.agreement_lifecycle import load_versions
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Organisation
from onceonly.broker.storage import OrganisationRow, TraceRow
from onceonly.errors import NotFound
from onceonly.vocabulary import AgreementState, OrganisationKind

__all__ = ["ChecklistItem", "JoiningStatus", "joining_status"]

_ORGS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    name: str
    done: bool
    detail: str


@dataclass(frozen=True, slots=True)
class JoiningStatus:
    organisation: Organisation
    items: tuple[ChecklistItem, ...]

    @property
    def complete(self) -> bool:
        return all(i.done for i in self.items)


def _first(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> tuple[dt.datetime, str] | None:
    row = conn.execute(
        sa.select(_TRACES.c.created_at, _TRACES.c.trace_id)
        .where(*where)
        .order_by(_TRACES.c.created_at)
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def _when(found: tuple[dt.datetime, str] | None, what: str, missing: str) -> ChecklistItem:
    if found is None:
        return ChecklistItem(what, False, missing)
    return ChecklistItem(what, True, f"first at {found[0]:%Y-%m-%d %H:%M} UTC (trace {found[1]})")


def joining_status(
    conn: sa.Connection, organization_id: str, catalog: Catalog, now: dt.datetime
) -> JoiningStatus:
    """The checklist of ``organization_id``; ``NotFound`` if it is not registered."""
    row = conn.execute(sa.select(_ORGS).where(_ORGS.c.id == organization_id)).first()
    if row is None:
        raise NotFound(
            f"organisation {organization_id!r} is not registered: the operator registers it first "
            "(onceonly governance register)",
            resource_type="organisation",
            resource_name=organization_id,
            field="organization_id",
            description="not a registered organisation",
        )
    org = Organisation(row.id, row.name, OrganisationKind(row.kind), row.contact)
    items = [ChecklistItem("registered", True, f"{org.name} ({org.kind.value})")]
    t = _TRACES.c
    versions = load_versions(conn, catalog)
    if org.kind is OrganisationKind.CONSUMER:
        items.append(
            _when(
                _first(conn, t.consumer_organization_id == org.id),
                "certificate in use",
                "no request has reached the broker with its certificate or token yet",
            )
        )
        items.append(
            _when(
                _first(conn, t.consumer_organization_id == org.id, t.decision == "GRANTED"),
                "test verification passed",
                "no verification of it has been granted yet",
            )
        )
        in_force = [
            v
            for v in versions
            if v.terms.organization_id == org.id and v.state(now) is AgreementState.IN_FORCE
        ]
        items.append(
            ChecklistItem(
                "agreement in force",
                bool(in_force),
                ", ".join(f"{v.terms.id} v{v.terms.version}" for v in in_force)
                or "none: its administrators propose one (onceonly governance propose)",
            )
        )
    elif org.kind is OrganisationKind.PROVIDER:
        types = sorted(c.id for c in catalog.served_by(org.id))
        items.append(
            ChecklistItem(
                "in the catalog",
                bool(types),
                ", ".join(types) or "the catalog has no certificate type of it",
            )
        )
        # An answer: the check's status is VERIFIED or SUBJECT_NOT_FOUND (not a timeout or error).
        escaped = json.dumps(org.id).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        answers = [
            t.outcomes.like(f'%"provider_id":{escaped},"status":"{status}"%', escape="\\")
            for status in ("VERIFIED", "SUBJECT\\_NOT\\_FOUND")
        ]
        answered = _first(conn, sa.or_(*answers))
        items.append(_when(answered, "answered a check", "no check has been sent to it yet"))
        covering = [v for v in versions if org.id in v.providers and v.state(now) is AgreementState.IN_FORCE]
        items.append(
            ChecklistItem(
                "agreement in force",
                bool(covering),
                ", ".join(f"{v.terms.id} v{v.terms.version}" for v in covering)
                or "no agreement in force covers its data yet",
            )
        )
    elif org.kind is OrganisationKind.OVERSIGHT:
        items.append(
            _when(
                _first(conn, t.consumer_organization_id == org.id),
                "oversight service used",
                "it has not consulted a resident's report yet",
            )
        )
    return JoiningStatus(org, tuple(items))
