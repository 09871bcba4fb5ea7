"""Where a server's CPU goes: py-spy samples, folded into the components of a request.

A sample is charged to the innermost frame that names a component: one of our modules, or gRPC's
Python layer and the event loop (transport). Other libraries are skipped, so their time lands on
whoever called them (an Ed25519 signature on the attestation, a SQLite commit on the trace ledger).
A sample with nothing of ours on its stack (uvloop and the gRPC core running in C) is transport.
Shares are of the samples py-spy saw the process busy; multiplied by the process's CPU per request
they give microseconds per request per component.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    """Sample shares by component and by function (self time) from py-spy's collapsed stacks."""
    by_component: dict[str, int] = {}
    self_counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        component = component_of(frames)
        by_component[component] = by_component.get(component, 0) + count
        leaf = frames[-1]
        leaf = leaf.rsplit(":", 1)[0] + ")" if leaf.endswith(")") and ":" in leaf else leaf
        self_counts[leaf] = self_counts.get(leaf, 0) + count

    def shares(d: dict[str, int], limit: int | None = None) -> list[tuple[str, float]]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:limit]
        return [(k, round(100 * v / total, 1)) for k, v in ranked] if total else []

    return {
        "samples": total,
        "components_pct": shares(by_component),
        "top_self_pct": shares(self_counts, top),
    }


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


def profile_while(pid: int, seconds: float, raw: Path, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Sample ``pid`` with py-spy while ``load()`` runs; the load's result with the summary."""
    spy_path = py_spy()
    if spy_path is None:
        return {"note": "py-spy is not installed (pip install py-spy)"}
    spy = subprocess.Popen(
        [
            *(spy_path, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"),
            *("--format", "raw", "--output", str(raw), "--nonblocking"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    result = load()
    out, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        return {"note": f"py-spy failed ({spy.returncode}): {out.decode(errors='replace')[-500:]}"}
    return {"load": result, **summarise(raw)}


def per_request(summary: dict[str, Any], cpu_us_per_request: float | None) -> list[tuple[str, float | None]]:
    """Each component's share turned into microseconds of CPU per request."""
    if cpu_us_per_request is None:
        return [(name, None) for name, _ in summary.get("components_pct", [])]
    return [
        (name, round(pct / 100 * cpu_us_per_request, 1)) for name, pct in summary.get("components_pct", [])
    ]
