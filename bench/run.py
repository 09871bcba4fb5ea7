"""``make bench``: the broker against a bare relay over the same providers, in one run.

    python -m bench [--rounds 5] [--duration 5] [--objective-ms 10] [--database-url URL] ...

Every server runs in its own process on loopback, started once for the whole run: the three
reference providers; :mod:`bench.baseline`, a bare grpc.aio relay fanning each ``Verify`` out to
*those* providers (no validation, policy, evidence check, signing or ledger); the broker on a fresh
SQLite ledger; and, given ``--database-url``, a second broker on a throwaway schema of that
PostgreSQL server. Both brokers and the relay call the same providers, so the difference between
them is the broker's own work.

1. **Interleaved rounds** (throughput): each round runs the fixed-concurrency load against every
   front server in turn (the order rotating round to round), so noise on the machine hits all of
   them alike. Reported per round and as min / median / max: requests/s, each front process's CPU
   per request, the broker ÷ relay ratios of both, and the ledger's mean commit batch.
2. **Capacity at a latency objective**: an open-loop rate sweep per front server, finding the
   highest arrival rate whose p99 (from each call's scheduled time) stays within
   ``--objective-ms`` with no failed call. Failed calls count as their timeout, never dropped.
3. **direct**: a fixed rate straight to one provider's ``Attest``: the latency floor of one hop.
4. **bulk**: ``Broker.VerifyBulk`` with 10,000 subjects, three checks each, on each broker, and on
   one more SQLite broker that asks each check in a call of its own (``ONCEONLY_PROVIDER_BATCH=1``).
5. **SCSP**: SCSP v3 ``peticionSincrona`` against gRPC ``Verify`` on the SQLite broker, one check
   each, in alternating phases (:mod:`bench.scsp`): the XML and signature overhead per request.
6. **profile**: py-spy on the SQLite broker (and the relay) under the concurrency load, folded
   into components (:mod:`bench.profile`), in CPU microseconds per request.

Prints the tables and writes ``var/bench/latest.json``. Exit status 0 whenever the harness ran,
whether or not the targets were met (pass/miss is reported per target); non-zero only when the
harness itself failed (a server did not start or died, a load process crashed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bench import common, profile
from bench import scsp as bench_scsp
from bench.load import open_channel, run_load
from onceonly.processes import Process, free_port, stop_all, wait_serving

REPO = Path(__file__).resolve().parent.parent
PROVIDERS = ("registry", "tax", "employment")
RELAY, BROKER, BROKER_PG = "relay", "broker", "broker-pg"
BROKER_UNBATCHED = "broker-1by1"
"""A broker as ``broker`` but asking each check in a call of its own (``ONCEONLY_PROVIDER_BATCH=1``):
bulk only, to show what batching the checks per provider does."""

TARGETS = {
    # name: (description, comparison, threshold)
    "throughput_ratio": ("broker ÷ relay requests/s, median of the rounds", ">=", 0.85),
    "cpu_ratio": ("broker ÷ relay front CPU per request, median of the rounds", "<=", 1.3),
    "capacity_ratio": ("broker ÷ relay capacity at the latency objective", ">=", 0.8),
    "bulk_subjects_per_s": ("VerifyBulk subjects/s, three checks each (SQLite)", ">=", 1500.0),
}

NOISE_SHARE = 0.10
"""A phase is flagged noisy when CPU not billed to the bench's processes exceeds this share."""


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=_env_int("BENCH_ROUNDS", 5), help="interleaved rounds")
    p.add_argument(
        "--duration", type=float, default=_env_float("BENCH_DURATION", 5), help="measured seconds per phase"
    )
    p.add_argument(
        "--warmup", type=float, default=_env_float("BENCH_WARMUP", 1), help="seconds before measuring"
    )
    p.add_argument(
        "--concurrency", type=int, default=_env_int("BENCH_CONCURRENCY", 64), help="outstanding calls"
    )
    p.add_argument(
        "--channels", type=int, default=_env_int("BENCH_CHANNELS", 4), help="channels (connections) in all"
    )
    p.add_argument(
        "--load-procs", type=int, default=_env_int("BENCH_LOAD_PROCS", 2), help="load processes, rounds"
    )
    p.add_argument(
        "--objective-ms",
        type=float,
        default=_env_float("BENCH_OBJECTIVE_MS", 10),
        help="the latency objective of the capacity sweep (p99, ms)",
    )
    p.add_argument(
        "--sweep-duration", type=float, default=_env_float("BENCH_SWEEP_DURATION", 3), help="seconds per rate"
    )
    p.add_argument(
        "--sweep-start", type=float, default=_env_float("BENCH_SWEEP_START", 100), help="first rate"
    )
    p.add_argument(
        "--sweep-steps",
        type=int,
        default=_env_int("BENCH_SWEEP_STEPS", 4),
        help="bisection steps after bracketing",
    )
    p.add_argument("--direct-rate", type=float, default=_env_float("BENCH_DIRECT_RATE", 500))
    p.add_argument(
        "--security",
        choices=("mtls", "insecure"),
        default=os.environ.get("BENCH_SECURITY", "mtls"),
        help="mtls (the shipped mode, every hop mutual TLS) or insecure (plaintext, loopback)",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL") or None,
        help="a PostgreSQL server: a second broker runs on a throwaway schema of it (make bench starts one)",
    )
    p.add_argument("--bulk-subjects", type=int, default=_env_int("BENCH_BULK_SUBJECTS", 10_000))
    p.add_argument(
        "--bulk-unbatched",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("BENCH_BULK_UNBATCHED", "1") != "0",
        help=f"also run bulk on {BROKER_UNBATCHED}, which asks each check in a call of its own "
        "(ONCEONLY_PROVIDER_BATCH=1)",
    )
    p.add_argument(
        "--bulk-window", type=int, default=_env_int("BENCH_BULK_WINDOW", 0), help="0: the broker's default"
    )
    p.add_argument(
        "--profile-s",
        type=float,
        default=_env_float("BENCH_PROFILE_S", 10),
        help="seconds of py-spy on the broker and the relay under load (0: no profile)",
    )
    p.add_argument(
        "--broker-procs",
        type=int,
        default=_env_int("BENCH_BROKER_PROCS", 1),
        help="processes per broker, sharing one port (ONCEONLY_REUSE_PORT), each its own chain",
    )
    p.add_argument(
        "--scsp-requests",
        type=int,
        default=_env_int("BENCH_SCSP_REQUESTS", 600),
        help="requests per phase of the SCSP-against-gRPC comparison (0: none; needs --security mtls)",
    )
    p.add_argument("--scsp-rounds", type=int, default=_env_int("BENCH_SCSP_ROUNDS", 3))
    p.add_argument("--scsp-threads", type=int, default=_env_int("BENCH_SCSP_THREADS", 8))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("BENCH_OUT", REPO / "var" / "bench")))
    opts = p.parse_args(argv)
    if opts.rounds < 1:
        p.error("--rounds must be at least 1")
    if opts.broker_procs < 1:
        p.error("--broker-procs must be at least 1")
    return opts


