"""The SQL behind oversight's reads (:class:`~onceonly.broker.ports.TraceQueries`), beside the ledger.

Rows are streamed from the database in batches with only the columns a query needs. Usage
statistics come from hourly roll-ups for the whole closed hours of a range and from the trace
rows of the partial hours at its ends (:mod:`onceonly.broker.usage_rollup`): a year costs about
as much as a few hours. Rolling up reads each trace once (about 100,000 a second on one core).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from onceonly.broker import usage_facts, usage_rollup
from onceonly.broker.domain import Decision, TraceRecord
from onceonly.broker.errors import QueryTooLong
from onceonly.broker.ledger import trace_from_row
from onceonly.broker.storage import AgreementVersionRow, OrganisationRow, TraceRow
from onceonly.broker.traces import TraceEntry, TraceFilter, TracePage, encode_page_token
from onceonly.broker.usage import Grouping, Tallies, UsageTable, add_sample, sample_from_columns, table

__all__ = ["SqlTraceQueries"]

_SCAN_BATCH = 500
_ROLL_UP_FROM = 2 * usage_rollup.HOUR
"""Ranges with fewer whole closed hours than this are read from their traces alone."""
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_USAGE_COLUMNS = (
    _TRACES.c.consumer_organization_id,
    _TRACES.c.procedure_code,
    _TRACES.c.decision,
    _TRACES.c.duration_ms,
    _TRACES.c.outcomes,
)
_ORGANISATIONS: sa.Table = OrganisationRow.__table__  # type: ignore[attr-defined]


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


class SqlTraceQueries:
    """Oversight's reads over the ledger's database (blocking; run them in a worker thread).

    Each read has a time budget (``budget_s``): past it the database stops the statement (SQLite
    through a progress handler, PostgreSQL through ``statement_timeout``) and the read ends with
    :class:`~onceonly.broker.errors.QueryTooLong`, so one broad query cannot hold the database
    (and slow every verification) for long.
    """

    def __init__(self, engine: sa.Engine, *, budget_s: float = 10.0) -> None:
        if budget_s <= 0:
            raise ValueError("the query budget must be positive")
        self._engine = engine
        self._budget_s = budget_s

    @contextlib.contextmanager
    def budgeted_connection(self) -> Iterator[sa.Connection]:
        """A connection whose statements stop once the budget is spent."""
        deadline = time.monotonic() + self._budget_s
        with self._engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
            postgresql = conn.dialect.name == "postgresql"
            if postgresql:
                # For the session, not the transaction: a usage read commits its roll-ups.
                conn.exec_driver_sql(f"SET statement_timeout = {max(1, round(self._budget_s * 1000))}")
            try:
                yield conn
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise QueryTooLong(self._budget_s) from None
                raise
            finally:
                if sqlite:
                    raw.set_progress_handler(None, 0)
                elif postgresql:
                    with contextlib.suppress(sa.exc.SQLAlchemyError):
                        conn.rollback()
                        conn.exec_driver_sql("RESET statement_timeout")
                        conn.commit()

    def page(self, filter_: TraceFilter, size: int, after: tuple[dt.datetime, int] | None) -> TracePage:
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

    def usage(self, filter_: TraceFilter, grouping: Grouping, provider_id: str | None) -> UsageTable:
        """Usage over the filter's range: whole closed hours from their roll-ups (rolled up now if
        not yet), the partial hours at the ends from their traces."""
        tallies: Tallies = {}
        scanned = hours = 0
        with self.budgeted_connection() as conn:
            # Roll-ups count all providers' checks per consumer or procedure: a provider's view of
            # those groupings is read from the traces of the range.
            own_view = provider_id is not None and grouping is not Grouping.PROVIDER
            span = None if own_view else self._rolled_up_span(conn, filter_)
            pieces: list[tuple[dt.datetime | None, dt.datetime | None]] = [(filter_.since, filter_.until)]
            if span is not None:
                start, end = span
                usage_rollup.roll_up(conn, start, end)
                tallies, hours = usage_rollup.aggregated(conn, grouping, start, end, provider_id)
                pieces = [(filter_.since, start), (end, filter_.until)]
            for since, until in pieces:
                if since is not None and until is not None and since >= until:
                    continue
                where = _where(dataclasses.replace(filter_, since=since, until=until))
                query = sa.select(*_USAGE_COLUMNS).where(*where)
                result = conn.execution_options(yield_per=_SCAN_BATCH).execute(query)
                try:
                    for row in result:
                        scanned += 1
                        add_sample(tallies, sample_from_columns(*row), grouping, provider_id)
                finally:
                    result.close()
        return table(grouping, tallies, scanned, hours)

    def _rolled_up_span(
        self, conn: sa.Connection, filter_: TraceFilter
    ) -> tuple[dt.datetime, dt.datetime] | None:
        """The whole closed hours inside the filter's range, if worth taking from roll-ups."""
        end = usage_rollup.closed_before(dt.datetime.now(dt.UTC))
        if filter_.until is not None:
            end = min(end, usage_rollup.floor_hour(filter_.until))
        if filter_.since is not None and filter_.since >= end:
            return None  # (and an hour after a "since" at the end of time does not exist)
        earliest = usage_rollup.earliest_hour(conn)
        if earliest is None:
            return None
        start = earliest  # nothing is known before it: never roll up the empty past
        if filter_.since is not None:
            since = usage_rollup.floor_hour(filter_.since)
            if since < filter_.since:
                since += usage_rollup.HOUR
            start = max(start, since)
        if end - start < _ROLL_UP_FROM:
            return None
        return start, end

    def roll_up_closed_hours(self, limit_hours: int = 24 * 31) -> int:
        """Roll up closed hours not rolled up yet, oldest first, at most ``limit_hours`` of them
        (the broker calls this in the background); return how many were."""
        with self._engine.connect() as conn:
            earliest = usage_rollup.earliest_hour(conn)
            if earliest is None:
                return 0
            end = min(
                usage_rollup.closed_before(dt.datetime.now(dt.UTC)),
                earliest + limit_hours * usage_rollup.HOUR,
            )
            if earliest >= end:
                return 0
            rolled = usage_rollup.roll_up(conn, earliest, end)
            usage_facts.roll_up(conn, earliest, end)
            first_day = usage_facts.floor_day(earliest)
            if first_day < earliest:
                first_day += usage_facts.DAY
            if first_day < usage_facts.floor_day(end):
                usage_facts.roll_up_days(conn, first_day, usage_facts.floor_day(end))
            return rolled

    def facts(
        self, filter_: usage_facts.FactFilter, group_by: Sequence[str], bucket: str
    ) -> usage_facts.FactTable:
        """Usage facts summed by ``bucket`` and ``group_by`` (see :func:`broker.usage_facts.query`)."""
        with self.budgeted_connection() as conn:
            return usage_facts.query(conn, filter_, group_by, bucket)

    def of_subject(
        self, subject_ref: str, exclude_trace_id: str, since: dt.datetime | None, until: dt.datetime | None
    ) -> list[TraceRecord]:
        t = _TRACES.c
        clauses = [t.subject_ref == subject_ref, t.trace_id != exclude_trace_id]
        if since is not None:
            clauses.append(t.created_at >= since)
        if until is not None:
            clauses.append(t.created_at < until)
        query = sa.select(_TRACES).where(*clauses).order_by(t.created_at.desc(), t.id.desc())
        with self._stream(query) as rows:
            return [trace_from_row(m) for m in rows]

    def organisation_names(self, ids: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with self.budgeted_connection() as conn:
            found = conn.execute(
                sa.select(_ORGANISATIONS.c.id, _ORGANISATIONS.c.name).where(_ORGANISATIONS.c.id.in_(wanted))
            )
            return {row.id: row.name for row in found}

    def disclosures(self, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        wanted = set(refs)
        if not wanted:
            return {}
        versions = AgreementVersionRow.__table__  # type: ignore[attr-defined]
        out = {}
        with self.budgeted_connection() as conn:
            rows = conn.execute(
                sa.select(
                    versions.c.agreement_id, versions.c.version, versions.c.terms, versions.c.released
                ).where(versions.c.agreement_id.in_(sorted({a for a, _ in wanted})))
            )
            today = dt.datetime.now(dt.UTC).date().isoformat()
            for aid, version, terms, released in rows:
                if (aid, version) not in wanted:
                    continue
                body = json.loads(terms)
                kind = body.get("disclosure") or "IMMEDIATE"
                if kind == "DEFERRED":
                    until = str(body.get("disclosure_until"))
                    if not released and until > today:  # hidden until that day, unless released
                        out[(aid, version)] = f"DEFERRED until {until}"
                elif kind == "WITHHELD":
                    out[(aid, version)] = f"WITHHELD under {body.get('disclosure_law')}"
        return out

    def agreement_descriptions(self, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        wanted = set(refs)
        if not wanted:
            return {}
        versions = AgreementVersionRow.__table__  # type: ignore[attr-defined]
        with self.budgeted_connection() as conn:
            rows = conn.execute(
                sa.select(versions.c.agreement_id, versions.c.version, versions.c.terms).where(
                    versions.c.agreement_id.in_(sorted({a for a, _ in wanted}))
                )
            )
            return {
                (aid, version): str(json.loads(terms).get("description") or "")
                for aid, version, terms in rows
                if (aid, version) in wanted
            }

    @contextlib.contextmanager
    def _stream(self, query: sa.Select[Any]) -> Iterator[Iterator[sa.RowMapping]]:
        """Rows of ``query``, fetched in batches rather than all at once."""
        with self.budgeted_connection() as conn:
            result = conn.execution_options(yield_per=_SCAN_BATCH).execute(query)
            try:
                yield iter(result.mappings())
            finally:
                result.close()
