"""How long oversight's ``GetUsage`` takes over a long range: reading every trace against hourly
roll-ups.

    python -m bench.usage [--traces 200000] [--days 30]

Fills a SQLite ledger in a temporary folder with traces spread over the last ``--days`` days, then
times the same usage query (grouped by provider, the whole range) three ways: reading every trace
(as before roll-ups existed), the first read with roll-ups (which rolls up every closed hour), and
a later read (roll-ups in place, as the broker's background task leaves them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import random
import tempfile
import time
from pathlib import Path

from onceonly.broker import trace_queries
from onceonly.broker.domain import (
    CheckStatus,
    Decision,
    DocumentType,
    LegalBasisKind,
    TracedOutcome,
    TraceRecord,
)
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger
from onceonly.broker.storage import create_engine, init_schema
from onceonly.broker.traces import TraceFilter
from onceonly.broker.usage import Grouping

_BASE = TraceRecord(
    trace_id="",
    request_id="",
    request_digest="",
    created_at=dt.datetime.now(dt.UTC),
    consumer_organization_id="L01280796",
    consumer_unit="u",
    officer_id="o",
    procedure_code="HOUSING-RENT-SUBSIDY",
    purpose_text="p",
    case_file_id="c",
    legal_basis_kind=LegalBasisKind.LAW,
    legal_basis_reference="l",
    subject_document_type=DocumentType.DNI,
    subject_ref="s",
    certificate_type_ids=("registry.residence/v1",),
    decision=Decision.GRANTED,
    denial_reason=None,
    denial_detail="",
    outcomes=(),
    duration_ms=0,
)


async def _fill(url: str, var: Path, traces: int, days: int) -> None:
    engine = create_engine(url)
    init_schema(engine)
    ledger = SqlTraceLedger(engine, ReplyCipher.from_key_file(var / "reply.key"), max_batch=1024)
    rng = random.Random(1)
    now = dt.datetime.now(dt.UTC)
    span = dt.timedelta(days=days).total_seconds()
    pending = []
    for i in range(traces):
        outcomes = tuple(
            TracedOutcome(f"{p}.x/v1", p, CheckStatus.VERIFIED, rng.randint(2, 300))
            for p in rng.sample(["registry", "tax", "employment"], rng.randint(1, 3))
        )
        record = dataclasses.replace(
            _BASE,
            trace_id=f"t{i}",
            request_id=f"r{i}",
            created_at=now - dt.timedelta(seconds=span * (traces - i) / traces),
            consumer_organization_id=rng.choice(["L01280796", "E04921301", "L01080193"]),
            outcomes=outcomes,
            duration_ms=rng.randint(5, 900),
        )
        pending.append(ledger.append(record))
        if len(pending) == 2048:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await ledger.close()
    engine.dispose()


def _timed(queries: trace_queries.SqlTraceQueries, days: int) -> tuple[float, int, int]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days + 1)
    started = time.perf_counter()
    table = queries.usage(TraceFilter(since=since), Grouping.PROVIDER, None)
    return time.perf_counter() - started, table.traces_scanned, table.hours_rolled_up


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.usage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        url = f"sqlite:///{var / 'usage.db'}"
        asyncio.run(_fill(url, var, args.traces, args.days))
        engine = create_engine(url)
        queries = trace_queries.SqlTraceQueries(engine, budget_s=600)
        results = {}
        saved = trace_queries._ROLL_UP_FROM
        trace_queries._ROLL_UP_FROM = dt.timedelta(days=100_000)  # as before roll-ups: read every trace
        results["every trace read"] = _timed(queries, args.days)
        trace_queries._ROLL_UP_FROM = saved
        results["first read, rolling up"] = _timed(queries, args.days)
        results["later read, rolled up"] = _timed(queries, args.days)
        engine.dispose()
    print(f"GetUsage by provider over {args.days} days, {args.traces} traces (SQLite):")
    print(f"{'how':<26} {'seconds':>8} {'traces read':>12} {'hours rolled up':>16}")
    for how, (seconds, scanned, hours) in results.items():
        print(f"{how:<26} {seconds:>8.3f} {scanned:>12} {hours:>16}")
    print(
        json.dumps(
            {k: {"s": round(v[0], 4), "traces_scanned": v[1], "hours": v[2]} for k, v in results.items()}
        )
    )


if __name__ == "__main__":
    main()
