"""Agreements through the platform: versions proposed by the consumer, approved or vetoed by each
provider concerned, in force between their dates, suspended, revoked.

The record is ``agreement_versions`` (every version, its terms and state) and
``agreement_decisions`` (each provider's approval or veto of a proposal). What policy enforces is
``agreements`` (the version in force of each agreement, and an oversight suspension) with
``vetoes`` (a provider's veto of a version in force, for its data): each transition updates both in
the transaction that logs it, so what is enforced is always what the log says.

Who may do what (roles from the certificate's ``OU`` or the token's role claim):

=============  ==================================================  ======================
action         who                                                 from state
=============  ==================================================  ======================
propose        ``consumer-admin`` of the agreement's organisation  none pending
APPROVE        ``provider-admin`` of a provider concerned          PROPOSED
VETO           ``provider-admin`` of a provider concerned          PROPOSED (rejects it);
                                                                   ACTIVE (suspends it for
                                                                   that provider's data)
LIFT_VETO      the provider that vetoed                            ACTIVE, vetoed by it
SUSPEND        ``oversight``                                       ACTIVE, not suspended
RESUME         ``oversight``                                       ACTIVE, suspended
REVOKE         ``consumer-admin`` of its organisation, ``operator``  PROPOSED or ACTIVE
ENDORSE        the governing body its master agreement names        PROPOSED
               (its ``operator`` or ``oversight`` role)
RELEASE_       ``oversight``, ``consumer-admin`` of its             DEFERRED disclosure, not
DISCLOSURE     organisation                                          released; ACTIVE, SUPERSEDED
                                                                     or REVOKED
=============  ==================================================  ======================

A provider is concerned when the version covers one of its certificate types. Every proposal is
bound to a master agreement (:mod:`broker.master_agreements`): it may not go beyond the clauses of
the master's latest version, which it records. A version becomes ACTIVE when every provider
concerned has approved it and, where its master agreement names a governing body, that body has
endorsed it; the version it replaces becomes SUPERSEDED, and vetoes of the replaced version are
cleared (the providers approved the new terms).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from onceonly.broker.agreements import (
    agreement_from_terms,
    agreement_terms,
    agreement_to_values,
    disclosure_problem,
)
from onceonly.broker.auth import Principal
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Agreement, LegalBasisKind, MasterAgreement
from onceonly.broker.master_agreements import limit_violations, load_masters, unknown_laws
from onceonly.broker.storage import (
    AgreementDecisionRow,
    AgreementRow,
    AgreementVersionRow,
    OrganisationRow,
    VetoRow,
)
from onceonly.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    RuleViolation,
    permission_denied,
    role_words,
)
from onceonly.validation import CODE_PATTERN, ID_PATTERN, FieldErrors
from onceonly.vocabulary import AgreementAction, AgreementState, Disclosure, OrganisationKind

__all__ = [
    "AgreementVersion",
    "ProviderDecision",
    "StoredState",
    "act",
    "bind_to_master",
    "load_versions",
    "propose",
    "validate_terms",
]

_VERSIONS: sa.Table = AgreementVersionRow.__table__  # type: ignore[attr-defined]
_DECISIONS: sa.Table = AgreementDecisionRow.__table__  # type: ignore[attr-defined]
_AGREEMENTS: sa.Table = AgreementRow.__table__  # type: ignore[attr-defined]
_VETOES: sa.Table = VetoRow.__table__  # type: ignore[attr-defined]
_ORGS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]


class StoredState:
    PROPOSED = "PROPOSED"
    REJECTED = "REJECTED"
    ACTIVE = "ACTIVE"
    SUPERSEDED = "SUPERSEDED"
    REVOKED = "REVOKED"


@dataclass(frozen=True, slots=True)
class ProviderDecision:
    provider_id: str
    decision: str  # APPROVE | VETO
    reason: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class AgreementVersion:
    """One version of an agreement with everything said about it."""

    terms: Agreement
    """Its terms (``terms.id`` is the agreement, ``terms.version`` this version)."""
    unit: str
    accountable: str
    stored_state: str
    proposed_by: str
    proposed_at: dt.datetime
    decided_at: dt.datetime | None
    note: str
    providers: tuple[str, ...]
    """The providers concerned (consulted): those whose certificate types it covers."""
    decisions: tuple[ProviderDecision, ...]
    vetoes: Mapping[str, str]
    """Providers' vetoes of it while in force: provider → reason."""
    suspended: str
    """Why an oversight body suspended it (empty: not suspended)."""
    master: MasterAgreement | None = None
    """The version of the master agreement it was agreed under (``None``: before masters)."""
    released: str = ""
    """A DEFERRED disclosure released early: who, when and why (empty: not released)."""

    @property
    def endorser(self) -> str:
        """The governing body that must endorse it (its master agreement's ``endorsed_by``)."""
        return self.master.endorsed_by if self.master is not None else ""

    def state(self, now: dt.datetime) -> AgreementState:
        s = self.stored_state
        if s != StoredState.ACTIVE:
            return AgreementState(s)
        if self.suspended or self.vetoes:
            return AgreementState.SUSPENDED
        if now < self.terms.valid_from:
            return AgreementState.APPROVED
        if self.terms.valid_until is not None and now >= self.terms.valid_until:
            return AgreementState.EXPIRED
        return AgreementState.IN_FORCE

    @property
    def waiting_for(self) -> tuple[str, ...]:
        """Providers concerned (and the governing body, where it must endorse) that have not decided
        on this (proposed) version."""
        decided = {d.provider_id for d in self.decisions}
        waiting = [p for p in self.providers if p not in decided]
        if self.endorser and self.endorser not in decided:
            waiting.append(self.endorser)
        return tuple(waiting)


