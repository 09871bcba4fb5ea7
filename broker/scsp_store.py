"""The asynchronous SCSP petitions the broker has taken, by ``IdPeticion`` (blocking: call from a
thread).

SCSP makes ``IdPeticion`` unique: a second petition with an id already taken is refused (0229)
unless it is the same petition sent again, which is answered as the first was. An asynchronous
petition keeps its ``Peticion`` (sealed like a stored reply: it names residents) and its job, so
that ``solicitudRespuesta`` can echo every transmission's generic data. A synchronous petition is
not written here (it would cost every one a commit): its trace is its record, found by the request
ids it gave (``IdPeticion.IdSolicitud``). Kept until the platform's retention period ends, then
purged with the jobs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from onceonly.broker.ledger import ReplyCipher
from onceonly.broker.storage import ScspPetitionRow

PETITIONS: sa.Table = ScspPetitionRow.__table__  # type: ignore[attr-defined]
ASYNC = "async"


class PetitionTaken(Exception):
    """The id is taken by another petition (another body, mode or organisation)."""


@dataclass(frozen=True, slots=True)
class Petition:
    id_peticion: str
    organization_id: str
    mode: str
    digest: str
    elements: int
    job_id: str | None
    created_at: dt.datetime
    expires_at: dt.datetime


class PetitionStore:
    def __init__(self, engine: sa.Engine, cipher: ReplyCipher) -> None:
        self._engine = engine
        self._cipher = cipher

    @staticmethod
    def _aad(organization_id: str, id_peticion: str) -> bytes:
        return ReplyCipher.aad(organization_id, f"scsp:{id_peticion}")

    def take(
        self,
        id_peticion: str,
        organization_id: str,
        mode: str,
        digest: str,
        elements: int,
        now: dt.datetime,
        expires_at: dt.datetime,
        petition: bytes | None = None,
        job_id: str | None = None,
    ) -> bool:
        """Record the petition (``True``), or find it already recorded identically (``False``);
        ``PetitionTaken`` if the id belongs to another petition."""
        values = {
            "id_peticion": id_peticion,
            "organization_id": organization_id,
            "mode": mode,
            "digest": digest,
            "elements": elements,
            "job_id": job_id,
            "petition": None
            if petition is None
            else self._cipher.seal(petition, self._aad(organization_id, id_peticion)),
            "created_at": now,
            "expires_at": expires_at,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(PETITIONS.insert().values(**values))
            return True
        except sa.exc.IntegrityError:
            existing = self.get(id_peticion)
            if existing is None:
                raise
            if (existing.organization_id, existing.mode, existing.digest) != (organization_id, mode, digest):
                raise PetitionTaken(id_peticion) from None
            return False

    def get(self, id_peticion: str) -> Petition | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(PETITIONS).where(PETITIONS.c.id_peticion == id_peticion)).first()
        if row is None:
            return None
        return Petition(
            row.id_peticion,
            row.organization_id,
            row.mode,
            row.digest,
            row.elements,
            row.job_id,
            row.created_at,
            row.expires_at,
        )

    def body(self, petition: Petition) -> bytes:
        """An asynchronous petition's ``Peticion`` (canonical XML), unsealed."""
        with self._engine.connect() as conn:
            blob = conn.execute(
                sa.select(PETITIONS.c.petition).where(PETITIONS.c.id_peticion == petition.id_peticion)
            ).scalar_one()
        return self._cipher.open(blob, self._aad(petition.organization_id, petition.id_peticion))


def purge_petitions(engine: sa.Engine, cutoff: dt.datetime, now: dt.datetime) -> int:
    """Delete the petitions that expired by ``now`` or were taken before ``cutoff``; how many went."""
    with engine.begin() as conn:
        gone = sa.or_(PETITIONS.c.expires_at <= now, PETITIONS.c.created_at < cutoff)
        return conn.execute(PETITIONS.delete().where(gone)).rowcount or 0
