"""The database goes away: the broker fails closed with UNAVAILABLE and recovers without a restart.

SQLite, "the file cannot be written": the tests run as root, so ``chmod`` stops nothing, and
``chattr +i``, loop-mounted tiny file systems or read-only bind mounts need privileges a CI
container does not have. What does work anywhere, as root too, is a file-size limit on the
broker process (``RLIMIT_FSIZE``, set from outside with ``prlimit``): at 0 every write of the
broker to any regular file fails with ``EFBIG``, exactly as on a full disk — SQLite reports a
disk I/O error. Lifting the limit is the disk getting space back. (A lock held by another
connection, the other way a SQLite write fails, is covered in tests/broker/test_trace.py.)

PostgreSQL, "the server stopped": the test server is shared by the whole run, so it is not
stopped; the broker reaches it through a TCP relay that the test cuts (every connection dropped,
new ones refused) and restores.
"""

from __future__ import annotations

import asyncio
import resource
import time

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from onceonly.broker.storage import create_engine
from onceonly.v1 import broker_pb2, broker_pb2_grpc
from tests.broker.conftest import TcpProxy
from tests.conftest import Platform, resident, verify_failure, verify_request
from tests.faults.conftest import BrokerProcess

pytestmark = pytest.mark.faults


async def answered_once_back(
    stub: broker_pb2_grpc.BrokerAsyncStub, request: broker_pb2.VerifyRequest, timeout: float
) -> broker_pb2.VerifyResponse:
    """Retry ``request`` (same id) until the broker answers it; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await stub.Verify(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def assert_fails_closed(
    stub: broker_pb2_grpc.BrokerAsyncStub, request: broker_pb2.VerifyRequest
) -> None:
    started = time.perf_counter()
    failure = await verify_failure(stub, request)
    assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
    assert failure.info is not None and failure.info.reason == "LEDGER_UNAVAILABLE"
    assert time.perf_counter() - started < 8  # bounded by the busy timeout, not hanging


async def test_sqlite_disk_full_fails_closed_and_recovers(
    platform: Platform, broker_process: BrokerProcess
) -> None:
    await platform.start_reference_providers()
    broker_process.env["ONCEONLY_DB_BUSY_TIMEOUT_MS"] = "1000"
    await broker_process.start()
    stub = broker_process.stub()
    first = await stub.Verify(verify_request(), timeout=10)

    r = resident()
    granted = verify_request(r)
    denied = verify_request(r, procedure_code="PARKING-PERMIT")  # policy refuses: traced too
    soft, hard = resource.prlimit(broker_process.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(broker_process.pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        await assert_fails_closed(stub, granted)
        await assert_fails_closed(stub, denied)
        await assert_fails_closed(stub, granted)  # still closed: nothing was half-written
    finally:
        resource.prlimit(broker_process.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert platform.trace_rows(request_id=granted.request_id) == []

    # Same process, no restart: the retries with the same ids are answered and traced.
    reply = await answered_once_back(stub, granted, timeout=15)
    assert reply.outcomes and all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in reply.outcomes)
    failure = await verify_failure(stub, denied)
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    for trace_id in (first.trace_id, reply.trace_id, failure.info.metadata["trace_id"]):  # type: ignore[union-attr]
        assert len(platform.trace_rows(trace_id=trace_id)) == 1
    assert broker_process.process is not None and broker_process.process.popen.poll() is None
    assert "disk I/O error" in broker_process.process.log_path.read_text()  # the fault was the one meant


async def test_postgresql_gone_fails_closed_and_recovers(platform: Platform, postgres_url: str) -> None:
    server = make_url(postgres_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    proxy.restore()
    try:
        await platform.start_reference_providers()
        relayed = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        app = await platform.start_broker(database_url=relayed, db_busy_timeout_ms=1000)
        stub = platform.stub(app)
        first = await stub.Verify(verify_request(), timeout=10)

        r = resident()
        granted = verify_request(r)
        proxy.cut()
        await assert_fails_closed(stub, granted)
        await assert_fails_closed(stub, verify_request(r, procedure_code="PARKING-PERMIT"))
        proxy.restore()

        reply = await answered_once_back(stub, granted, timeout=15)
        assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in reply.outcomes)
        later = await stub.Verify(verify_request(r), timeout=10)
    finally:
        proxy.close()

    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            traced = set(conn.execute(sa.text("SELECT trace_id FROM trace_records")).scalars())
    finally:
        engine.dispose()
    assert {first.trace_id, reply.trace_id, later.trace_id} <= traced
    assert len(traced) == 3  # the requests refused while the database was gone left no trace
