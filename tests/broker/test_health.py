"""Dependency-aware health: maintenance mode drains a broker (NOT_SERVING) without refusing calls,
and each provider's circuit is reported under its own name."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from grpc_health.v1 import health_pb2

from onceonly.broker.app import BrokerApp
from tests.conftest import Platform, health_stub, verify_request
from tests.consumers.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def status_of(platform: Platform, app: BrokerApp, service: str = "") -> int:
    stub = health_stub(platform.channel(app.target))
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def until(
    platform: Platform, app: BrokerApp, wanted: int, service: str = "", within_s: float = 10
) -> None:
    for _ in range(int(within_s * 10)):
        if await status_of(platform, app, service) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health of {service!r} never became {wanted}")


async def test_maintenance_mode_drains_without_refusing(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker(health_check_s=0.1)
    await until(platform, app, SERVING)
    await until(platform, app, SERVING, "onceonly.provider.tax")

    code, out, err = await cli("maintenance", "on", "--var-dir", str(app.config.var_dir))
    assert code == 0 and "maintenance on" in out, err
    await until(platform, app, NOT_SERVING)
    await until(platform, app, NOT_SERVING, "onceonly.v1.Broker")
    answer = await platform.stub(app).Verify(verify_request(), timeout=10)
    assert answer.trace_id, "a broker in maintenance still answers what reaches it"

    code, out, _ = await cli("maintenance", "off", "--var-dir", str(app.config.var_dir))
    assert code == 0 and "maintenance off" in out
    await until(platform, app, SERVING)


async def test_an_open_circuit_shows_under_the_providers_name(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker(health_check_s=0.1, breaker_failures=1, breaker_cooldown_ms=60_000)
    await platform.providers["tax"].stop(0)
    stub = platform.stub(app)
    for _ in range(2):
        await stub.Verify(verify_request(), timeout=10)
    await until(platform, app, NOT_SERVING, "onceonly.provider.tax")
    assert await status_of(platform, app) == SERVING, "one provider down does not take the broker out"
    assert await status_of(platform, app, "onceonly.provider.registry") == SERVING


async def test_a_ledger_that_cannot_be_written_takes_the_broker_out(platform: Platform) -> None:
    """The database answering is not enough: while another process holds SQLite's write lock (as a
    stuck migration or backup would) nothing could be traced, so the broker reports NOT_SERVING,
    and SERVING again once the lock is released."""
    await platform.start_reference_providers()
    app = await platform.start_broker(health_check_s=0.1)
    await until(platform, app, SERVING)
    blocker = sqlite3.connect(platform.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("SELECT 1").fetchall()  # still readable: SELECT 1 would say "healthy"
        await until(platform, app, NOT_SERVING, within_s=20)
        assert await status_of(platform, app, "onceonly.v1.Broker") == NOT_SERVING
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await until(platform, app, SERVING, within_s=20)
