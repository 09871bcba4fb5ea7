"""Hourly usage roll-ups, so usage over a long range is not a scan of every trace in it.

Once an hour is closed — it ended more than :data:`MARGIN` ago, so no request still in flight
can add a trace to it — its traces are tallied once per grouping (provider, consumer
organisation, procedure) into ``usage_hours``, with exact latency histograms: summing the hours
of a range gives the same rows, percentiles included, as reading its traces. A usage query takes
the whole closed hours of its range from the roll-ups (rolling up any not done yet) and reads
only the traces of the partial hours at its ends. The broker rolls up closed hours in the
background (:func:`roll_up`), and ``onceonly ledger purge`` rolls up before deleting, so usage
outlives the traces it was computed from.

Each day of hours is rolled up in its own transaction: an interrupted roll-up keeps what it did,
and two replicas rolling up the same hour leave one copy (the second insert is refused).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from onceonly.broker.storage import TraceRow, UsageHourRow
from onceonly.broker.usage import Grouping, Tallies, Tally, add_sample, sample_from_columns

__all__ = [
    "HOUR",
    "MARGIN",
    "aggregated",
    "closed_before",
    "earliest_hour",
    "floor_hour",
    "missing_runs",
    "roll_up",
]

HOUR = dt.timedelta(hours=1)
MARGIN = dt.timedelta(minutes=15)
"""How long after its end an hour is closed: longer than any request can take to be traced."""
_DAY = 24
_MARKER = "HOUR"  # the row that says an hour was rolled up (key "", total = its traces)
_HOURS: sa.Table = UsageHourRow.__table__  # type: ignore[attr-defined]
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    _TRACES.c.created_at,
    _TRACES.c.consumer_organization_id,
    _TRACES.c.procedure_code,
    _TRACES.c.decision,
    _TRACES.c.duration_ms,
    _TRACES.c.outcomes,
)


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def closed_before(now: dt.datetime) -> dt.datetime:
    """The end of the last closed hour at ``now``."""
    return floor_hour(now - MARGIN)


def _hours(start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    h = start
    while h < end:
        yield h
        h += HOUR


def earliest_hour(conn: sa.Connection) -> dt.datetime | None:
    """The first hour anything is known of: the oldest trace's, or the oldest roll-up's (traces
    may have been purged since)."""
    found = [
        conn.execute(sa.select(sa.func.min(_TRACES.c.created_at))).scalar(),
        conn.execute(sa.select(sa.func.min(_HOURS.c.hour)).where(_HOURS.c.grouping == _MARKER)).scalar(),
    ]
    known = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in found if t is not None]
    return floor_hour(min(known)) if known else None


def _rolled(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> set[dt.datetime]:
    rows = conn.execute(
        sa.select(_HOURS.c.hour).where(
            _HOURS.c.grouping == _MARKER, _HOURS.c.hour >= start, _HOURS.c.hour < end
        )
    )
    return {floor_hour(h if h.tzinfo else h.replace(tzinfo=dt.UTC)) for (h,) in rows}


def roll_up(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> int:
    """Roll up every hour in [``start``, ``end``) not rolled up yet; return how many were.

    ``start`` and ``end`` are hour boundaries and ``end`` must not be later than
    :func:`closed_before` now. Commits on ``conn`` once per day of hours.
    """
    done = _rolled(conn, start, end)
    return sum(_roll_run(conn, a, b) for a, b in missing_runs(start, end, done))


def missing_runs(
    start: dt.datetime, end: dt.datetime, done: set[dt.datetime]
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The runs of consecutive hours of [``start``, ``end``) not in ``done``, each at most a day:
    what one roll-up scan and transaction covers."""
    missing = [h for h in _hours(start, end) if h not in done]
    i = 0
    while i < len(missing):
        j = i + 1
        while j < len(missing) and missing[j] == missing[j - 1] + HOUR and j - i < _DAY:
            j += 1
        yield missing[i], missing[j - 1] + HOUR
        i = j


def _roll_run(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> int:
    per_hour: dict[dt.datetime, dict[Grouping, Tallies]] = {
        h: {g: {} for g in Grouping} for h in _hours(start, end)
    }
    traces: Counter[dt.datetime] = Counter()
    query = sa.select(*_COLUMNS).where(_TRACES.c.created_at >= start, _TRACES.c.created_at < end)
    for created_at, *columns in conn.execute(query):
        hour = floor_hour(created_at if created_at.tzinfo else created_at.replace(tzinfo=dt.UTC))
        sample = sample_from_columns(*columns)
        traces[hour] += 1
        for grouping, tallies in per_hour[hour].items():
            add_sample(tallies, sample, grouping)
    rows: list[dict[str, Any]] = []
    for hour, groupings in per_hour.items():
        rows.append(
            {
                "hour": hour,
                "grouping": _MARKER,
                "key": "",
                "total": traces[hour],
                "counts": "{}",
                "latencies": "{}",
            }
        )
        for grouping, tallies in groupings.items():
            for key, t in tallies.items():
                rows.append(
                    {
                        "hour": hour,
                        "grouping": grouping.value,
                        "key": key,
                        "total": t.total,
                        "counts": json.dumps(dict(t.counts), sort_keys=True),
                        "latencies": json.dumps({str(ms): n for ms, n in sorted(t.latencies.items())}),
                    }
                )
    try:
        conn.execute(sa.insert(_HOURS), rows)
        conn.commit()
    except sa.exc.IntegrityError:
        conn.rollback()  # another replica rolled these hours up first: theirs stand
        return 0
    return len(per_hour)


def aggregated(
    conn: sa.Connection, grouping: Grouping, start: dt.datetime, end: dt.datetime, provider_id: str | None
) -> tuple[Tallies, int]:
    """The summed roll-ups of [``start``, ``end``) for ``grouping``, and how many hours they cover."""
    clauses = [_HOURS.c.grouping == grouping.value, _HOURS.c.hour >= start, _HOURS.c.hour < end]
    if provider_id is not None:
        clauses.append(_HOURS.c.key == provider_id)
    tallies: Tallies = {}
    query = sa.select(_HOURS.c.key, _HOURS.c.total, _HOURS.c.counts, _HOURS.c.latencies).where(*clauses)
    for key, total, counts, latencies in conn.execute(query):
        tallies.setdefault(key, Tally()).add(
            Tally(
                total,
                Counter(json.loads(counts)),
                Counter({int(ms): n for ms, n in json.loads(latencies).items()}),
            )
        )
    hours = conn.execute(
        sa.select(sa.func.count())
        .select_from(_HOURS)
        .where(_HOURS.c.grouping == _MARKER, _HOURS.c.hour >= start, _HOURS.c.hour < end)
    ).scalar_one()
    return tallies, int(hours)
