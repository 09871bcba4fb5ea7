"""The ledger's integrity does not rest on the database alone: tampering that recomputes every hash
in the database is caught against the witness (signed chain heads kept outside it).

Each test writes a real ledger through a running broker (a checkpoint every 2 records, each
witnessed), stops it, tampers with the SQLite file the way someone holding only the database
could, and runs ``onceonly ledger verify`` as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.broker.chain import record_hash
from onceonly.broker.storage import TraceRow, create_engine
from onceonly.broker.witness import ChainCut
from tests.conftest import ORG, Platform, verify_kwargs
from tests.consumers.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


async def _ledger(platform: Platform, requests: int = 6) -> Path:
    """A broker's ledger of ``requests`` traces, stopped (so its last head is signed and witnessed)."""
    await platform.start_reference_providers()
    app = await platform.start_broker(checkpoint_every=2)
    client = platform.client(app)
    for _ in range(requests):
        await client.verify(**verify_kwargs())
    await app.stop()
    return platform.db_path


async def verify(platform: Platform, *extra: str) -> tuple[int, str]:
    code, out, err = await cli("ledger", "verify", "--var-dir", str(platform.var_dir), *extra)
    return code, out + err


def _rehash_from(db: Path, chain: str, seq: int) -> None:
    """Recompute every hash from ``seq`` on, as a tamperer who knows the scheme would (reading the
    rows through the same column types as the broker)."""
    engine = create_engine(f"sqlite:///{db}")
    traces = TraceRow.__table__  # type: ignore[attr-defined]
    try:
        with engine.begin() as conn:
            prev = conn.execute(
                sa.select(traces.c.record_hash).where(traces.c.chain_id == chain, traces.c.seq == seq - 1)
            ).scalar()
            prev_hash = prev or "0" * 64
            rows = conn.execute(
                sa.select(traces)
                .where(traces.c.chain_id == chain, traces.c.seq >= seq)
                .order_by(traces.c.seq)
            ).all()
            for row in rows:
                values = dict(row._mapping)
                values["prev_hash"] = prev_hash
                values["record_hash"] = record_hash(values)
                conn.execute(
                    sa.update(traces)
                    .where(traces.c.id == values["id"])
                    .values(prev_hash=values["prev_hash"], record_hash=values["record_hash"])
                )
                prev_hash = values["record_hash"]
    finally:
        engine.dispose()


