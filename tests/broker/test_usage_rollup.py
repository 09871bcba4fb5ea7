"""Usage over a long range comes from hourly roll-ups: the same rows as reading every trace,
without reading them, and still there after the traces are purged."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from onceonly.broker import usage_rollup
from onceonly.broker.domain import Decision, TraceRecord
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger
from onceonly.broker.storage import TraceRow
from onceonly.broker.trace_queries import SqlTraceQueries
from onceonly.broker.traces import TraceFilter
from onceonly.broker.usage import Grouping, UsageTable, histogram_percentile, percentile, sample_of, tally
from tests.broker.test_oversight_search import _record

TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
NOW = dt.datetime.now(dt.UTC)
START = usage_rollup.floor_hour(NOW) - dt.timedelta(hours=30)


def _workload(n: int = 600) -> list[TraceRecord]:
    """``n`` traces spread over the last 30 hours (some in the still open hour), varied enough
    that every grouping has several rows and latencies repeat and spread."""
    rng = random.Random(7)
    span = (NOW - START).total_seconds()
    traces = []
    for i in range(n):
        checks = tuple(
            (provider, rng.choice(["VERIFIED", "SUBJECT_NOT_FOUND", "TIMEOUT"]), rng.randint(1, 400))
            for provider in rng.sample(["tax", "registry", "employment"], rng.randint(0, 3))
        )
        decision = Decision.GRANTED if checks else Decision.DENIED
        r = _record(i, rng.choice("ABC"), rng.choice(["P1", "P2"]), decision, rng.randint(1, 900), *checks)
        when = START + dt.timedelta(seconds=span * i / n)
        traces.append(replace(r, created_at=when))
    return traces


Rows = list[tuple[str, int, dict[str, int], int, int, int]]


async def _ledger_of(engine: sa.Engine, tmp_path: Path, traces: list[TraceRecord]) -> None:
    ledger = SqlTraceLedger(engine, ReplyCipher.from_key_file(tmp_path / "reply.key"))
    for r in traces:
        await ledger.append(r)
    await ledger.close()


def _rows(table: UsageTable) -> Rows:
    return [
        (r.key, r.total, dict(r.counts), r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms)
        for r in table.rows
    ]


def _expected(
    traces: list[TraceRecord],
    since: dt.datetime,
    until: dt.datetime,
    grouping: Grouping,
    provider: str | None,
) -> Rows:
    return _rows(tally((sample_of(r) for r in traces if since <= r.created_at < until), grouping, provider))


def test_histogram_percentiles_match_nearest_rank() -> None:
    rng = random.Random(3)
    for _ in range(50):
        values = sorted(rng.randint(0, 30) for _ in range(rng.randint(1, 40)))
        histogram: dict[int, int] = {}
        for v in values:
            histogram[v] = histogram.get(v, 0) + 1
        for q in (1, 50, 90, 99, 100):
            assert histogram_percentile(histogram, q) == percentile(values, q)
    assert histogram_percentile({}, 50) == 0


async def test_long_ranges_come_from_roll_ups_with_the_same_rows(engine: sa.Engine, tmp_path: Path) -> None:
    traces = _workload()
    await _ledger_of(engine, tmp_path, traces)
    queries = SqlTraceQueries(engine)
    since = START + dt.timedelta(minutes=37)  # partial hours at both ends
    until = NOW
    for grouping in Grouping:
        for provider in (None, "tax") if grouping is Grouping.PROVIDER else (None,):
            filter_ = TraceFilter(since=since, until=until, provider_id=provider or "")
            got = queries.usage(filter_, grouping, provider)
            assert _rows(got) == _expected(traces, since, until, grouping, provider), (grouping, provider)
            assert got.hours_rolled_up >= 27, "the whole closed hours came from roll-ups"
            in_range = sum(since <= r.created_at < until for r in traces)
            assert got.traces_scanned < in_range / 5, "only the partial hours at the ends were read"
    # Hours are rolled up once: a second reader adds nothing.
    with engine.connect() as conn:
        rolled = conn.execute(sa.text("SELECT count(*) FROM usage_hours")).scalar_one()
        assert usage_rollup.roll_up(conn, START + usage_rollup.HOUR, usage_rollup.closed_before(NOW)) == 0
        assert conn.execute(sa.text("SELECT count(*) FROM usage_hours")).scalar_one() == rolled


async def test_short_ranges_read_their_traces(engine: sa.Engine, tmp_path: Path) -> None:
    traces = _workload(120)
    await _ledger_of(engine, tmp_path, traces)
    since, until = START + dt.timedelta(hours=3, minutes=10), START + dt.timedelta(hours=4, minutes=50)
    got = SqlTraceQueries(engine).usage(TraceFilter(since=since, until=until), Grouping.CONSUMER, None)
    assert got.hours_rolled_up == 0 and got.traces_scanned == sum(
        since <= r.created_at < until for r in traces
    )
    assert _rows(got) == _expected(traces, since, until, Grouping.CONSUMER, None)


async def test_usage_outlives_purged_traces(engine: sa.Engine, tmp_path: Path) -> None:
    traces = _workload(300)
    await _ledger_of(engine, tmp_path, traces)
    queries = SqlTraceQueries(engine)
    assert queries.roll_up_closed_hours() >= 29  # what the broker does in the background
    cutoff = START + dt.timedelta(hours=20)
    with engine.begin() as conn:
        conn.execute(sa.delete(TRACES).where(TRACES.c.created_at < cutoff))
    got = queries.usage(TraceFilter(until=cutoff), Grouping.PROCEDURE, None)
    assert got.traces_scanned == 0 and got.hours_rolled_up == 20
    assert _rows(got) == _expected(traces, START, cutoff, Grouping.PROCEDURE, None)


async def test_two_replicas_rolling_up_the_same_hours_leave_one_copy(
    engine: sa.Engine, tmp_path: Path
) -> None:
    await _ledger_of(engine, tmp_path, _workload(60))
    two = START + 2 * usage_rollup.HOUR
    with engine.connect() as first, engine.connect() as second:
        assert usage_rollup.roll_up(first, START, two) == 2
        # The second replica read "not rolled up" before the first committed: its insert of the
        # same hours is refused, and it goes on with nothing lost or doubled.
        assert usage_rollup._roll_run(second, START, two) == 0
        assert usage_rollup.roll_up(second, START, two + usage_rollup.HOUR) == 1
        counted = second.execute(
            sa.text("SELECT count(*), sum(total) FROM usage_hours WHERE grouping = 'HOUR'")
        ).one()
    expected = sum(START <= r.created_at < two + usage_rollup.HOUR for r in _workload(60))
    assert tuple(counted) == (3, expected)


async def test_a_range_from_the_distant_past_rolls_up_only_hours_with_something_known(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A caller asking from year 1 must not make the broker write a roll-up for every empty hour
    since then: only the hours from the oldest trace on are rolled up."""
    traces = _workload(60)
    await _ledger_of(engine, tmp_path, traces)
    since = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    got = SqlTraceQueries(engine).usage(TraceFilter(since=since), Grouping.CONSUMER, None)
    assert _rows(got) == _expected(traces, since, NOW + dt.timedelta(days=1), Grouping.CONSUMER, None)
    with engine.connect() as conn:
        markers = conn.execute(
            sa.text("SELECT count(*) FROM usage_hours WHERE grouping = 'HOUR'")
        ).scalar_one()
    # From the oldest trace's hour to the last closed one (the clock may have passed a boundary
    # since NOW was taken, so at least that many).
    assert markers == got.hours_rolled_up >= (usage_rollup.closed_before(NOW) - START) // usage_rollup.HOUR


async def test_ranges_at_the_ends_of_time_are_empty_not_errors(engine: sa.Engine, tmp_path: Path) -> None:
    await _ledger_of(engine, tmp_path, _workload(30))
    queries = SqlTraceQueries(engine)
    last = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    first = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    assert queries.usage(TraceFilter(since=last), Grouping.PROVIDER, None).rows == ()
    assert queries.usage(TraceFilter(until=first), Grouping.PROVIDER, None).rows == ()
    assert queries.usage(TraceFilter(since=first, until=last), Grouping.PROVIDER, None).rows
