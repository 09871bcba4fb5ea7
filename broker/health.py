"""Dependency-aware health, and maintenance mode.

The broker's ``grpc.health.v1.Health`` says more than "the process is up". Every few seconds it
checks what a request needs:

* the trace ledger can be written (nothing may be answered that cannot be traced): a write that
  changes nothing, rolled back, so a read-only database, a replica or a lock that is never
  released count as down, not only a database that does not answer;
* a signing key is loaded (attestations and checkpoints are signed);
* the operator has not put the broker in **maintenance mode**: a file ``maintenance`` in the var
  directory (``onceonly maintenance on|off``), as X-Road's health check does. In maintenance the
  broker keeps answering the calls it gets, but reports ``NOT_SERVING`` so that load balancers
  drain it; removing the file brings it back.

The server (``""``) and ``onceonly.v1.Broker`` report ``SERVING`` only when all hold. Each provider's
circuit is reported under ``onceonly.provider.<id>`` (``NOT_SERVING`` while open), for operators:
one provider down does not take the broker out, its checks are answered ``UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from grpc_health.v1 import health, health_pb2

from onceonly.broker.storage import TraceRow

log = logging.getLogger(__name__)
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]

__all__ = ["MAINTENANCE_FILE", "HealthReport", "check_dependencies", "report_health_forever"]

MAINTENANCE_FILE = "maintenance"
HEALTH_EVERY_S = 5.0
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True, slots=True)
class HealthReport:
    problems: tuple[str, ...]
    """Why the broker should not take requests (empty: it should)."""
    circuits_open: Mapping[str, bool]


def ledger_writable(engine: sa.Engine) -> None:
    """Raise unless the trace table takes a write now (the write matches no row and is rolled back)."""
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(sa.update(_TRACES).where(sa.false()).values(chain_id=_TRACES.c.chain_id))
        transaction.rollback()


def check_dependencies(
    engine: sa.Engine,
    var_dir: Path,
    keys_loaded: Callable[[], bool],
    circuits_open: Callable[[], Mapping[str, bool]],
) -> HealthReport:
    """What stands between the broker and its next request (blocking: run it in a thread)."""
    problems = []
    if (var_dir / MAINTENANCE_FILE).exists():
        problems.append(f"maintenance mode ({var_dir / MAINTENANCE_FILE} exists)")
    try:
        ledger_writable(engine)
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
        problems.append(f"the trace ledger cannot be written: {reason[0]}")
    if not keys_loaded():
        problems.append("no signing key is loaded")
    return HealthReport(tuple(problems), dict(circuits_open()))


async def report_health_forever(
    servicer: health.aio.HealthServicer,
    service_names: tuple[str, ...],
    check: Callable[[], HealthReport],
    every_s: float = HEALTH_EVERY_S,
) -> None:
    """Set the health of the server and its services from :func:`check_dependencies`, every ``every_s``."""
    last: tuple[str, ...] | None = None
    while True:
        try:
            report = await asyncio.to_thread(check)
        except Exception as exc:  # a failed check is itself a reason not to serve
            report = HealthReport((f"the health check failed: {exc}",), {})
        status = SERVING if not report.problems else NOT_SERVING
        for name in ("", *service_names):
            await servicer.set(name, status)
        for provider, is_open in report.circuits_open.items():
            await servicer.set(f"onceonly.provider.{provider}", NOT_SERVING if is_open else SERVING)
        if report.problems != last:
            if report.problems:
                log.warning("not serving", extra={"event": "health", "problems": list(report.problems)})
            elif last is not None:
                log.info("serving again", extra={"event": "health"})
            last = report.problems
        await asyncio.sleep(every_s)