def _chain(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT chain_id FROM trace_records LIMIT 1").fetchone()[0])


async def test_an_untouched_ledger_verifies_against_its_witness(platform: Platform) -> None:
    await _ledger(platform)
    code, out = await verify(platform)
    assert code == 0, out
    assert "signed head(s)" in out and "ledger intact" in out


async def test_edited_and_rehashed_after_deleting_every_checkpoint(platform: Platform) -> None:
    db = await _ledger(platform)
    chain = _chain(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM chain_checkpoints")
        conn.execute("UPDATE trace_records SET purpose_text = 'nothing to see' WHERE seq = 2")
    _rehash_from(db, chain, 2)
    code, out = await verify(platform, "--witness", str(platform.var_dir / "none.jsonl"))
    assert code == 0, f"without a witness the rewrite passes (the database alone cannot tell): {out}"
    code, out = await verify(platform)
    assert code == 1, out
    assert "another record there" in out
    await asyncio.sleep(0.3)
    code, out = await verify(
        platform, "--witness", str(platform.var_dir / "none.jsonl"), "--max-unsigned-age-s", "0.2"
    )
    assert code == 1, f"even without a witness, records left unsigned longer than allowed show: {out}"
    assert "no checkpoint signs them" in out


async def test_a_changed_stored_reply(platform: Platform) -> None:
    db = await _ledger(platform)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT request_id, payload FROM replies ORDER BY request_id").fetchall()
        assert len(rows) >= 2
        conn.execute("UPDATE replies SET payload = ? WHERE request_id = ?", (rows[1][1], rows[0][0]))
    code, out = await verify(platform)
    assert code == 1, out
    assert f"the stored reply to request {rows[0][0]!r} is not the one stored with it" in out


async def test_a_deleted_checkpoint(platform: Platform) -> None:
    db = await _ledger(platform)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM chain_checkpoints WHERE seq = 2")
    code, out = await verify(platform, "--witness", str(platform.var_dir / "none.jsonl"))
    assert code == 0, f"the records are intact: the database alone cannot tell: {out}"
    code, out = await verify(platform)
    assert code == 1, out
    assert "checkpoint at seq 2 was deleted" in out


async def test_a_tail_cut_with_its_checkpoints(platform: Platform) -> None:
    db = await _ledger(platform)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM trace_records WHERE seq > 3")
        conn.execute("DELETE FROM chain_checkpoints WHERE seq > 3")
        conn.execute("DELETE FROM replies WHERE request_id NOT IN (SELECT request_id FROM trace_records)")
    code, out = await verify(platform)
    assert code == 1, out
    assert "cut at its tail" in out


async def test_a_whole_chain_deleted(platform: Platform) -> None:
    db = await _ledger(platform)
    with sqlite3.connect(db) as conn:
        for table in ("trace_records", "chain_checkpoints", "replies"):
            conn.execute(f"DELETE FROM {table}")
    code, out = await verify(platform)
    assert code == 1, out
    assert "whole chain is missing" in out


async def test_an_older_copy_of_the_database_restored(platform: Platform) -> None:
    db = await _ledger(platform, requests=2)
    old = db.with_name("old-copy.db")
    shutil.copy(db, old)
    app = await platform.start_broker(checkpoint_every=2)
    for _ in range(4):
        await platform.client(app).verify(**verify_kwargs())
    await app.stop()
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    shutil.copy(old, db)
    code, out = await verify(platform)
    assert code == 1, out
    assert "older copy of the database" in out


async def test_a_forged_witness_line_is_refused(platform: Platform) -> None:
    await _ledger(platform)
    witness = platform.var_dir / "ledger" / "witness.jsonl"
    lines = witness.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["seq"] = forged["seq"] + 100  # claims records that never were
    witness.write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    code, out = await verify(platform)
    assert code == 1, out
    assert "differs from what was signed" in out


async def test_the_broker_refuses_to_append_to_a_cut_chain(platform: Platform) -> None:
    db = await _ledger(platform)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM trace_records WHERE seq > 3")
        conn.execute("DELETE FROM chain_checkpoints WHERE seq > 3")
    with pytest.raises(ChainCut) as refused:
        await platform.start_broker()
    assert refused.value.reason == "LEDGER_CHAIN_CUT"
    assert "cut at its tail" in refused.value.message


async def test_an_oversight_bodys_own_copy_catches_a_rewrite_of_database_and_broker_witness(
    platform: Platform,
) -> None:
    """Whoever holds the broker's disk may rewrite the database *and* delete the broker's witness;
    the copy an oversight body fetched through the Oversight service still catches it."""
    await platform.start_reference_providers()
    app = await platform.start_broker(checkpoint_every=2)
    client = platform.client(app)
    for _ in range(4):
        await client.verify(**verify_kwargs())
    copy = platform.var_dir.parent / "aepd-witness.jsonl"
    where = ("--broker", app.target, "--tls-dir", str(platform.pki.dir))
    pki = platform.pki.dir

    def as_(name: str) -> tuple[str, ...]:
        return ("--cert", str(pki / f"{name}.pem"), "--key", str(pki / f"{name}-key.pem"))

    code, out, err = await cli("oversight", "witness", "--out", str(copy), *where, *as_("oversight"))
    assert code == 0, err
    assert "new signed head(s)" in out and copy.read_text().count("\n") >= 2
    # A consumer may not fetch them.
    platform.pki.consumer()
    refused, _, consumer_err = await cli("oversight", "witness", *where, *as_(f"consumer-{ORG}"))
    assert refused != 0 and "OVERSIGHT_ONLY" in consumer_err
    await app.stop()

    (platform.var_dir / "ledger" / "witness.jsonl").unlink()
    with sqlite3.connect(platform.db_path) as conn:
        conn.execute("DELETE FROM trace_records WHERE seq > 1")
        conn.execute("DELETE FROM chain_checkpoints")
        conn.execute("DELETE FROM replies")
    code, out = await verify(platform)
    assert code == 0, f"the database and the broker's (deleted) witness alone see nothing wrong: {out}"
    code, out = await verify(platform, "--witness", str(copy))
    assert code == 1, out
    assert "cut at its tail" in out


async def test_governance_entries_cut_from_the_end_of_the_log(platform: Platform) -> None:
    """The governance log's head is witnessed too: deleting its newest entries (a revocation, say)
    passes the database's own checks but not the witness."""
    await _ledger(platform)  # the start-up seed recorded the demo's governance, and witnessed its head
    with sqlite3.connect(platform.db_path) as conn:
        last = conn.execute("SELECT max(seq) FROM governance_events").fetchone()[0]
        conn.execute("DELETE FROM governance_events WHERE seq >= ?", (last - 1,))
    code, out = await verify(platform, "--witness", str(platform.var_dir / "none.jsonl"))
    assert code == 0, f"the database alone cannot tell: {out}"
    code, out = await verify(platform)
    assert code == 1, out
    assert f"governance log is cut at its tail: the witness saw entry {last}" in out
