"""Oversight over the trace ledger, without gRPC: trace search, usage statistics, resident reports.

Who may ask what (:func:`scope_for`):

* an ``oversight`` principal may use everything;
* a ``provider`` principal may list the traces of queries that reached its own data (a check
  it served) and see its own usage row, and nothing else; the checks of other providers are
  left out of what it sees;
* anyone else is refused (``OVERSIGHT_ONLY``).

Filtering by provider, certificate type or check status reads JSON text columns: the SQL
narrows the rows with ``LIKE`` on the JSON-encoded value (wildcards escaped), then every row
is confirmed in Python after ``json.loads``. Usage statistics (:mod:`broker.usage`) are computed
in Python from the trace rows of the time range, streamed from the database in batches with only
the columns they need: the cost grows linearly with the traces in the range (about 100,000 a
second on one core, so a million take some ten seconds). No table is added.

Each use of the resident report is itself traced, before the report is read: the resident
sees that an oversight body consulted their record.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, Protocol

import sqlalchemy as sa

from onceonly.broker.auth import Principal
from onceonly.broker.domain import (
    CheckStatus,
    Decision,
    LegalBasis,
    LegalBasisKind,
    SubjectId,
    TracedOutcome,
    TraceRecord,
)
from onceonly.broker.errors import FieldViolation, InvalidRequest
from onceonly.broker.ledger import trace_from_row
from onceonly.broker.service import new_trace_id
from onceonly.broker.storage import OrganisationRow, TraceRow
from onceonly.broker.usage import Grouping, UsageTable, sample_from_columns, tally
from onceonly.errors import PermissionDenied, permission_denied

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
REPORT_PROCEDURE = "OVERSIGHT-RESIDENT-REPORT"
REPORT_UNIT = "oversight"
OUTCOMES = frozenset({*(d.value for d in Decision), *(s.value for s in CheckStatus)})
_SCAN_BATCH = 500
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_ORGANISATIONS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]


# --- who may ask what -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What a principal may see: everything (``provider_id`` ``None``) or one provider's data."""

    provider_id: str | None = None


def scope_for(principal: Principal | None, rpc: str, *, provider_allowed: bool) -> Scope:
    """The scope of ``principal`` for ``rpc``; ``PermissionDenied`` (``OVERSIGHT_ONLY``) if it has none."""
    if principal is not None and principal.kind == "oversight":
        return Scope()
    if principal is not None and principal.kind == "provider" and provider_allowed:
        return Scope(provider_id=principal.organization_id)
    kind = principal.kind if principal is not None else "unauthenticated"
    return _oversight_only(rpc, kind)


def _oversight_only(rpc: str, kind: str) -> NoReturn:
    what = "a provider may only list traces and usage of its own data" if kind == "provider" else ""
    raise permission_denied(
        "OVERSIGHT_ONLY",
        f"rule OVERSIGHT_ONLY: a {kind} may not call Oversight.{rpc}" + (f"; {what}" if what else ""),
        role=kind,
    )


def own_data_only(scope: Scope, provider_id: str) -> PermissionDenied | None:
    """Refusal for a provider naming another provider's data; ``None`` if allowed."""
    if scope.provider_id is None or not provider_id or provider_id == scope.provider_id:
        return None
    return permission_denied(
        "PROVIDER_OWN_DATA_ONLY",
        f"rule PROVIDER_OWN_DATA_ONLY: provider {scope.provider_id} may only see traces of its own data",
        field="filter.provider_id",
    )


# --- trace search -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which traces to list; ``None``/empty fields match all. ``until`` is exclusive."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    consumer_organization_id: str = ""
    officer_id: str = ""
    procedure_code: str = ""
    legal_basis_kind: LegalBasisKind | None = None
    provider_id: str = ""
    certificate_type_id: str = ""
    outcome: str = ""

    def validate(self, prefix: str = "filter") -> None:
        """:class:`InvalidRequest` naming every bad field."""
        bad: list[FieldViolation] = []
        for name in (
            "consumer_organization_id",
            "officer_id",
            "procedure_code",
            "provider_id",
            "certificate_type_id",
        ):
            value: str = getattr(self, name)
            if len(value) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in value):
                bad.append(FieldViolation(f"{prefix}.{name}", "must be at most 128 printable characters"))
        if self.outcome and self.outcome not in OUTCOMES:
            bad.append(FieldViolation(f"{prefix}.outcome", f"must be one of {', '.join(sorted(OUTCOMES))}"))
        bad += _range_violations(self.since, self.until, prefix)
        if bad:
            raise InvalidRequest(bad)

    def fingerprint(self) -> str:
        """A short digest binding a page token to the filter it was made for."""
        values = [
            self.since.isoformat() if self.since else "",
            self.until.isoformat() if self.until else "",
            self.consumer_organization_id,
            self.officer_id,
            self.procedure_code,
            self.legal_basis_kind.value if self.legal_basis_kind else "",
            self.provider_id,
            self.certificate_type_id,
            self.outcome,
        ]
        return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]

    def matches_checks(self, outcomes: Sequence[TracedOutcome], certificate_type_ids: Sequence[str]) -> bool:
        """The JSON-column conditions, confirmed on the decoded values."""
        if self.certificate_type_id and self.certificate_type_id not in certificate_type_ids:
            return False
        status = self.outcome if self.outcome in CheckStatus.__members__ else ""
        if not (self.provider_id or status):
            return True
        return any(
            (not self.provider_id or o.provider_id == self.provider_id)
            and (not status or o.status.value == status)
            and (not self.certificate_type_id or o.certificate_type_id == self.certificate_type_id)
            for o in outcomes
        )


