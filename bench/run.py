"""``make bench``: baseline relay, real broker and direct provider, measured in one run.

    python -m bench [--duration 10] [--warmup 2] [--rate 500] [--concurrency 64] [--profile]

Phases, each against servers started for it on loopback, each server its own process:

1. **baseline** — :mod:`bench.baseline`: a bare grpc.aio relay fanning each Verify out to three
   echo servers (no policy, signing or ledger): the practical limit of the design.
   Fixed concurrency (throughput), then a fixed rate (latency).
2. **broker** — ``onceonly serve broker`` with the three reference providers, a fresh var dir
   (SQLite ledger, keys) under ``var/bench/run-<timestamp>``; the same request shape (three
   checks) and the same load generator. Fixed concurrency, then the fixed rate.
3. **direct** — the fixed rate straight to one reference provider's ``Attest``
   (``tax.compliance/v1``): the latency floor of one gRPC hop.
4. **bulk** — ``Broker.VerifyBulk``: 10,000 subjects under one purpose, three checks each,
   when the broker implements it (otherwise ``null`` with a note).

Prints a table and writes ``var/bench/latest.json``. Exit status 0 whenever the harness ran,
whether or not the targets were met (pass/miss is reported per target); non-zero only when
the harness itself failed (a server did not start, a load process crashed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bench import common
from bench.load import open_channel, run_load
from onceonly.processes import Process, free_port, stop_all, wait_serving

REPO = Path(__file__).resolve().parent.parent
PROVIDERS = ("registry", "tax", "employment")

TARGETS = {
    # name: (description, comparison, threshold)
    "throughput_ratio": ("broker_rps / baseline_rps", ">=", 0.85),
    "broker_p99_ms": ("broker p99 at the fixed rate", "<=", 5.0),
    "broker_p50_over_direct_ms": ("broker p50 - direct p50 at the fixed rate", "<=", 1.5),
}


NOISE_SHARE = 0.10
"""A phase is flagged noisy when CPU not billed to the bench's processes exceeds this share."""


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--duration", type=float, default=_env_float("BENCH_DURATION", 10), help="seconds per phase"
    )
    p.add_argument(
        "--warmup", type=float, default=_env_float("BENCH_WARMUP", 2), help="seconds before measuring"
    )
    p.add_argument("--rate", type=float, default=_env_float("BENCH_RATE", 500), help="fixed arrival rate, /s")
    p.add_argument(
        "--arrivals",
        choices=("constant", "poisson"),
        default=os.environ.get("BENCH_ARRIVALS", "constant"),
        help="spacing of arrivals in rate mode",
    )
    p.add_argument(
        "--concurrency", type=int, default=_env_int("BENCH_CONCURRENCY", 64), help="outstanding calls"
    )
    p.add_argument(
        "--channels", type=int, default=_env_int("BENCH_CHANNELS", 4), help="channels (connections) in all"
    )
    p.add_argument(
        "--load-procs",
        type=int,
        default=_env_int("BENCH_LOAD_PROCS", 2),
        help="load processes, concurrency mode",
    )
    p.add_argument(
        "--rate-procs", type=int, default=_env_int("BENCH_RATE_PROCS", 1), help="load processes, rate mode"
    )
    p.add_argument(
        "--security",
        choices=("mtls", "insecure"),
        default=os.environ.get("BENCH_SECURITY", "mtls"),
        help="mtls (the shipped mode, every hop mutual TLS) or insecure (plaintext, loopback)",
    )
    p.add_argument("--bulk-subjects", type=int, default=_env_int("BENCH_BULK_SUBJECTS", 10_000))
    p.add_argument(
        "--bulk-window", type=int, default=_env_int("BENCH_BULK_WINDOW", 0), help="0: the broker's default"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        default=os.environ.get("BENCH_PROFILE", "") not in ("", "0"),
        help="after the measured phases, profile the broker with py-spy under the concurrency load",
    )
    p.add_argument("--out", type=Path, default=Path(os.environ.get("BENCH_OUT", REPO / "var" / "bench")))
    return p.parse_args(argv)


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
    """The front server (relay or broker) first."""

    def cpu(self) -> dict[str, float]:
        return {p.name: common.cpu_seconds(p.popen.pid) for p in self.processes}

    def check_alive(self) -> None:
        for p in self.processes:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")