def providers_concerned(terms: Agreement, catalog: Catalog) -> tuple[str, ...]:
    found = (catalog.get(cid) for cid in terms.certificate_type_ids)
    return tuple(sorted({c.provider_id for c in found if c is not None}))


# --- validation ---------------------------------------------------------------------------------


def validate_terms(
    conn: sa.Connection,
    terms: Agreement,
    unit: str,
    accountable: str,
    catalog: Catalog,
    prefix: str = "terms.",
) -> None:
    """``InvalidArgument`` naming every bad field of a proposal's terms."""
    errors = FieldErrors()
    errors.text("agreement_id", terms.id, max_len=128, pattern=ID_PATTERN)
    errors.text(f"{prefix}organization_id", terms.organization_id, max_len=64, pattern=ID_PATTERN)
    if not terms.procedure_codes:
        errors.add(f"{prefix}procedure_codes", "is required")
    for code in sorted(terms.procedure_codes):
        errors.text(f"{prefix}procedure_codes", code, max_len=128, pattern=CODE_PATTERN)
    errors.text(f"{prefix}unit", unit, max_len=200)
    errors.text(f"{prefix}data_protection_officer", terms.data_protection_officer, max_len=200)
    errors.text(f"{prefix}master_agreement_id", terms.master_agreement_id, max_len=128, pattern=ID_PATTERN)
    errors.text(f"{prefix}accountable", accountable, max_len=200)
    errors.text(f"{prefix}description", terms.description, max_len=2000, required=False)
    org = conn.execute(sa.select(_ORGS.c.kind).where(_ORGS.c.id == terms.organization_id)).scalar()
    if terms.organization_id and org != OrganisationKind.CONSUMER.value:
        errors.add(f"{prefix}organization_id", "is not a registered consumer organisation")
    if not terms.certificate_type_ids:
        errors.add(f"{prefix}certificate_type_ids", "is required")
    for cid in sorted(terms.certificate_type_ids):
        if catalog.get(cid) is None:
            errors.add(f"{prefix}certificate_type_ids", f"names {cid!r}, which is not in the catalog")
    if not terms.legal_bases:
        errors.add(f"{prefix}legal_bases", "is required")
    if LegalBasisKind.LAW in terms.legal_bases and not terms.legal_references:
        errors.add(f"{prefix}laws", "must cite at least one law when LAW is allowed")
    for law in sorted(terms.legal_references):
        errors.text(f"{prefix}laws", law, max_len=200)
    if terms.valid_until is not None and terms.valid_until <= terms.valid_from:
        errors.add(f"{prefix}valid_until", "must be later than valid_from")
    problem = disclosure_problem(terms.disclosure, terms.disclosure_until, terms.disclosure_law)
    if problem:
        errors.add(f"{prefix}{problem[0]}", problem[1])
    errors.text(f"{prefix}disclosure_law", terms.disclosure_law, max_len=200, required=False)
    errors.raise_if_any()


