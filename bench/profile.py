"""Where a server's CPU goes: each thread's CPU, divided by what py-spy saw that thread doing.

The CPU is measured, not sampled: each thread's user + system time over the load
(``/proc/<pid>/task/<tid>/stat``), so time a thread spends waiting on the disk (the ledger's
fsync) is not counted as work. py-spy (``--threads``) then says, per thread, in which component
its busy samples were: a sample is charged to the innermost frame that names a component, one of
our modules or gRPC's Python layer and the event loop (transport); other libraries are skipped, so
their time lands on whoever called them (an Ed25519 signature on the attestation, a SQLite insert
on the trace ledger). A thread's CPU is divided among components in its samples' proportions;
threads with no Python code (the gRPC core's) are transport. Divided by the calls answered: CPU
microseconds per request, per component, adding up to the process's CPU per request.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common

TRANSPORT = "gRPC transport and event loop"
# (component, path fragments), first match wins. py-spy names library files from their package
# (``grpc/aio/_call.py``, ``asyncio/runners.py``), our own from ``onceonly/``.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("trace ledger", ("broker/ledger.py", "broker/chain.py", "broker/idempotency.py")),
    ("provider evidence", ("onceonly/evidence.py",)),
    ("attestations", ("broker/attestation.py",)),
    ("interceptors", ("broker/auth.py", "onceonly/guard.py", "broker/admission.py", "onceonly/peers.py")),
    ("policy", ("broker/policy.py", "broker/agreements.py", "broker/quotas.py")),
    ("validation and translation", ("onceonly/validation.py", "broker/translate.py", "onceonly/fields.py")),
    (
        "telemetry and metrics",
        (
            *("onceonly/telemetry.py", "onceonly/metrics.py", "opentelemetry", "metrics/_internal/"),
            *("prometheus_client/", "wsgiref/", "socketserver.py"),
        ),
    ),
    ("provider calls", ("broker/providers.py", "broker/breaker.py")),
    ("relay", ("bench/baseline.py",)),
    (TRANSPORT, ("grpc/", "asyncio/", "uvloop", "threading.py", "concurrent/futures/", "selectors.py")),
    ("service glue", ("onceonly/",)),
)
LIBRARIES_OF_OURS = ("onceonly/jose.py",)
"""Our own helpers charged, like a library, to whoever called them (a JWS for evidence or attestation)."""


def component_of(frames: list[str]) -> str:
    """The component a sample belongs to, from its frames (outermost first): the innermost frame
    that names one decides; other libraries (SQLAlchemy, cryptography, protobuf) are skipped, so
    their time lands on their caller."""
    for frame in reversed(frames):
        location = frame.rpartition("(")[2]
        if any(f in location for f in LIBRARIES_OF_OURS):
            continue
        for component, fragments in COMPONENTS:
            if any(f in location for f in fragments):
                return component
    return TRANSPORT


def read_stacks(raw: Path) -> dict[int, dict[str, Any]]:
    """py-spy's collapsed stacks recorded with ``--threads``: per OS thread id, its name, the sample
    count of each component, and of each leaf function."""
    threads: dict[int, dict[str, Any]] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        first, _, rest = stack.partition(";")
        # "thread (12345): MainThread"
        tid_text = first.partition("(")[2].partition(")")[0]
        if not first.startswith("thread (") or not tid_text.isdigit() or not rest:
            continue
        entry = threads.setdefault(
            int(tid_text), {"name": first.partition("): ")[2], "components": {}, "leaves": {}, "samples": 0}
        )
        count = int(count_text)
        frames = rest.split(";")
        entry["samples"] += count
        component = component_of(frames)
        entry["components"][component] = entry["components"].get(component, 0) + count
        leaf = frames[-1]
        leaf = leaf.rsplit(":", 1)[0] + ")" if leaf.endswith(")") and ":" in leaf else leaf
        entry["leaves"][leaf] = entry["leaves"].get(leaf, 0) + count
    return threads


def breakdown(raw: Path, cpu_s_by_thread: dict[int, float], requests: int, top: int = 20) -> dict[str, Any]:
    """CPU microseconds per request by component (and by thread), from measured thread CPU and
    py-spy's samples."""
    stacks = read_stacks(raw)
    components: dict[str, float] = {}
    threads = []
    leaves: dict[str, float] = {}
    for tid, cpu_s in sorted(cpu_s_by_thread.items(), key=lambda kv: -kv[1]):
        if cpu_s <= 0 or requests <= 0:
            continue
        us = cpu_s / requests * 1e6
        sampled = stacks.get(tid)
        threads.append(
            {
                "tid": tid,
                "name": sampled["name"] if sampled else "(no Python code: the gRPC core)",
                "cpu_us_per_request": round(us, 1),
                "samples": sampled["samples"] if sampled else 0,
            }
        )
        if not sampled or not sampled["samples"]:
            components[TRANSPORT] = components.get(TRANSPORT, 0.0) + us
            continue
        for component, count in sampled["components"].items():
            components[component] = components.get(component, 0.0) + us * count / sampled["samples"]
        for leaf, count in sampled["leaves"].items():
            leaves[leaf] = leaves.get(leaf, 0.0) + us * count / sampled["samples"]
    ranked = sorted(components.items(), key=lambda kv: -kv[1])
    return {
        "requests": requests,
        "cpu_us_per_request": round(sum(components.values()), 1),
        "components_us_per_request": [(name, round(us, 1)) for name, us in ranked],
        "threads": threads,
        "top_functions_us_per_request": [
            (name, round(us, 1)) for name, us in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
        ],
    }


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


def profile_while(pid: int, seconds: float, raw: Path, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Sample ``pid`` with py-spy and measure its threads' CPU while ``load()`` runs."""
    spy_path = py_spy()
    if spy_path is None:
        return {"note": "py-spy is not installed (pip install py-spy)"}
    spy = subprocess.Popen(
        [
            *(spy_path, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"),
            *("--format", "raw", "--threads", "--output", str(raw), "--nonblocking"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    before = common.thread_cpu_seconds(pid)
    result = load()
    after = common.thread_cpu_seconds(pid)
    out, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        return {"note": f"py-spy failed ({spy.returncode}): {out.decode(errors='replace')[-500:]}"}
    cpu = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    return {"rps": result["rps"], **breakdown(raw, cpu, result["ok"])}