# --------------------------------------------------------------------------- processes


def spawn(name: str, argv: list[str], log_dir: Path, target: str, env: dict[str, str]) -> Process:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    return Process(name, popen, log_path, target)


def machine_busy_s() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores), from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Servers:
    processes: list[Process]
    metrics_ports: dict[str, list[int]]
    """The Prometheus scrape ports of each broker's processes (their ledgers' batch sizes)."""
    scsp_url: str | None = None
    """The SQLite broker's SCSP facade (its first process's), with the platform PKI."""

    def cpu(self) -> dict[str, float]:
        return {p.name: common.cpu_seconds(p.popen.pid) for p in self.processes}

    def get(self, name: str) -> Process:
        [found] = [p for p in self.processes if p.name == name]
        return found

    def check_alive(self) -> None:
        for p in self.processes:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")

    def front_cpu(self, cpu: dict[str, float], front: str) -> float:
        """The CPU of a front server: every process of it (``broker``, ``broker#2``, …)."""
        return sum(v for name, v in cpu.items() if name == front or name.startswith(f"{front}#"))

    def ledger_batches(self, name: str) -> tuple[float, float] | None:
        """(records, commits) the broker ``name``'s ledgers have committed so far, from its metrics."""
        ports = self.metrics_ports.get(name)
        if not ports:
            return None
        from prometheus_client.parser import text_string_to_metric_families

        totals = {"sum": 0.0, "count": 0.0}
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            for family in text_string_to_metric_families(text):
                if family.name.startswith("onceonly_ledger_batch_size"):
                    for sample in family.samples:
                        for suffix in totals:
                            if sample.name.endswith(f"_{suffix}"):
                                totals[suffix] += sample.value
        return totals["sum"], totals["count"]