def bind_to_master(
    conn: sa.Connection,
    terms: Agreement,
    prefix: str = "terms.",
    pending: Mapping[str, MasterAgreement] | None = None,
) -> Agreement:
    """``terms`` bound to the latest version of their master agreement (``master_version`` set).

    ``InvalidArgument`` when the master agreement is not recorded (nor in ``pending``: masters an
    import records in the same change) or a cited law is unknown to the platform (no master
    agreement lists it); ``FailedPrecondition`` (``MASTER_AGREEMENT_LIMIT``) naming every clause
    the terms go beyond.
    """
    masters = {r.master.id: r.master for r in load_masters(conn)}
    masters.update(pending or {})
    master = masters.get(terms.master_agreement_id)
    if master is None:
        raise InvalidArgument(
            [
                FieldViolation(
                    f"{prefix}master_agreement_id",
                    f"names {terms.master_agreement_id!r}, which is not a registered master agreement",
                )
            ]
        )
    known = {law for m in masters.values() for law in m.laws}
    unknown = unknown_laws(known, terms)
    if unknown:
        raise InvalidArgument(
            [
                FieldViolation(
                    f"{prefix}{field}",
                    f"cites {law!r}, which no master agreement lists: the law is unknown to the platform",
                )
                for field, law in unknown
            ]
        )
    violations = limit_violations(master, terms)
    if violations:
        raise FailedPrecondition(
            f"agreement {terms.id!r} goes beyond master agreement {master.id!r} "
            f"(version {master.version}): " + "; ".join(v.description for v in violations),
            reason="MASTER_AGREEMENT_LIMIT",
            violations=violations,
        )
    return dataclasses.replace(terms, master_version=master.version)


# --- reading ------------------------------------------------------------------------------------


def load_versions(
    conn: sa.Connection, catalog: Catalog, agreement_id: str | None = None
) -> list[AgreementVersion]:
    """Every version (of one agreement, or of all), by agreement and version."""
    where = [] if agreement_id is None else [_VERSIONS.c.agreement_id == agreement_id]
    rows = conn.execute(
        sa.select(_VERSIONS).where(*where).order_by(_VERSIONS.c.agreement_id, _VERSIONS.c.version)
    )
    decisions: dict[tuple[str, int], list[ProviderDecision]] = {}
    dwhere = [] if agreement_id is None else [_DECISIONS.c.agreement_id == agreement_id]
    for d in conn.execute(sa.select(_DECISIONS).where(*dwhere).order_by(_DECISIONS.c.provider_id)):
        decisions.setdefault((d.agreement_id, d.version), []).append(
            ProviderDecision(d.provider_id, d.decision, d.reason, d.at)
        )
    enforced = {
        r.id: (r.version, r.suspended)
        for r in conn.execute(sa.select(_AGREEMENTS.c.id, _AGREEMENTS.c.version, _AGREEMENTS.c.suspended))
    }
    masters = {(r.master.id, r.master.version): r.master for r in load_masters(conn)}
    vetoes: dict[str, dict[str, str]] = {}
    for v in conn.execute(sa.select(_VETOES)):
        vetoes.setdefault(v.agreement_id, {})[v.provider_id] = v.reason
    out = []
    for r in rows:
        body = json.loads(r.terms)
        terms = agreement_from_terms(r.agreement_id, r.version, body)
        in_force = enforced.get(r.agreement_id)
        current = r.state == StoredState.ACTIVE and in_force is not None and in_force[0] == r.version
        master = masters.get((terms.master_agreement_id, terms.master_version))
        out.append(
            AgreementVersion(
                terms=terms,
                unit=str(body.get("unit", "")),
                accountable=str(body.get("accountable", "")),
                stored_state=r.state,
                proposed_by=r.proposed_by,
                proposed_at=r.proposed_at,
                decided_at=r.decided_at,
                note=r.note,
                providers=providers_concerned(terms, catalog),
                decisions=tuple(decisions.get((r.agreement_id, r.version), ())),
                vetoes=vetoes.get(r.agreement_id, {}) if current else {},
                suspended=in_force[1] if current and in_force is not None else "",
                master=master,
                released=r.released,
            )
        )
    return out


def _version(
    conn: sa.Connection, catalog: Catalog, agreement_id: str, version: int | None
) -> AgreementVersion:
    versions = load_versions(conn, catalog, agreement_id)
    if not versions:
        raise NotFound(
            f"no agreement {agreement_id!r}",
            resource_type="agreement",
            resource_name=agreement_id,
            field="agreement_id",
            description="no such agreement",
        )
    if version is None or version == 0:
        active = [v for v in versions if v.stored_state == StoredState.ACTIVE]
        pending = [v for v in versions if v.stored_state == StoredState.PROPOSED]
        return (pending or active or versions)[-1]
    for v in versions:
        if v.terms.version == version:
            return v
    raise NotFound(
        f"agreement {agreement_id!r} has no version {version}",
        resource_type="agreement version",
        resource_name=f"{agreement_id}/{version}",
        field="version",
        description="no such version",
    )


