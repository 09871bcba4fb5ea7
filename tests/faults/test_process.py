"""The broker process dies (SIGKILL) or is stopped (SIGTERM) in the middle of a load.

Either way every answer a client received has its trace record, and ``onceonly ledger verify``
passes afterwards: after a SIGKILL the last records may not be covered by a checkpoint yet,
which the chain rules allow (records after the last checkpoint are checked by their links).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

import grpc
import pytest

from onceonly.processes import onceonly_argv
from onceonly.providers import synthetic
from onceonly.providers.reference import reference_adapter
from onceonly.v1 import broker_pb2, broker_pb2_grpc
from tests.conftest import Platform, SlowAdapter, known_everywhere, query, verify_request
from tests.faults.conftest import REPO, BrokerProcess, answer_trace_id

pytestmark = pytest.mark.faults

WORKERS = 16
CLEAN_FAILURES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
PEOPLE = [r for r in synthetic.population() if known_everywhere(r)][:64]


@dataclass
class Load:
    """Concurrent Verify calls (one in four refused by policy) until ``stop`` is set."""

    stub: broker_pb2_grpc.BrokerAsyncStub
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    received: dict[str, str] = field(default_factory=dict)
    """request id → trace id of every answer received (granted or denied by policy)."""
    unanswered: list[broker_pb2.VerifyRequest] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    finished_after: list[tuple[float, float, grpc.StatusCode]] = field(default_factory=list)
    """(started, ended, code) of every call, by ``time.monotonic``."""

    async def worker(self, n: int) -> None:
        sent = 0
        while not self.stop.is_set():
            sent += 1
            person = PEOPLE[(n * 7 + sent) % len(PEOPLE)]
            if sent % 4 == 0:  # refused by policy: an answer too, with its trace
                request = verify_request(person, procedure_code="PARKING-PERMIT")
            else:
                request = verify_request(person)
            started = time.monotonic()
            try:
                reply = await self.stub.Verify(request, timeout=5)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                trace_id = answer_trace_id(exc)
                if trace_id:
                    self.received[request.request_id] = trace_id
                else:
                    self.unanswered.append(request)
                    await asyncio.sleep(0.05)
            else:
                code = grpc.StatusCode.OK
                self.received[request.request_id] = answer_trace_id(reply)
            self.codes[code.name] = self.codes.get(code.name, 0) + 1
            self.finished_after.append((started, time.monotonic(), code))

    async def run_until(self, answers: int, timeout: float) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self.worker(n)) for n in range(WORKERS)]
        deadline = time.monotonic() + timeout
        while len(self.received) < answers:
            if time.monotonic() > deadline or all(t.done() for t in tasks):
                raise AssertionError(f"only {len(self.received)} answers within {timeout}s: {self.codes}")
            await asyncio.sleep(0.02)
        return tasks

    async def finish(self, tasks: list[asyncio.Task[None]]) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)  # no call hangs


def traced_ids(platform: Platform) -> set[str]:
    return {row["trace_id"] for row in query(platform.db_path, "trace_records")}


def ledger_verify(var_dir: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        onceonly_argv("ledger", "verify", "--var-dir", str(var_dir)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


async def test_sigkill_during_load_loses_no_trace_and_the_ledger_verifies(
    platform: Platform, broker_process: BrokerProcess
) -> None:
    await platform.start_reference_providers()
    await broker_process.start()
    load = Load(broker_process.stub())
    tasks = await load.run_until(answers=150, timeout=30)
    broker_process.kill()
    await load.finish(tasks)

    assert load.received, load.codes
    lost = set(load.received.values()) - traced_ids(platform)
    assert not lost, f"{len(lost)} answers without a trace record"

    # Restarted on the same state: the chain goes on, and a retry of a call that got no answer
    # is answered once — by the record of an earlier life if that life committed it.
    await broker_process.start()
    stub = broker_process.stub()
    retried = load.unanswered[:20]
    for request in retried:
        before = query(platform.db_path, "trace_records", request_id=request.request_id)
        try:
            reply = await stub.Verify(request, timeout=10)
            trace_id = reply.trace_id
        except grpc.aio.AioRpcError as exc:
            trace_id = answer_trace_id(exc)
            assert trace_id, exc
        if before:
            assert trace_id == before[0]["trace_id"]
        assert trace_id in traced_ids(platform)
    fresh = await stub.Verify(verify_request(), timeout=10)
    assert fresh.trace_id in traced_ids(platform)
    assert broker_process.terminate() == 0

    verified = await asyncio.to_thread(ledger_verify, platform.var_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ledger intact" in verified.stdout


async def test_sigterm_under_load_finishes_in_flight_calls_and_hangs_none(
    platform: Platform, broker_process: BrokerProcess
) -> None:
    # A slow (but in-time) tax agency keeps calls in flight when the signal comes.
    await platform.start_reference_providers(tax=SlowAdapter(reference_adapter("tax"), delay_s=0.3))
    await broker_process.start()
    load = Load(broker_process.stub())
    tasks = await load.run_until(answers=40, timeout=30)
    signalled = time.monotonic()
    broker_process.process.popen.send_signal(15)  # type: ignore[union-attr]
    exit_code = await asyncio.to_thread(broker_process.process.popen.wait, 15)  # type: ignore[union-attr]
    stopped_within = time.monotonic() - signalled
    await load.finish(tasks)

    assert exit_code == 0, broker_process.log()
    assert stopped_within < 2 + 3  # the grace period (2 s) and a margin: no hang
    codes = {code for _, _, code in load.finished_after}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED, *CLEAN_FAILURES}, codes
    # Calls that were well under way when the signal came were allowed to finish.
    in_flight = [c for s, e, c in load.finished_after if s < signalled - 0.1 and e > signalled]
    assert in_flight and all(c in (grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED) for c in in_flight)
    lost = set(load.received.values()) - traced_ids(platform)
    assert not lost
    verified = await asyncio.to_thread(ledger_verify, platform.var_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