def _range_violations(
    since: dt.datetime | None, until: dt.datetime | None, prefix: str
) -> list[FieldViolation]:
    if since is not None and until is not None and since >= until:
        return [FieldViolation(f"{prefix}.until", "must be later than since")]
    return []


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """A trace record as oversight sees it: the record, where it sits in the ledger, its row id."""

    record: TraceRecord
    chain_id: str
    seq: int
    row_id: int


@dataclass(frozen=True, slots=True)
class TracePage:
    entries: tuple[TraceEntry, ...]
    next_page_token: str


def encode_page_token(created_at: dt.datetime, row_id: int, filter_: TraceFilter) -> str:
    body = json.dumps([created_at.astimezone(dt.UTC).isoformat(), row_id, filter_.fingerprint()])
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


_MAX_PAGE_TOKEN = 1024


def decode_page_token(token: str, filter_: TraceFilter) -> tuple[dt.datetime, int]:
    """The keyset ``(created_at, id)`` of a token; :class:`InvalidRequest` if it is not one of ours."""
    try:
        if len(token) > _MAX_PAGE_TOKEN:  # ours are about 100 characters; a huge one is not ours
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, row_id, fingerprint = json.loads(raw)
        when = dt.datetime.fromisoformat(created)
        if not isinstance(row_id, int) or when.tzinfo is None:
            raise ValueError("malformed")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidRequest([FieldViolation("page_token", "is not a page token of this service")]) from None
    if fingerprint != filter_.fingerprint():
        raise InvalidRequest([FieldViolation("page_token", "was made for another filter")])
    return when, row_id