def measure(servers: Servers, front: str, **load: Any) -> dict[str, Any]:
    """Run one load phase and account for the CPU every process (and the machine) used."""
    servers.check_alive()
    batches_before = servers.ledger_batches(front)
    before, busy_before = servers.cpu(), machine_busy_s()
    result = run_load(**load)
    after, busy_after = servers.cpu(), machine_busy_s()
    batches_after = servers.ledger_batches(front)
    servers.check_alive()
    cpu = {name: round(after[name] - before[name], 3) for name in before}
    ok = result["ok"]
    result["server_cpu_s"] = cpu
    result["front_cpu_us_per_request"] = round(servers.front_cpu(cpu, front) / ok * 1e6, 1) if ok else None
    result["all_servers_cpu_us_per_request"] = round(sum(cpu.values()) / ok * 1e6, 1) if ok else None
    busy = busy_after - busy_before
    result["machine_busy_s"] = round(busy, 3)
    # Whatever else ran on the machine meanwhile (other jobs, the kernel's share not billed
    # to our processes): the bench is only comparable run to run when this stays small.
    result["other_cpu_s"] = round(busy - sum(cpu.values()) - result["loadgen_cpu_s"], 3)
    capacity = (os.cpu_count() or 1) * (load["warmup"] + load["duration"])
    result["noisy"] = result["other_cpu_s"] > NOISE_SHARE * capacity
    if batches_before is not None and batches_after is not None:
        records = batches_after[0] - batches_before[0]
        commits = batches_after[1] - batches_before[1]
        result["ledger_mean_batch"] = round(records / commits, 2) if commits else None
    return result


@dataclass
class Security:
    """How every hop is secured: the same for the relay, the brokers and the direct calls."""

    pki_dir: Path | None
    """Certificates from ``onceonly pki init`` (mutual TLS), or ``None`` for plaintext."""

    def server_args(self, name: str | None = None) -> list[str]:
        if self.pki_dir is None:
            return ["--insecure"]
        return ["--tls-dir", str(self.pki_dir)] + (["--name", name] if name else [])

    def as_broker(self) -> Any:
        from onceonly.pki import ClientTls

        return None if self.pki_dir is None else ClientTls.from_dir(self.pki_dir, "broker")

    def load(self, caller: str) -> dict[str, Any]:
        """Credentials of the load generator calling as a ``consumer`` or as the ``broker``."""
        from onceonly.guard import INSECURE_OFFICER_HEADER, INSECURE_ORG_HEADER, INSECURE_ROLE_HEADER
        from onceonly.pki import DEMO_CONSUMER

        if self.pki_dir is not None:
            return {
                "tls_dir": str(self.pki_dir),
                "cert": DEMO_CONSUMER[1] if caller == "consumer" else "broker",
            }
        if caller == "consumer":
            return {
                "metadata": (
                    f"{INSECURE_ORG_HEADER}={common.ORGANISATION}",
                    f"{INSECURE_ROLE_HEADER}=consumer",
                    f"{INSECURE_OFFICER_HEADER}={common.OFFICER}",
                )
            }
        return {"metadata": (f"{INSECURE_ROLE_HEADER}=broker",)}


