"""Usage statistics of the trace ledger: counts by outcome and latency percentiles.

Computed in Python from trace records (:func:`tally`), grouped per provider (over the checks
each served: counts by check status, latency of the provider calls), per consumer organisation
or per procedure (over requests: counts by decision and by check status, latency of the whole
request). Percentiles are nearest-rank.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
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


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (``q`` in 0..100) of ascending values; 0 for none."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Tally:
    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies: list[int] = field(default_factory=list)

    def row(self, key: str) -> UsageRow:
        values = sorted(self.latencies)
        return UsageRow(
            key,
            self.total,
            dict(sorted(self.counts.items())),
            percentile(values, 50),
            percentile(values, 90),
            percentile(values, 99),
        )


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


def tally(samples: Iterable[Sample], grouping: Grouping, provider_id: str | None = None) -> UsageTable:
    """Usage rows from trace samples (``provider_id``: only that provider's row)."""
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    scanned = 0
    for r in samples:
        scanned += 1
        if grouping is Grouping.PROVIDER:
            for provider, status, latency in r.checks:
                if provider_id is not None and provider != provider_id:
                    continue
                t = tallies[provider]
                t.total += 1
                t.counts[status] += 1
                t.latencies.append(latency)
            continue
        key = r.consumer_organization_id if grouping is Grouping.CONSUMER else r.procedure_code
        t = tallies[key]
        t.total += 1
        t.counts[r.decision] += 1
        for _, status, _ in r.checks:
            t.counts[status] += 1
        t.latencies.append(r.duration_ms)
    rows = tuple(tallies[key].row(key) for key in sorted(tallies))
    return UsageTable(grouping, rows, scanned)