def _like_json(column: sa.ColumnElement[str], value: str) -> sa.ColumnElement[bool]:
    """``column`` contains the JSON string ``value`` (quotes included), user wildcards escaped."""
    needle = json.dumps(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{needle}%", escape="\\")


def _where(filter_: TraceFilter) -> list[sa.ColumnElement[bool]]:
    t = _TRACES.c
    clauses: list[sa.ColumnElement[bool]] = []
    if filter_.since is not None:
        clauses.append(t.created_at >= filter_.since)
    if filter_.until is not None:
        clauses.append(t.created_at < filter_.until)
    for name in ("consumer_organization_id", "officer_id", "procedure_code"):
        value = getattr(filter_, name)
        if value:
            clauses.append(t[name] == value)
    if filter_.legal_basis_kind is not None:
        clauses.append(t.legal_basis_kind == filter_.legal_basis_kind.value)
    if filter_.provider_id:
        clauses.append(_like_json(t.outcomes, filter_.provider_id))
    if filter_.certificate_type_id:
        clauses.append(_like_json(t.certificate_type_ids, filter_.certificate_type_id))
    if filter_.outcome in Decision.__members__:
        clauses.append(t.decision == filter_.outcome)
    elif filter_.outcome:
        clauses.append(_like_json(t.outcomes, filter_.outcome))
    return clauses


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


@dataclass(frozen=True, slots=True)
class ResidentReport:
    accesses: tuple[ResidentAccess, ...]
    report_trace_id: str


class Ledger(Protocol):
    async def append(self, record: TraceRecord, reply: Any = None) -> None: ...


class Pseudonymiser(Protocol):
    def pseudonym(self, subject_key: str) -> str: ...


# --- the service -----------------------------------------------------------------------------------


class OversightService:
    """Queries over the trace ledger's database; the resident report also appends to the ledger.

    Database reads run in worker threads (``asyncio.to_thread`` by the async methods).
    """

    def __init__(self, engine: sa.Engine, ledger: Ledger, pseudonymiser: Pseudonymiser) -> None:
        self._engine = engine
        self._ledger = ledger
        self._pseudonymiser = pseudonymiser

    # trace search

    async def list_traces(
        self, filter_: TraceFilter, scope: Scope, *, page_size: int = 0, page_token: str = ""
    ) -> TracePage:
        refusal = own_data_only(scope, filter_.provider_id)
        if refusal is not None:
            raise refusal
        filter_.validate()
        if scope.provider_id is not None:
            filter_ = replace(filter_, provider_id=scope.provider_id)
        after = decode_page_token(page_token, filter_) if page_token else None
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = await asyncio.to_thread(self._page, filter_, size, after)
        if scope.provider_id is not None:
            entries = tuple(
                replace(e, record=_only_provider(e.record, scope.provider_id)) for e in page.entries
            )
            page = TracePage(entries, page.next_page_token)
        return page

    def _page(self, filter_: TraceFilter, size: int, after: tuple[dt.datetime, int] | None) -> TracePage:
        t = _TRACES.c
        clauses = _where(filter_)
        if after is not None:
            when, row_id = after
            clauses.append(sa.or_(t.created_at < when, sa.and_(t.created_at == when, t.id < row_id)))
        query = sa.select(_TRACES).where(*clauses).order_by(t.created_at.desc(), t.id.desc())
        found: list[TraceEntry] = []
        more = False
        with self._stream(query) as rows:
            for m in rows:
                record = trace_from_row(m)
                if not filter_.matches_checks(record.outcomes, record.certificate_type_ids):
                    continue
                if len(found) == size:
                    more = True
                    break
                found.append(TraceEntry(record, m["chain_id"], int(m["seq"]), int(m["id"])))
        token = ""
        if more:
            last = found[-1]
            token = encode_page_token(last.record.created_at, last.row_id, filter_)
        return TracePage(tuple(found), token)

    @contextlib.contextmanager
    def _stream(self, query: sa.Select[Any]) -> Iterator[Iterator[sa.RowMapping]]:
        """Rows of ``query``, fetched in batches rather than all at once."""
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_SCAN_BATCH).execute(query)
            try:
                yield iter(result.mappings())
            finally:
                result.close()

    # usage

    async def usage(
        self,
        grouping: Grouping,
        scope: Scope,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UsageTable:
        if scope.provider_id is not None and grouping is not Grouping.PROVIDER:
            _oversight_only("GetUsage", "provider")
        bad = _range_violations(since, until, "")
        if bad:
            raise InvalidRequest([FieldViolation("until", bad[0].description)])
        filter_ = TraceFilter(since=since, until=until, provider_id=scope.provider_id or "")
        return await asyncio.to_thread(self._usage, filter_, grouping, scope.provider_id)

    def _usage(self, filter_: TraceFilter, grouping: Grouping, provider_id: str | None) -> UsageTable:
        t = _TRACES.c
        columns = (t.consumer_organization_id, t.procedure_code, t.decision, t.duration_ms, t.outcomes)
        query = sa.select(*columns).where(*_where(filter_))
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_SCAN_BATCH).execute(query)
            try:
                return tally((sample_from_columns(*row) for row in result), grouping, provider_id)
            finally:
                result.close()

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
        body = [
            principal.organization_id,
            purpose,
            legal_basis.kind.value,
            legal_basis.reference,
            subject_ref,
        ]
        trace = TraceRecord(
            trace_id=new_trace_id(),
            request_id=request_id,
            request_digest=hashlib.sha256(json.dumps(body).encode()).hexdigest(),
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
        accesses = await asyncio.to_thread(self._accesses, subject_ref, trace.trace_id, since, until)
        return ResidentReport(accesses, trace.trace_id)

    def _accesses(
        self, subject_ref: str, exclude: str, since: dt.datetime | None, until: dt.datetime | None
    ) -> tuple[ResidentAccess, ...]:
        t = _TRACES.c
        clauses = [t.subject_ref == subject_ref, t.trace_id != exclude]
        if since is not None:
            clauses.append(t.created_at >= since)
        if until is not None:
            clauses.append(t.created_at < until)
        query = sa.select(_TRACES).where(*clauses).order_by(t.created_at.desc(), t.id.desc())
        with self._stream(query) as rows:
            records = [trace_from_row(m) for m in rows]
        names: dict[str, str] = {}
        orgs = sorted({r.consumer_organization_id for r in records})
        if orgs:
            with self._engine.connect() as conn:
                found = conn.execute(
                    sa.select(_ORGANISATIONS.c.id, _ORGANISATIONS.c.name).where(_ORGANISATIONS.c.id.in_(orgs))
                )
                names = {row.id: row.name for row in found}
        return tuple(ResidentAccess(r, names.get(r.consumer_organization_id, "")) for r in records)