def measure(servers: Servers, front: str, **load: Any) -> dict[str, Any]:
    """Run one load phase and account for the CPU every process (and the machine) used."""
    servers.check_alive()
    before, busy_before = servers.cpu(), machine_busy_s()
    result = run_load(**load)
    after, busy_after = servers.cpu(), machine_busy_s()
    servers.check_alive()
    cpu = {name: round(after[name] - before[name], 3) for name in before}
    ok = result["ok"]
    result["server_cpu_s"] = cpu
    result["front_cpu_us_per_request"] = round(cpu[front] / ok * 1e6, 1) if ok else None
    result["all_servers_cpu_us_per_request"] = round(sum(cpu.values()) / ok * 1e6, 1) if ok else None
    busy = busy_after - busy_before
    result["machine_busy_s"] = round(busy, 3)
    # Whatever else ran on the machine meanwhile (other jobs, the kernel's share not billed
    # to our processes): the bench is only comparable run to run when this stays small.
    result["other_cpu_s"] = round(busy - sum(cpu.values()) - result["loadgen_cpu_s"], 3)
    capacity = (os.cpu_count() or 1) * (load["warmup"] + load["duration"])
    result["noisy"] = result["other_cpu_s"] > NOISE_SHARE * capacity
    return result


# --------------------------------------------------------------------------- phases


@dataclass
class Security:
    """How every hop is secured: the same for the baseline, the broker and the direct calls."""

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


async def start_baseline(log_dir: Path, env: dict[str, str], security: Security) -> Servers:
    processes: list[Process] = []
    echo_targets = [f"127.0.0.1:{free_port()}" for _ in PROVIDERS]
    claims = ("registered", "compliant", "registered_unemployed")
    for name, target, claim in zip(PROVIDERS, echo_targets, claims, strict=True):
        argv = ["-m", "bench.baseline", "echo", "--listen", target, "--claim", claim]
        argv += security.server_args(name) if security.pki_dir else []
        processes.append(spawn(f"echo-{name}", argv, log_dir, target, env))
    relay_target = f"127.0.0.1:{free_port()}"
    argv = ["-m", "bench.baseline", "relay", "--listen", relay_target]
    argv += security.server_args() if security.pki_dir else []
    for t in echo_targets:
        argv += ["--upstream", t]
    processes.insert(0, spawn("relay", argv, log_dir, relay_target, env))
    servers = Servers(processes)
    try:
        for p in processes:
            await wait_serving(p, tls=security.as_broker())
    except BaseException:
        stop_all(processes)
        raise
    return servers


async def start_broker(
    run_dir: Path, log_dir: Path, env: dict[str, str], security: Security
) -> tuple[Servers, dict[str, str]]:
    processes: list[Process] = []
    targets = {name: f"127.0.0.1:{free_port()}" for name in PROVIDERS}
    try:
        for name, target in targets.items():
            argv = ["-m", "onceonly", "serve", "provider", name, "--listen", target]
            processes.append(spawn(name, argv + security.server_args(), log_dir, target, env))
        for p in processes:
            await wait_serving(p, tls=security.as_broker())
        broker_target = f"127.0.0.1:{free_port()}"
        seed = resources.files("onceonly.broker").joinpath("data/agreements.toml")
        argv = [
            "-m",
            "onceonly",
            "serve",
            "broker",
            "--listen",
            broker_target,
            "--var-dir",
            str(run_dir),
            "--seed-agreements",
            str(seed),
        ]
        for name, target in targets.items():
            argv += ["--provider", f"{name}={target}"]
        processes.insert(0, spawn("broker", argv + security.server_args(), log_dir, broker_target, env))
        await wait_serving(processes[0], tls=security.as_broker())
    except BaseException:
        stop_all(processes)
        raise
    return Servers(processes), targets


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


