"""How fast a resident's own access log answers on PostgreSQL, for a resident with many entries.

    python -m bench.resident_log --database-url postgresql://… [--entries 1000] [--others 1000000]
    make bench-resident                   (a throwaway PostgreSQL server)

Fills an empty schema with ``--others`` traces of 100,000 other residents and ``--entries`` traces
of one resident (each under an agreement, so the disclosure check runs), then asks the broker's
``ResidentAccessService`` for that resident's first page of 50 entries ``--views`` times, as the
``ListMyAccesses`` RPC does (each view is first appended to the ledger: a durable write), with the
real ledger and queries over the same database. Reports p50, p95 and max. Writes
var/bench/resident_log.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import sqlalchemy as sa

from bench.common import NotPostgreSQL, throwaway_schema
from onceonly.broker.auth import RESIDENT_ROLE, RESIDENTS_ORG, Principal
from onceonly.broker.catalog import Catalog
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger, SubjectPseudonymiser
from onceonly.broker.resident_access import ResidentAccessService
from onceonly.broker.storage import init_schema
from onceonly.broker.trace_queries import SqlTraceQueries
from onceonly.validation import parse_subject

_INSERT = """
INSERT INTO trace_records (trace_id, request_id, request_digest, created_at, consumer_organization_id,
  consumer_unit, officer_id, procedure_code, purpose_text, case_file_id, legal_basis_kind,
  legal_basis_reference, subject_document_type, subject_ref, certificate_type_ids, decision,
  denial_reason, denial_detail, outcomes, duration_ms, chain_id, seq, prev_hash, record_hash,
  officer_identification, reply_hash, agreements)
SELECT :prefix || i, :prefix || 'r' || i, '', now() - (i * interval '37 minutes'),
  'L01280796', 'Housing subsidies', 'officer-17', 'HOUSING-RENT-SUBSIDY', 'Rent subsidy application',
  'EXP-' || i, 'LAW', 'Ley 12/2023 art. 17', 'DNI',
  CASE WHEN :subject = '' THEN 's' || (i % 100000) ELSE :subject END,
  '["registry.residence/v1", "tax.compliance/v1"]', 'GRANTED', NULL, '',
  '[{"certificate_type_id": "registry.residence/v1", "provider_id": "registry", "status": "VERIFIED",'
  || ' "latency_ms": 12}, {"certificate_type_id": "tax.compliance/v1", "provider_id": "tax",'
  || ' "status": "VERIFIED", "latency_ms": 40}]',
  30, :chain, i, '', '', 'TOKEN', '',
  '[["registry.residence/v1", "madrid-housing", 1], ["tax.compliance/v1", "madrid-housing", 1]]'
FROM generate_series(1, CAST(:count AS bigint)) AS i
"""
RESIDENT = "DNI:12345678Z"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.resident_log", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--database-url", required=True, help="a PostgreSQL server (a schema of its own is made and dropped)"
    )
    parser.add_argument("--entries", type=int, default=1000, help="the resident's own entries")
    parser.add_argument("--others", type=int, default=1_000_000, help="other residents' entries")
    parser.add_argument("--views", type=int, default=200)
    args = parser.parse_args()
    try:
        with throwaway_schema(args.database_url) as engine:
            asyncio.run(run(engine, args))
    except NotPostgreSQL as exc:
        parser.error(str(exc))


async def run(engine: sa.Engine, args: argparse.Namespace) -> None:
    init_schema(engine)
    pseudonymiser = SubjectPseudonymiser(os.urandom(32))
    subject = parse_subject(RESIDENT)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.text(_INSERT), {"prefix": "o", "subject": "", "count": args.others, "chain": "others"}
        )
        conn.execute(
            sa.text(_INSERT),
            {
                "prefix": "m",
                "subject": pseudonymiser.pseudonym(subject.key()),
                "count": args.entries,
                "chain": "mine",
            },
        )
        conn.execute(sa.text("ANALYZE trace_records"))
    fill_s = time.perf_counter() - started
    print(f"  {args.others:,} other entries and {args.entries:,} of the resident written in {fill_s:.0f} s")

    ledger = SqlTraceLedger(engine, ReplyCipher(os.urandom(32)), chain_id="views")
    ledger.start()
    service = ResidentAccessService(
        SqlTraceQueries(engine), ledger, pseudonymiser, Catalog.load(), retention_days=1825
    )
    principal = Principal(RESIDENT_ROLE, RESIDENTS_ORG, None, "jwt", subject)
    seconds = []
    shown = 0
    for _ in range(args.views):
        t = time.perf_counter()
        view = await service.view(principal)
        seconds.append(time.perf_counter() - t)
        shown = len(view.accesses)
    await ledger.close()
    engine.dispose()
    seconds.sort()
    results = {
        "entries": args.entries,
        "others": args.others,
        "views": args.views,
        "page_size": shown,
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p95_ms": round(seconds[int(0.95 * (len(seconds) - 1))] * 1000, 1),
        "max_ms": round(seconds[-1] * 1000, 1),
    }
    print(
        f"\nresident access log, {args.entries:,} entries among {args.others:,} (PostgreSQL), "
        f"{args.views} views of the first page ({shown} entries), each traced first:"
    )
    print(f"  p50 {results['p50_ms']} ms   p95 {results['p95_ms']} ms   max {results['max_ms']} ms")
    out = Path("var/bench/resident_log.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    print(f"\n{json.dumps(results)}\nwritten to {out}")


if __name__ == "__main__":
    main()
