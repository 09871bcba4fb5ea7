"""Usage statistics of the trace ledger: counts by outcome and latency percentiles.

Computed in Python from trace records (:func:`tally`), grouped per provider (over the checks
each served: counts by check status, latency of the provider calls), per consumer organisation
or per procedure (over requests: counts by decision and by check status, latency of the whole
request). Percentiles are nearest-rank, over exact latency histograms, so tallies of separate
periods add up to the tally of the whole (:mod:`onceonly.broker.usage_rollup` keeps one per hour).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from onceonly.broker.domain import TraceRecord
from onceonly.vocabulary import UsageGrouping

Grouping = UsageGrouping
"""How usage is grouped (one name for :class:`onceonly.vocabulary.UsageGrouping`)."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str
    total: int
    counts: Mapping[str, int]
    latency_p50_ms: int
    latency_p90_ms: int
    latency_p99_ms: int


@dataclass(frozen=True, slots=True)
class UsageTable:
    grouping: Grouping
    rows: tuple[UsageRow, ...]
    traces_scanned: int
    """Trace records read to answer (not those summed from hourly roll-ups)."""
    hours_rolled_up: int = 0
    """Whole hours answered from their roll-ups instead of their traces."""


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (``q`` in 0..100) of ascending values; 0 for none."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram_percentile(histogram: Mapping[int, int], q: float) -> int:
    """:func:`percentile` of the values a histogram ``{value: count}`` counts (the same result)."""
    n = sum(histogram.values())
    if n == 0:
        return 0
    rank = max(1, math.ceil(q / 100 * n))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable: the ranks add up to n")


@dataclass
class Tally:
    """What one usage row sums: a total, counts by outcome, and an exact latency histogram.

    Tallies of disjoint sets of traces add up (:meth:`add`) to the tally of their union, which is
    what lets hourly roll-ups stand in for the traces of their hours.
    """

    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    latencies: Counter[int] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.total += other.total
        self.counts.update(other.counts)
        self.latencies.update(other.latencies)

    def row(self, key: str) -> UsageRow:
        return UsageRow(
            key,
            self.total,
            dict(sorted(self.counts.items())),
            histogram_percentile(self.latencies, 50),
            histogram_percentile(self.latencies, 90),
            histogram_percentile(self.latencies, 99),
        )


Tallies = dict[str, Tally]
"""Usage rows being summed, by key."""


class Sample(NamedTuple):
    """What usage needs of one trace; ``checks`` are ``(provider_id, status, latency_ms)``."""

    consumer_organization_id: str
    procedure_code: str
    decision: str
    duration_ms: int
    checks: tuple[tuple[str, str, int], ...]


def sample_of(record: TraceRecord) -> Sample:
    return Sample(
        record.consumer_organization_id,
        record.procedure_code,
        record.decision.value,
        record.duration_ms,
        tuple((o.provider_id, o.status.value, o.latency_ms) for o in record.outcomes),
    )


def sample_from_columns(
    consumer_organization_id: str, procedure_code: str, decision: str, duration_ms: int, outcomes: str
) -> Sample:
    """A sample straight from the trace table's columns (``outcomes`` is its JSON text)."""
    checks = (
        ()
        if outcomes == "[]"
        else tuple((o["provider_id"], o["status"], int(o["latency_ms"])) for o in json.loads(outcomes))
    )
    return Sample(consumer_organization_id, procedure_code, decision, int(duration_ms), checks)


def add_sample(tallies: Tallies, r: Sample, grouping: Grouping, provider_id: str | None = None) -> None:
    """Count one trace sample into ``tallies`` (``provider_id``: only that provider's row)."""
    if grouping is Grouping.PROVIDER:
        for provider, status, latency in r.checks:
            if provider_id is not None and provider != provider_id:
                continue
            t = tallies.setdefault(provider, Tally())
            t.total += 1
            t.counts[status] += 1
            t.latencies[latency] += 1
        return
    key = r.consumer_organization_id if grouping is Grouping.CONSUMER else r.procedure_code
    if provider_id is not None:
        # A provider's view: who used its data, counted over its own checks (latency of its answers).
        for provider, status, latency in r.checks:
            if provider == provider_id:
                t = tallies.setdefault(key, Tally())
                t.total += 1
                t.counts[status] += 1
                t.latencies[latency] += 1
        return
    t = tallies.setdefault(key, Tally())
    t.total += 1
    t.counts[r.decision] += 1
    for _, status, _ in r.checks:
        t.counts[status] += 1
    t.latencies[r.duration_ms] += 1


def table(grouping: Grouping, tallies: Tallies, scanned: int, hours_rolled_up: int = 0) -> UsageTable:
    """The usage table of summed ``tallies``, rows ordered by key."""
    rows = tuple(tallies[key].row(key) for key in sorted(tallies))
    return UsageTable(grouping, rows, scanned, hours_rolled_up)


def tally(samples: Iterable[Sample], grouping: Grouping, provider_id: str | None = None) -> UsageTable:
    """Usage rows from trace samples (``provider_id``: only that provider's row)."""
    tallies: Tallies = {}
    scanned = 0
    for r in samples:
        scanned += 1
        add_sample(tallies, r, grouping, provider_id)
    return table(grouping, tallies, scanned)


DECISIONS = frozenset({"GRANTED", "DENIED"})


def split_counts(counts: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """A usage row's counts as (requests by decision, checks by status): the two never add up."""
    decisions = {k: v for k, v in counts.items() if k in DECISIONS}
    checks = {k: v for k, v in counts.items() if k not in DECISIONS}
    return decisions, checks