def profile_broker(servers: Servers, run_dir: Path, load: dict[str, Any]) -> dict[str, Any]:
    """Sample the broker with py-spy while the concurrency load runs; summarise where time goes."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return {"note": "py-spy is not installed (pip install py-spy)"}
    raw = run_dir / "broker-profile.txt"
    broker_pid = servers.processes[0].popen.pid
    seconds = int(load["warmup"] + load["duration"])
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(broker_pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--gil",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1.0)
    result = run_load(**load)
    out, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        return {"note": f"py-spy failed ({spy.returncode}): {out.decode(errors='replace')[-500:]}"}
    return {
        "raw_stacks": str(raw.relative_to(REPO) if raw.is_relative_to(REPO) else raw),
        "rps_while_profiled": result["rps"],
        **summarise_profile(raw),
    }


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    module_self: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        # frames look like "function (path/to/file.py:123)"; fold line numbers away.
        names = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f for f in frames]
        leaf = names[-1]
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        module = leaf.rsplit("(", 1)[-1].rstrip(")")
        module_self[module] = module_self.get(module, 0) + count
        for n in set(names):
            incl_counts[n] = incl_counts.get(n, 0) + count

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {
        "samples": total,
        "top_self_pct": share(self_counts),
        "top_inclusive_pct": share(incl_counts),
        "top_files_self_pct": share(module_self),
    }


# --------------------------------------------------------------------------- report


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


def report(result: dict[str, Any]) -> str:
    rows = []
    for label, phase in result["phases"].items():
        lat = phase["latency_ms"]
        s = phase["settings"]
        load = (
            f"{s['concurrency']} in flight"
            if s["mode"] == "concurrency"
            else f"{s['rate']:g}/s {s['arrivals']}"
        )
        rows.append(
            [
                label + (" *" if phase["noisy"] else ""),
                load,
                phase["rps"],
                lat["p50"],
                lat["p90"],
                lat["p99"],
                lat["max"],
                phase["error_count"] + phase["invalid"],
                phase["front_cpu_us_per_request"],
                phase["loadgen_cpu_s"],
                phase["other_cpu_s"],
            ]
        )
    parts = [
        table(
            [
                "phase",
                "load",
                "req/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "errors",
                "front CPU us/req",
                "loadgen CPU s",
                "other CPU s",
            ],
            rows,
        )
    ]
    r = result
    bulk = r["bulk_subjects_per_s"]
    parts.append(
        "\n".join(
            [
                "",
                f"baseline_rps {_fmt(r['baseline_rps'], 1)}   broker_rps {_fmt(r['broker_rps'], 1)}   "
                f"throughput_ratio {_fmt(r['throughput_ratio'], 3)}",
                f"at {r['settings']['rate']:g}/s: broker p50 {_fmt(r['broker_p50_ms'], 3)} ms, "
                f"p99 {_fmt(r['broker_p99_ms'], 3)} ms; direct p50 {_fmt(r['direct_p50_ms'], 3)} ms, "
                f"p99 {_fmt(r['direct_p99_ms'], 3)} ms",
                f"broker_cpu_us_per_request {_fmt(r['broker_cpu_us_per_request'], 1)}   "
                f"bulk_subjects_per_s {_fmt(bulk, 1)}"
                + (f" ({r['bulk']['note']})" if r["bulk"].get("note") else ""),
                "",
            ]
        )
    )
    parts.append(
        table(
            ["target", "value", "target", "result"],
            [[n, t["value"], t["target"], t["result"]] for n, t in r["targets"].items()],
        )
    )
    m = r["machine"]
    v = r["versions"]
    parts.append(
        f"\n{m['cores']} cores ({m['cpu_model']}), Python {v['python']}, grpcio {v['grpcio']}, "
        f"protobuf {v['protobuf']}, uvloop {v['uvloop']}"
    )
    return "\n".join(parts)


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for old in out_dir.glob("run-*"):  # keep only the latest run's state
        shutil.rmtree(old, ignore_errors=True)
    run_dir = out_dir / f"run-{stamp}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True)
    env = {**os.environ, "ONCEONLY_LOG_FORMAT": "json"}
    env.pop("ONCEONLY_DATABASE_URL", None)  # the broker's ledger lives in the run's own SQLite file
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

    if args.security == "mtls":
        from onceonly.pki import init_pki

        init_pki(run_dir / "pki", providers=PROVIDERS)
        security = Security(run_dir / "pki")
    else:
        security = Security(None)
    consumer, as_broker = security.load("consumer"), security.load("broker")
    common_load = {"duration": args.duration, "warmup": args.warmup, "channels": args.channels}
    conc = {**common_load, "mode": "concurrency", "concurrency": args.concurrency, "procs": args.load_procs}
    rate = {
        **common_load,
        "mode": "rate",
        "rate": args.rate,
        "arrivals": args.arrivals,
        "procs": args.rate_procs,
    }
    phases: dict[str, dict[str, Any]] = {}
    started = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {msg}", flush=True)

    progress("baseline: starting three echo servers and the relay")
    servers = await start_baseline(log_dir, env, security)
    try:
        relay = servers.processes[0].target
        progress("baseline: fixed concurrency")
        phases["baseline"] = measure(
            servers, "relay", target=relay, kind="verify", tag=f"b{stamp}c", **conc, **consumer
        )
        progress("baseline: fixed rate")
        phases["baseline@rate"] = measure(
            servers, "relay", target=relay, kind="verify", tag=f"b{stamp}r", **rate, **consumer
        )
    finally:
        problems = stop_all(servers.processes)
    if problems:
        raise RuntimeError("; ".join(problems))

    progress("broker: starting three reference providers and the broker")
    servers, provider_targets = await start_broker(run_dir, log_dir, env, security)
    profile: dict[str, Any] | None = None
    try:
        broker = servers.processes[0].target
        progress("broker: fixed concurrency")
        phases["broker"] = measure(
            servers, "broker", target=broker, kind="verify", tag=f"k{stamp}c", **conc, **consumer
        )
        progress("broker: fixed rate")
        phases["broker@rate"] = measure(
            servers, "broker", target=broker, kind="verify", tag=f"k{stamp}r", **rate, **consumer
        )
        progress("direct: fixed rate to the tax provider")
        phases["direct@rate"] = measure(
            servers,
            "tax",
            target=provider_targets["tax"],
            kind="attest",
            tag=f"d{stamp}r",
            **rate,
            **as_broker,
        )
        if has_verify_bulk():
            progress(f"bulk: {args.bulk_subjects} subjects through VerifyBulk")
            before = servers.cpu()
            bulk = await measure_bulk(broker, args.bulk_subjects, args.bulk_window, f"v{stamp}", consumer)
            after = servers.cpu()
            if bulk.get("subjects_per_s"):
                bulk["broker_cpu_us_per_subject"] = round(
                    (after["broker"] - before["broker"]) / max(1, bulk["subjects"]) * 1e6, 1
                )
        else:
            bulk = {"subjects_per_s": None, "note": "Broker.VerifyBulk is not in the generated stubs"}
        if args.profile:
            progress("profile: py-spy on the broker under the concurrency load (not a measured phase)")
            profile = profile_broker(
                servers,
                run_dir,
                {"target": broker, "kind": "verify", "tag": f"p{stamp}c", **conc, **consumer},
            )
        servers.check_alive()
    finally:
        problems = stop_all(servers.processes)
    if problems:
        raise RuntimeError("; ".join(problems))
    progress("done")

    baseline_rps = phases["baseline"]["rps"]
    broker_rps = phases["broker"]["rps"]
    b, d = phases["broker@rate"]["latency_ms"], phases["direct@rate"]["latency_ms"]
    values: dict[str, Any] = {
        "baseline_rps": baseline_rps,
        "broker_rps": broker_rps,
        "throughput_ratio": round(broker_rps / baseline_rps, 3) if baseline_rps else None,
        "broker_p50_ms": b["p50"],
        "broker_p99_ms": b["p99"],
        "direct_p50_ms": d["p50"],
        "direct_p99_ms": d["p99"],
        "baseline_p50_ms": phases["baseline@rate"]["latency_ms"]["p50"],
        "baseline_p99_ms": phases["baseline@rate"]["latency_ms"]["p99"],
        "broker_cpu_us_per_request": phases["broker"]["front_cpu_us_per_request"],
        "baseline_relay_cpu_us_per_request": phases["baseline"]["front_cpu_us_per_request"],
        "bulk_subjects_per_s": bulk.get("subjects_per_s"),
    }
    values["broker_p50_over_direct_ms"] = (
        round(b["p50"] - d["p50"], 3) if b["p50"] is not None and d["p50"] is not None else None
    )
    clean = all(p["error_count"] == 0 and p["invalid"] == 0 for p in phases.values())
    result: dict[str, Any] = {
        "schema": 1,
        "command": "make bench",
        "started_at": stamp,
        **values,
        "targets": evaluate(values),
        "all_calls_succeeded": clean,
        "noisy_phases": [name for name, p in phases.items() if p["noisy"]],
        "cores": os.cpu_count(),
        "machine": common.machine(),
        "versions": common.versions(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "phases": phases,
        "bulk": bulk,
        "profile": profile,
        "run_dir": str(run_dir),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from onceonly.serving import install_event_loop_policy

    install_event_loop_policy()
    try:
        result = asyncio.run(run(args))
    except Exception as exc:
        print(f"bench FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    text = report(result)
    print()
    print(text)
    if any(p["noisy"] for p in result["phases"].values()):
        print(
            f"\n* noisy: more than {NOISE_SHARE:.0%} of the machine's CPU went to something other than the"
            " bench's processes during this phase (other jobs, or kernel work not billed to a process);"
            " compare runs on a quiet machine."
        )
    if not result["all_calls_succeeded"]:
        print("\nWARNING: some calls failed or returned unexpected outcomes:")
        for name, phase in result["phases"].items():
            if phase["error_count"] or phase["invalid"]:
                print(f"  {name}: errors {phase['errors']}, unexpected outcomes {phase['invalid']}")
        print(f"  server logs: {Path(result['run_dir']) / 'logs'}")
    if result["profile"]:
        prof = result["profile"]
        if "top_self_pct" in prof:
            print("\nbroker profile (py-spy, share of samples, self time):")
            for name, pct in prof["top_self_pct"][:15]:
                print(f"  {pct:5.1f}%  {name}")
        else:
            print(f"\nprofile: {prof.get('note')}")
    out = Path(args.out) / "latest.json"
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    text_json = json.dumps(result, indent=2)
    out.write_text(text_json + "\n")
    (Path(result["run_dir"]) / "result.json").write_text(text_json + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