async def start_servers(
    run_dir: Path,
    log_dir: Path,
    env: dict[str, str],
    security: Security,
    postgres_url: str | None,
    broker_procs: int = 1,
    unbatched: bool = False,
) -> tuple[Servers, dict[str, str]]:
    """The three reference providers, the relay over them, the broker (and the PostgreSQL broker),
    each broker as ``broker_procs`` processes sharing one port (``ONCEONLY_REUSE_PORT``)."""
    processes: list[Process] = []
    metrics_ports: dict[str, list[int]] = {}
    scsp_url = None
    targets = {name: f"127.0.0.1:{free_port()}" for name in PROVIDERS}
    try:
        for name, target in targets.items():
            argv = ["-m", "onceonly", "serve", "provider", name, "--listen", target]
            processes.append(spawn(name, argv + security.server_args(), log_dir, target, env))
        relay_target = f"127.0.0.1:{free_port()}"
        argv = ["-m", "bench.baseline", "--listen", relay_target]
        argv += ["--tls-dir", str(security.pki_dir)] if security.pki_dir else []
        for name in PROVIDERS:
            argv += ["--upstream", targets[name]]
        processes.append(spawn(RELAY, argv, log_dir, relay_target, env))
        for p in processes:
            await wait_serving(p, tls=security.as_broker())
        seed = resources.files("onceonly.broker").joinpath("data/agreements.toml")
        brokers = {BROKER: None} | ({BROKER_PG: postgres_url} if postgres_url else {})
        if unbatched:
            brokers[BROKER_UNBATCHED] = None
        for name, database_url in brokers.items():
            target = f"127.0.0.1:{free_port()}"
            argv = ["-m", "onceonly", "serve", "broker", "--listen", target]
            argv += ["--var-dir", str(run_dir / name), "--seed-agreements", str(seed)]
            for provider, provider_target in targets.items():
                argv += ["--provider", f"{provider}={provider_target}"]
            for i in range(1, broker_procs + 1):
                port = free_port()
                metrics_ports.setdefault(name, []).append(port)
                broker_env = {
                    **env,
                    # As deployed (compose sends metrics); the bench reads the ledger's batch sizes here.
                    "OTEL_METRICS_EXPORTER": "prometheus",
                    "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
                }
                if database_url:
                    broker_env["ONCEONLY_DATABASE_URL"] = database_url
                if name == BROKER_UNBATCHED:
                    broker_env["ONCEONLY_PROVIDER_BATCH"] = "1"
                if broker_procs > 1:  # one host, one port, one chain and witness file per process
                    broker_env["ONCEONLY_REUSE_PORT"] = "1"
                    broker_env["ONCEONLY_CHAIN_ID"] = f"{name}-{i}"
                    broker_env["ONCEONLY_WITNESS_FILE"] = str(
                        run_dir / name / "ledger" / f"witness-{i}.jsonl"
                    )
                process_name = name if i == 1 else f"{name}#{i}"
                extra = []
                if name == BROKER and i == 1 and security.pki_dir is not None:
                    scsp_target = f"127.0.0.1:{free_port()}"
                    extra = ["--scsp-listen", scsp_target]
                    scsp_url = f"https://{scsp_target}/scsp"
                process = spawn(
                    process_name, argv + extra + security.server_args(), log_dir, target, broker_env
                )
                processes.append(process)
                await wait_serving(process, tls=security.as_broker())  # one at a time: one migrates
    except BaseException:
        stop_all(processes)
        raise
    return Servers(processes, metrics_ports, scsp_url), targets


@contextlib.contextmanager
def postgres_schema(database_url: str | None) -> Iterator[str | None]:
    """A throwaway schema's URL on ``database_url`` (``None`` when no server was given)."""
    if not database_url:
        yield None
        return
    with common.throwaway_schema(database_url) as engine:
        yield engine.url.render_as_string(hide_password=False)


def postgres_durability(database_url: str | None) -> dict[str, str] | None:
    """The server's durability settings: a PostgreSQL figure means little without them."""
    if not database_url:
        return None
    import sqlalchemy as sa

    from onceonly.broker.storage import create_engine

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                name: str(conn.execute(sa.text(f"SHOW {name}")).scalar_one())
                for name in ("fsync", "synchronous_commit", "full_page_writes", "server_version")
            }
    finally:
        engine.dispose()


def has_verify_bulk() -> bool:
    from onceonly.v1 import broker_pb2

    return "VerifyBulk" in broker_pb2.DESCRIPTOR.services_by_name["Broker"].methods_by_name


