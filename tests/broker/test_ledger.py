"""The trace ledger: durable group commit, duplicates, encryption, failing closed.

Every test that takes ``database_url`` runs on SQLite and on PostgreSQL (tests/broker/conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from onceonly.broker.domain import (
    CheckStatus,
    Decision,
    DenialReason,
    DocumentType,
    LegalBasisKind,
    StoredReply,
    SubjectId,
    TracedOutcome,
    TraceRecord,
)
from onceonly.broker.errors import DuplicateRequest, LedgerUnavailable
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger, SubjectPseudonymiser
from onceonly.broker.storage import create_engine, init_schema
from tests.broker.conftest import TcpProxy, stored_bytes

ORG = "L01280796"
SUBJECT = SubjectId(DocumentType.DNI, "48151623Z")


@pytest.fixture
def cipher(tmp_path: Path) -> ReplyCipher:
    return ReplyCipher.from_key_file(tmp_path / "var/keys/reply.key")


@pytest.fixture
def pseudonymiser(tmp_path: Path) -> SubjectPseudonymiser:
    return SubjectPseudonymiser.from_key_file(tmp_path / "var/keys/ledger.key")


@pytest.fixture
async def ledger(engine: sa.Engine, cipher: ReplyCipher) -> AsyncIterator[SqlTraceLedger]:
    ledger = SqlTraceLedger(engine, cipher)
    ledger.start()
    yield ledger
    await ledger.close()


def record(request_id: str, subject_ref: str = "f" * 64, **changes: object) -> TraceRecord:
    base = TraceRecord(
        trace_id=uuid.uuid4().hex,
        request_id=request_id,
        request_digest="ab" * 32,
        created_at=datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=UTC),
        consumer_organization_id=ORG,
        consumer_unit="Rent subsidies",
        officer_id="officer-7",
        procedure_code="HOUSING-RENT-SUBSIDY",
        purpose_text="Rent subsidy application",
        case_file_id="EXP-2026-001",
        legal_basis_kind=LegalBasisKind.LAW,
        legal_basis_reference="Ley 39/2015 art. 28",
        subject_document_type=DocumentType.DNI,
        subject_ref=subject_ref,
        certificate_type_ids=("registry.residence/v1", "tax.compliance/v1"),
        decision=Decision.GRANTED,
        denial_reason=None,
        denial_detail="",
        outcomes=(
            TracedOutcome("registry.residence/v1", "registry", CheckStatus.VERIFIED, 12),
            TracedOutcome("tax.compliance/v1", "tax", CheckStatus.TIMEOUT, 800),
        ),
        duration_ms=801,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def reply_for(rec: TraceRecord, payload: bytes) -> StoredReply:
    return StoredReply(rec.consumer_organization_id, rec.request_id, rec.request_digest, "response", payload)


async def test_concurrent_appends_are_durable(
    engine: sa.Engine, cipher: ReplyCipher, database_url: str
) -> None:
    commits = 0

    @sa.event.listens_for(engine, "commit")
    def _count_commit(_conn: object) -> None:
        nonlocal commits
        commits += 1

    ledger = SqlTraceLedger(engine, cipher)
    records = [record(f"req-{i}") for i in range(200)]
    await asyncio.gather(
        *(ledger.append(r, reply_for(r, f"answer {i}".encode())) for i, r in enumerate(records))
    )
    await ledger.close()
    engine.dispose()
    assert commits < len(records)  # group commit: many records per transaction

    reopened = create_engine(database_url)
    try:
        again = SqlTraceLedger(reopened, cipher)
        assert again.count() == 200
        for i in (0, 99, 199):
            assert await again.get_trace(records[i].trace_id) == records[i]
            stored = await again.find_reply(ORG, f"req-{i}")
            assert stored == reply_for(records[i], f"answer {i}".encode())
        # Many at once (a job's results): those recorded, by request id, whatever the chunking.
        asked = [f"req-{i}" for i in range(0, 200, 3)] + ["req-never", "req-1"]
        many = await again.find_replies(ORG, asked)
        assert set(many) == {r for r in asked if r != "req-never"}
        assert many["req-1"] == reply_for(records[1], b"answer 1")
        assert await again.find_replies("another-org", asked) == {}
        await again.close()
    finally:
        reopened.dispose()


@pytest.mark.parametrize("window_s", [0.0, 0.05])
async def test_a_commit_window_groups_records_that_arrive_close_together(
    engine: sa.Engine, cipher: ReplyCipher, window_s: float
) -> None:
    """Records handed over 5 ms apart: without a window each is its own commit; with a 50 ms
    window the writer holds the commit open while they keep coming, so far fewer commits serve
    them. Either way no caller hears back before its record is in the database."""
    ledger = SqlTraceLedger(engine, cipher, commit_window_s=window_s)

    async def one(i: int) -> None:
        await asyncio.sleep(i * 0.005)
        rec = record(f"window-{i}")
        await ledger.append(rec)
        assert await ledger.get_trace(rec.trace_id) == rec, "answered before it was durable"

    await asyncio.gather(*(one(i) for i in range(40)))
    commits = ledger.commits
    await ledger.close()
    assert ledger.count() == 40
    if window_s:
        assert commits <= 15, commits
    else:
        assert commits >= 25, commits


def test_the_commit_window_is_bounded(engine: sa.Engine, cipher: ReplyCipher) -> None:
    with pytest.raises(ValueError, match="commit_window_s"):
        SqlTraceLedger(engine, cipher, commit_window_s=0.5)


async def test_denied_trace_and_timestamps_round_trip(ledger: SqlTraceLedger) -> None:
    madrid_time = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    denied = record(
        "req-denied",
        created_at=madrid_time,
        decision=Decision.DENIED,
        denial_reason=DenialReason.PROVIDER_VETO,
        denial_detail="Provider 'tax' has vetoed agreement 'x'.",
        outcomes=(),
    )
    await ledger.append(denied)  # no reply is kept for it
    stored = await ledger.get_trace(denied.trace_id)
    assert stored == denied
    assert stored is not None and stored.created_at.tzinfo == UTC
    assert stored.created_at.hour == 10
    assert await ledger.find_reply(ORG, "req-denied") is None


async def test_duplicate_fails_only_the_duplicate(ledger: SqlTraceLedger, engine: sa.Engine) -> None:
    # Hold the writer in its first transaction so that everything after piles up into one batch.
    gate = threading.Event()
    first = True

    @sa.event.listens_for(engine, "begin")
    def _hold_first_batch(_conn: object) -> None:
        nonlocal first
        if first:
            first = False
            gate.wait(5)

    records = [record(f"req-{i}") for i in range(10)]
    duplicate = record("req-3")  # same (organisation, request id), another trace
    other_org = record("req-3", consumer_organization_id="E04990101")  # not a duplicate
    tasks = [asyncio.ensure_future(ledger.append(r)) for r in [*records, duplicate, other_org]]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert [type(r).__name__ for r in results] == ["NoneType"] * 10 + ["DuplicateRequest", "NoneType"]
    assert isinstance(results[10], DuplicateRequest) and results[10].request_id == "req-3"
    assert ledger.count() == 11
    assert await ledger.get_trace(duplicate.trace_id) is None

    # A later reuse of a committed id is refused as well.
    with pytest.raises(DuplicateRequest):
        await ledger.append(record("req-5"))


async def test_reply_is_encrypted_at_rest(
    ledger: SqlTraceLedger, engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    secret = b'{"household_size": 4, "note": "TOP-SECRET-CLAIM-VALUE"}'
    rec = record("req-secret")
    await ledger.append(rec, reply_for(rec, secret))
    assert await ledger.find_reply(ORG, "req-secret") == reply_for(rec, secret)
    assert await ledger.find_reply(ORG, "req-other") is None

    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT payload FROM replies")).scalar_one()
    assert b"TOP-SECRET" not in raw and len(raw) == 12 + len(secret) + 16  # nonce + ciphertext + tag
    await ledger.close()
    engine.dispose()
    assert b"TOP-SECRET" not in stored_bytes(database_url)

    key_file = tmp_path / "var/keys/reply.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The key survives a restart; another key cannot open the reply.
    reopened = create_engine(database_url)
    try:
        same_key = SqlTraceLedger(reopened, ReplyCipher.from_key_file(key_file))
        assert (await same_key.find_reply(ORG, "req-secret")).payload == secret  # type: ignore[union-attr]
        other_key = SqlTraceLedger(reopened, ReplyCipher.from_key_file(tmp_path / "other.key"))
        with pytest.raises(LedgerUnavailable):
            await other_key.find_reply(ORG, "req-secret")
        with pytest.raises(LedgerUnavailable):
            await other_key.find_replies(ORG, ["req-secret"])
    finally:
        reopened.dispose()


def test_cipher_binds_the_request(cipher: ReplyCipher) -> None:
    blob = cipher.seal(b"answer", ReplyCipher.aad(ORG, "req-1"))
    assert cipher.open(blob, ReplyCipher.aad(ORG, "req-1")) == b"answer"
    with pytest.raises(InvalidTag):
        cipher.open(blob, ReplyCipher.aad(ORG, "req-2"))
    assert cipher.seal(b"answer", b"") != cipher.seal(b"answer", b"")  # fresh nonce each time


async def test_locked_sqlite_database_fails_closed_then_recovers(tmp_path: Path, cipher: ReplyCipher) -> None:
    db_url = f"sqlite:///{tmp_path}/var/onceonly.db"
    engine = create_engine(db_url, busy_timeout_ms=100)
    init_schema(engine)
    ledger = SqlTraceLedger(engine, cipher)
    try:
        await ledger.append(record("req-before"))
        locker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            blocked = record("req-blocked")
            with pytest.raises(LedgerUnavailable):
                await asyncio.wait_for(ledger.append(blocked), timeout=10)
            locker.execute("ROLLBACK")
        finally:
            locker.close()
        # Same ledger, no restart: the writer survived and the database is back.
        await ledger.append(record("req-after"))
        await ledger.append(blocked)  # the refused record was never written, so it is not a duplicate
        assert ledger.count() == 3
    finally:
        await ledger.close()
        engine.dispose()


async def test_locked_postgresql_table_fails_closed_then_recovers(
    postgres_url: str, cipher: ReplyCipher
) -> None:
    engine = create_engine(postgres_url, busy_timeout_ms=100)  # lock_timeout = 100 ms
    init_schema(engine)
    ledger = SqlTraceLedger(engine, cipher)
    locker = create_engine(postgres_url, poolclass=NullPool)
    try:
        await ledger.append(record("req-before"))
        with locker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE trace_records IN ACCESS EXCLUSIVE MODE"))
            blocked = record("req-blocked")
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable):
                await asyncio.wait_for(ledger.append(blocked), timeout=10)
            assert time.monotonic() - started < 5  # failed at the lock timeout, not a hang
            conn.rollback()
        await ledger.append(record("req-after"))
        await ledger.append(blocked)  # never written, so not a duplicate
        assert ledger.count() == 3
    finally:
        await ledger.close()
        engine.dispose()
        locker.dispose()


async def test_unreachable_postgresql_fails_closed_then_recovers(
    postgres_url: str, cipher: ReplyCipher
) -> None:
    server = make_url(postgres_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    proxy.restore()
    engine = create_engine(server.set(host="127.0.0.1", port=proxy.port), busy_timeout_ms=1000)
    ledger = SqlTraceLedger(engine, cipher)
    try:
        init_schema(engine)
        first = record("req-before")
        await ledger.append(first, reply_for(first, b"answer"))

        # A restart between two requests: the pooled connections are dead, but the next
        # write does not fail for it (they are pinged and replaced before use).
        proxy.cut()
        proxy.restore()
        await ledger.append(record("req-after-restart"))

        proxy.cut()  # pooled connections die, new ones are refused: the server is gone
        blocked = record("req-blocked")
        with pytest.raises(LedgerUnavailable):
            await asyncio.wait_for(ledger.append(blocked), timeout=10)
        with pytest.raises(LedgerUnavailable):
            await ledger.find_reply(ORG, "req-before")
        with pytest.raises(LedgerUnavailable):
            await ledger.get_trace(first.trace_id)

        proxy.restore()  # same ledger, same engine: stale connections are replaced
        await ledger.append(record("req-after"))
        await ledger.append(blocked)
        assert (await ledger.find_reply(ORG, "req-before")) == reply_for(first, b"answer")
        assert ledger.count() == 4
    finally:
        await ledger.close()
        engine.dispose()
        proxy.close()


async def test_no_raw_document_number_on_disk(
    ledger: SqlTraceLedger, engine: sa.Engine, database_url: str, pseudonymiser: SubjectPseudonymiser
) -> None:
    subject_ref = pseudonymiser.pseudonym(SUBJECT.key())
    assert SUBJECT.document_number not in subject_ref
    rec = record("req-1", subject_ref=subject_ref)
    payload = f'{{"subject": "{SUBJECT.document_number}", "registered": true}}'.encode()
    await ledger.append(rec, reply_for(rec, payload))
    await ledger.close()
    engine.dispose()
    on_disk = stored_bytes(database_url)
    assert subject_ref.encode() in on_disk  # the scan does see the stored text
    assert SUBJECT.document_number.encode() not in on_disk


def test_pseudonyms_are_keyed_and_stable(tmp_path: Path) -> None:
    key = tmp_path / "keys/ledger.key"
    one = SubjectPseudonymiser.from_key_file(key).pseudonym(SUBJECT.key())
    assert SubjectPseudonymiser.from_key_file(key).pseudonym(SUBJECT.key()) == one
    assert SubjectPseudonymiser.from_key_file(tmp_path / "other.key").pseudonym(SUBJECT.key()) != one
    assert len(one) == 64 and int(one, 16) >= 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


async def test_close_is_idempotent_and_final(ledger: SqlTraceLedger) -> None:
    await ledger.append(record("req-1"))
    await ledger.close()
    await ledger.close()
    with pytest.raises(LedgerUnavailable):
        await ledger.append(record("req-2"))
    assert ledger.count() == 1


async def test_replies_are_found_by_request_id_prefix(ledger: SqlTraceLedger) -> None:
    """What the SCSP facade asks to tell a synchronous petition's id: any reply under ``ID.``."""
    for rid in ("PET-1.1", "PET-10.1", "PET-2/x"):
        rec = record(rid)
        await ledger.append(rec, reply_for(rec, b"answer"))
    assert await ledger.has_replies(ORG, "PET-1.")
    assert await ledger.has_replies(ORG, "PET-10.")
    assert not await ledger.has_replies(ORG, "PET-2.")  # "PET-2/x" is not under "PET-2."
    assert not await ledger.has_replies(ORG, "PET-3.")
    assert not await ledger.has_replies("another-org", "PET-1.")
