"""Usage facts: what the rolled-up hours say equals what the traces say, for every grouping and
bucket, on SQLite and PostgreSQL; partial hours at a range's ends come from the traces; a replica
rolling up the same hours leaves one copy; facts outlive purged traces."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from onceonly.broker import usage_facts
from onceonly.broker.chain import purge_before
from onceonly.broker.domain import (
    CheckStatus,
    Decision,
    DenialReason,
    DocumentType,
    LegalBasisKind,
    TracedOutcome,
    TraceRecord,
)
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger
from onceonly.broker.storage import create_engine, init_schema
from onceonly.broker.usage_facts import FactFilter

NOW = dt.datetime.now(dt.UTC)
BASE = TraceRecord(
    trace_id="",
    request_id="",
    request_digest="",
    created_at=NOW,
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
    certificate_type_ids=(),
    decision=Decision.GRANTED,
    denial_reason=None,
    denial_detail="",
    outcomes=(),
    duration_ms=5,
)


async def fill(url: str, tmp: Path, count: int = 300) -> list[TraceRecord]:
    """``count`` traces over the last 50 hours (the newest in the open hour): granted with one to
    three checks, and denied."""
    engine = create_engine(url)
    init_schema(engine)
    ledger = SqlTraceLedger(engine, ReplyCipher.from_key_file(tmp / "reply.key"))
    rng = random.Random(7)
    records = []
    for i in range(count):
        at = NOW - dt.timedelta(hours=50) * (count - 1 - i) / count
        types = rng.sample(
            ["registry.residence/v1", "tax.compliance/v1", "employment.unemployment-status/v1"],
            rng.randint(1, 3),
        )
        record = dataclasses.replace(
            BASE,
            trace_id=f"t{i}",
            request_id=f"r{i}",
            created_at=at,
            consumer_organization_id=rng.choice(["L01280796", "L08019030"]),
            procedure_code=rng.choice(["HOUSING-RENT-SUBSIDY", "PARKING-PERMIT"]),
            legal_basis_kind=rng.choice([LegalBasisKind.LAW, LegalBasisKind.CONSENT]),
            certificate_type_ids=tuple(types),
        )
        if rng.random() < 0.2:
            record = dataclasses.replace(
                record, decision=Decision.DENIED, denial_reason=DenialReason.PROVIDER_VETO
            )
        else:
            record = dataclasses.replace(
                record,
                outcomes=tuple(
                    TracedOutcome(
                        cid, cid.split(".")[0], rng.choice([CheckStatus.VERIFIED, CheckStatus.TIMEOUT]), 9
                    )
                    for cid in types
                ),
            )
        records.append(record)
        await ledger.append(record)
    await ledger.close()
    engine.dispose()
    return records


def expected(records: list[TraceRecord], filter_: FactFilter, group_by: list[str], bucket: str) -> dict:
    out: Counter[tuple[str, tuple[str, ...]]] = Counter()
    requests: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for r in records:
        if filter_.since is not None and r.created_at < filter_.since:
            continue
        if filter_.until is not None and r.created_at >= filter_.until:
            continue
        first = 1
        facts = (
            [
                (cid, "", "DENIED", r.denial_reason.value if r.denial_reason else "")
                for cid in r.certificate_type_ids
            ]
            if r.decision is Decision.DENIED
            else [(o.certificate_type_id, o.provider_id, o.status.value, "") for o in r.outcomes]
        )
        for cid, provider, outcome, reason in facts:
            key = (
                r.consumer_organization_id,
                r.procedure_code,
                r.legal_basis_kind.value,
                cid,
                provider,
                outcome,
                reason,
            )
            counted, first = first, 0  # a request is counted on its first fact (as documented)
            if not filter_.matches(key):
                continue
            values = tuple(key[usage_facts.DIMENSIONS.index(d)] for d in group_by)
            b = {"hour": r.created_at.strftime("%Y-%m-%dT%H:00"), "day": r.created_at.strftime("%Y-%m-%d"),
                 "month": r.created_at.strftime("%Y-%m"), "all": ""}[bucket]  # fmt: skip
            out[b, values] += 1
            requests[b, values] += counted
    return {k: (out[k], requests[k]) for k in out}


def got(table: usage_facts.FactTable) -> dict:
    return {(row.bucket, row.dimensions): (row.checks, row.requests) for row in table.rows}


async def test_rolled_up_facts_equal_the_traces(database_url: str, tmp_path: Path) -> None:
    records = await fill(database_url, tmp_path)
    engine = create_engine(database_url)
    try:
        cases = [
            (FactFilter(), ["consumer_organization_id", "outcome"], "all"),
            (FactFilter(), ["provider_id", "outcome"], "day"),
            (FactFilter(since=NOW - dt.timedelta(hours=30, minutes=20)), ["procedure_code"], "hour"),
            (
                FactFilter(until=NOW - dt.timedelta(hours=3, minutes=7), equal={"provider_id": "tax"}),
                ["certificate_type_id", "legal_basis_kind"],
                "month",
            ),
            (FactFilter(equal={"outcome": "DENIED"}), ["denial_reason", "certificate_type_id"], "all"),
        ]
        with engine.connect() as conn:
            for filter_, group_by, bucket in cases:
                first = usage_facts.query(conn, filter_, group_by, bucket)
                assert first.hours_rolled_up > 0
                assert got(first) == expected(records, filter_, group_by, bucket), (group_by, bucket)
                again = usage_facts.query(conn, filter_, group_by, bucket)  # from the roll-ups now
                assert got(again) == got(first)
                assert again.traces_scanned < len(records) // 2, "the closed hours are not read again"
            rolled = conn.execute(
                sa.text("SELECT count(*) FROM usage_facts WHERE outcome = '*HOUR*'")
            ).scalar()
            assert usage_facts.roll_up(conn, *_span(records)) == 0, (
                "rolled once; a second replica adds nothing"
            )
            assert (
                conn.execute(sa.text("SELECT count(*) FROM usage_facts WHERE outcome = '*HOUR*'")).scalar()
                == rolled
            )
            purge_before(engine, NOW + dt.timedelta(hours=1))
            after = usage_facts.query(conn, FactFilter(until=_span(records)[1]), ["outcome"], "all")
            before = expected(records, FactFilter(until=_span(records)[1]), ["outcome"], "all")
            assert got(after) == before, "the facts of closed hours outlive the purged traces"
    finally:
        engine.dispose()


def _span(records: list[TraceRecord]) -> tuple[dt.datetime, dt.datetime]:
    """The closed hours the traces fall in."""
    from onceonly.broker.usage_rollup import closed_before, floor_hour

    return floor_hour(records[0].created_at), closed_before(dt.datetime.now(dt.UTC))
