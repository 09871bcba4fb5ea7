"""Governance as part of the platform, without gRPC: the member organisations and the governance log.

Every change is authorised by the caller's role (from its certificate or token), applied in one
transaction with its signed entry in the governance log (:mod:`broker.governance_log`), and
refused — naming the rule — with nothing recorded when it is not allowed:

* registering an organisation: the platform operator only (``OPERATOR_ONLY``); a code that is
  taken is ``ALREADY_EXISTS``;
* registering a master agreement (or a new version of one): the platform operator only;
* proposing a version of an agreement and acting on one (approve, veto, lift a veto, suspend,
  resume, revoke, endorse, release a deferred disclosure): see :mod:`broker.agreement_lifecycle`
  for who may do what from which state.

Reading is open to every member: the organisations (codes, names, kinds, contacts) and the
governance log, so that anyone can see who decided what.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from onceonly.broker import agreement_lifecycle as lifecycle
from onceonly.broker import governance_import as importing
from onceonly.broker import master_agreements as masters
from onceonly.broker.agreements import parse_masters, parse_seed
from onceonly.broker.auth import Principal
from onceonly.broker.catalog import Catalog
from onceonly.broker.chain import ChainHead
from onceonly.broker.domain import Agreement, MasterAgreement, Organisation
from onceonly.broker.governance_log import Actor, GovernanceLog, LoggedEvent, in_logged_transaction
from onceonly.broker.joining import JoiningStatus, joining_status
from onceonly.broker.policy_notify import notify_change
from onceonly.broker.storage import OrganisationRow
from onceonly.broker.witness import GOVERNANCE_CHAIN, WitnessLog
from onceonly.errors import AlreadyExists, FieldViolation, InvalidArgument, permission_denied, role_words
from onceonly.validation import ID_PATTERN, FieldErrors
from onceonly.vocabulary import AgreementAction, OrganisationKind

__all__ = [
    "ORGANISATION_REGISTERED",
    "SEED_ACTOR",
    "AgreementChanged",
    "GovernanceService",
    "ImportDone",
    "MasterRegistered",
    "OrganisationRegistered",
    "bootstrap",
    "read_governance_file",
]

log = logging.getLogger(__name__)

ORGANISATION_REGISTERED = "ORGANISATION_REGISTERED"
MASTER_AGREEMENT_REGISTERED = "MASTER_AGREEMENT_REGISTERED"
_ORGS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]
_MAX_NAME = 200
_MAX_CONTACT = 256


_LOGGED = {
    AgreementAction.APPROVE: "APPROVED",
    AgreementAction.VETO: "VETOED",
    AgreementAction.LIFT_VETO: "VETO_LIFTED",
    AgreementAction.SUSPEND: "SUSPENDED",
    AgreementAction.RESUME: "RESUMED",
    AgreementAction.REVOKE: "REVOKED",
    AgreementAction.ENDORSE: "ENDORSED",
    AgreementAction.RELEASE_DISCLOSURE: "DISCLOSURE_RELEASED",
}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgreementChanged:
    version: lifecycle.AgreementVersion
    """The version acted on, as it stands after the change."""
    event: LoggedEvent


@dataclass(frozen=True, slots=True)
class ImportDone:
    changes: list[importing.ImportChange]
    events: list[LoggedEvent]


def read_governance_file(text: str, source: str, catalog: Catalog) -> importing.ImportFile:
    """A governance file (the seed file's format, agreements optionally with ``unit`` and
    ``accountable``), validated; ``InvalidArgument`` (field ``file``) naming what is wrong."""
    try:
        data = tomllib.loads(text)
        orgs, agreements, vetoes = parse_seed(data, source, catalog)
        master_list = parse_masters(data, source)
        for a in agreements:
            if not a.master_agreement_id:
                raise ValueError(f"{source}: agreement {a.id!r}: missing 'master' (its master agreement)")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise InvalidArgument(
            [FieldViolation("file", str(exc) if source in str(exc) else f"{source}: {exc}")]
        ) from None
    units = {}
    for entry in data.get("agreements", []):
        unit, accountable = entry.get("unit", ""), entry.get("accountable", "")
        if not isinstance(unit, str) or not isinstance(accountable, str):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "file", f"{source}: agreement {entry.get('id')!r}: unit and accountable are text"
                    )
                ]
            )
        units[str(entry["id"])] = (unit, accountable)
    return importing.ImportFile(orgs, agreements, vetoes, units, master_list, source)


def bootstrap(
    engine: sa.Engine,
    path: Path,
    catalog: Catalog,
    governance_log: GovernanceLog,
    now: dt.datetime,
    witness: WitnessLog | None = None,
) -> int:
    """Record what a seed file declares and the database lacks (organisations, agreements, vetoes),
    logged as the ``seed``; never changes or revokes what is recorded. Returns how many changes."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read seed file: {exc}") from None
    try:
        wanted = read_governance_file(text, str(path), catalog)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None

    def work(conn: sa.Connection) -> int:
        changes = importing.plan(conn, wanted, full=False, catalog=catalog)
        importing.apply(conn, changes, wanted, governance_log, SEED_ACTOR, now)
        return len(changes)

    try:
        count = in_logged_transaction(engine, work)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None
    if count:
        witness_governance_head(engine, witness)
    return count


