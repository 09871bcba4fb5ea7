"""Usage facts: every closed hour's checks counted by consumer, procedure, legal-basis kind,
certificate type, provider, outcome and denial reason — the aggregate behind dashboards, monthly
reports and open data, so that a year of usage is a sum over hours, not a scan of every trace.

A granted request counts one fact per check (its certificate type, provider and status); a denied
one counts one per certificate type it asked for (outcome ``DENIED``, its denial reason, no
provider: none was asked). ``requests`` counts each request once, on its first fact, so that summing
it over any grouping without certificate type or provider gives request counts.

Hours are rolled up as :mod:`broker.usage_rollup` does — once closed, in one transaction per run of
at most a day, with a marker row per hour so that two replicas leave one copy — and, like it, keep
their counts after ``ledger purge`` removed the traces. :func:`query` sums the rolled-up hours of a
range in the database (grouped by the dimensions asked for and by hour, day, month or not at all)
and counts the partial hours at its ends from their traces.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from onceonly.broker.domain import TraceRecord
from onceonly.broker.storage import TraceRow, UsageFactDayRow, UsageFactRow
from onceonly.broker.usage_rollup import HOUR, closed_before, floor_hour, missing_runs

__all__ = [
    "BUCKETS",
    "DIMENSIONS",
    "FactFilter",
    "FactRow",
    "FactTable",
    "query",
    "roll_up",
]

DIMENSIONS = (
    "consumer_organization_id",
    "procedure_code",
    "legal_basis_kind",
    "certificate_type_id",
    "provider_id",
    "outcome",
    "denial_reason",
)
"""What facts can be grouped and filtered by."""
BUCKETS = ("hour", "day", "month", "all")
_MARKER = "*HOUR*"  # the outcome of the row that says an hour was rolled up (checks = its traces)
_FACTS: sa.Table = UsageFactRow.__table__  # type: ignore[attr-defined]
_DAILY: sa.Table = UsageFactDayRow.__table__  # type: ignore[attr-defined]
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    _TRACES.c.created_at,
    _TRACES.c.consumer_organization_id,
    _TRACES.c.procedure_code,
    _TRACES.c.legal_basis_kind,
    _TRACES.c.certificate_type_ids,
    _TRACES.c.decision,
    _TRACES.c.denial_reason,
    _TRACES.c.outcomes,
)

Key = tuple[str, str, str, str, str, str, str]
"""The dimensions of a fact, in :data:`DIMENSIONS` order."""


@dataclass(frozen=True, slots=True)
class FactFilter:
    """Which facts to count: a range (``until`` exclusive) and any dimension's value."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    equal: Mapping[str, str] | None = None
    """Dimension → the value it must have."""

    def matches(self, key: Key) -> bool:
        return all(key[DIMENSIONS.index(d)] == v for d, v in (self.equal or {}).items())


@dataclass(frozen=True, slots=True)
class FactRow:
    bucket: str
    """The bucket's start (``2026-11-30T06:00``, ``2026-11-30``, ``2026-11``) or ``""`` for all."""
    dimensions: tuple[str, ...]
    """The values of the grouped dimensions, in the order asked for."""
    checks: int
    requests: int
    suppressed: bool = False
    """Open data: counted too few times to be shown (``checks`` and ``requests`` withheld)."""


@dataclass(frozen=True, slots=True)
class FactTable:
    rows: tuple[FactRow, ...]
    hours_rolled_up: int
    traces_scanned: int


def facts_of(
    consumer: str,
    procedure: str,
    basis: str,
    certificate_type_ids: str,
    decision: str,
    denial_reason: str | None,
    outcomes: str,
) -> Iterator[tuple[Key, int]]:
    """The facts of one trace (its columns as stored) with the request counted on the first."""
    first = 1
    if decision == "DENIED" or outcomes == "[]":
        for cid in json.loads(certificate_type_ids) or [""]:
            yield (consumer, procedure, basis, cid, "", "DENIED" if decision == "DENIED" else decision,
                   denial_reason or ""), first  # fmt: skip
            first = 0
        return
    for o in json.loads(outcomes):
        yield (consumer, procedure, basis, o["certificate_type_id"], o["provider_id"], o["status"], ""), first
        first = 0