# --- changes (each runs inside a logged transaction) --------------------------------------------


def _refuse(rule: str, subject: str, message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason=rule, violations=[RuleViolation(rule, subject, message)])


def propose(
    conn: sa.Connection,
    principal: Principal,
    terms: Agreement,
    unit: str,
    accountable: str,
    catalog: Catalog,
    now: dt.datetime,
) -> AgreementVersion:
    """Record a new version of ``terms.id`` in PROPOSED (its version number is assigned here)."""
    if principal.kind != "consumer-admin":
        raise permission_denied(
            "CONSUMER_ADMIN_ONLY",
            "rule CONSUMER_ADMIN_ONLY: agreements are proposed by a consumer's administrators, "
            f"not {role_words(principal.kind)}",
            role=principal.kind,
        )
    if principal.organization_id != terms.organization_id:
        raise permission_denied(
            "OWN_ORGANISATION_ONLY",
            f"rule OWN_ORGANISATION_ONLY: {principal.organization_id} may propose agreements "
            f"for itself only, not for {terms.organization_id}",
        )
    validate_terms(conn, terms, unit, accountable, catalog)
    terms = bind_to_master(conn, terms)
    existing = load_versions(conn, catalog, terms.id)
    if existing and existing[-1].terms.organization_id != terms.organization_id:
        raise permission_denied(
            "OWN_ORGANISATION_ONLY",
            f"rule OWN_ORGANISATION_ONLY: agreement {terms.id!r} belongs to "
            f"{existing[-1].terms.organization_id}",
        )
    pending = [v for v in existing if v.stored_state == StoredState.PROPOSED]
    if pending:
        raise _refuse(
            "PROPOSAL_PENDING",
            f"{terms.id}/{pending[0].terms.version}",
            f"version {pending[0].terms.version} of agreement {terms.id!r} is still proposed: "
            "wait for the providers' decisions, or revoke it first",
        )
    version = (existing[-1].terms.version if existing else 0) + 1
    conn.execute(
        sa.insert(_VERSIONS),
        {
            "agreement_id": terms.id,
            "version": version,
            "state": StoredState.PROPOSED,
            "terms": json.dumps(agreement_terms(terms, unit, accountable), sort_keys=True),
            "proposed_by": principal.organization_id,
            "proposed_at": now,
            "decided_at": None,
            "note": "",
        },
    )
    return _version(conn, catalog, terms.id, version)


