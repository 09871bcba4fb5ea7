"""Importing a governance file (organisations, master agreements, agreements, vetoes — the seed file's
format) as recorded governance changes, under the operator's role.

:func:`plan` compares the file with what is recorded and lists the changes; :func:`apply` makes
them, each with its entry in the governance log, in the caller's transaction:

* an organisation not registered is registered; one whose name, kind or contact differ is updated;
* a master agreement not recorded, or whose clauses differ from its latest version, gets a new
  version (agreements in the file are bound to it, and so get a new version too);
* an agreement not recorded, or whose terms differ from the version in force (or that has none in
  force), gets a new version in force (the one it replaces is superseded);
* an agreement in force that the file does not list is revoked (``full`` only);
* a veto in the file and not recorded is recorded; one recorded and not in the file is lifted
  (``full`` only).

Organisations are never removed, and proposals pending approval are left alone. ``full=False`` (the
broker's ``--seed-agreements`` at start) only adds what is missing, so a replica started with an
old file never undoes what was decided through the platform.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from onceonly.broker import master_agreements as masters
from onceonly.broker.agreement_lifecycle import StoredState, bind_to_master, put_in_force, stop_enforcing
from onceonly.broker.agreements import agreement_terms, recorded_terms
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Agreement, MasterAgreement, Organisation, Veto
from onceonly.broker.governance_log import Actor, GovernanceLog, LoggedEvent
from onceonly.broker.storage import AgreementVersionRow, OrganisationRow, VetoRow
from onceonly.errors import FailedPrecondition, FieldViolation, InvalidArgument

__all__ = ["ImportChange", "ImportFile", "apply", "plan"]

_ORGS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]
_VERSIONS: sa.Table = AgreementVersionRow.__table__  # type: ignore[attr-defined]
_VETOES: sa.Table = VetoRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ImportFile:
    organisations: Sequence[Organisation]
    agreements: Sequence[Agreement]
    vetoes: Sequence[Veto]
    units: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Agreement id → (unit, accountable), where the file names them."""
    masters: Sequence[MasterAgreement] = ()
    source: str = "file"
    """The file's name, for messages."""


@dataclass(frozen=True, slots=True)
class ImportChange:
    """One change an import makes: ``what`` (organisation, agreement, veto), ``action`` (ADD,
    CHANGE, REVOKE, LIFT), the subject, and what differs."""

    what: str
    action: str
    subject: str
    detail: str
    payload: Any = None


def _active(conn: sa.Connection) -> dict[str, tuple[int, dict[str, Any]]]:
    rows = conn.execute(
        sa.select(_VERSIONS.c.agreement_id, _VERSIONS.c.version, _VERSIONS.c.terms).where(
            _VERSIONS.c.state == StoredState.ACTIVE
        )
    )
    return {r.agreement_id: (r.version, json.loads(r.terms)) for r in rows}


def _bad_entry(source: str, what: str, exc: InvalidArgument | FailedPrecondition) -> InvalidArgument:
    details = (
        [f"{v.field} {v.description}" for v in exc.violations]
        if isinstance(exc, InvalidArgument)
        else [f"{v.subject}: {v.description}" for v in exc.violations]
    )
    return InvalidArgument([FieldViolation("file", f"{source}: {what}: {'; '.join(details)}")])