def witness_governance_head(engine: sa.Engine, witness: WitnessLog | None) -> None:
    """Write the governance log's (committed) head to the witness; a failure is logged and never
    undoes a change: the next change writes the head again."""
    if witness is None:
        return
    try:
        with engine.connect() as conn:
            last = GovernanceLog.read_last(conn)
        if last:
            witness.append(GOVERNANCE_CHAIN, ChainHead(last[0].seq, last[0].hash), last[0].signature)
    except Exception as exc:
        log.error("cannot write the governance log's head to the witness", extra={"error": str(exc)})


def _operator_only(principal: Principal, what: str) -> None:
    if principal.kind != "operator":
        raise permission_denied(
            "OPERATOR_ONLY",
            f"rule OPERATOR_ONLY: only the platform operator {what}, not {role_words(principal.kind)}",
            role=principal.kind,
        )


SEED_ACTOR = Actor("onceonly", "operator", "seed")
"""Who records a seed file's contents at the broker's start."""


@dataclass(frozen=True, slots=True)
class MasterRegistered:
    master: masters.RecordedMaster
    event: LoggedEvent | None
    """``None`` when the clauses were recorded already (nothing changed)."""


@dataclass(frozen=True, slots=True)
class OrganisationRegistered:
    organisation: Organisation
    event: LoggedEvent


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.organization_id, principal.kind, principal.via)


def validated_organisation(
    code: str, name: str, kind: OrganisationKind | None, contact: str, prefix: str = "organisation."
) -> Organisation:
    """An :class:`Organisation` from request fields, or ``InvalidArgument`` naming each bad one."""
    errors = FieldErrors()
    code = errors.text(f"{prefix}id", code, max_len=64, pattern=ID_PATTERN)
    name = errors.text(f"{prefix}name", name, max_len=_MAX_NAME)
    contact = errors.text(f"{prefix}contact", contact, max_len=_MAX_CONTACT, required=False)
    if kind is None:
        errors.add(f"{prefix}kind", f"must be one of {', '.join(k.value for k in OrganisationKind)}")
    errors.raise_if_any()
    assert kind is not None
    return Organisation(code, name, kind, contact)


