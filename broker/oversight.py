"""Oversight over the trace ledger, without gRPC: trace search, usage statistics, resident reports.

Who may ask what (:func:`scope_for`):

* an ``oversight`` principal may use everything;
* a ``provider`` principal (the provider's application or its administrators, ``provider-admin``)
  may list the traces of queries that reached its own data (a check it served) and see its own
  usage row, and nothing else; the checks of other providers are left out of what it sees;
* a consumer's administrators (``consumer-admin``) may list their own organisation's traces;
* anyone else is refused (``OVERSIGHT_ONLY``).

The service holds no SQL: it reads through the :class:`~onceonly.broker.ports.TraceQueries`
port (:mod:`onceonly.broker.trace_queries` over the ledger's database; an in-memory fake in
the tests), and the query types (filter, page, page tokens) are in :mod:`onceonly.broker.traces`.

Each use of the resident report is itself traced, before the report is read: the resident
sees that an oversight body consulted their record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NoReturn

from onceonly.broker.auth import Principal
from onceonly.broker.domain import Decision, LegalBasis, SubjectId, TraceRecord
from onceonly.broker.errors import FieldViolation, InvalidRequest
from onceonly.broker.ports import Ledger, Pseudonymiser, TraceQueries, WitnessReader
from onceonly.broker.service import new_trace_id
from onceonly.broker.traces import (
    OUTCOMES,
    TraceEntry,
    TraceFilter,
    TracePage,
    decode_page_token,
    encode_page_token,
    range_violations,
)
from onceonly.broker.usage import Grouping, UsageTable
from onceonly.broker.usage_facts import FactFilter, FactTable
from onceonly.broker.witness import Witnessed
from onceonly.errors import PermissionDenied, permission_denied, role_words

__all__ = [
    "OUTCOMES",
    "OversightService",
    "ResidentAccess",
    "ResidentReport",
    "Scope",
    "TraceEntry",
    "TraceFilter",
    "TracePage",
    "decode_page_token",
    "encode_page_token",
    "own_data_only",
    "scope_for",
]

OPEN_DATA_MINIMUM = 10
"""Open data withholds a fact counted fewer times than this (so that no one person stands out)."""
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
REPORT_PROCEDURE = "OVERSIGHT-RESIDENT-REPORT"
REPORT_UNIT = "oversight"


# --- who may ask what -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What a principal may see: everything, one provider's data (``provider_id``), or one
    consumer's requests (``consumer_id``)."""

    provider_id: str | None = None
    consumer_id: str | None = None


PROVIDER_ROLES = frozenset({"provider", "provider-admin"})


def scope_for(
    principal: Principal | None, rpc: str, *, provider_allowed: bool, consumer_allowed: bool = False
) -> Scope:
    """The scope of ``principal`` for ``rpc``; ``PermissionDenied`` (``OVERSIGHT_ONLY``) if it has none."""
    if principal is not None and principal.kind == "oversight":
        return Scope()
    if principal is not None and principal.kind in PROVIDER_ROLES and provider_allowed:
        return Scope(provider_id=principal.organization_id)
    if principal is not None and principal.kind == "consumer-admin" and consumer_allowed:
        return Scope(consumer_id=principal.organization_id)
    kind = principal.kind if principal is not None else "unauthenticated"
    return _oversight_only(rpc, kind)


def _oversight_only(rpc: str, kind: str) -> NoReturn:
    what = {
        "provider": "a provider may only list traces and usage of its own data",
        "provider-admin": "a provider may only list traces and usage of its own data",
        "consumer-admin": "a consumer's administrators may only list their own organisation's traces",
    }.get(kind, "")
    raise permission_denied(
        "OVERSIGHT_ONLY",
        f"rule OVERSIGHT_ONLY: {role_words(kind)} may not call Oversight.{rpc}"
        + (f"; {what}" if what else ""),
        role=kind,
    )


def own_data_only(scope: Scope, provider_id: str, consumer_id: str = "") -> PermissionDenied | None:
    """Refusal for a provider naming another provider's data, or a consumer another consumer's
    requests; ``None`` if allowed."""
    if scope.consumer_id is not None and consumer_id and consumer_id != scope.consumer_id:
        return permission_denied(
            "CONSUMER_OWN_DATA_ONLY",
            f"rule CONSUMER_OWN_DATA_ONLY: {scope.consumer_id} may only see its own requests",
            field="filter.consumer_organization_id",
        )
    if scope.provider_id is None or not provider_id or provider_id == scope.provider_id:
        return None
    return permission_denied(
        "PROVIDER_OWN_DATA_ONLY",
        f"rule PROVIDER_OWN_DATA_ONLY: provider {scope.provider_id} may only see traces of its own data",
        field="filter.provider_id",
    )


# --- trace search -----------------------------------------------------------------------------


def _only_provider(record: TraceRecord, provider_id: str) -> TraceRecord:
    """What a provider sees of a trace: its own checks, not the other providers'."""
    own = tuple(o for o in record.outcomes if o.provider_id == provider_id)
    types = {o.certificate_type_id for o in own}
    return replace(
        record,
        outcomes=own,
        certificate_type_ids=tuple(c for c in record.certificate_type_ids if c in types),
    )


# --- resident report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResidentAccess:
    record: TraceRecord
    organisation_name: str
    disclosure: str = ""
    """Flag for oversight: "DEFERRED until …" or "WITHHELD under …" when an agreement behind the
    access hides it from the resident (the strictest, if several); empty when shown to them."""


@dataclass(frozen=True, slots=True)
class ResidentReport:
    accesses: tuple[ResidentAccess, ...]
    report_trace_id: str


# --- the service -----------------------------------------------------------------------------------