def act(
    conn: sa.Connection,
    principal: Principal,
    agreement_id: str,
    version: int | None,
    action: AgreementAction,
    reason: str,
    catalog: Catalog,
    now: dt.datetime,
) -> AgreementVersion:
    """Apply ``action`` to a version of an agreement (by default the pending or the active one)."""
    errors = FieldErrors()
    reason = errors.text("reason", reason, max_len=2000, required=action in _REASON_REQUIRED)
    errors.raise_if_any()
    v = _version(conn, catalog, agreement_id, version)
    subject = f"{agreement_id}/{v.terms.version}"
    state = v.stored_state
    provider = principal.organization_id

    def not_allowed(detail: str = "") -> FailedPrecondition:
        shown = v.state(now).value
        return _refuse(
            "TRANSITION_NOT_ALLOWED",
            subject,
            f"agreement {agreement_id!r} version {v.terms.version} is {shown}: it cannot be "
            f"{_PAST[action]}" + (f" ({detail})" if detail else ""),
        )

    if action in (AgreementAction.APPROVE, AgreementAction.VETO, AgreementAction.LIFT_VETO):
        _require(principal, "provider-admin", "PROVIDER_ADMIN_ONLY", action)
        if provider not in v.providers:
            raise permission_denied(
                "NOT_CONSULTED",
                f"rule NOT_CONSULTED: agreement {agreement_id!r} version {v.terms.version} covers no "
                f"certificate type of {provider} (it concerns {', '.join(v.providers)})",
            )
        if action is AgreementAction.LIFT_VETO:
            if state != StoredState.ACTIVE or provider not in v.vetoes:
                raise not_allowed(f"{provider} has no veto on it")
            conn.execute(
                sa.delete(_VETOES).where(
                    _VETOES.c.agreement_id == agreement_id, _VETOES.c.provider_id == provider
                )
            )
        elif state == StoredState.PROPOSED:
            if any(d.provider_id == provider for d in v.decisions):
                raise _refuse(
                    "ALREADY_DECIDED", subject, f"{provider} has already decided on version {v.terms.version}"
                )
            _decide(conn, v, provider, action, reason, now)
            if action is AgreementAction.VETO:
                _set_state(conn, v, StoredState.REJECTED, now, f"vetoed by {provider}: {reason}")
            else:
                _activate_if_agreed(conn, catalog, v, now)
        elif state == StoredState.ACTIVE and action is AgreementAction.VETO:
            if provider in v.vetoes:
                raise not_allowed(f"{provider} has vetoed it already")
            conn.execute(
                sa.insert(_VETOES), {"agreement_id": agreement_id, "provider_id": provider, "reason": reason}
            )
        else:
            raise not_allowed()
    elif action in (AgreementAction.SUSPEND, AgreementAction.RESUME):
        _require(principal, "oversight", "OVERSIGHT_ONLY", action)
        if state != StoredState.ACTIVE or bool(v.suspended) != (action is AgreementAction.RESUME):
            raise not_allowed()
        note = (
            f"by {provider} on {now:%Y-%m-%d %H:%M} UTC: {reason}"
            if action is AgreementAction.SUSPEND
            else ""
        )
        conn.execute(sa.update(_AGREEMENTS).where(_AGREEMENTS.c.id == agreement_id).values(suspended=note))
    elif action is AgreementAction.REVOKE:
        own_admin = principal.kind == "consumer-admin" and provider == v.terms.organization_id
        if not (own_admin or principal.kind == "operator"):
            raise permission_denied(
                "REVOKE_NOT_PERMITTED",
                "rule REVOKE_NOT_PERMITTED: an agreement is revoked by its consumer's administrators "
                f"or the platform operator, not by {role_words(principal.kind)} of {provider}",
            )
        if state not in (StoredState.PROPOSED, StoredState.ACTIVE):
            raise not_allowed()
        if state == StoredState.ACTIVE:
            stop_enforcing(conn, agreement_id)
        _set_state(conn, v, StoredState.REVOKED, now, f"revoked by {provider}: {reason}")
    elif action is AgreementAction.ENDORSE:
        if not v.endorser or provider != v.endorser or principal.kind not in ("operator", "oversight"):
            raise permission_denied(
                "ENDORSER_ONLY",
                f"rule ENDORSER_ONLY: agreement {agreement_id!r} version {v.terms.version} is endorsed "
                + (
                    f"by {v.endorser} (its operator or oversight role)"
                    if v.endorser
                    else "by no one: its master agreement names no governing body"
                )
                + f", not by {role_words(principal.kind)} of {provider}",
                role=principal.kind,
            )
        if state != StoredState.PROPOSED:
            raise not_allowed()
        if any(d.provider_id == provider for d in v.decisions):
            raise _refuse(
                "ALREADY_DECIDED", subject, f"{provider} has already endorsed version {v.terms.version}"
            )
        _decide(conn, v, provider, action, reason, now)
        _activate_if_agreed(conn, catalog, v, now)
    elif action is AgreementAction.RELEASE_DISCLOSURE:
        own_admin = principal.kind == "consumer-admin" and provider == v.terms.organization_id
        if not (own_admin or principal.kind == "oversight"):
            raise permission_denied(
                "RELEASE_NOT_PERMITTED",
                "rule RELEASE_NOT_PERMITTED: a deferred disclosure is released by oversight or the "
                f"consumer's administrators, not by {role_words(principal.kind)} of {provider}",
                role=principal.kind,
            )
        if v.terms.disclosure is not Disclosure.DEFERRED:
            raise not_allowed(f"its disclosure is {v.terms.disclosure.value}, not DEFERRED")
        if v.released:
            raise not_allowed(f"released already, {v.released}")
        if state in (StoredState.PROPOSED, StoredState.REJECTED):
            raise not_allowed("nothing was accessed under it")
        conn.execute(
            sa.update(_VERSIONS)
            .where(_VERSIONS.c.agreement_id == agreement_id, _VERSIONS.c.version == v.terms.version)
            .values(released=f"by {provider} on {now:%Y-%m-%d %H:%M} UTC: {reason}")
        )
    return _version(conn, catalog, agreement_id, v.terms.version)