async def measure_bulk(
    target: str, subjects: int, window: int, tag: str, credentials: dict[str, Any]
) -> dict[str, Any]:
    """Stream ``subjects`` subjects under one purpose (three checks each) through VerifyBulk."""
    import grpc

    from onceonly.v1 import broker_pb2, broker_pb2_grpc

    pool = common.subjects(limit=2000)
    header = broker_pb2.BulkHeader(
        consumer=common.consumer(),
        purpose=common.purpose("EXP-BENCH-BULK"),
        legal_basis=common.legal_basis(),
        checks=common.checks(),
        window=window,
    )

    def requests():
        yield broker_pb2.BulkVerifyRequest(header=header)
        for i in range(subjects):
            yield broker_pb2.BulkVerifyRequest(
                subject=broker_pb2.BulkSubject(request_id=f"{tag}-{i}", subject=pool[i % len(pool)])
            )

    decided = refused = verified_all = 0
    metadata = tuple(tuple(m.split("=", 1)) for m in credentials.get("metadata", ())) or None
    async with open_channel(target, credentials.get("tls_dir"), credentials.get("cert")) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        started = time.perf_counter()
        try:
            async for result in stub.VerifyBulk(requests(), timeout=300, metadata=metadata):
                if result.HasField("response"):
                    decided += 1
                    outcomes = result.response.outcomes
                    if len(outcomes) == 3 and all(
                        o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in outcomes
                    ):
                        verified_all += 1
                else:
                    refused += 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return {"subjects_per_s": None, "note": "the broker does not implement VerifyBulk yet"}
            raise
        elapsed = time.perf_counter() - started
    return {
        "subjects_per_s": round((decided + refused) / elapsed, 1),
        "subjects": subjects,
        "decided": decided,
        "refused": refused,
        "all_checks_verified": verified_all,
        "elapsed_s": round(elapsed, 3),
        "window": window or "broker default",
    }


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[_fmt(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def evaluate(values: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (description, op, threshold) in TARGETS.items():
        v = values.get(name)
        ok = None if v is None else (v >= threshold if op == ">=" else v <= threshold)
        out[name] = {
            "description": description,
            "target": f"{op} {threshold}",
            "value": v,
            "result": {True: "pass", False: "miss", None: "n/a"}[ok],
        }
    return out


# --------------------------------------------------------------------------- rounds and sweep


def summary(values: list[float | None]) -> dict[str, float | None]:
    """min / median / max of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return {"min": None, "median": None, "max": None}
    return {
        "min": round(min(present), 3),
        "median": round(statistics.median(present), 3),
        "max": round(max(present), 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def capacity(
    measure_at: Any, start: float, steps: int, objective_ms: float, ceiling: float = 6400
) -> dict[str, Any]:
    """The highest open-loop rate whose p99 (from schedule) is within the objective, no call failing.

    Doubles from ``start`` until a rate misses, then bisects ``steps`` times between the last
    rate that met the objective and the first that missed."""
    probes: list[dict[str, Any]] = []

    def meets(rate: float) -> bool:
        phase = measure_at(rate)
        p99 = phase["latency_from_schedule_ms"]["p99"]
        ok = phase["error_count"] == 0 and phase["invalid"] == 0 and p99 is not None and p99 <= objective_ms
        probes.append(
            {
                "rate": round(rate, 1),
                "p50_ms": phase["latency_from_schedule_ms"]["p50"],
                "p99_ms": p99,
                "errors": phase["error_count"] + phase["invalid"],
                "front_cpu_us_per_request": phase["front_cpu_us_per_request"],
                "meets": ok,
            }
        )
        return ok

    good, bad = 0.0, None
    rate = start
    while rate <= ceiling:
        if meets(rate):
            good, rate = rate, rate * 2
        else:
            bad = rate
            break
    if bad is not None:
        for _ in range(steps):
            mid = round((good + bad) / 2, 1)
            if meets(mid):
                good = mid
            else:
                bad = mid
    best = next((p for p in probes if p["meets"] and p["rate"] == round(good, 1)), None)
    return {
        "capacity_rps": round(good, 1),
        "p99_ms_at_capacity": best["p99_ms"] if best else None,
        "first_miss_rps": bad,
        "probes": probes,
    }


# --------------------------------------------------------------------------- report


def report(result: dict[str, Any]) -> str:
    fronts = result["fronts"]
    brokers = [f for f in fronts if f != RELAY]
    parts = [f"command: {result['command']}", "", "interleaved rounds (fixed concurrency):"]
    headers = ["round", "order"] + [f"{f} req/s" for f in fronts]
    headers += [f"{b}÷relay" for b in brokers] + [f"{f} CPU us/req" for f in fronts]
    headers += [f"{b} CPU ÷relay" for b in brokers] + [f"{b} batch" for b in brokers]
    rows = []
    for i, rnd in enumerate(result["rounds"], 1):
        ph = rnd["phases"]
        noisy = any(p["noisy"] for p in ph.values())
        row: list[Any] = [f"{i}{' *' if noisy else ''}", ">".join(rnd["order"])]
        row += [ph[f]["rps"] for f in fronts]
        row += [rnd["throughput_ratio"][b] for b in brokers]
        row += [ph[f]["front_cpu_us_per_request"] for f in fronts]
        row += [rnd["cpu_ratio"][b] for b in brokers]
        row += [ph[b].get("ledger_mean_batch") for b in brokers]
        rows.append(row)
    parts.append(table(headers, rows))
    s = result["summary"]
    lines = [""]
    for b in brokers:
        t, c = s["throughput_ratio"][b], s["cpu_ratio"][b]
        lines.append(
            f"{b} ÷ relay throughput min/median/max {_fmt(t['min'], 3)} / {_fmt(t['median'], 3)} / "
            f"{_fmt(t['max'], 3)};  CPU per request {_fmt(c['min'], 3)} / {_fmt(c['median'], 3)} / "
            f"{_fmt(c['max'], 3)}"
        )
    parts.append("\n".join(lines))
    parts.append(
        f"\ncapacity at p99 <= {result['settings']['objective_ms']:g} ms, no failed call (open loop):"
    )
    cap_rows = []
    for f in fronts:
        c = result["capacity"][f]
        probes = " ".join(
            f"{p['rate']:g}:{_fmt(p['p99_ms'], 1)}{'' if p['meets'] else '!'}" for p in c["probes"]
        )
        cap_rows.append(
            [
                f,
                c["capacity_rps"],
                c["p99_ms_at_capacity"],
                ratio(c["capacity_rps"], result["capacity"][RELAY]["capacity_rps"]),
                probes,
            ]
        )
    parts.append(table(["front", "req/s", "p99 ms", "÷relay", "probes (rate:p99 ms, ! = missed)"], cap_rows))
    d = result["direct"]["latency_ms"]
    parts.append(
        f"\ndirect (one hop to a provider) at {result['direct']['settings']['rate']:g}/s: "
        f"p50 {_fmt(d['p50'], 3)} ms, p99 {_fmt(d['p99'], 3)} ms"
    )
    for b, bulk in result["bulk"].items():
        parts.append(
            f"bulk on {b}: {_fmt(bulk.get('subjects_per_s'), 1)} subjects/s"
            + (
                f", broker CPU {_fmt(bulk.get('broker_cpu_us_per_subject'), 1)} us/subject"
                if bulk.get("broker_cpu_us_per_subject")
                else ""
            )
            + (f" ({bulk['note']})" if bulk.get("note") else "")
            + (
                " (ONCEONLY_PROVIDER_BATCH=1: each check in a call of its own)"
                if b == BROKER_UNBATCHED
                else ""
            )
        )
    sc = result.get("scsp", {})
    if "phases" in sc:
        parts.append(
            f"\nSCSP v3 against gRPC Verify on {BROKER} (one check, {sc['threads']} client threads, "
            f"{sc['rounds']} alternating rounds of {sc['requests_per_phase']}; medians):"
        )
        parts.append(
            table(
                ["", "req/s", "broker CPU us/req"],
                [
                    ["gRPC Verify", sc["grpc_rps_median"], sc["grpc_cpu_us_median"]],
                    ["SCSP peticionSincrona", sc["scsp_rps_median"], sc["scsp_cpu_us_median"]],
                ],
            )
        )
        parts.append(
            f"SCSP ÷ gRPC throughput {_fmt(sc['throughput_ratio'], 3)}; the XML and the signatures cost "
            f"the broker {_fmt(sc['scsp_overhead_us_per_request'], 1)} us per request; "
            f"failed calls: {sc['failed']}"
        )
    elif sc.get("note"):
        parts.append(f"\nSCSP: {sc['note']}")
    prof = result["profile"]
    if BROKER in prof:
        parts.append(
            "\nwhere the CPU goes under the round load (each thread's measured CPU, divided among components"
            " as py-spy saw it), us per request:"
        )
        comp = {f: dict(prof[f]["components_us_per_request"]) for f in (BROKER, RELAY) if f in prof}
        names = list(dict.fromkeys(n for f in comp for n in comp[f]))
        rows = [[n, comp[BROKER].get(n), comp.get(RELAY, {}).get(n)] for n in names]
        rows.append(
            ["total", prof[BROKER]["cpu_us_per_request"], prof.get(RELAY, {}).get("cpu_us_per_request")]
        )
        parts.append(table(["component", "broker", "relay"], rows))
    elif prof.get("note"):
        parts.append(f"\nprofile: {prof['note']}")
    parts.append("")
    parts.append(
        table(
            ["target", "value", "target", "result"],
            [[n, t["value"], t["target"], t["result"]] for n, t in result["targets"].items()],
        )
    )
    m, v = result["machine"], result["versions"]
    pg = result.get("postgresql")
    parts.append(
        f"\n{m['cores']} cores ({m['cpu_model']}), Python {v['python']}, grpcio {v['grpcio']}, "
        f"protobuf {v['protobuf']}, uvloop {v['uvloop']}"
        + (
            f"; PostgreSQL {pg['server_version']} (fsync {pg['fsync']}, synchronous_commit "
            f"{pg['synchronous_commit']})"
            if pg
            else ""
        )
    )
    return "\n".join(parts)


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, postgres_url: str | None) -> dict[str, Any]:
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for old in out_dir.glob("run-*"):  # keep only the latest run's state
        shutil.rmtree(old, ignore_errors=True)
    run_dir = out_dir / f"run-{stamp}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True)
    env = {**os.environ, "ONCEONLY_LOG_FORMAT": "json"}
    env.pop("ONCEONLY_DATABASE_URL", None)  # the SQLite broker's ledger lives in the run's own file
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

    if args.security == "mtls":
        from onceonly.pki import init_pki

        init_pki(run_dir / "pki", providers=PROVIDERS)
        security = Security(run_dir / "pki")
    else:
        security = Security(None)
    consumer, as_broker = security.load("consumer"), security.load("broker")
    base = {"warmup": args.warmup, "channels": args.channels}
    conc = {**base, "duration": args.duration, "mode": "concurrency", "concurrency": args.concurrency}
    conc["procs"] = args.load_procs
    started = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    progress("starting the three reference providers, the relay over them and the broker(s)")
    servers, provider_targets = await start_servers(
        run_dir, log_dir, env, security, postgres_url, args.broker_procs, args.bulk_unbatched
    )
    fronts = [RELAY, BROKER] + ([BROKER_PG] if postgres_url else [])
    bulk_fronts = fronts[1:] + ([BROKER_UNBATCHED] if args.bulk_unbatched else [])
    target_of = {f: servers.get(f).target for f in [*fronts, *bulk_fronts]}
    rounds: list[dict[str, Any]] = []
    sweeps: dict[str, Any] = {}
    bulk: dict[str, Any] = {}
    prof: dict[str, Any] = {}
    try:
        for r in range(args.rounds):
            order = fronts[r % len(fronts) :] + fronts[: r % len(fronts)]
            phases = {}
            for f in order:
                progress(f"round {r + 1}/{args.rounds}: {f}, {args.concurrency} in flight")
                phases[f] = measure(
                    servers, f, target=target_of[f], kind="verify", tag=f"{stamp}-{r}-{f}", **conc, **consumer
                )
            rounds.append(
                {
                    "order": order,
                    "phases": phases,
                    "throughput_ratio": {
                        b: ratio(phases[b]["rps"], phases[RELAY]["rps"]) for b in fronts[1:]
                    },
                    "cpu_ratio": {
                        b: ratio(
                            phases[b]["front_cpu_us_per_request"], phases[RELAY]["front_cpu_us_per_request"]
                        )
                        for b in fronts[1:]
                    },
                }
            )
        for f in fronts:

            def at_rate(rate: float, f: str = f) -> dict[str, Any]:
                progress(f"capacity of {f}: {rate:g}/s")
                return measure(
                    servers,
                    f,
                    target=target_of[f],
                    kind="verify",
                    tag=f"{stamp}-s{rate:g}-{f}",
                    mode="rate",
                    rate=rate,
                    duration=args.sweep_duration,
                    procs=1,
                    timeout=2.0,
                    **base,
                    **consumer,
                )

            sweeps[f] = capacity(at_rate, args.sweep_start, args.sweep_steps, args.objective_ms)
        progress(f"direct: {args.direct_rate:g}/s straight to the tax provider")
        direct = measure(
            servers,
            "tax",
            target=provider_targets["tax"],
            kind="attest",
            tag=f"{stamp}-d",
            mode="rate",
            rate=args.direct_rate,
            duration=args.duration,
            procs=1,
            **base,
            **as_broker,
        )
        for b in bulk_fronts:
            if not has_verify_bulk():
                bulk[b] = {"subjects_per_s": None, "note": "Broker.VerifyBulk is not in the generated stubs"}
                continue
            progress(f"bulk on {b}: {args.bulk_subjects} subjects through VerifyBulk")
            before = servers.cpu()
            bulk[b] = await measure_bulk(
                target_of[b], args.bulk_subjects, args.bulk_window, f"{stamp}-v{b}", consumer
            )
            after = servers.cpu()
            if bulk[b].get("subjects_per_s"):
                bulk[b]["broker_cpu_us_per_subject"] = round(
                    (servers.front_cpu(after, b) - servers.front_cpu(before, b))
                    / max(1, bulk[b]["subjects"])
                    * 1e6,
                    1,
                )
        scsp_result: dict[str, Any] = {"note": "not measured (--scsp-requests 0, or --security insecure)"}
        if servers.scsp_url and security.pki_dir is not None and args.scsp_requests > 0:
            progress(
                f"SCSP against gRPC on {BROKER}: {args.scsp_rounds} rounds of {args.scsp_requests} each, "
                f"{args.scsp_threads} client threads"
            )
            scsp_result = await asyncio.to_thread(
                bench_scsp.compare,
                grpc_target=target_of[BROKER],
                scsp_url=servers.scsp_url,
                pki_dir=security.pki_dir,
                broker_cpu=lambda: servers.front_cpu(servers.cpu(), BROKER),
                requests=args.scsp_requests,
                rounds=args.scsp_rounds,
                threads=args.scsp_threads,
            )
        if args.profile_s > 0 and args.broker_procs > 1:
            prof = {"note": "py-spy samples one process: profile with --broker-procs 1"}
        elif args.profile_s > 0:
            for f in (BROKER, RELAY):
                progress(f"profile: py-spy on {f} under the concurrency load ({args.profile_s:g} s)")
                profiled_load = {**conc, "duration": max(1.0, args.profile_s - args.warmup - 1)}
                sampled = profile.profile_while(
                    servers.get(f).popen.pid,
                    args.profile_s,
                    run_dir / f"{f}-profile.txt",
                    functools.partial(
                        run_load,
                        target=target_of[f],
                        kind="verify",
                        tag=f"{stamp}-p-{f}",
                        **profiled_load,
                        **consumer,
                    ),
                )
                if "note" in sampled:
                    prof = {"note": sampled["note"]}
                    break
                prof[f] = sampled
        servers.check_alive()
    finally:
        problems = stop_all(servers.processes)
    if problems:
        raise RuntimeError("; ".join(problems))
    progress("done")

    summaries = {
        "rps": {f: summary([rnd["phases"][f]["rps"] for rnd in rounds]) for f in fronts},
        "cpu_us_per_request": {
            f: summary([rnd["phases"][f]["front_cpu_us_per_request"] for rnd in rounds]) for f in fronts
        },
        "throughput_ratio": {b: summary([rnd["throughput_ratio"][b] for rnd in rounds]) for b in fronts[1:]},
        "cpu_ratio": {b: summary([rnd["cpu_ratio"][b] for rnd in rounds]) for b in fronts[1:]},
        "ledger_mean_batch": {
            b: summary([rnd["phases"][b].get("ledger_mean_batch") for rnd in rounds]) for b in fronts[1:]
        },
    }
    values: dict[str, Any] = {
        "throughput_ratio": summaries["throughput_ratio"][BROKER]["median"],
        "cpu_ratio": summaries["cpu_ratio"][BROKER]["median"],
        "capacity_ratio": ratio(sweeps[BROKER]["capacity_rps"], sweeps[RELAY]["capacity_rps"]),
        "bulk_subjects_per_s": bulk.get(BROKER, {}).get("subjects_per_s"),
    }
    phases_all = [p for rnd in rounds for p in rnd["phases"].values()]
    clean = all(p["error_count"] == 0 and p["invalid"] == 0 for p in [*phases_all, direct])
    command = "make bench" + (f' BENCH_ARGS="{" ".join(args.argv)}"' if args.argv else "")
    return {
        "schema": 2,
        "command": command,
        "started_at": stamp,
        **values,
        "targets": evaluate(values),
        "fronts": fronts,
        "summary": summaries,
        "rounds": rounds,
        "capacity": sweeps,
        "direct": direct,
        "bulk": bulk,
        "scsp": scsp_result,
        "profile": prof,
        "all_calls_succeeded": clean,
        "noisy_phases": sum(1 for p in phases_all if p["noisy"]),
        "postgresql": postgres_durability(postgres_url),
        "cores": os.cpu_count(),
        "machine": common.machine(),
        "versions": common.versions(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "argv"},
        "run_dir": str(run_dir),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    # The command as the operator typed it: make bench passes the PostgreSQL server itself.
    args.argv = [
        a
        for i, a in enumerate(given)
        if not a.startswith("--database-url") and (i == 0 or given[i - 1] != "--database-url")
    ]
    from onceonly.serving import install_event_loop_policy

    install_event_loop_policy()
    try:
        with postgres_schema(args.database_url) as postgres_url:
            result = asyncio.run(run(args, postgres_url))
    except Exception as exc:
        print(f"bench FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print()
    print(report(result))
    if result["noisy_phases"]:
        print(
            f"\n* noisy: in {result['noisy_phases']} phase(s) more than {NOISE_SHARE:.0%} of the machine's"
            " CPU went to something other than the bench's processes (other jobs, or kernel work not billed"
            " to a process); the interleaving spreads it over every front server alike."
        )
    if not result["all_calls_succeeded"]:
        print("\nWARNING: some calls failed or returned unexpected outcomes (counted as their timeout):")
        for i, rnd in enumerate(result["rounds"], 1):
            for name, phase in rnd["phases"].items():
                if phase["error_count"] or phase["invalid"]:
                    print(
                        f"  round {i} {name}: errors {phase['errors']}, "
                        f"unexpected outcomes {phase['invalid']}"
                    )
        print(f"  server logs: {Path(result['run_dir']) / 'logs'}")
    out = Path(args.out) / "latest.json"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    text_json = json.dumps(result, indent=2, ensure_ascii=False)
    out.write_text(text_json + "\n")
    (Path(result["run_dir"]) / "result.json").write_text(text_json + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
