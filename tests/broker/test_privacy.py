"""What whoever holds the database alone can learn about residents: nothing that names one.

The attack (from the audit): rebuild the canonical request body for a guessed document number,
hash it with a common unkeyed hash, and look the hash up in the database. With 10^8 possible
DNI numbers that recovered every subject of a batch in seconds. Every digest and pseudonym the
broker stores is now keyed with a key kept apart from the database.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import stat

import grpc
import pytest

from onceonly.broker import translate
from onceonly.broker.app import BrokerApp
from onceonly.broker.catalog import Catalog
from tests.conftest import Platform, resident, verify_request

HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s", "sha3_256")


def _database_bytes(platform: Platform) -> bytes:
    files = [platform.db_path.with_name(platform.db_path.name + s) for s in ("", "-wal", "-shm")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def _guesses(*texts: bytes) -> dict[str, bytes]:
    out = {}
    for text in texts:
        for name in HASHES:
            digest = hashlib.new(name, text)
            out[f"{name}({text[:40]!r})"] = digest.hexdigest().encode()
            out[f"{name}-raw({text[:40]!r})"] = digest.digest()
    return out


async def test_no_stored_value_can_be_tested_against_a_guessed_document_number(
    platform: Platform, broker: BrokerApp
) -> None:
    stub = platform.stub(broker)
    granted, denied = resident(), resident(lambda r: r.document_type == "NIE")
    requests = [verify_request(granted), verify_request(denied, procedure_code="PARKING-PERMIT")]
    await stub.Verify(requests[0], timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):  # the denial is traced too
        await stub.Verify(requests[1], timeout=10)
    assert len(platform.trace_rows()) == 2 and len(platform.reply_rows()) == 2
    catalog = Catalog.load()

    stored = _database_bytes(platform)
    for request, person in zip(requests, (granted, denied), strict=True):
        body = translate.canonical_body(translate.verification_request(request, catalog))
        key = f"{person.document_type}:{person.document_number}".encode()
        for guess, value in _guesses(body, key, person.document_number.encode()).items():
            assert value not in stored, f"{guess} is in the database"
        assert person.document_number.encode() not in stored


async def test_database_files_are_readable_by_their_owner_only(platform: Platform, broker: BrokerApp) -> None:
    await platform.stub(broker).Verify(verify_request(), timeout=10)
    files = [platform.db_path.with_name(platform.db_path.name + s) for s in ("", "-wal", "-shm")]
    for f in files:
        assert f.exists(), f
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{f.name} is {oct(f.stat().st_mode)}"


async def test_a_copy_of_the_database_folder_carries_no_key(platform: Platform, broker: BrokerApp) -> None:
    """The keys that make the database name no one are not in the database's folder by default:
    a backup or snapshot of that folder gives no way to test a guessed document number."""
    await platform.stub(broker).Verify(verify_request(), timeout=10)
    folder = platform.db_path.parent
    assert folder == platform.var_dir / "db" and stat.S_IMODE(folder.stat().st_mode) == 0o700
    keys = [p for p in (platform.var_dir / "keys").rglob("*") if p.is_file()]
    assert {p.name for p in keys} >= {"ledger.key", "replies.key"}
    copied = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for key in keys:
        assert key.parent != folder and folder not in key.parents
        assert key.read_bytes() not in copied, f"{key.name} is in the database folder"


async def test_a_database_made_in_the_state_folder_by_an_earlier_version_is_kept_with_a_warning(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    first = await platform.start_broker()
    await platform.stub(first).Verify(verify_request(), timeout=10)
    await first.stop()
    legacy = platform.var_dir / "onceonly.db"
    for suffix in ("", "-wal", "-shm"):  # where an earlier version put it
        moved = platform.db_path.with_name(platform.db_path.name + suffix)
        if moved.exists():
            moved.rename(legacy.with_name(legacy.name + suffix))
    assert platform.db_path == legacy
    with caplog.at_level(logging.WARNING, logger="onceonly.broker.app"):
        again = await platform.start_broker()
    assert any("keys are in the database's folder" in r.getMessage() for r in caplog.records)
    await platform.stub(again).Verify(verify_request(), timeout=10)
    assert len(platform.trace_rows()) == 2, "the earlier traces are still there, and the new one joined them"


async def test_replies_stored_before_digests_were_keyed_are_keyed_at_start_and_still_replay(
    platform: Platform,
) -> None:
    await platform.start_reference_providers()
    first_life = await platform.start_broker()
    request = verify_request()
    answer = await platform.stub(first_life).Verify(request, timeout=10)
    await first_life.stop()
    # What an earlier version stored: the unkeyed digest of the body.
    legacy = hashlib.sha256(
        translate.canonical_body(translate.verification_request(request, Catalog.load()))
    ).hexdigest()
    with sqlite3.connect(platform.db_path) as conn:
        conn.execute("UPDATE replies SET request_digest = ?", (legacy,))
    (platform.var_dir / "ledger" / "replies-keyed").unlink()  # an installation of an earlier version

    second_life = await platform.start_broker()
    [row] = platform.reply_rows()
    assert row["request_digest"].startswith("k1:") and legacy not in row["request_digest"]
    again = await platform.stub(second_life).Verify(request, timeout=10)
    assert again.trace_id == answer.trace_id  # recognised as the same request: answered once
    assert len(platform.trace_rows()) == 1
