"""The hash-chained ledger: checkpoints, verification naming the first bad record, purge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.broker.attestation import KeyRing
from onceonly.broker.chain import (
    ADDED_LATER,
    CHECKPOINT_TYPE,
    GENESIS,
    HASHED_COLUMNS,
    purge_before,
    record_hash,
    verify_ledger,
)
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger
from onceonly.broker.storage import TraceRow
from tests.broker.test_ledger import record, reply_for

TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing.generate()


def make_ledger(engine: sa.Engine, tmp_path: Path, keys: KeyRing, chain_id: str = "replica-a", **kw: object):
    return SqlTraceLedger(
        engine,
        ReplyCipher.from_key_file(tmp_path / "reply.key"),
        chain_id=chain_id,
        sign_checkpoint=lambda claims: keys.sign(claims, CHECKPOINT_TYPE),
        checkpoint_every=kw.pop("checkpoint_every", 5),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def filled(engine: sa.Engine, tmp_path: Path, keys: KeyRing) -> AsyncIterator[sa.Engine]:
    """A ledger with 12 records in one chain (checkpoints every 5 and one at close)."""
    ledger = make_ledger(engine, tmp_path, keys)
    for i in range(12):
        await ledger.append(record(f"req-{i}"))
    await ledger.close()
    yield engine


def rows(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT id, seq, trace_id, purpose_text FROM trace_records ORDER BY seq"))
        )


def first_problem(engine: sa.Engine, keys: KeyRing) -> str:
    reports = verify_ledger(engine, keys.public_keys())
    problems = [p for r in reports for p in r.problems]
    assert problems, "verification found nothing wrong"
    return problems[0]


async def test_an_intact_chain_verifies_with_checkpoints(filled: sa.Engine, keys: KeyRing) -> None:
    (report,) = verify_ledger(filled, keys.public_keys())
    assert report.intact, report.problems
    assert (report.chain_id, report.records, report.first_seq, report.last_seq) == ("replica-a", 12, 1, 12)
    assert report.checkpoints == 3  # at 5, 10 and at close (12)
    with filled.connect() as conn:
        first = conn.execute(sa.text("SELECT prev_hash FROM trace_records WHERE seq = 1")).scalar_one()
    assert first == GENESIS


async def test_an_edited_record_is_named(filled: sa.Engine, keys: KeyRing) -> None:
    target = rows(filled)[6]
    with filled.begin() as conn:
        conn.execute(
            sa.text("UPDATE trace_records SET purpose_text = 'nothing to see' WHERE id = :id"),
            {"id": target.id},
        )
    problem = first_problem(filled, keys)
    assert f"seq {target.seq} (trace {target.trace_id})" in problem
    assert "edited" in problem


async def test_a_deleted_record_is_named(filled: sa.Engine, keys: KeyRing) -> None:
    target = rows(filled)[3]
    with filled.begin() as conn:
        conn.execute(sa.text("DELETE FROM trace_records WHERE id = :id"), {"id": target.id})
    problem = first_problem(filled, keys)
    assert f"expected seq {target.seq}" in problem
    assert "missing" in problem


async def test_two_swapped_records_are_detected_at_the_first(filled: sa.Engine, keys: KeyRing) -> None:
    a, b = rows(filled)[2], rows(filled)[8]
    # Swap their places in the chain (seq and links stay with the position, content moves).
    with filled.begin() as conn:
        for src, dst in ((a, b), (b, a)):
            conn.execute(
                sa.text("UPDATE trace_records SET purpose_text = :p, trace_id = :t WHERE id = :id"),
                {"p": src.purpose_text + " ", "t": f"swapped-{src.trace_id}", "id": dst.id},
            )
    problem = first_problem(filled, keys)
    assert f"seq {a.seq} " in problem


async def test_an_inserted_record_is_detected(filled: sa.Engine, keys: KeyRing) -> None:
    # A forger who knows the hashing rule makes room at seq 5 and slips in a well-formed,
    # correctly hashed record linked to seq 4. The record after it no longer links.
    with filled.begin() as conn:
        conn.execute(sa.text("UPDATE trace_records SET seq = -seq WHERE seq >= 5"))
        conn.execute(sa.text("UPDATE trace_records SET seq = 1 - seq WHERE seq < 0"))
        row = dict(conn.execute(sa.select(TRACES).where(TRACES.c.seq == 4)).one()._mapping)
        row.pop("id")
        row.update(trace_id="forged", request_id="forged", seq=5, prev_hash=row["record_hash"])
        row["record_hash"] = record_hash(row)
        conn.execute(sa.insert(TRACES), row)
    problem = first_problem(filled, keys)
    assert "seq 6 " in problem and "does not link" in problem


async def test_a_truncated_tail_is_caught_by_its_checkpoint(filled: sa.Engine, keys: KeyRing) -> None:
    with filled.begin() as conn:
        conn.execute(sa.text("DELETE FROM trace_records WHERE seq > 10"))
    problem = first_problem(filled, keys)
    assert "checkpoint at seq 12" in problem and "truncated" in problem


async def test_a_checkpoint_signed_by_another_key_is_refused(filled: sa.Engine, keys: KeyRing) -> None:
    forger = KeyRing.generate()
    problem = first_problem(filled, forger)
    assert "unknown key" in problem


async def test_purge_keeps_the_rest_verifiable(engine: sa.Engine, tmp_path: Path, keys: KeyRing) -> None:
    ledger = make_ledger(engine, tmp_path, keys)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(7):
        await ledger.append(record(f"old-{i}", created_at=old + timedelta(minutes=i)))
    for i in range(4):
        await ledger.append(record(f"new-{i}", created_at=datetime(2026, 6, 1, tzinfo=UTC)))
    await ledger.close()

    result = purge_before(engine, datetime(2025, 1, 1, tzinfo=UTC))

    # Only up to the checkpoint at seq 5 can go: records 6 and 7 are old but not yet anchored.
    assert result.records == 5 and result.anchors == {"replica-a": 5}
    (report,) = verify_ledger(engine, keys.public_keys())
    assert report.intact, report.problems
    assert (report.first_seq, report.last_seq) == (6, 11)

    # The chain goes on after a purge and a restart.
    ledger = make_ledger(engine, tmp_path, keys)
    await ledger.append(record("after-purge"))
    await ledger.close()
    (report,) = verify_ledger(engine, keys.public_keys())
    assert report.intact and report.last_seq == 12


async def test_replicas_keep_separate_chains(engine: sa.Engine, tmp_path: Path, keys: KeyRing) -> None:
    a = make_ledger(engine, tmp_path, keys, chain_id="replica-a")
    b = make_ledger(engine, tmp_path, keys, chain_id="replica-b")
    await asyncio.gather(*(led.append(record(f"{led.chain_id}-{i}")) for i in range(20) for led in (a, b)))
    await a.close()
    await b.close()
    reports = verify_ledger(engine, keys.public_keys())
    assert [(r.chain_id, r.records, r.intact) for r in reports] == [
        ("replica-a", 20, True),
        ("replica-b", 20, True),
    ]


async def test_a_restarted_replica_continues_its_chain(
    engine: sa.Engine, tmp_path: Path, keys: KeyRing
) -> None:
    for life in range(3):
        ledger = make_ledger(engine, tmp_path, keys, checkpoint_every=1000)
        for i in range(3):
            await ledger.append(record(f"life{life}-{i}"))
        await ledger.close()
    (report,) = verify_ledger(engine, keys.public_keys())
    assert report.intact and report.records == 9 and report.checkpoints == 3


def test_a_column_added_later_keeps_earlier_hashes_and_is_protected_once_set() -> None:
    old = {name: f"v-{name}" for name in HASHED_COLUMNS if name not in ADDED_LATER}
    before = record_hash(old)  # a record from before the column existed
    assert record_hash({**old, "officer_identification": ""}) == before
    stamped = {**old, "officer_identification": "TOKEN"}
    assert record_hash(stamped) != before  # set, it is hashed: blanking or changing it shows
    assert record_hash({**stamped, "officer_identification": "CERTIFICATE"}) != record_hash(stamped)


async def test_a_changed_stored_reply_is_named(engine: sa.Engine, tmp_path: Path, keys: KeyRing) -> None:
    """Stored replies sit inside the chain: a reply whose digest or sealed payload is swapped for
    another (both authentic on their own) no longer matches the hash its record holds."""
    ledger = make_ledger(engine, tmp_path, keys)
    for i in range(4):
        rec = record(f"req-{i}")
        await ledger.append(rec, reply_for(rec, f"answer {i}".encode()))
    await ledger.close()
    assert all(r.intact for r in verify_ledger(engine, keys.public_keys()))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE replies SET request_digest = 'k1:' || 'ab' WHERE request_id = 'req-1'"))
    assert "stored reply to request 'req-1'" in first_problem(engine, keys)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE replies SET request_digest = (SELECT request_digest FROM trace_records "
                "WHERE request_id = 'req-1') WHERE request_id = 'req-1'"
            )
        )
    assert all(r.intact for r in verify_ledger(engine, keys.public_keys())), "the digest put back"
    with engine.begin() as conn:
        other = conn.execute(sa.text("SELECT payload FROM replies WHERE request_id = 'req-3'")).scalar()
        conn.execute(sa.text("UPDATE replies SET payload = :p WHERE request_id = 'req-2'"), {"p": other})
    assert "stored reply to request 'req-2'" in first_problem(engine, keys)


async def test_old_records_no_checkpoint_signs_are_named(filled: sa.Engine, keys: KeyRing) -> None:
    """Deleting every checkpoint (to rewrite records unseen) leaves records older than the
    checkpoint interval unsigned, which a running broker never does."""
    with filled.begin() as conn:
        conn.execute(sa.text("DELETE FROM chain_checkpoints"))
    written = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=UTC)  # the test records' time
    later = written + timedelta(minutes=5)
    soon = written + timedelta(minutes=1)
    (report,) = verify_ledger(filled, keys.public_keys(), unsigned_limit=timedelta(minutes=2), now=soon)
    assert report.intact, "records younger than the limit may still wait for their checkpoint"
    (report,) = verify_ledger(filled, keys.public_keys(), unsigned_limit=timedelta(minutes=2), now=later)
    assert (
        report.problems
        and "from seq 1" in report.problems[0]
        and "no checkpoint signs them" in report.problems[0]
    )


async def test_a_tail_left_unsigned_is_signed_at_the_next_start(
    engine: sa.Engine, tmp_path: Path, keys: KeyRing
) -> None:
    """A broker killed before its next checkpoint leaves records unsigned; the next start signs them."""
    killed = SqlTraceLedger(engine, ReplyCipher.from_key_file(tmp_path / "reply.key"), chain_id="replica-a")
    for i in range(3):
        await killed.append(record(f"req-{i}"))
    await killed.close()  # no signing key: as if killed before any checkpoint
    later = datetime.now(UTC) + timedelta(minutes=5)
    (report,) = verify_ledger(engine, keys.public_keys(), unsigned_limit=timedelta(minutes=2), now=later)
    assert not report.intact
    restarted = make_ledger(engine, tmp_path, keys, checkpoint_every=1000)
    restarted.start()
    for _ in range(200):
        (report,) = verify_ledger(engine, keys.public_keys(), unsigned_limit=timedelta(minutes=2), now=later)
        if report.checkpoints:
            break
        await asyncio.sleep(0.02)
    await restarted.close()
    assert report.intact and report.checkpoints == 1, report.problems