class GovernanceService:
    """Governance reads and changes over the broker's database (the blocking work runs in threads)."""

    def __init__(
        self,
        engine: sa.Engine,
        log: GovernanceLog,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        changed: Callable[[], Awaitable[None]] | None = None,
        catalog: Catalog | None = None,
        witness: WitnessLog | None = None,
    ) -> None:
        self._engine = engine
        self._witness = witness
        """Where the head of the log is also written after each change (outside the database)."""
        self._catalog = catalog
        self._log = log
        self._clock = clock
        self._changed = changed
        """Awaited after a change is committed: the broker re-reads its policy, so the change
        takes effect on this replica before the caller hears it was made."""

    async def register_organisation(
        self, principal: Principal, organisation: Organisation
    ) -> OrganisationRegistered:
        """Add a member organisation (operator only), logged."""
        _operator_only(principal, "registers organisations")

        def work(conn: sa.Connection) -> OrganisationRegistered:
            taken = conn.execute(sa.select(_ORGS.c.name).where(_ORGS.c.id == organisation.id)).first()
            if taken is not None:
                raise AlreadyExists(
                    f"organisation {organisation.id!r} is registered already (as {taken[0]!r})",
                    reason="ORGANISATION_EXISTS",
                    metadata={"organization_id": organisation.id},
                )
            conn.execute(
                sa.insert(_ORGS),
                {
                    "id": organisation.id,
                    "name": organisation.name,
                    "kind": organisation.kind.value,
                    "contact": organisation.contact,
                },
            )
            event = self._log.append(
                conn,
                actor_of(principal),
                ORGANISATION_REGISTERED,
                organisation.id,
                {"name": organisation.name, "kind": organisation.kind.value, "contact": organisation.contact},
                self._clock(),
            )
            return OrganisationRegistered(organisation, event)

        return await self._commit(work)

    async def register_master(self, principal: Principal, master: MasterAgreement) -> MasterRegistered:
        """Record a master agreement, or a new version when its clauses differ (operator only), logged."""
        _operator_only(principal, "registers master agreements")
        catalog = self._require_catalog()

        def work(conn: sa.Connection) -> MasterRegistered:
            masters.validate_master(conn, master, catalog, prefix="master_agreement.")
            now = self._clock()
            recorded = masters.record_master(conn, master, principal.organization_id, now)
            if recorded is None:
                return MasterRegistered(masters.load_masters(conn, master.id)[-1], None)
            event = self._log.append(
                conn,
                actor_of(principal),
                MASTER_AGREEMENT_REGISTERED,
                f"{recorded.id}/{recorded.version}",
                masters.master_body(recorded),
                now,
            )
            return MasterRegistered(masters.RecordedMaster(recorded, principal.organization_id, now), event)

        return await self._commit(work)

    async def masters(self, master_id: str | None = None) -> list[masters.RecordedMaster]:
        """Every version of every master agreement (or of one), by id and version."""

        def read() -> list[masters.RecordedMaster]:
            with self._engine.connect() as conn:
                return masters.load_masters(conn, master_id)

        return await asyncio.to_thread(read)

    async def propose_agreement(
        self, principal: Principal, terms: Agreement, unit: str, accountable: str
    ) -> AgreementChanged:
        """Record a new version of an agreement in PROPOSED (consumer administrators only), logged."""
        catalog = self._require_catalog()

        def work(conn: sa.Connection) -> AgreementChanged:
            now = self._clock()
            version = lifecycle.propose(conn, principal, terms, unit, accountable, catalog, now)
            event = self._log.append(
                conn,
                actor_of(principal),
                "AGREEMENT_PROPOSED",
                f"{terms.id}/{version.terms.version}",
                lifecycle.terms_body(version),
                now,
            )
            return AgreementChanged(version, event)

        return await self._commit(work)

    async def act_on_agreement(
        self,
        principal: Principal,
        agreement_id: str,
        version: int | None,
        action: AgreementAction,
        reason: str,
    ) -> AgreementChanged:
        """Approve, veto, lift a veto, suspend, resume or revoke (by role and state), logged."""
        catalog = self._require_catalog()

        def work(conn: sa.Connection) -> AgreementChanged:
            now = self._clock()
            after = lifecycle.act(conn, principal, agreement_id, version, action, reason, catalog, now)
            body: dict[str, Any] = {"action": action.value, "reason": reason, "state": after.state(now).value}
            event = self._log.append(
                conn,
                actor_of(principal),
                f"AGREEMENT_{_LOGGED[action]}",
                f"{agreement_id}/{after.terms.version}",
                body,
                now,
            )
            return AgreementChanged(after, event)

        return await self._commit(work)

    async def agreements(self, agreement_id: str | None = None) -> list[lifecycle.AgreementVersion]:
        """Every version of every agreement (or of one), by agreement and version."""
        catalog = self._require_catalog()

        def read() -> list[lifecycle.AgreementVersion]:
            with self._engine.connect() as conn:
                return lifecycle.load_versions(conn, catalog, agreement_id)

        return await asyncio.to_thread(read)

    def now(self) -> dt.datetime:
        return self._clock()

    def _require_catalog(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("this governance service was built without a catalog")
        return self._catalog

    async def _commit(self, work: Callable[[sa.Connection], T]) -> T:
        def notified(conn: sa.Connection) -> T:
            done = work(conn)
            notify_change(conn)  # every replica re-reads its policy once this commits
            return done

        done = await asyncio.to_thread(in_logged_transaction, self._engine, notified)
        await asyncio.to_thread(self._witness_head)
        if self._changed is not None:
            await self._changed()
        return done

    async def import_file(
        self, principal: Principal, text: str, source: str, *, dry_run: bool = False
    ) -> ImportDone:
        """Make what is recorded match a governance file (operator only): the changes, and their log
        entries (none for a dry run). A bad file is ``InvalidArgument`` naming the entry."""
        _operator_only(principal, "imports governance files")
        wanted = read_governance_file(text, source, self._require_catalog())
        if not wanted.agreements:
            # An empty or wrong file would otherwise revoke every agreement in force at once.
            raise InvalidArgument(
                [
                    FieldViolation(
                        "file",
                        f"{source} declares no agreement: importing it would revoke every agreement in "
                        "force; revoke agreements one by one (onceonly governance revoke) if that is meant",
                    )
                ]
            )

        def work(conn: sa.Connection) -> ImportDone:
            changes = importing.plan(conn, wanted, catalog=self._require_catalog())
            if dry_run:
                return ImportDone(changes, [])
            return ImportDone(
                changes, importing.apply(conn, changes, wanted, self._log, actor_of(principal), self._clock())
            )

        if dry_run:
            return await asyncio.to_thread(in_logged_transaction, self._engine, work)
        return await self._commit(work)

    async def joining_status(self, principal: Principal, organization_id: str) -> JoiningStatus:
        """The joining checklist of an organisation: its own, or any for the operator and oversight."""
        if principal.organization_id != organization_id and principal.kind not in ("operator", "oversight"):
            raise permission_denied(
                "OWN_STATUS_ONLY",
                f"rule OWN_STATUS_ONLY: {principal.organization_id} may see its own joining checklist only",
            )
        catalog = self._require_catalog()

        def read() -> JoiningStatus:
            with self._engine.connect() as conn:
                return joining_status(conn, organization_id, catalog, self._clock())

        return await asyncio.to_thread(read)

    def _witness_head(self) -> None:
        """Write the log's head (committed) to the witness; a failure is logged, never undoes the change."""
        if self._witness is None:
            return
        witness_governance_head(self._engine, self._witness)

    async def organisations(self) -> list[Organisation]:
        """Every member organisation, by code."""

        def read() -> list[Organisation]:
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(_ORGS).order_by(_ORGS.c.id))
                return [Organisation(r.id, r.name, OrganisationKind(r.kind), r.contact) for r in rows]

        return await asyncio.to_thread(read)

    async def log(self, *, after_seq: int = 0, limit: int = 100) -> list[LoggedEvent]:
        """Governance log entries after ``after_seq``, oldest first."""

        def read() -> list[LoggedEvent]:
            with self._engine.connect() as conn:
                return GovernanceLog.read(conn, after_seq=after_seq, limit=limit)

        return await asyncio.to_thread(read)
