"""The load generator: its own processes, several channels each, grpc.aio + uvloop.

    python -m bench.load --target 127.0.0.1:50051 --kind verify --mode concurrency --concurrency 64
    python -m bench.load --target 127.0.0.1:50051 --kind verify --mode rate --rate 500
    python -m bench.load --target 127.0.0.1:50062 --kind attest --mode rate --rate 500

Two modes:

* ``concurrency`` (closed loop, throughput): N calls outstanding at all times, spread over the
  channels and processes; reports completed calls per second in the measured window.
* ``rate`` (open loop, latency at a given load): arrivals at R per second (``constant``
  spacing, or ``poisson``), each call started on schedule whether or not earlier ones have
  returned; reports latency percentiles of the calls started in the measured window.

Requests are sent pre-serialized (a template per subject with a unique ``request_id``
prepended), responses are received as bytes and one in ``--validate-every`` is parsed and
checked (three VERIFIED outcomes for ``verify``, FOUND for ``attest``), so the generator spends
as little CPU as possible: on a 2-core machine it competes with the servers it measures.
Latency is measured from the moment a call is handed to gRPC to the moment its reply is
back; the delay between an arrival's scheduled time and its send is reported separately
(``send_lag_*``) so that a generator falling behind is visible rather than hidden. A failed call
is never dropped from the latency figures: it counts as its timeout (``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from bench.common import ATTEST_METHOD, VERIFY_METHOD, attest_templates, verify_templates, with_request_id
from onceonly.serving import install_event_loop_policy
from onceonly.v1 import broker_pb2, provider_pb2

REPO = Path(__file__).resolve().parent.parent

CHANNEL_OPTIONS = (
    # A channel per connection: without this, channels to one target share one subchannel.
    ("grpc.use_local_subchannel_pool", 1),
)

_VERIFIED = broker_pb2.CHECK_STATUS_VERIFIED
_FOUND = provider_pb2.AttestResponse.RESULT_FOUND


def _valid(kind: str, reply: bytes) -> bool:
    if kind == "verify":
        r = broker_pb2.VerifyResponse.FromString(reply)
        return len(r.outcomes) == 3 and all(o.status == _VERIFIED and o.attestation for o in r.outcomes)
    return provider_pb2.AttestResponse.FromString(reply).result == _FOUND


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values_ms: list[float]) -> dict[str, float | None]:
    v = sorted(values_ms)
    out: dict[str, float | None] = {
        f"p{int(q * 1000) / 10:g}": percentile(v, q) for q in (0.5, 0.9, 0.99, 0.999)
    }
    out["max"] = v[-1] if v else None
    out["mean"] = sum(v) / len(v) if v else None
    return {k: (round(x, 3) if x is not None else None) for k, x in out.items()}


def open_channel(target: str, tls_dir: str | None, cert: str | None) -> grpc.aio.Channel:
    """Plaintext, or mutual TLS with certificate ``cert`` from ``tls_dir`` (``onceonly pki init``)."""
    if not tls_dir:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    from onceonly.pki import ClientTls

    creds = ClientTls.from_dir(Path(tls_dir), cert).channel_credentials()
    return grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    kind: str = args.kind
    templates = verify_templates() if kind == "verify" else attest_templates()
    method_name = VERIFY_METHOD if kind == "verify" else ATTEST_METHOD
    channels = [open_channel(args.target, args.tls_dir, args.cert) for _ in range(args.channels)]
    methods: list[Any] = [ch.unary_unary(method_name) for ch in channels]
    metadata = tuple(tuple(item.split("=", 1)) for item in args.metadata) or None
    await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), 10)
    late_start_s = 0.0
    if args.start_at:
        delay = args.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late_start_s = -delay

    clock = time.perf_counter
    t_start = clock()
    warm_end = t_start + args.warmup
    end = warm_end + args.duration
    prefix = f"{args.tag}-{args.worker_index}-"
    n_templates, n_methods = len(templates), len(methods)
    latencies: list[float] = []
    from_schedule: list[float] = []
    send_lag: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    counts = {"sent": 0, "ok": 0, "measured": 0, "validated": 0, "invalid": 0}
    validate_every = max(1, args.validate_every)
    timeout = args.timeout

    async def call(seq: int, scheduled: float | None) -> None:
        body = with_request_id(templates[seq % n_templates], prefix + str(seq))
        method = methods[seq % n_methods]
        t0 = clock()
        counts["sent"] += 1
        try:
            reply = await method(body, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            # A failed call is never dropped from the latency figures: it counts as its timeout.
            t1 = t0 + timeout
        else:
            t1 = clock()
            counts["ok"] += 1
            if seq % validate_every == 0:
                counts["validated"] += 1
                if not _valid(kind, reply):
                    counts["invalid"] += 1
        if args.mode == "concurrency":
            if warm_end <= t1 < end:
                counts["measured"] += 1
                latencies.append((t1 - t0) * 1000)
        elif scheduled is not None and warm_end <= scheduled < end:
            counts["measured"] += 1
            latencies.append((t1 - t0) * 1000)
            from_schedule.append((t1 - scheduled) * 1000)
            send_lag.append((t0 - scheduled) * 1000)

    seq = 0
    if args.mode == "concurrency":
        n = args.concurrency

        async def loop(first: int) -> None:
            s = first
            while clock() < end:
                await call(s, None)
                s += n

        await asyncio.gather(*(loop(i) for i in range(n)))
    else:
        rate = args.rate
        rng = random.Random(args.worker_index)
        next_at = t_start
        tasks: set[asyncio.Task[None]] = set()
        while next_at < end:
            now = clock()
            while next_at <= now and next_at < end:
                task = asyncio.create_task(call(seq, next_at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                seq += 1
                next_at += rng.expovariate(rate) if args.arrivals == "poisson" else 1.0 / rate
            # Event-loop timers have millisecond resolution: never ask for less (no spinning).
            await asyncio.sleep(max(0.001, next_at - clock()))
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 1)
    for ch in channels:
        await ch.close()
    usage = os.times()
    return {
        "worker": args.worker_index,
        **counts,
        "errors": dict(errors),
        "late_start_s": round(late_start_s, 3),
        "cpu_s": round(usage.user + usage.system, 3),
        "latencies_ms": [round(x, 4) for x in latencies],
        "from_schedule_ms": [round(x, 4) for x in from_schedule],
        "send_lag_ms": [round(x, 4) for x in send_lag],
    }


def run_load(
    target: str,
    kind: str,
    mode: str,
    *,
    concurrency: int = 64,
    rate: float = 500.0,
    arrivals: str = "constant",
    duration: float = 10.0,
    warmup: float = 2.0,
    channels: int = 4,
    procs: int = 1,
    tag: str = "bench",
    timeout: float = 5.0,
    validate_every: int = 50,
    tls_dir: str | None = None,
    cert: str | None = None,
    metadata: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the load in ``procs`` worker processes and merge what they measured.

    ``channels`` is the total number of channels (connections), spread over the processes.
    """
    channels_per_proc = max(1, channels // procs)
    start_at = time.time() + 1.5 + 0.5 * procs
    workers = []
    per_proc_concurrency = [
        concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)
    ]
    for i in range(procs):
        cmd = [
            sys.executable,
            "-m",
            "bench.load",
            "--worker-index",
            str(i),
            "--target",
            target,
            "--kind",
            kind,
            "--mode",
            mode,
            "--concurrency",
            str(per_proc_concurrency[i]),
            "--rate",
            str(rate / procs),
            "--arrivals",
            arrivals,
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
            "--channels",
            str(channels_per_proc),
            "--tag",
            tag,
            "--timeout",
            str(timeout),
            "--validate-every",
            str(validate_every),
            "--start-at",
            repr(start_at),
        ]
        if tls_dir:
            cmd += ["--tls-dir", str(tls_dir), "--cert", str(cert)]
        for item in metadata:
            cmd += ["--metadata", item]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        workers.append(
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    results = []
    for p in workers:
        out, err = p.communicate(timeout=warmup + duration + timeout + 60)
        if p.returncode != 0:
            raise RuntimeError(f"load worker failed ({p.returncode}): {err.decode(errors='replace')[-2000:]}")
        results.append(json.loads(out))
    return merge(
        results,
        mode=mode,
        duration=duration,
        settings={
            "target": target,
            "kind": kind,
            "mode": mode,
            "concurrency": concurrency if mode == "concurrency" else None,
            "rate": rate if mode == "rate" else None,
            "arrivals": arrivals if mode == "rate" else None,
            "duration_s": duration,
            "warmup_s": warmup,
            "channels": channels_per_proc * procs,
            "procs": procs,
        },
    )


def merge(
    results: list[dict[str, Any]], *, mode: str, duration: float, settings: dict[str, Any]
) -> dict[str, Any]:
    lat = [x for r in results for x in r["latencies_ms"]]
    errors: collections.Counter[str] = collections.Counter()
    for r in results:
        errors.update(r["errors"])
    measured = sum(r["measured"] for r in results)
    out: dict[str, Any] = {
        "settings": settings,
        "sent": sum(r["sent"] for r in results),
        "ok": sum(r["ok"] for r in results),
        "measured": measured,
        "rps": round(measured / duration, 1),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "validated": sum(r["validated"] for r in results),
        "invalid": sum(r["invalid"] for r in results),
        "latency_ms": latency_summary(lat),
        "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
        "late_start_s": max(r["late_start_s"] for r in results),
    }
    if mode == "rate":
        out["latency_from_schedule_ms"] = latency_summary([x for r in results for x in r["from_schedule_ms"]])
        out["send_lag_ms"] = latency_summary([x for r in results for x in r["send_lag_ms"]])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--kind", choices=("verify", "attest"), default="verify")
    parser.add_argument("--mode", choices=("concurrency", "rate"), default="concurrency")
    parser.add_argument("--concurrency", type=int, default=64, help="outstanding calls (concurrency mode)")
    parser.add_argument("--rate", type=float, default=500.0, help="arrivals per second (rate mode)")
    parser.add_argument("--arrivals", choices=("constant", "poisson"), default="constant")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--channels", type=int, default=4, help="channels (connections), all processes")
    parser.add_argument("--procs", type=int, default=1, help="load processes")
    parser.add_argument(
        "--tag", default=f"load{int(time.time())}", help="request-id prefix (ids must be unique)"
    )
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--tls-dir", help="mutual TLS with certificates from `onceonly pki init`")
    parser.add_argument("--cert", help="client certificate NAME in --tls-dir")
    parser.add_argument("--metadata", action="append", default=[], help="KEY=VALUE sent with every call")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_index is not None:
        install_event_loop_policy()
        print(json.dumps(asyncio.run(_worker(args))))
        return 0
    result = run_load(
        args.target,
        args.kind,
        args.mode,
        concurrency=args.concurrency,
        rate=args.rate,
        arrivals=args.arrivals,
        duration=args.duration,
        warmup=args.warmup,
        channels=args.channels,
        procs=args.procs,
        tag=args.tag,
        timeout=args.timeout,
        validate_every=args.validate_every,
        tls_dir=args.tls_dir,
        cert=args.cert,
        metadata=tuple(args.metadata),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
