"""Fault-injection helpers: a hard time bound per test, and a broker run as a real process.

Every test here carries the ``faults`` marker (``pytest -m faults`` runs only these) and is
bounded twice: its own waits have timeouts, and :func:`time_bound` fails it with a
traceback if it still runs after :data:`TEST_LIMIT_S` — a fault test must never hang a run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import pytest

from onceonly.processes import Process, onceonly_argv, wait_serving
from onceonly.v1 import broker_pb2, broker_pb2_grpc
from tests.conftest import SEED, Platform, free_port, session_pki

REPO = Path(__file__).resolve().parents[2]
TEST_LIMIT_S = 60


class FaultTestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def time_bound() -> Iterator[None]:
    """Fail (not hang) a fault test that runs longer than ``TEST_LIMIT_S``."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise FaultTestTimeout(f"fault test still running after {TEST_LIMIT_S}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TEST_LIMIT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class BrokerProcess:
    """``onceonly serve broker`` as a child process (mutual TLS with the session's certificates),
    in front of the providers a :class:`Platform` started in the test's own process.

    Its output goes through a pipe (drained by a thread into ``broker-N.log``) rather than
    straight into a file, so that a file-size limit set on the broker (the "disk full" fault)
    does not also silence or kill its logging.
    """

    def __init__(self, platform: Platform, **env: str) -> None:
        self.platform = platform
        self.env = env
        self.process: Process | None = None
        self.starts = 0
        self._drain: threading.Thread | None = None

    @property
    def var_dir(self) -> Path:
        return self.platform.var_dir

    @property
    def target(self) -> str:
        assert self.process is not None
        return self.process.target

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.popen.pid

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "ONCEONLY_SHUTDOWN_GRACE_S": "2",
                "ONCEONLY_CHECKPOINT_INTERVAL_S": "1",
                "ONCEONLY_LOG_LEVEL": "info",
            }
        )
        env.update(self.env)
        return env

    async def start(self) -> None:
        self.starts += 1
        target = f"127.0.0.1:{free_port()}"
        argv = [
            *onceonly_argv("serve"),
            "broker",
            "--listen",
            target,
            "--var-dir",
            str(self.var_dir),
            "--tls-dir",
            str(session_pki().dir),
            "--seed-agreements",
            str(SEED),
        ]
        for pid, running in self.platform.providers.items():
            argv += ["--provider", f"{pid}={running.target}"]
        self.var_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.var_dir.parent / f"broker-{self.starts}.log"
        popen = subprocess.Popen(
            argv, cwd=REPO, env=self.environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._drain = threading.Thread(target=_drain, args=(popen, log_path), daemon=True)
        self._drain.start()
        self.process = Process("broker", popen, log_path, target)
        await wait_serving(self.process, 30, tls=session_pki().broker)

    def kill(self) -> None:
        """SIGKILL: no graceful anything."""
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGKILL)
        self.process.popen.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait; return the exit status."""
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGTERM)
        return self.process.popen.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.popen.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(10)
            if self.process.popen.poll() is None:
                self.kill()
        if self._drain is not None:
            self._drain.join(5)

    def log(self) -> str:
        return self.process.tail(60) if self.process is not None else ""

    def stub(self) -> broker_pb2_grpc.BrokerAsyncStub:
        channel = self.platform.channel(self.target)
        return broker_pb2_grpc.BrokerStub(channel)


def _drain(popen: subprocess.Popen[bytes], log_path: Path) -> None:
    assert popen.stdout is not None
    with log_path.open("ab") as log:
        for line in popen.stdout:
            log.write(line)
            log.flush()


@pytest.fixture
def broker_process(platform: Platform) -> Iterator[BrokerProcess]:
    process = BrokerProcess(platform)
    try:
        yield process
    finally:
        process.stop()


def answer_trace_id(call: Any) -> str:
    """The trace id of an answer (a VerifyResponse, or a policy denial's ErrorInfo); "" if none."""
    if isinstance(call, broker_pb2.VerifyResponse):
        return call.trace_id
    if isinstance(call, grpc.aio.AioRpcError) and call.code() == grpc.StatusCode.PERMISSION_DENIED:
        from tests.conftest import rpc_failure

        failure = rpc_failure(call)
        return failure.info.metadata.get("trace_id", "") if failure.info is not None else ""
    return ""


# The PostgreSQL fixture of the broker tests (a fresh schema on the run's server).
from tests.broker.conftest import postgres_url  # noqa: E402, F401