def _decide(
    conn: sa.Connection, v: AgreementVersion, by: str, action: AgreementAction, reason: str, now: dt.datetime
) -> None:
    conn.execute(
        sa.insert(_DECISIONS),
        {
            "agreement_id": v.terms.id,
            "version": v.terms.version,
            "provider_id": by,
            "decision": action.value,
            "reason": reason,
            "at": now,
        },
    )


def _activate_if_agreed(conn: sa.Connection, catalog: Catalog, v: AgreementVersion, now: dt.datetime) -> None:
    """Put ``v`` in force once nobody it waits for is left (every provider approved, endorsed)."""
    after = _version(conn, catalog, v.terms.id, v.terms.version)
    if not after.waiting_for:
        _activate(conn, after, now)


_REASON_REQUIRED = frozenset(
    {
        AgreementAction.VETO,
        AgreementAction.SUSPEND,
        AgreementAction.REVOKE,
        AgreementAction.RELEASE_DISCLOSURE,
    }
)
_PAST = {
    AgreementAction.APPROVE: "approved",
    AgreementAction.VETO: "vetoed",
    AgreementAction.LIFT_VETO: "relieved of a veto",
    AgreementAction.SUSPEND: "suspended",
    AgreementAction.RESUME: "resumed",
    AgreementAction.REVOKE: "revoked",
    AgreementAction.ENDORSE: "endorsed",
    AgreementAction.RELEASE_DISCLOSURE: "released for residents to see",
}


def _require(principal: Principal, kind: str, rule: str, action: AgreementAction) -> None:
    if principal.kind != kind:
        raise permission_denied(
            rule,
            f"rule {rule}: {action.value} is for {role_words(kind)}, not {role_words(principal.kind)}",
            role=principal.kind,
        )


def _set_state(
    conn: sa.Connection, v: AgreementVersion, state: str, now: dt.datetime, note: str = ""
) -> None:
    conn.execute(
        sa.update(_VERSIONS)
        .where(_VERSIONS.c.agreement_id == v.terms.id, _VERSIONS.c.version == v.terms.version)
        .values(state=state, decided_at=now, note=note)
    )


def _activate(conn: sa.Connection, v: AgreementVersion, now: dt.datetime) -> None:
    """Every provider approved ``v``: it replaces the version enforced until now."""
    _set_state(conn, v, StoredState.ACTIVE, now)
    put_in_force(conn, v.terms)


def put_in_force(conn: sa.Connection, terms: Agreement) -> None:
    """Enforce ``terms`` (its version recorded ACTIVE already) in place of the version enforced until
    now: that one is superseded, its vetoes cleared (the new terms were agreed), and policy's
    ``agreements`` row rewritten."""
    conn.execute(
        sa.update(_VERSIONS)
        .where(
            _VERSIONS.c.agreement_id == terms.id,
            _VERSIONS.c.state == StoredState.ACTIVE,
            _VERSIONS.c.version != terms.version,
        )
        .values(state=StoredState.SUPERSEDED)
    )
    conn.execute(sa.delete(_VETOES).where(_VETOES.c.agreement_id == terms.id))
    master = next(
        (
            r.master
            for r in load_masters(conn, terms.master_agreement_id)
            if r.master.version == terms.master_version
        ),
        None,
    )
    if master is not None:
        terms = dataclasses.replace(
            terms, quota_per_minute=master.quota_per_minute, quota_per_day=master.quota_per_day
        )
    values = agreement_to_values(terms)
    if conn.execute(sa.select(_AGREEMENTS.c.id).where(_AGREEMENTS.c.id == terms.id)).first() is None:
        conn.execute(sa.insert(_AGREEMENTS), values)
    else:
        conn.execute(sa.update(_AGREEMENTS).where(_AGREEMENTS.c.id == terms.id).values(**values))


def stop_enforcing(conn: sa.Connection, agreement_id: str) -> None:
    """Policy no longer enforces ``agreement_id`` (revoked): its row and its vetoes go."""
    conn.execute(sa.delete(_VETOES).where(_VETOES.c.agreement_id == agreement_id))
    conn.execute(sa.delete(_AGREEMENTS).where(_AGREEMENTS.c.id == agreement_id))


def terms_body(v: AgreementVersion) -> dict[str, Any]:
    """A version's terms as logged."""
    return agreement_terms(v.terms, v.unit, v.accountable)