class OversightService:
    """Oversight over the trace ledger; the resident report also appends to the ledger.

    The reads go through the :class:`~onceonly.broker.ports.TraceQueries` port, in worker threads.
    """

    def __init__(
        self,
        queries: TraceQueries,
        ledger: Ledger,
        pseudonymiser: Pseudonymiser,
        witness: WitnessReader | None = None,
    ) -> None:
        self._queries = queries
        self._ledger = ledger
        self._pseudonymiser = pseudonymiser
        self._witness = witness

    async def witnessed_heads(self) -> list[Witnessed]:
        """The ledger's signed chain heads as the witness holds them (none without a witness)."""
        if self._witness is None:
            return []
        return await asyncio.to_thread(self._witness.heads)

    # trace search

    async def list_traces(
        self, filter_: TraceFilter, scope: Scope, *, page_size: int = 0, page_token: str = ""
    ) -> TracePage:
        refusal = own_data_only(scope, filter_.provider_id, filter_.consumer_organization_id)
        if refusal is not None:
            raise refusal
        filter_.validate()
        if scope.provider_id is not None:
            filter_ = replace(filter_, provider_id=scope.provider_id)
        if scope.consumer_id is not None:
            filter_ = replace(filter_, consumer_organization_id=scope.consumer_id)
        after = decode_page_token(page_token, filter_) if page_token else None
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = await asyncio.to_thread(self._queries.page, filter_, size, after)
        if scope.provider_id is not None:
            entries = tuple(
                replace(e, record=_only_provider(e.record, scope.provider_id)) for e in page.entries
            )
            page = TracePage(entries, page.next_page_token)
        return page

    # usage

    async def usage(
        self,
        grouping: Grouping,
        scope: Scope,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UsageTable:
        bad = range_violations(since, until, "")
        if bad:
            raise InvalidRequest([FieldViolation("until", bad[0].description)])
        filter_ = TraceFilter(since=since, until=until, provider_id=scope.provider_id or "")
        return await asyncio.to_thread(self._queries.usage, filter_, grouping, scope.provider_id)

    # usage facts

    async def facts(
        self,
        scope: Scope,
        filter_: FactFilter,
        group_by: Sequence[str],
        bucket: str,
        *,
        open_data: bool = False,
    ) -> FactTable:
        """Usage facts within ``scope``: a provider's own checks (without request counts), a
        consumer's own requests; for open data, facts counted fewer than :data:`OPEN_DATA_MINIMUM`
        times are withheld."""
        equal = dict(filter_.equal or {})
        refusal = own_data_only(
            scope, equal.get("provider_id", ""), equal.get("consumer_organization_id", "")
        )
        if refusal is not None:
            raise refusal
        bad = range_violations(filter_.since, filter_.until, "")
        if bad:
            raise InvalidRequest([FieldViolation("until", bad[0].description)])
        if scope.provider_id is not None:
            equal["provider_id"] = scope.provider_id
        if scope.consumer_id is not None:
            equal["consumer_organization_id"] = scope.consumer_id
        filter_ = replace(filter_, equal=equal)
        table = await asyncio.to_thread(self._queries.facts, filter_, group_by, bucket)
        rows = table.rows
        if scope.provider_id is not None:
            rows = tuple(replace(r, requests=0) for r in rows)
        if open_data:
            rows = tuple(
                replace(r, checks=0, requests=0, suppressed=True) if r.checks < OPEN_DATA_MINIMUM else r
                for r in rows
            )
        return replace(table, rows=rows)

    # resident report

    async def resident_report(
        self,
        principal: Principal,
        subject: SubjectId,
        purpose: str,
        legal_basis: LegalBasis,
        *,
        case_file_id: str = "",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> ResidentReport:
        """Trace this lookup (fail closed: ``LedgerUnavailable``), then list the resident's accesses."""
        started = dt.datetime.now(dt.UTC)
        subject_ref = self._pseudonymiser.pseudonym(subject.key())
        request_id = f"oversight-{uuid.uuid4().hex}"
        trace = TraceRecord(
            trace_id=new_trace_id(),
            request_id=request_id,
            request_digest="",  # a report is never retried by id: no digest to keep
            created_at=started,
            consumer_organization_id=principal.organization_id,
            consumer_unit=REPORT_UNIT,
            officer_id=principal.officer_id or "-",
            procedure_code=REPORT_PROCEDURE,
            purpose_text=purpose,
            case_file_id=case_file_id,
            legal_basis_kind=legal_basis.kind,
            legal_basis_reference=legal_basis.reference,
            subject_document_type=subject.document_type,
            subject_ref=subject_ref,
            certificate_type_ids=(),
            decision=Decision.GRANTED,
            denial_reason=None,
            denial_detail="",
            outcomes=(),
            duration_ms=0,
        )
        await self._ledger.append(trace, None)
        records = await asyncio.to_thread(self._queries.of_subject, subject_ref, trace.trace_id, since, until)
        names = await asyncio.to_thread(
            self._queries.organisation_names, (r.consumer_organization_id for r in records)
        )
        flags = await asyncio.to_thread(
            self._queries.disclosures, {(g.agreement_id, g.version) for r in records for g in r.agreements}
        )

        def flag(r: TraceRecord) -> str:
            found = sorted(
                {flags[key] for g in r.agreements if (key := (g.agreement_id, g.version)) in flags}
            )
            withheld = [f for f in found if f.startswith("WITHHELD")]
            return (withheld or found or [""])[0]

        accesses = tuple(
            ResidentAccess(r, names.get(r.consumer_organization_id, ""), flag(r)) for r in records
        )
        return ResidentReport(accesses, trace.trace_id)
