"""A resident's own access log: who consulted their data, when, why and under which legal basis.

A resident is a principal of role ``resident``, vouched for by an eID provider (see
:func:`onceonly.broker.auth.load_jwt_issuers`, ``residents = true``): the token names their identity
document and, for a guardian or a representative, the people they may act for. Every view is traced
before it is answered (procedure ``RESIDENT-ACCESS-VIEW``; who viewed whose: ``self``, or
``representative:`` and the viewer's pseudonym), so the log shows the person that a representative
looked; asking about anyone else is refused ``NOT_REPRESENTED`` and traced in that person's log.

What a resident does not see: entries under an agreement whose disclosure is ``DEFERRED`` (until its
date, or until released — an audited governance action) or ``WITHHELD`` (never), and their own
earlier views. The list is read by the keyed pseudonym, never by the document number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

from onceonly.broker.auth import RESIDENT_ROLE, RESIDENTS_ORG, Principal
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import Decision, TraceRecord
from onceonly.broker.errors import FieldViolation, InvalidRequest
from onceonly.broker.ports import Ledger, Pseudonymiser, TraceQueries
from onceonly.broker.service import new_trace_id
from onceonly.errors import permission_denied, role_words
from onceonly.vocabulary import DenialReason, LegalBasisKind, OfficerIdentification, SubjectId

__all__ = ["MyAccess", "ResidentAccessService", "ResidentView", "label_of"]

VIEW_PROCEDURE = "RESIDENT-ACCESS-VIEW"
VIEW_UNIT = "self-service"
VIEW_LAW = "RGPD art. 15"
SELF = "self"
REPRESENTATIVE = "representative:"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class MyAccess:
    record: TraceRecord
    organisation_name: str
    certificates: tuple[tuple[str, str], ...]
    """(certificate type, title) in the language asked for."""
    provider_names: tuple[str, ...]
    procedure_name: str = ""
    """The description of the agreement that allowed the request (empty without one)."""


@dataclass(frozen=True, slots=True)
class ResidentView:
    accesses: tuple[MyAccess, ...]
    next_page_token: str
    person: int
    people: tuple[tuple[int, str], ...]
    retention_days: int
    view_trace_id: str


def label_of(subject: SubjectId) -> str:
    """How a page names a person without their whole number: ``DNI ····678Z``."""
    return f"{subject.document_type.value} ····{subject.document_number[-4:]}"


class ResidentAccessService:
    """Residents' views of the ledger; each one appended to it first."""

    def __init__(
        self,
        queries: TraceQueries,
        ledger: Ledger,
        pseudonymiser: Pseudonymiser,
        catalog: Catalog,
        *,
        retention_days: int,
    ) -> None:
        if retention_days <= 0:
            raise ValueError("the retention period must be a positive number of days")
        self._queries = queries
        self._ledger = ledger
        self._pseudonymiser = pseudonymiser
        self._catalog = catalog
        self._retention_days = retention_days

    async def view(
        self,
        principal: Principal,
        *,
        person: int = 0,
        subject: SubjectId | None = None,
        page_size: int = 0,
        page_token: str = "",
        language: str = "en",
    ) -> ResidentView:
        """The access log of ``principal`` (a resident) or of a person they represent."""
        if principal.kind != RESIDENT_ROLE or principal.subject is None:
            raise permission_denied(
                "RESIDENTS_ONLY",
                "rule RESIDENTS_ONLY: the access log is a resident's own; "
                f"{role_words(principal.kind)} has none",
                role=principal.kind,
            )
        people = (principal.subject, *principal.represents)
        bad: list[FieldViolation] = []
        if not 0 <= person < len(people):
            bad.append(FieldViolation("person", f"must be from 0 to {len(people) - 1}"))
        offset = 0
        if page_token:
            if not page_token.isdigit() or len(page_token) > 9:
                bad.append(FieldViolation("page_token", "is not a page token of this log"))
            else:
                offset = int(page_token)
        if bad:
            raise InvalidRequest(bad)
        if subject is not None:
            if subject not in people:
                await self._trace(principal, subject, denied=True)
                raise permission_denied(
                    "NOT_REPRESENTED",
                    "rule NOT_REPRESENTED: your identity provider does not say you represent this person; "
                    "the attempt was recorded in their access log",
                )
            person = people.index(subject)
        target = people[person]
        view = await self._trace(principal, target, denied=False)
        ref = view.subject_ref
        records = await asyncio.to_thread(self._queries.of_subject, ref, view.trace_id, None, None)
        records = [r for r in records if not (r.procedure_code == VIEW_PROCEDURE and r.officer_id == SELF)]
        flags = await asyncio.to_thread(
            self._queries.disclosures, {(g.agreement_id, g.version) for r in records for g in r.agreements}
        )
        shown = [r for r in records if not any((g.agreement_id, g.version) in flags for g in r.agreements)]
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = shown[offset : offset + size]
        more = offset + size < len(shown)
        names = await asyncio.to_thread(
            self._queries.organisation_names,
            {r.consumer_organization_id for r in page} | {o.provider_id for r in page for o in r.outcomes},
        )
        described = await asyncio.to_thread(
            self._queries.agreement_descriptions,
            {(g.agreement_id, g.version) for r in page for g in r.agreements},
        )
        accesses = tuple(self._access(r, names, described, language) for r in page)
        return ResidentView(
            accesses,
            str(offset + size) if more else "",
            person,
            tuple((i, label_of(p)) for i, p in enumerate(people)),
            self._retention_days,
            view.trace_id,
        )

    def _access(
        self,
        r: TraceRecord,
        names: dict[str, str],
        described: dict[tuple[str, int], str],
        language: str,
    ) -> MyAccess:
        certificates = []
        for type_id in r.certificate_type_ids:
            found = self._catalog.get(type_id)
            title = (found.titles.get(language) or found.title) if found is not None else type_id
            certificates.append((type_id, title))
        providers = tuple(dict.fromkeys(names.get(o.provider_id, o.provider_id) for o in r.outcomes))
        procedure = next((d for g in r.agreements if (d := described.get((g.agreement_id, g.version)))), "")
        organisation = names.get(r.consumer_organization_id, r.consumer_organization_id)
        return MyAccess(r, organisation, tuple(certificates), providers, procedure)

    async def _trace(self, principal: Principal, target: SubjectId, *, denied: bool) -> TraceRecord:
        """Append the record of this view (or of a refused one) to the ledger; fail closed."""
        assert principal.subject is not None
        own = target == principal.subject
        viewer = SELF if own else REPRESENTATIVE + self._pseudonymiser.pseudonym(principal.subject.key())[:16]
        record = TraceRecord(
            trace_id=new_trace_id(),
            request_id=f"resident-{uuid.uuid4().hex}",
            request_digest="",  # a view is never retried by id
            created_at=dt.datetime.now(dt.UTC),
            consumer_organization_id=RESIDENTS_ORG,
            consumer_unit=VIEW_UNIT,
            officer_id=viewer,
            procedure_code=VIEW_PROCEDURE,
            purpose_text=(
                "The resident viewed their access log"
                if own
                else "A representative asked for the access log of a person they represent"
            ),
            case_file_id="",
            legal_basis_kind=LegalBasisKind.LAW,
            legal_basis_reference=VIEW_LAW,
            subject_document_type=target.document_type,
            subject_ref=self._pseudonymiser.pseudonym(target.key()),
            certificate_type_ids=(),
            decision=Decision.DENIED if denied else Decision.GRANTED,
            denial_reason=DenialReason.NOT_REPRESENTED if denied else None,
            denial_detail="the token does not name this person among those its holder represents"
            if denied
            else "",
            outcomes=(),
            duration_ms=0,
            officer_identification=OfficerIdentification.TOKEN,
        )
        await self._ledger.append(record, None)
        return record