def plan(
    conn: sa.Connection, wanted: ImportFile, *, full: bool = True, catalog: Catalog | None = None
) -> list[ImportChange]:
    """The changes that would make what is recorded match ``wanted``; ``InvalidArgument`` (field
    ``file``) naming an entry that breaks a rule (a master agreement's clause, an unknown law)."""
    changes: list[ImportChange] = []
    orgs = {r.id: r for r in conn.execute(sa.select(_ORGS))}
    for o in wanted.organisations:
        have = orgs.get(o.id)
        if have is None:
            changes.append(ImportChange("organisation", "ADD", o.id, f"{o.name} ({o.kind.value})", o))
        elif full and (have.name, have.kind, have.contact) != (o.name, o.kind.value, o.contact):
            differ = [
                f"{n}: {old!r} → {new!r}"
                for n, old, new in (
                    ("name", have.name, o.name),
                    ("kind", have.kind, o.kind.value),
                    ("contact", have.contact, o.contact),
                )
                if old != new
            ]
            changes.append(ImportChange("organisation", "CHANGE", o.id, "; ".join(differ), o))
    kinds = {r.id: r.kind for r in orgs.values()} | {o.id: o.kind.value for o in wanted.organisations}
    latest = {r.master.id: r.master for r in masters.load_masters(conn)}
    pending: dict[str, MasterAgreement] = {}
    for m in wanted.masters:
        if catalog is not None:
            try:
                masters.validate_master(conn, m, catalog, organisations=kinds)
            except InvalidArgument as exc:
                raise _bad_entry(wanted.source, f"master agreement {m.id!r}", exc) from None
        last = latest.get(m.id)
        if last is None or (full and masters.master_body(last) != masters.master_body(m)):
            version = (last.version if last else 0) + 1
            pending[m.id] = dataclasses.replace(m, version=version)
            action = "ADD" if last is None else "CHANGE"
            changes.append(ImportChange("master agreement", action, m.id, f"version {version}: {m.title}", m))
    active = _active(conn)
    known = {r[0] for r in conn.execute(sa.select(_VERSIONS.c.agreement_id).distinct())}
    listed = set()
    for a in wanted.agreements:
        listed.add(a.id)
        unit, accountable = wanted.units.get(a.id, ("", ""))
        terms = agreement_terms(a, unit, accountable)
        current = active.get(a.id)
        if current is None:
            if not (full or a.id not in known):
                continue
            procedures = " ".join(sorted(a.procedure_codes))
            change = ImportChange("agreement", "ADD", a.id, f"{a.organization_id} {procedures}", a)
        elif full and _agreed(recorded_terms(current[1])) != _agreed(terms):
            before = recorded_terms(current[1])
            differ = sorted(k for k in _agreed(terms) if terms[k] != before.get(k))
            change = ImportChange(
                "agreement", "CHANGE", a.id, f"version {current[0] + 1}: {', '.join(differ)}", a
            )
        else:
            continue
        try:  # a new version is bound to its master agreement's latest clauses
            bound = bind_to_master(conn, a, prefix="", pending=pending)
        except (InvalidArgument, FailedPrecondition) as exc:
            raise _bad_entry(wanted.source, f"agreement {a.id!r}", exc) from None
        changes.append(dataclasses.replace(change, payload=bound))
    if full:
        for aid in sorted(set(active) - listed):
            changes.append(ImportChange("agreement", "REVOKE", aid, "not in the file", None))
    # A new version in force starts without vetoes: those the file lists for it are added again.
    renewed = {c.subject for c in changes if c.what == "agreement" and c.action in ("ADD", "CHANGE")}
    recorded = {
        (v.agreement_id, v.provider_id): v.reason
        for v in conn.execute(sa.select(_VETOES))
        if v.agreement_id not in renewed
    }
    revoked = {c.subject for c in changes if c.action == "REVOKE"}
    for v in wanted.vetoes:
        if (v.agreement_id, v.provider_id) not in recorded:
            changes.append(ImportChange("veto", "ADD", f"{v.agreement_id}/{v.provider_id}", v.reason, v))
    if full:
        in_file = {(v.agreement_id, v.provider_id) for v in wanted.vetoes}
        for key in sorted(set(recorded) - in_file):
            if key[0] not in revoked:
                changes.append(ImportChange("veto", "LIFT", f"{key[0]}/{key[1]}", recorded[key], key))
    return changes


