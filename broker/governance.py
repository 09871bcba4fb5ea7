"""Governance as part of the platform, without gRPC: the member organisations and the governance log.

Every change is authorised by the caller's role (from its certificate or token), applied in one
transaction with its signed entry in the governance log (:mod:`broker.governance_log`), and
refused — naming the rule — with nothing recorded when it is not allowed:

* registering an organisation: the platform operator only (``OPERATOR_ONLY``); a code that is
  taken is ``ALREADY_EXISTS``.

Reading is open to every member: the organisations (codes, names, kinds, contacts) and the
governance log, so that anyone can see who decided what.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa

from onceonly.broker.auth import Principal
from onceonly.broker.domain import Organisation
from onceonly.broker.governance_log import Actor, GovernanceLog, LoggedEvent, in_logged_transaction
from onceonly.broker.storage import OrganisationRow
from onceonly.errors import AlreadyExists, permission_denied
from onceonly.validation import ID_PATTERN, FieldErrors
from onceonly.vocabulary import OrganisationKind

__all__ = ["ORGANISATION_REGISTERED", "GovernanceService", "OrganisationRegistered"]

ORGANISATION_REGISTERED = "ORGANISATION_REGISTERED"
_ORGS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]
_MAX_NAME = 200
_MAX_CONTACT = 256


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
    ) -> None:
        self._engine = engine
        self._log = log
        self._clock = clock
        self._changed = changed
        """Awaited after a change is committed: the broker re-reads its policy, so the change
        takes effect on this replica before the caller hears it was made."""

    async def register_organisation(
        self, principal: Principal, organisation: Organisation
    ) -> OrganisationRegistered:
        """Add a member organisation (operator only), logged."""
        if principal.kind != "operator":
            raise permission_denied(
                "OPERATOR_ONLY",
                "rule OPERATOR_ONLY: only the platform operator registers organisations, "
                f"not a {principal.kind}",
                role=principal.kind,
            )

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

        registered = await asyncio.to_thread(in_logged_transaction, self._engine, work)
        if self._changed is not None:
            await self._changed()
        return registered

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
