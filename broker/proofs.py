"""Proofs of requests: what a consumer files in its case file, and a code anyone can check.

A request's proof names who asked, when, under which procedure and legal basis, what came of it,
and the SHA-256 of each attestation given; its **verification code** is the first 80 bits of the
record's hash in the ledger's chain, in base32 (``7KQ2-M4XA-P3RT-W6YB``): enough to find the record
by an index, too many to guess. Checking a code reads the record it names, recomputes its hash
(an edited record no longer matches) and checks that the chain links to it (the next record's
``prev_hash``, or a signed checkpoint of that very position); it says whether a signed checkpoint
covers it. It never shows the subject, nor any attested value. ``onceonly ledger verify`` checks
every link and signature of the whole chain; a code checks one record cheaply.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from onceonly.broker.auth import RESIDENT_ROLE, Principal
from onceonly.broker.chain import record_hash
from onceonly.broker.domain import TraceRecord
from onceonly.broker.errors import FieldViolation, InvalidRequest
from onceonly.broker.idempotency import decode_result
from onceonly.broker.ledger import trace_from_row
from onceonly.broker.ports import Ledger, Pseudonymiser
from onceonly.broker.storage import CheckpointRow, OrganisationRow, TraceRow
from onceonly.broker.traces import TraceEntry
from onceonly.errors import NotFound, permission_denied, role_words

__all__ = ["AttestationDigest", "Proof", "Proofs", "Verification", "hash_prefix", "verification_code"]

CODE_BYTES = 10
_CODE = re.compile(r"[A-Z2-7]{16}")
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_CHECKPOINTS: sa.Table = CheckpointRow.__table__  # type: ignore[attr-defined]
_ORGANISATIONS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]


def verification_code(hash_hex: str) -> str:
    """The code of a record whose hash is ``hash_hex``: 16 base32 characters in groups of four."""
    text = base64.b32encode(bytes.fromhex(hash_hex)[:CODE_BYTES]).decode()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def hash_prefix(code: str) -> str | None:
    """The record hash's first 20 hex digits named by ``code`` (spaces, dashes and case ignored);
    ``None`` if it is not a code."""
    text = re.sub(r"[\s-]", "", code).upper()
    if not _CODE.fullmatch(text):
        return None
    try:
        return base64.b32decode(text).hex()
    except binascii.Error:
        return None


@dataclass(frozen=True, slots=True)
class AttestationDigest:
    certificate_type_id: str
    provider_id: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Proof:
    entry: TraceEntry
    organisation_name: str
    verification_code: str
    record_hash: str
    attestations: tuple[AttestationDigest, ...]
    sealed: bool


@dataclass(frozen=True, slots=True)
class Verification:
    matches: bool
    created_at: dt.datetime | None = None
    consumer_organization_id: str = ""
    consumer_organization_name: str = ""
    procedure_code: str = ""
    decision: str = ""
    certificate_type_ids: tuple[str, ...] = ()
    intact: bool = False
    sealed: bool = False
    chain_id: str = ""
    seq: int = 0


PROOF_ROLES = frozenset({"consumer", "consumer-admin"})


class Proofs:
    """Builds a request's proof and checks verification codes, over the ledger's database."""

    def __init__(
        self,
        engine: sa.Engine,
        ledger: Ledger,
        *,
        pseudonymiser: Pseudonymiser | None = None,
        disclosures: Callable[[Iterable[tuple[str, int]]], dict[tuple[str, int], str]] | None = None,
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._pseudonymiser = pseudonymiser
        self._disclosures = disclosures

    async def proof(self, principal: Principal, trace_id: str) -> Proof:
        """The proof of a traced request: oversight any; a consumer (its applications and its
        administrators) only its own requests."""
        if principal.kind not in ("oversight", RESIDENT_ROLE) and principal.kind not in PROOF_ROLES:
            raise permission_denied(
                "PROOF_OF_OWN_REQUESTS",
                f"rule PROOF_OF_OWN_REQUESTS: {role_words(principal.kind)} may not read proofs of requests",
                role=principal.kind,
            )
        trace_id = trace_id.strip()
        if not trace_id or len(trace_id) > 64:
            raise InvalidRequest([FieldViolation("trace_id", "is required (at most 64 characters)")])
        found = await asyncio.to_thread(self._read, _TRACES.c.trace_id == trace_id)
        if found is None:
            raise NotFound(
                f"no trace {trace_id!r} in the ledger",
                resource_type="trace",
                resource_name=trace_id,
                field="trace_id",
                description="no such trace (or purged by retention)",
            )
        m, name, sealed, _ = found
        record = trace_from_row(m)
        if principal.kind == RESIDENT_ROLE:
            if not await self._residents_own(principal, record):
                # Another person's request, or one hidden from the resident: as if there were none.
                raise NotFound(
                    f"no request {trace_id!r} in your access log",
                    resource_type="trace",
                    resource_name=trace_id,
                    field="trace_id",
                    description="not in your access log",
                )
        elif principal.kind != "oversight" and record.consumer_organization_id != principal.organization_id:
            raise permission_denied(
                "CONSUMER_OWN_DATA_ONLY",
                f"rule CONSUMER_OWN_DATA_ONLY: {principal.organization_id} may only see proofs of its own "
                "requests",
                field="trace_id",
            )
        digests: tuple[AttestationDigest, ...] = ()
        reply = await self._ledger.find_reply(record.consumer_organization_id, record.request_id)
        if reply is not None and reply.kind == "response":
            result = decode_result(orjson.loads(reply.payload))
            digests = tuple(
                AttestationDigest(
                    o.certificate_type_id, o.provider_id, hashlib.sha256(o.attestation.encode()).hexdigest()
                )
                for o in result.outcomes
                if o.attestation
            )
        entry = TraceEntry(record, m["chain_id"], int(m["seq"]), int(m["id"]))
        return Proof(entry, name, verification_code(m["record_hash"]), m["record_hash"], digests, sealed)

    async def _residents_own(self, principal: Principal, record: TraceRecord) -> bool:
        """Whether the record is in the access log of the resident or of someone they represent."""
        if self._pseudonymiser is None or principal.subject is None:
            return False
        people = (principal.subject, *principal.represents)
        if record.subject_ref not in {self._pseudonymiser.pseudonym(p.key()) for p in people}:
            return False
        refs = {(g.agreement_id, g.version) for g in record.agreements}
        if refs and self._disclosures is not None:
            hidden = await asyncio.to_thread(self._disclosures, refs)
            return not hidden
        return True

    async def verify(self, code: str) -> Verification:
        """Whether ``code`` names a record of the ledger, and whether that record is intact."""
        prefix = hash_prefix(code)
        if prefix is None:
            raise InvalidRequest(
                [
                    FieldViolation(
                        "verification_code", "must be 16 letters A-Z and digits 2-7 (dashes allowed)"
                    )
                ]
            )
        # Hex digits sort below "g": every hash beginning with the prefix lies in this range.
        where = sa.and_(_TRACES.c.record_hash >= prefix, _TRACES.c.record_hash < prefix + "g")
        found = await asyncio.to_thread(self._read, where)
        if found is None:
            return Verification(matches=False)
        m, name, sealed, linked = found
        return Verification(
            matches=True,
            created_at=m["created_at"],
            consumer_organization_id=m["consumer_organization_id"],
            consumer_organization_name=name,
            procedure_code=m["procedure_code"],
            decision=m["decision"],
            certificate_type_ids=trace_from_row(m).certificate_type_ids,
            intact=linked and record_hash(m) == m["record_hash"],
            sealed=sealed,
            chain_id=m["chain_id"],
            seq=int(m["seq"]),
        )

    def _read(self, where: sa.ColumnElement[bool]) -> tuple[Any, str, bool, bool] | None:
        """The record, its consumer's name, whether a checkpoint covers it, whether the chain links
        to it."""
        t, cp = _TRACES.c, _CHECKPOINTS.c
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_TRACES).where(where).limit(1)).first()
            if row is None:
                return None
            m = dict(row._mapping)
            name = conn.execute(
                sa.select(_ORGANISATIONS.c.name).where(_ORGANISATIONS.c.id == m["consumer_organization_id"])
            ).scalar()
            covered = conn.execute(
                sa.select(sa.func.max(cp.seq)).where(cp.chain_id == m["chain_id"])
            ).scalar()
            following = conn.execute(
                sa.select(t.prev_hash).where(t.chain_id == m["chain_id"], t.seq == m["seq"] + 1)
            ).scalar()
            at_checkpoint = conn.execute(
                sa.select(cp.head_hash).where(cp.chain_id == m["chain_id"], cp.seq == m["seq"])
            ).scalar()
        if following is not None:
            linked = following == m["record_hash"]
        elif at_checkpoint is not None:
            linked = at_checkpoint == m["record_hash"]
        else:
            linked = True  # the chain's newest record: nothing follows it yet
        return m, name or "", covered is not None and covered >= m["seq"], linked