def _tally(
    rows: Iterable[Sequence[Any]],
) -> tuple[Counter[tuple[dt.datetime, Key]], Counter[tuple[dt.datetime, Key]], Counter[dt.datetime]]:
    checks: Counter[tuple[dt.datetime, Key]] = Counter()
    requests: Counter[tuple[dt.datetime, Key]] = Counter()
    traces: Counter[dt.datetime] = Counter()
    for created_at, *columns in rows:
        hour = floor_hour(created_at if created_at.tzinfo else created_at.replace(tzinfo=dt.UTC))
        traces[hour] += 1
        for key, counted in facts_of(*columns):
            checks[hour, key] += 1
            requests[hour, key] += counted
    return checks, requests, traces


# --- rolling up -------------------------------------------------------------------------------------


def _rolled(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> set[dt.datetime]:
    rows = conn.execute(
        sa.select(_FACTS.c.hour).where(
            _FACTS.c.outcome == _MARKER, _FACTS.c.hour >= start, _FACTS.c.hour < end
        )
    )
    return {floor_hour(h if h.tzinfo else h.replace(tzinfo=dt.UTC)) for (h,) in rows}


def roll_up(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> int:
    """Roll up every hour in [``start``, ``end``) not rolled up yet (hour boundaries, ``end`` closed);
    commits once per run of at most a day; returns how many hours were."""
    done = _rolled(conn, start, end)
    return sum(_roll_run(conn, a, b) for a, b in missing_runs(start, end, done))


def _roll_run(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> int:
    query = sa.select(*_COLUMNS).where(_TRACES.c.created_at >= start, _TRACES.c.created_at < end)
    checks, requests, traces = _tally(conn.execute(query))
    rows: list[dict[str, Any]] = []
    h = start
    while h < end:
        rows.append(
            {
                "hour": h,
                **dict.fromkeys(DIMENSIONS, ""),
                "outcome": _MARKER,
                "checks": traces[h],
                "requests": 0,
            }
        )
        h += HOUR
    for (hour, key), n in checks.items():
        rows.append(
            {
                "hour": hour,
                **dict(zip(DIMENSIONS, key, strict=True)),
                "checks": n,
                "requests": requests[hour, key],
            }
        )
    try:
        conn.execute(sa.insert(_FACTS), rows)
        conn.commit()
    except sa.exc.IntegrityError:
        conn.rollback()  # another replica rolled these hours up first: theirs stand
        return 0
    return int((end - start) / HOUR)


DAY = dt.timedelta(days=1)
_DAY_MARKER = "*DAY*"


def floor_day(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _days_rolled(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> set[dt.datetime]:
    rows = conn.execute(
        sa.select(_DAILY.c.day).where(
            _DAILY.c.outcome == _DAY_MARKER, _DAILY.c.day >= start, _DAILY.c.day < end
        )
    )
    return {floor_day(d if d.tzinfo else d.replace(tzinfo=dt.UTC)) for (d,) in rows}


def roll_up_days(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> int:
    """Sum the hours of every day in [``start``, ``end``) not rolled up yet into ``usage_facts_daily``
    (day boundaries; the days must be closed), rolling their hours up first; one transaction a day.
    Returns how many days were."""
    done = _days_rolled(conn, start, end)
    rolled = 0
    day = start
    while day < end:
        if day not in done:
            roll_up(conn, day, day + DAY)
            dims = [_FACTS.c[d] for d in DIMENSIONS]
            summed = (
                sa.select(
                    sa.bindparam("day", day, type_=_DAILY.c.day.type),
                    *dims,
                    sa.func.sum(_FACTS.c.checks),
                    sa.func.sum(_FACTS.c.requests),
                )
                .where(_FACTS.c.hour >= day, _FACTS.c.hour < day + DAY, _FACTS.c.outcome != _MARKER)
                .group_by(*dims)
            )
            try:
                conn.execute(
                    sa.insert(_DAILY).from_select(["day", *DIMENSIONS, "checks", "requests"], summed)
                )
                conn.execute(
                    sa.insert(_DAILY),
                    {
                        "day": day,
                        **dict.fromkeys(DIMENSIONS, ""),
                        "outcome": _DAY_MARKER,
                        "checks": 0,
                        "requests": 0,
                    },
                )
                conn.commit()
                rolled += 1
            except sa.exc.IntegrityError:
                conn.rollback()  # another replica rolled this day up first: theirs stands
        day += DAY
    return rolled


# --- querying --------------------------------------------------------------------------------------


def _bucket_expression(
    conn: sa.Connection, column: sa.Column[Any], bucket: str
) -> sa.ColumnElement[str] | None:
    """The bucket of a roll-up row as text, in the database (the same text as :func:`_bucket_of`)."""
    if bucket == "all":
        return None
    if conn.dialect.name == "postgresql":
        fmt = {"hour": 'YYYY-MM-DD"T"HH24:00', "day": "YYYY-MM-DD", "month": "YYYY-MM"}[bucket]
        return sa.func.to_char(sa.func.timezone("UTC", column), fmt)
    # SQLite keeps the UTC timestamps as text, "YYYY-MM-DD HH:MM:SS.ffffff".
    text = sa.cast(column, sa.String)
    if bucket == "hour":
        return sa.func.replace(sa.func.substr(text, 1, 13), " ", "T").concat(":00")
    return sa.func.substr(text, 1, 10 if bucket == "day" else 7)


def _sum_rolled(
    conn: sa.Connection,
    totals: Totals,
    table: sa.Table,
    column: sa.Column[Any],
    marker: str,
    start: dt.datetime,
    end: dt.datetime,
    filter_: FactFilter,
    group_by: Sequence[str],
    bucket: str,
) -> None:
    """Add the rolled-up rows of [``start``, ``end``) of ``table`` (hourly or daily) to ``totals``."""
    bucket_col = _bucket_expression(conn, column, bucket)
    dims = [table.c[d] for d in group_by]
    selected = [*([bucket_col.label("bucket")] if bucket_col is not None else []), *dims]
    clauses = [table.c.outcome != marker, column >= start, column < end]
    clauses += [table.c[d] == v for d, v in (filter_.equal or {}).items()]
    stmt = sa.select(*selected, sa.func.sum(table.c.checks), sa.func.sum(table.c.requests)).where(*clauses)
    if selected:
        stmt = stmt.group_by(*selected)
    for row in conn.execute(stmt):
        values = tuple(row)
        b = str(values[0]) if bucket_col is not None else ""
        keys = tuple(str(v) for v in values[1 if bucket_col is not None else 0 : -2])
        slot = totals.setdefault((b, keys), [0, 0])
        slot[0] += int(values[-2] or 0)
        slot[1] += int(values[-1] or 0)


def _bucket_of(hour: dt.datetime, bucket: str) -> str:
    return {
        "hour": hour.strftime("%Y-%m-%dT%H:00"),
        "day": hour.strftime("%Y-%m-%d"),
        "month": hour.strftime("%Y-%m"),
        "all": "",
    }[bucket]


def query(
    conn: sa.Connection, filter_: FactFilter, group_by: Sequence[str], bucket: str = "all"
) -> FactTable:
    """Facts of the filter's range summed by ``bucket`` and ``group_by`` dimensions: whole closed
    hours from the roll-ups (rolled up now if not yet), the partial hours at its ends from traces."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    for d in (*group_by, *(filter_.equal or {})):
        if d not in DIMENSIONS:
            raise ValueError(f"dimension {d!r} is not one of {', '.join(DIMENSIONS)}")
    end = closed_before(dt.datetime.now(dt.UTC))
    if filter_.until is not None:
        end = min(end, floor_hour(filter_.until))
    start = _first_hour(conn, filter_)
    totals: Totals = {}
    hours = scanned = 0
    if start is not None and start < end:
        hours = int((end - start) / HOUR)
        # Whole days from the daily roll-ups (not for hourly buckets), the hours around them hourly.
        first_day = floor_day(start) if floor_day(start) == start else floor_day(start) + DAY
        last_day = floor_day(end)
        spans = [(start, end)]
        if bucket != "hour" and first_day < last_day:
            roll_up_days(conn, first_day, last_day)
            _sum_rolled(
                conn,
                totals,
                _DAILY,
                _DAILY.c.day,
                _DAY_MARKER,
                first_day,
                last_day,
                filter_,
                group_by,
                bucket,
            )
            spans = [(start, first_day), (last_day, end)]
        for lo, hi in spans:
            if lo < hi:
                roll_up(conn, lo, hi)
                _sum_rolled(conn, totals, _FACTS, _FACTS.c.hour, _MARKER, lo, hi, filter_, group_by, bucket)
        pieces = [(filter_.since, start), (end, filter_.until)]
    else:
        pieces = [(filter_.since, filter_.until)]
    for since, until in pieces:
        if since is not None and until is not None and since >= until:
            continue
        clauses = []
        if since is not None:
            clauses.append(_TRACES.c.created_at >= since)
        if until is not None:
            clauses.append(_TRACES.c.created_at < until)
        result = conn.execution_options(yield_per=2000).execute(sa.select(*_COLUMNS).where(*clauses))
        try:
            facts = (
                (when if when.tzinfo else when.replace(tzinfo=dt.UTC), key, counted)
                for when, *columns in result
                for key, counted in facts_of(*columns)
            )
            scanned += add_facts(totals, facts, filter_, group_by, bucket)
        finally:
            result.close()
    return table_of(totals, hours, scanned)


Totals = dict[tuple[str, tuple[str, ...]], list[int]]
"""(bucket, grouped values) → [checks, requests]."""


def add_facts(
    totals: Totals,
    facts: Iterable[tuple[dt.datetime, Key, int]],
    filter_: FactFilter,
    group_by: Sequence[str],
    bucket: str,
) -> int:
    """Sum ``facts`` (when, dimensions, request counted) into ``totals``; returns how many were
    read (the filter's range is the caller's to apply)."""
    read = 0
    for when, key, counted in facts:
        read += 1
        if not filter_.matches(key):
            continue
        values = tuple(key[DIMENSIONS.index(d)] for d in group_by)
        slot = totals.setdefault((_bucket_of(when, bucket), values), [0, 0])
        slot[0] += 1
        slot[1] += counted
    return read


def facts_of_record(record: TraceRecord) -> Iterator[tuple[Key, int]]:
    """The facts of a trace record, as :func:`facts_of` reads them from its stored columns."""
    head = (record.consumer_organization_id, record.procedure_code, record.legal_basis_kind.value)
    if record.decision.value == "DENIED" or not record.outcomes:
        outcome = "DENIED" if record.decision.value == "DENIED" else record.decision.value
        reason = record.denial_reason.value if record.denial_reason else ""
        facts = [(*head, cid, "", outcome, reason) for cid in record.certificate_type_ids or ("",)]
    else:
        facts = [(*head, o.certificate_type_id, o.provider_id, o.status.value, "") for o in record.outcomes]
    for i, key in enumerate(facts):
        yield key, int(i == 0)


def table_of(totals: Totals, hours: int, scanned: int) -> FactTable:
    return FactTable(
        tuple(FactRow(b, keys, c, r) for (b, keys), (c, r) in sorted(totals.items())), hours, scanned
    )


def _first_hour(conn: sa.Connection, filter_: FactFilter) -> dt.datetime | None:
    """The first whole hour of the range that anything is known of."""
    found = [
        conn.execute(sa.select(sa.func.min(_TRACES.c.created_at))).scalar(),
        conn.execute(sa.select(sa.func.min(_FACTS.c.hour)).where(_FACTS.c.outcome == _MARKER)).scalar(),
    ]
    known = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in found if t is not None]
    if not known:
        return None
    start = floor_hour(min(known))
    if filter_.since is not None:
        since = floor_hour(filter_.since)
        if since < filter_.since:
            since += HOUR
        start = max(start, since)
    return start