def apply(
    conn: sa.Connection,
    changes: Sequence[ImportChange],
    wanted: ImportFile,
    log: GovernanceLog,
    actor: Actor,
    now: dt.datetime,
) -> list[LoggedEvent]:
    """Make ``changes`` (from :func:`plan`), each logged, in ``conn``'s transaction."""
    events = []
    for c in changes:
        body: dict[str, Any]
        if c.what == "organisation":
            o: Organisation = c.payload
            values = {"name": o.name, "kind": o.kind.value, "contact": o.contact}
            if c.action == "ADD":
                conn.execute(sa.insert(_ORGS), {"id": o.id, **values})
                action = "ORGANISATION_REGISTERED"
            else:
                conn.execute(sa.update(_ORGS).where(_ORGS.c.id == o.id).values(**values))
                action = "ORGANISATION_UPDATED"
            body = values
        elif c.what == "master agreement":
            recorded = masters.record_master(conn, c.payload, actor.organization_id, now)
            if recorded is None:  # recorded since the plan was made: nothing to log
                continue
            action, body = "MASTER_AGREEMENT_REGISTERED", masters.master_body(recorded)
            c = ImportChange(c.what, c.action, f"{recorded.id}/{recorded.version}", c.detail)
        elif c.what == "agreement" and c.action in ("ADD", "CHANGE"):
            a: Agreement = c.payload
            unit, accountable = wanted.units.get(a.id, ("", ""))
            version = _next_version(conn, a.id)
            a = dataclasses.replace(a, version=version)
            body = agreement_terms(a, unit, accountable)
            conn.execute(
                sa.insert(_VERSIONS),
                {
                    "agreement_id": a.id,
                    "version": version,
                    "state": StoredState.ACTIVE,
                    "terms": json.dumps(body, sort_keys=True),
                    "proposed_by": actor.organization_id,
                    "proposed_at": now,
                    "decided_at": now,
                    "note": "imported",
                },
            )
            put_in_force(conn, a)
            action = "AGREEMENT_IMPORTED"
            c = ImportChange(c.what, c.action, f"{a.id}/{version}", c.detail)
        elif c.what == "agreement":  # REVOKE
            stop_enforcing(conn, c.subject)
            in_force = (_VERSIONS.c.agreement_id == c.subject, _VERSIONS.c.state == StoredState.ACTIVE)
            revoked_version = conn.execute(sa.select(_VERSIONS.c.version).where(*in_force)).scalar()
            conn.execute(
                sa.update(_VERSIONS)
                .where(*in_force)
                .values(state=StoredState.REVOKED, decided_at=now, note="revoked by import: not in the file")
            )
            action, body = "AGREEMENT_REVOKED", {"reason": "not in the imported file"}
            c = ImportChange(c.what, c.action, f"{c.subject}/{revoked_version}", c.detail)
        elif c.action == "ADD":  # veto
            v: Veto = c.payload
            conn.execute(
                sa.insert(_VETOES),
                {"agreement_id": v.agreement_id, "provider_id": v.provider_id, "reason": v.reason},
            )
            action, body = "AGREEMENT_VETOED", {"provider": v.provider_id, "reason": v.reason}
        else:  # LIFT veto
            agreement_id, provider = c.payload
            conn.execute(
                sa.delete(_VETOES).where(
                    _VETOES.c.agreement_id == agreement_id, _VETOES.c.provider_id == provider
                )
            )
            action, body = "AGREEMENT_VETO_LIFTED", {"provider": provider}
        events.append(log.append(conn, actor, action, c.subject, {**body, "imported": True}, now))
    return events


def _agreed(terms: dict[str, Any]) -> dict[str, Any]:
    """Terms as compared with a file: an agreement in force keeps the master version it was agreed
    under until its own terms change."""
    return {k: v for k, v in terms.items() if k != "master_version"}


def _next_version(conn: sa.Connection, agreement_id: str) -> int:
    latest = conn.execute(
        sa.select(sa.func.max(_VERSIONS.c.version)).where(_VERSIONS.c.agreement_id == agreement_id)
    ).scalar()
    return int(latest or 0) + 1
