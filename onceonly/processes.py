"""Starting, watching and stopping onceonly processes: shared by the demo, bench, soak and tests.

Every child runs ``python -P -m onceonly …``: ``-P`` keeps the working directory off
``sys.path``, so a folder of the caller's named like one of ours (``providers/``, say) cannot
shadow the installed package.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onceonly.pki import ClientTls

__all__ = ["Process", "free_port", "onceonly_argv", "spawn", "stop_all", "wait_serving"]


def onceonly_argv(*args: str) -> list[str]:
    """The command line that runs ``onceonly ARGS`` with this interpreter."""
    return [sys.executable, "-P", "-m", "onceonly", *args]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A started onceonly process, where it logs, and the address it serves."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    target: str

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of its log, for an error message."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str,
    args: Sequence[str],
    log_dir: Path,
    target: str,
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
) -> Process:
    """Start ``onceonly ARGS`` with its output in ``log_dir/NAME.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            onceonly_argv(*args), stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd
        )
    return Process(name, popen, log_path, target)


async def wait_serving(process: Process, timeout: float = 30.0, *, tls: ClientTls | None = None) -> None:
    """Poll the gRPC health service until SERVING; fail if the process dies or time runs out.

    Health checking needs no more than a TLS handshake: with ``tls`` (a client certificate from
    the servers' CA) against a TLS server, plaintext without.
    """
    deadline = time.monotonic() + timeout
    channel_factory = (
        grpc.aio.insecure_channel(process.target)
        if tls is None
        else grpc.aio.secure_channel(process.target, tls.channel_credentials())
    )
    async with channel_factory as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs do not declare its methods
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}"
                )
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{process.name} did not become healthy within {timeout:.0f}s:\n{process.tail()}")


def stop_all(processes: Sequence[Process], timeout: float = 15.0) -> list[str]:
    """SIGTERM every process (in the order given), wait, and report any that did not exit cleanly."""
    problems = []
    for p in processes:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            code = p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()
            problems.append(f"{p.name} did not stop within {timeout:.0f}s and was killed")
            continue
        if code != 0:
            problems.append(f"{p.name} exited with {code}:\n{p.tail()}")
    return problems
